"""The local cluster launcher with small Python programs as workers: the TF_CONFIG each gets, the output relayed
with a prefix, a failing worker stopping the others, and one sentence for each mistake. (The multi-worker training
it is for is tested in test_multi_worker.py.)"""

import json
import os
import re
import sys
import time

from kapps.train import local_cluster
from kapps.train.local_cluster import main, run_cluster

import pytest
from click.testing import CliRunner

from tests.conftest import error_line
from tests.recipes.conftest import assert_refused, invoke_recipe

# Python that knows its worker's index as `i`.
INDEX = "import json, os, signal, sys, time; i = json.loads(os.environ['TF_CONFIG'])['task']['index']; "


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_each_worker_gets_its_place_in_one_cluster(capsys):
    code = (
        "import json, os; print(json.dumps([os.environ[k] for k in ('TF_CONFIG', 'TMPDIR', 'TF_NUM_INTRAOP_THREADS')]))"
    )
    assert run_cluster(_python(code), workers=3, threads=2) == 0
    out = capsys.readouterr().out
    lines = dict(re.findall(r"^\[worker (\d)\] (.*)$", out, re.M))
    assert sorted(lines) == ["0", "1", "2"]
    configs, folders = {}, set()
    for index, line in lines.items():
        config, folder, threads = json.loads(line)
        configs[int(index)] = json.loads(config)
        folders.add(folder)
        assert threads == "2"
    workers = configs[0]["cluster"]["worker"]
    assert len(set(workers)) == 3 and all(re.fullmatch(r"127\.0\.0\.1:\d+", a) for a in workers)
    for index, config in configs.items():
        assert config == {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
    # A temporary folder each, all removed when the cluster ended.
    assert len(folders) == 3 and not any(os.path.exists(f) for f in folders)
    assert re.search(r"^local cluster: all 3 workers finished in \d+\.\d s$", out, re.M)


def test_stdout_and_stderr_keep_their_streams_and_get_a_prefix(capsys):
    code = "import sys; print('to out'); print('to err', file=sys.stderr)"
    assert run_cluster(_python(code), workers=2, threads=1) == 0
    captured = capsys.readouterr()
    for index in (0, 1):
        assert f"[worker {index}] to out\n" in captured.out and f"[worker {index}] to err\n" in captured.err
    assert "to err" not in captured.out and "to out" not in captured.err


def test_a_failing_worker_stops_the_others(capsys):
    # Worker 1 fails at once; worker 0 would sleep for a minute.
    code = INDEX + "i and sys.exit(3); time.sleep(60)"
    start = time.monotonic()
    assert run_cluster(_python(code), workers=2, threads=1) == 1
    assert time.monotonic() - start < 30
    captured = capsys.readouterr()
    assert re.search(
        r"^error: worker 1 exited with status 3 after \d+\.\d s; the other workers were stopped\.$", captured.err, re.M
    )
    pids = [int(p) for p in re.findall(r"^local cluster: worker \d is process (\d+)$", captured.out, re.M)]
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_worker_killed_by_a_signal_is_named(capsys):
    code = INDEX + "i or os.kill(os.getpid(), signal.SIGKILL); time.sleep(60)"
    assert run_cluster(_python(code), workers=2, threads=1) == 1
    assert "error: worker 0 was killed by SIGKILL after" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "error: Give the command each worker runs, e.g. python recipes/lenet5.py --strategy multi-worker."),
        (["--workers", "0", "--", "python"], "error: --workers must be at least 1, not 0."),
        (["--threads", "0", "--", "python"], "error: --threads must be at least 1, not 0."),
        (["--", "no-such-program-kapps"], "error: The command 'no-such-program-kapps' was not found."),
    ],
)
def test_mistakes_are_one_sentence(args, message):
    assert error_line(CliRunner().invoke(main, args)) == message


def test_the_command_needs_no_double_dash():
    code = "import sys; print(sys.argv[1:])"
    result = CliRunner().invoke(main, ["--workers", "1", sys.executable, "-c", code, "--strategy", "x"])
    assert result.exit_code == 0, result.output
    assert "[worker 0] ['--strategy', 'x']" in result.stdout


def test_a_malformed_option_is_one_line_with_status_2():
    result = CliRunner().invoke(main, ["--workers", "two", "--", "python"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: Invalid value for '--workers'") and len(result.stderr.splitlines()) == 1


def test_free_ports_are_distinct_and_free():
    import socket

    ports = local_cluster.free_ports(8)
    assert len(set(ports)) == 8
    for port in ports:
        with socket.socket() as s:
            s.bind((local_cluster.HOST, port))


@pytest.mark.parametrize(
    ("tf_config", "message"),
    [
        ("{", "error: TF_CONFIG is not valid JSON."),
        ('{"cluster": {}}', 'error: TF_CONFIG must hold {"cluster": {"worker": [...]}'),
        (
            '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "evaluator", "index": 0}}',
            "error: TF_CONFIG's task type 'evaluator' is not a chief or worker of its cluster.",
        ),
        (
            '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
            "error: TF_CONFIG's task index 1 is not one of its cluster's 1 worker tasks.",
        ),
    ],
)
def test_a_recipe_refuses_a_malformed_tf_config(tf_config, message, empty_cwd, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    result = invoke_recipe("lenet5", "--strategy", "multi-worker", "--epochs", "1")
    assert_refused(result, message, cwd=empty_cwd)
