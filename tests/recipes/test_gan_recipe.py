"""The GAN recipe: the whole path at a tiny budget (judge, GAN, per-epoch pictures and scores, the kept generator as
model.keras), its export with parity and `kapps predict` on noise, and its option errors."""

import csv
import json

import kapps.data
import kapps.models
from kapps.cli import main
from kapps.data.base import as_arrays
from kapps.generative_metrics import DigitJudge
from kapps.kinds import kind_for
from kapps.kinds.generated_images import image_grid
from kapps.train.generative import generate

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import error_line
from tests.recipes.conftest import assert_refused, invoke_recipe

TINY = ["--epochs", "2", "--steps-per-epoch", "3", "--judge-epochs", "1", "--base-filters", "8", "--latent-dim", "16"]
TINY += ["--augment", "translation"]  # the default is none; the option's path through the recipe is run here
GRID_SIDE = 10 * 32 + 9 * 2  # 10 x 10 images of 32 px with 2 px between them
GRIDS = ("samples_epoch_001.png", "samples_epoch_002.png", "samples.png")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "run"
    result = invoke_recipe("gan", *TINY, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "dcgan on digits: judge distance" in result.stdout
    return out


def history(out) -> list[dict]:
    """history.csv's rows; Keras's CSV logger adds val_ columns of "NA" to a run without validation."""
    with (out / "history.csv").open() as f:
        return [{k: float(v) for k, v in row.items() if v != "NA"} for row in csv.DictReader(f)]


def test_the_run_folder_holds_the_generator_the_judge_and_a_picture_per_epoch(run):
    for name in ("model.keras", "training_model.keras", "config.json", "history.csv", "metrics.json"):
        assert (run / name).is_file(), name
    assert (run / "judge" / "model.keras").is_file() and (run / "judge" / "metrics.json").is_file()
    assert not (run / "backup").exists()  # removed once training ended
    generator = keras.saving.load_model(run / "model.keras", compile=False)
    assert generator.name == "dcgan_generator"
    assert generator.input_shape == (None, 16) and generator.output_shape == (None, 32, 32, 1)
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "generative" and config["model"]["name"] == "dcgan_generator"
    assert config["model"]["kwargs"] == {"latent_dim": 16, "base_filters": 8, "image_shape": [32, 32, 1]}
    assert "not Inception FID" in config["distance"]
    # The samples, and model.keras, come from the moving average of the kept GAN's generator weights.
    assert config["average"] == 0.999 and config["augment"] == ["translation"]
    gan = keras.saving.load_model(run / "training_model.keras", compile=False)
    assert gan.average == 0.999 and gan.augment == ("translation",)
    noise = np.random.default_rng(0).standard_normal((8, 16)).astype("float32")
    np.testing.assert_allclose(generator(noise), gan.averaged_generator()(noise), atol=1e-6)
    averaged, trained = np.asarray(generator(noise)), np.asarray(gan.generator(noise))
    assert np.abs(averaged - trained).max() > 0.01 * np.abs(trained).max()  # the average is not the last weights
    grids = {name: np.asarray(Image.open(run / "plots" / name)) for name in GRIDS}
    for name, grid in grids.items():
        assert grid.shape == (GRID_SIDE, GRID_SIDE), name
        assert grid[32:34].max() == 0 and grid[:, 32:34].max() == 0, name  # the black gaps between images
        assert grid[:32, :32].min() > 0, name  # a generated image, not a failed write (at this budget, near grey)
    # Each picture is the generator's images of its fixed noise: the kept epoch's grid is model.keras's images of the
    # grid noise (the kind's val noise, as every epoch), samples.png its images of the test noise.
    kind = kind_for("generative")
    kept = json.loads((run / "metrics.json").read_text())["best_epoch"] + 1
    expected = image_grid(generate(generator, kind.inputs((16,), 100, split="val")))[..., 0]
    assert np.abs(grids[f"samples_epoch_{kept:03d}.png"].astype(int) - expected).max() <= 1
    expected = image_grid(generate(generator, kind.inputs((16,), 100, split="test")))[..., 0]
    assert np.abs(grids["samples.png"].astype(int) - expected).max() <= 1
    other = grids[f"samples_epoch_{3 - kept:03d}.png"]
    assert np.abs(other.astype(int) - grids[f"samples_epoch_{kept:03d}.png"]).max() >= 1  # each epoch its own
    assert (run / "plots" / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_history_and_metrics_hold_the_judges_numbers(run):
    rows = history(run)
    assert [row["epoch"] for row in rows] == [0, 1]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "frechet_distance", "confident_share"} <= set(rows[0])
    metrics = json.loads((run / "metrics.json").read_text())
    assert "not Inception FID" in metrics["distance"] and metrics["judge"] == str(run / "judge")
    distances = [row["frechet_distance"] for row in rows]
    assert metrics["best_epoch"] == int(np.argmin(distances)) and metrics["epochs_run"] == 2
    assert metrics["frechet_distance_epoch1"] == pytest.approx(distances[0])
    assert metrics["frechet_distance_last"] == pytest.approx(distances[1])
    assert metrics["frechet_fall_ratio"] == pytest.approx(distances[0] / distances[1])
    assert metrics["samples"] == 1000 and metrics["confidence"] == 0.9
    shares = metrics["class_shares"]
    assert list(shares) == [str(d) for d in range(10)] and sum(shares.values()) == pytest.approx(1)
    assert metrics["smallest_class_share"] == min(shares.values())
    assert 0 <= metrics["confident_share"] <= 1 and 0 <= metrics["real_test_confident_share"] <= 1
    assert metrics["targets"] == {
        "confident_share": metrics["confident_share"] >= 0.85,
        "smallest_class_share": metrics["smallest_class_share"] >= 0.05,
        "frechet_fall_ratio": metrics["frechet_fall_ratio"] >= 5,
    }
    # The final distance is the judge's, recomputed here: the kept generator's images of the kind's test noise
    # against the real training digits in [-1, 1].
    data = kapps.data.load("digits", image_size=(32, 32), seed=0)
    real, _ = as_arrays(data.train)
    judge = DigitJudge(keras.saving.load_model(run / "judge" / "model.keras"), real * 2 - 1)
    generator = keras.saving.load_model(run / "model.keras", compile=False)
    samples = generate(generator, kind_for("generative").inputs((16,), 1000, split="test"))
    assert metrics["frechet_distance"] == pytest.approx(judge.distance(samples), rel=1e-4)
    assert metrics["frechet_distance"] > metrics["frechet_distance_real_test"] >= 0
    # Beside the test noise's share, its spread over ten other draws of 1,000 (seeds 100-109), recomputed here.
    shares = [
        judge.scores(generate(generator, np.random.default_rng(seed).standard_normal((1000, 16)).astype("float32")))[
            "confident_share"
        ]
        for seed in range(100, 110)
    ]
    spread = metrics["confident_share_other_draws"]
    assert spread["draws"] == 10 and spread["samples"] == 1000
    assert spread["mean"] == pytest.approx(np.mean(shares), abs=1e-9)
    assert spread["sd"] == pytest.approx(np.std(shares, ddof=1), abs=1e-9)
    assert (spread["min"], spread["max"]) == (min(shares), max(shares))


def test_the_run_exports_with_parity_and_predicts_on_noise(run, tmp_path):
    exported = CliRunner().invoke(main, ["export", str(run), "--format", "all", "--out", str(tmp_path / "export")])
    assert exported.exit_code == 0, exported.output
    report = json.loads((tmp_path / "export" / "export_report.json").read_text())
    assert report["task"] == "generative" and report["inputs"]["data"].startswith("standard normal noise")
    assert {a["format"] for a in report["artifacts"]} == {"saved_model", "tflite", "onnx"}
    for artifact in report["artifacts"]:
        assert artifact["passed"] and artifact["max_abs_diff"] <= 1e-4, artifact

    noise = np.random.default_rng(7).standard_normal(16).astype("float32")
    np.save(tmp_path / "z.npy", noise)
    expected = np.asarray(keras.saving.load_model(run / "model.keras", compile=False)(noise[None]))[0]
    for artifact in (run, tmp_path / "export" / "model.tflite", tmp_path / "export" / "model.onnx"):
        out = tmp_path / "predicted" / artifact.name
        predicted = CliRunner().invoke(main, ["predict", str(artifact), str(tmp_path / "z.npy"), "--out", str(out)])
        assert predicted.exit_code == 0, predicted.output
        assert "z.npy: a 32x32x1 image" in predicted.stdout
        entry = json.loads((out / "z.json").read_text())
        assert entry["task"] == "generative" and (entry["width"], entry["height"]) == (32, 32)
        got = entry["generated"]
        assert (got["height"], got["width"], got["channels"]) == (32, 32, 1)
        assert got["min"] == pytest.approx(expected.min(), abs=1e-4)
        assert got["max"] == pytest.approx(expected.max(), abs=1e-4)
        assert got["mean"] == pytest.approx(expected.mean(), abs=1e-5)
        assert (out / "z.png").read_bytes().startswith(b"\x89PNG")

    np.save(tmp_path / "wrong.npy", np.zeros(100, "float32"))
    refused = CliRunner().invoke(main, ["predict", str(run), str(tmp_path / "wrong.npy"), "--out", str(tmp_path / "w")])
    assert error_line(refused).startswith(
        f"error: {str(tmp_path / 'wrong.npy')!r} holds an array of shape (100,); the generator takes one noise vector "
        "of shape (16,)."
    )
    report_file = str(tmp_path / "export" / "export_report.json")
    refused = CliRunner().invoke(main, ["predict", str(run), report_file, "--out", str(tmp_path / "w")])
    assert error_line(refused) == f"error: {report_file!r} is not a NumPy .npy file of a generator's noise."
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image-size", "6"], "error: These options do not make a DCGAN: image_shape's height and width must halve"),
        (["--latent-dim", "0"], "error: These options do not make a DCGAN: --latent-dim, --base-filters and --d-base"),
        (["--d-base-filters", "0"], "error: These options do not make a DCGAN: --latent-dim, --base-filters and --d-b"),
        (["--judge-epochs", "0"], "error: --judge-epochs must be a positive whole number, not 0."),
        (["--label-smoothing", "0.5"], "error: --label-smoothing must be from 0 to below 0.5, not 0.5."),
        (["--r1", "-1"], "error: --r1 must be a weight of 0 (none) or more, not -1."),
        (["--decay-from", "2"], "error: --decay-from must be a share of the epochs from 0 to 1, not 2."),
        (["--augment", "zoom"], "error: --augment takes some of color, translation, cutout, comma-separated, not"),
        (["--average", "1"], "error: --average must be a decay from 0 (no average) to below 1, not 1."),
        (["--batch-size", "5000"], "error: --batch-size 5000 is larger than the 1257 training images."),
        (["--judge", "nowhere"], "error: --judge 'nowhere' is neither a run folder with a model.keras nor a .keras"),
        (["--data", "imagenet21k"], "error: Unknown data source 'imagenet21k'"),
        (["--epochs", "0"], "error: --epochs must be a positive whole number, not 0."),
    ],
)
def test_bad_options_are_one_sentence(empty_cwd, args, message):
    assert_refused(invoke_recipe("gan", *args, "--out", "run"), message, cwd=empty_cwd)


def test_a_judge_of_other_classes_is_refused(empty_cwd, tmp_path):
    kapps.models.lenet5(num_classes=3).save(tmp_path / "three.keras")
    result = invoke_recipe("gan", "--judge", tmp_path / "three.keras", "--out", "run")
    assert_refused(
        result,
        f"error: --judge {str(tmp_path / 'three.keras')!r} takes (32, 32, 1) images into (3,) outputs; a judge of "
        "these images takes 1-channel images into 10 class probabilities.",
        cwd=empty_cwd,
    )
