"""`kapps benchmark`: every artifact of an export timed beside Keras, with the machine it ran on, and one sentence
for every user mistake."""

import json
import shutil

from kapps.cli import main
from kapps.errors import OptionError
from kapps.export.benchmark import find_artifacts, parse_batch_sizes
from kapps.export.machine import cpu_info

import keras
import pytest
from click.testing import CliRunner

from tests.conftest import error_line, run_cli

ROWS = ["keras predict", "tf.function", "saved_model", "tflite", "tflite int8", "onnx"]


@pytest.fixture(scope="module")
def exported(lenet_export, tmp_path_factory):
    """A copy of the session's LeNet-5 export (all formats, int8 too), since a benchmark writes benchmark.json into
    the export folder."""
    out = tmp_path_factory.mktemp("bench") / "lenet5"
    shutil.copytree(lenet_export.path, out)
    return out


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def check_result(result: dict, batch_sizes: list[int], runs: int) -> None:
    assert [r["name"] for r in result["runtimes"]] == ROWS
    assert result["batch_sizes"] == batch_sizes and result["runs"] == runs
    for entry in result["runtimes"]:
        assert sorted(entry["batches"]) == sorted(str(b) for b in batch_sizes), entry["name"]
        for batch, stats in entry["batches"].items():
            assert len(stats["calls_ms"]) == runs
            assert 0 < stats["median_ms"] <= stats["p90_ms"] <= max(stats["calls_ms"])
            assert stats["images_per_s"] == pytest.approx(int(batch) * 1000 / stats["median_ms"])
    for stats in result["runtimes"][0]["batches"].values():
        assert stats["vs_keras_predict"] == 1.0  # exactly: the baseline's own ratio
    assert result["cpu"]["model"] and result["cpu"]["logical_cpus"] >= 1
    assert isinstance(result["cpu"]["vector_extensions"], list)
    assert all(load >= 0 for load in result["load_average"].values())
    assert result["inputs"] == {"data": "digits (seed 0), test split", "shape": [32, 32, 1]}


def test_benchmark_times_every_artifact_beside_keras(exported):
    result = invoke("benchmark", str(exported), "--runs", "2", "--batch", "1,2", "--threads", "1")
    assert result.exit_code == 0, result.output
    written = json.loads((exported / "benchmark.json").read_text())
    check_result(written, [1, 2], 2)
    # TensorFlow already ran in this test process, so it keeps its count; the others take --threads.
    assert written["threads"]["litert"] == written["threads"]["onnxruntime_intra_op"] == 1
    assert [r["threads"] for r in written["runtimes"][3:]] == [1, 1, 1]
    lines, stages = result.stdout.splitlines(), result.stderr.splitlines()  # progress on stderr, as kapps export's
    for stage in ("loaded tflite int8 (LiteRT) from model_int8.tflite", "batch 1: warm-up", "batch 2: round 2/2"):
        assert any(line.startswith(stage) for line in stages) and not any(line.startswith(stage) for line in lines)
    header = next(i for i, line in enumerate(lines) if line.startswith("runtime "))
    assert lines[header - 4].startswith("CPU: ") and lines[header - 3].startswith("load average (1 min): ")
    assert lines[header - 2].startswith("threads: TensorFlow intra-op")
    table = [line.split() for line in lines[header + 1 : header + 13]]
    assert [row[-1] for row in table if row[0] == "keras"] == ["1.00x", "1.00x"]
    assert [row[-5] for row in table] == ["1"] * 6 + ["2"] * 6  # the batch column


def test_threads_reach_tensorflow_in_a_fresh_process(exported, tmp_path):
    out = tmp_path / "one-thread.json"
    args = ("benchmark", str(exported), "--runs", "1", "--batch", "1", "--threads", "1", "--out", str(out))
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    threads = json.loads(out.read_text())["threads"]
    assert threads == {"tensorflow_intra_op": 1, "litert": 1, "onnxruntime_intra_op": 1}


def test_a_run_folder_is_benchmarked_through_its_default_export(lenet_run, exported, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("benchmark", str(lenet_run.path), "--runs", "1", "--batch", "1")
    assert list(tmp_path.iterdir()) == []
    assert error_line(result) == (
        f"error: The run {str(lenet_run.path)!r} has no export in 'export/{lenet_run.path.name}' yet; "
        f"run `kapps export {lenet_run.path}` first."
    )
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / lenet_run.path.name).symlink_to(exported)
    out = tmp_path / "run.json"
    result = invoke("benchmark", str(lenet_run.path), "--runs", "1", "--batch", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    check_result(json.loads(out.read_text()), [1], 1)


def free_size_export(folder):
    """An export folder whose source model takes images of any size (and a placeholder artifact)."""
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs)))
    keras.Model(inputs, outputs).save(folder / "free.keras")
    (folder / "config.json").write_text(json.dumps({"task": "classification"}))  # what export needs to know
    (folder / "model.onnx").write_bytes(b"")
    (folder / "export_report.json").write_text(json.dumps({"source": str(folder / "free.keras")}))
    return folder


@pytest.mark.parametrize(
    ("make", "options", "message"),
    [
        (None, [], "'{folder}/missing' does not exist."),
        ("empty", [], "'{folder}/empty' is neither an export folder (no export_report.json) nor a run folder"),
        ("no artifacts", [], "'{folder}/no artifacts' holds no artifact to time"),
        ("source gone", [], "The export's source '{folder}/gone.keras' (named in export_report.json) is gone"),
        ("free size", [], "The model's input shape (None, None, 3) is not fixed"),
        ("exported", ["--batch", "0"], "--batch takes comma-separated positive integers such as 1,8, not '0'."),
        ("exported", ["--batch", "a,b"], "--batch takes comma-separated positive integers such as 1,8, not 'a,b'."),
        ("exported", ["--batch", ""], "--batch takes comma-separated positive integers such as 1,8, not ''."),
        ("exported", ["--runs", "0"], "--runs must be at least 1, not 0."),
        ("exported", ["--threads", "0"], "--threads must be at least 1, not 0."),
        ("exported", ["--out", "{folder}/a file/b.json"], "The output '{folder}/a file' is a file, not a folder."),
    ],
)
def test_user_mistakes_are_one_sentence(exported, tmp_path, empty_cwd, make, options, message):
    target = tmp_path / (make or "missing")
    if make == "exported":
        target = exported
        (tmp_path / "a file").write_text("")
    elif make == "free size":
        target.mkdir()
        free_size_export(target)
    elif make is not None:
        target.mkdir()
        if make != "empty":
            (target / "export_report.json").write_text(json.dumps({"source": str(tmp_path / "gone.keras")}))
        if make == "source gone":
            (target / "model.tflite").write_bytes(b"")
    options = [o.format(folder=tmp_path) for o in options]
    before = sorted(tmp_path.rglob("*")), sorted(exported.rglob("*"))
    line = error_line(invoke("benchmark", str(target), *options))
    assert line.startswith("error: " + message.format(folder=tmp_path)), line
    assert (sorted(tmp_path.rglob("*")), sorted(exported.rglob("*"))) == before and list(empty_cwd.iterdir()) == []


def test_batch_sizes_and_artifact_discovery(exported):
    assert parse_batch_sizes("1, 8,1") == (1, 8)
    with pytest.raises(OptionError):
        parse_batch_sizes("1,-2")
    assert find_artifacts(exported) == [
        ("saved_model", "saved_model"),
        ("tflite", "model.tflite"),
        ("tflite int8", "model_int8.tflite"),
        ("onnx", "model.onnx"),
    ]


X86 = """processor\t: 0
model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
flags\t\t: fpu sse4_2 avx f16c fma avx2 avx512f avx512_vnni amx_int8

processor\t: 1
model name\t: something else
"""
ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes asimdhp asimddp sve i8mm
CPU part\t: 0xd40
"""


@pytest.mark.parametrize(
    ("text", "model", "extensions", "int8"),
    [
        (
            X86,
            "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
            ["sse4_2", "avx", "f16c", "fma", "avx2", "avx512f", "avx512_vnni", "amx_int8"],
            ["avx512_vnni", "amx_int8"],
        ),
        (X86.replace(" avx512f avx512_vnni amx_int8", ""), None, ["sse4_2", "avx", "f16c", "fma", "avx2"], []),
        (ARM, None, ["asimd", "asimdhp", "asimddp", "i8mm", "sve"], ["asimddp", "i8mm"]),
    ],
)
def test_cpu_info_reads_the_vector_extensions(tmp_path, text, model, extensions, int8):
    (tmp_path / "cpuinfo").write_text(text)
    cpu = cpu_info(tmp_path / "cpuinfo")
    assert cpu["vector_extensions"] == extensions and cpu["int8_dot_products"] == int8
    if model is not None:
        assert cpu["model"] == model
    assert cpu["model"]  # the platform's processor name where /proc/cpuinfo has none
