"""Multi-worker training on a local cluster of two LeNet-5 processes (`kapps.train.local_cluster`): the run folder
written once, by the chief; the weights of one process under MirroredStrategy on two CPU devices; a worker killed
with SIGKILL failing the cluster cleanly, and the cluster started again resuming from the last finished epoch."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.train.custom_step_model import FINAL_STATE

EPOCHS, STEPS = 3, 4
# Plain SGD, whose step is proportional to the gradient: replicas that summed their gradients instead of averaging
# them, or that each trained on the whole global batch, would move the weights by about 6e-3 (measured in
# tests/train/test_engine.py). No dropout or augmentation, whose draws differ between replicas.
BUDGET = ["--epochs", str(EPOCHS), "--steps", str(STEPS), "--sgd", "--no-augment", "--dropout", "0", "--lr", "0.05"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _cluster_command(out, *extra) -> list[str]:
    worker = [sys.executable, "-m", "tests.train.lenet_process", str(out), *BUDGET, "--strategy", "multi-worker"]
    return [sys.executable, "-m", "kapps.train.local_cluster", "--workers", "2", "--", *worker, *extra]


def _final_state(path) -> dict[str, np.ndarray]:
    with np.load(path) as state:
        return {key: state[key] for key in state.files}


def _history_epochs(out) -> list[int]:
    with (out / "history.csv").open() as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cluster") / "run"
    result = subprocess.run(
        _cluster_command(out, "--show-tmpdir"), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )
    return out, result


def test_the_chief_writes_the_run_folder_once(cluster_run):
    out, result = cluster_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "local cluster: all 2 workers finished" in result.stdout
    assert sorted(os.listdir(out)) == [
        "config.json",
        "final_state.npz",
        "history.csv",
        "logs",
        "metrics.json",
        "model.keras",
        "plots",
    ]
    # TensorBoard names each events file after the process that writes it: one file a folder, one writer.
    for split in ("train", "validation"):
        assert len(os.listdir(out / "logs" / split)) == 1, os.listdir(out / "logs" / split)
    config = json.loads((out / "config.json").read_text())
    assert config["strategy"] == "CollectiveAllReduceStrategy" and config["replicas"] == 2
    assert _history_epochs(out) == list(range(EPOCHS))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == EPOCHS and 0 <= metrics["test_accuracy"] <= 1
    # Only the chief logs the epochs; worker 1 wrote its files to a temporary folder and removed it.
    assert f"[worker 0] Epoch {EPOCHS}/{EPOCHS}" in result.stdout and "[worker 1] Epoch" not in result.stdout
    left = re.search(r"^\[worker 1\] temporary folder holds: (.*)$", result.stdout, re.M).group(1)
    assert "kapps-worker" not in left, left  # TensorFlow's own files (AutoGraph's) may stay
    # Worker 1 ends with the chief's weights: one model, mirrored.
    chief = _final_state(out / FINAL_STATE)
    other = _final_state(out.with_name(f"run.worker1.{FINAL_STATE}"))
    for key in chief:
        np.testing.assert_array_equal(other[key], chief[key], err_msg=key)


def test_two_workers_train_as_mirrored_strategy_on_two_devices(cluster_run, tmp_path):
    """Each worker takes its half of every global batch of 32 (sharded by data) and the workers average their
    gradients, which is what MirroredStrategy does with two devices in one process."""
    out, result = cluster_run
    assert result.returncode == 0, result.stderr[-3000:]
    mirrored = subprocess.run(
        [sys.executable, "-m", "tests.train.lenet_process", str(tmp_path / "mirrored"), *BUDGET]
        + ["--strategy", "mirrored", "--logical-cpus", "2"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert mirrored.returncode == 0, mirrored.stderr[-3000:]
    expected = _final_state(tmp_path / "mirrored" / FINAL_STATE)
    got = _final_state(out / FINAL_STATE)
    assert int(got["optimizer/0"]) == EPOCHS * STEPS
    # Not bit for bit: the two processes reduce the gradients with other collective implementations, and a worker
    # computes with one thread where the mirrored process has two (oneDNN splits its sums by thread). Measured:
    # 3e-8 on weights up to 0.25 after 8 steps, float32 rounding; the bugs above would move them 1e5 times as far.
    weights = [key for key in expected if key.startswith("weights/")]
    assert max(float(np.max(np.abs(got[k] - expected[k]))) for k in weights) <= 1e-6
    mirrored_metrics = json.loads((tmp_path / "mirrored" / "metrics.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_loss", "test_accuracy"):
        assert metrics[key] == pytest.approx(mirrored_metrics[key], rel=1e-5, abs=1e-6), key


def _wait_for(predicate, *, process, log, timeout=300):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.02)


def _backed_up(out) -> int:
    state = out / "backup" / "state.json"  # replaced in one step, so never read half-written
    return json.loads(state.read_text())["epochs"] if state.exists() else 0


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A cluster whose worker 1 was killed with SIGKILL once the chief had backed up an epoch: its run folder, the
    workers' process ids, the launcher's exit status and what it printed."""
    folder = tmp_path_factory.mktemp("killed")
    out, stdout, stderr = folder / "run", folder / "launcher.out", folder / "launcher.err"
    with stdout.open("w") as out_file, stderr.open("w") as err_file:
        launcher = subprocess.Popen(_cluster_command(out), cwd=ROOT, env=ENV, stdout=out_file, stderr=err_file)
        _wait_for(lambda: _backed_up(out) >= 1, process=launcher, log=stdout)
        pids = {int(k): int(v) for k, v in re.findall(r"worker (\d) is process (\d+)", stdout.read_text())}
        os.kill(pids[1], signal.SIGKILL)  # in its second epoch, or later
        code = launcher.wait(timeout=120)
    return out, pids, code, stderr.read_text()


def test_a_killed_worker_stops_the_cluster(killed_run):
    out, pids, code, stderr = killed_run
    assert code == 1
    assert re.search(r"^error: worker 1 was killed by SIGKILL.* the other workers were stopped\.$", stderr, re.M)
    with pytest.raises(ProcessLookupError):  # the chief was stopped, and reaped
        os.kill(pids[0], 0)
    assert 1 <= _backed_up(out) < EPOCHS


def test_the_cluster_started_again_resumes_from_the_last_finished_epoch(killed_run, cluster_run):
    out = killed_run[0]
    backed_up = _backed_up(out)
    resumed = subprocess.run(_cluster_command(out), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"[worker 0] Epoch {backed_up + 1}/{EPOCHS}" in resumed.stdout
    assert f"[worker 0] Epoch {backed_up}/{EPOCHS}" not in resumed.stdout
    assert _history_epochs(out) == list(range(EPOCHS))
    assert not (out / "backup").exists()
    # The killed and resumed cluster ends where the uninterrupted one ended, bit for bit: the same workers, threads
    # and collective reductions on the same numbers, and nothing lost at the restart (a batch, a step of SGD).
    expected = _final_state(cluster_run[0] / FINAL_STATE)
    got = _final_state(out / FINAL_STATE)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_workers_that_do_not_share_the_run_folder_stop_at_once(tmp_path):
    """Each worker trains in a folder of its own, as on machines whose --out is not shared storage, and only the
    chief's holds a backup: the workers would resume at different epochs, so they stop, all of them, in one step
    rather than wait for each other in a collective."""
    (tmp_path / "worker0" / "backup").mkdir(parents=True)
    (tmp_path / "worker0" / "backup" / "state.json").write_text(json.dumps({"epochs": 1}))
    result = subprocess.run(
        _cluster_command(tmp_path, "--folder-per-worker"),
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    # The first worker to stop says why (the launcher may stop the other before it does, or both stop in the same
    # moment and the launcher names both); none waited for a peer.
    first = re.search(
        r"^error: worker (\d) exited with status 1 (\(and worker \d exited with status 1\) )?after", result.stderr, re.M
    )
    assert first, result.stderr[-3000:]
    message = "OptionError: The workers found backups of different epochs (0 and 1) in "
    assert f"[worker {first.group(1)}] kapps.errors.{message}" in result.stderr
    assert not (tmp_path / "worker1" / "history.csv").exists()  # no epoch was trained
