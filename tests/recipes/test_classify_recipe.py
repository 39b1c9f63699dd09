"""The classify recipe: the whole path at a tiny budget on each kind of source, and its errors."""

import json

import pytest

from tests.conftest import ROOT, run_cli
from tests.data.test_folder import write_images
from tests.recipes.conftest import assert_refused, invoke_recipe

RECIPE = str(ROOT / "recipes" / "classify.py")


def test_tiny_budget_resnet20_on_digits(tmp_path):
    out = tmp_path / "run"
    result = run_cli(RECIPE, "--epochs", "1", "--steps-per-epoch", "2", "--zero-init-residual", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resnet20 on digits: test accuracy" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["name"] == "resnet20"
    assert config["model"]["kwargs"]["input_shape"] == [32, 32, 1]
    assert config["model"]["kwargs"]["zero_init_residual"] is True
    assert (out / "model.keras").is_file() and (out / "plots" / "curves.png").is_file()


def test_image_folder_with_lenet(tmp_path):
    write_images(tmp_path / "images", ["red", "green"], 12, size=(40, 36))
    out = tmp_path / "run"
    args = ["--model", "lenet5", "--data", f"folder:{tmp_path / 'images'}", "--epochs", "2", "--out", str(out)]
    result = run_cli(RECIPE, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["class_names"] == ["green", "red"]
    assert config["model"]["kwargs"]["input_shape"] == [32, 32, 3]


def test_googlenet_with_auxiliary_heads_keeps_the_main_output(tmp_path):
    import keras

    out = tmp_path / "run"
    args = ["--model", "googlenet", "--aux-logits", "--image-size", "65", "--epochs", "1", "--steps-per-epoch", "2"]
    result = run_cli(RECIPE, *args, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    trained = keras.saving.load_model(out / "training_model.keras", compile=False)
    assert trained.output_names == ["aux1", "aux2", "predictions"]
    # googlenet is built with Keras's 0.99; the recipe trains its batch norms at --bn-momentum (0.9)
    assert {layer.momentum for layer in trained.layers if "BatchNormalization" in type(layer).__name__} == {0.9}
    kept = keras.saving.load_model(out / "model.keras", compile=False)
    assert len(kept.outputs) == 1 and kept.output.shape == (None, 10)
    assert kept.count_params() == trained.count_params() - sum(
        layer.count_params() for layer in trained.layers if layer.name.startswith(("aux1", "aux2"))
    )
    history = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert {"aux1_loss", "aux2_loss", "predictions_accuracy", "val_predictions_accuracy"} <= set(history)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["test_loss"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "vgg99"], "error: There is no model named 'vgg99'"),
        (["--image-size", "4"], "error: --image-size must be at least 8"),
        (["--aux-logits"], "error: --aux-logits is for models with auxiliary classifiers (googlenet), not 'resnet20'."),
        (["--model", "googlenet", "--aux-logits"], "error: --aux-logits needs --image-size 65 or more"),
        (
            ["--model", "plain20", "--zero-init-residual"],
            "error: --zero-init-residual is for ResNets with shortcuts, not 'plain20'.",
        ),
        (["--bn-momentum", "1"], "error: --bn-momentum must be at least 0 and below 1, not 1.0."),
        (["--data", "folder:/no/such/folder"], "error: The folder source '/no/such/folder' does not exist"),
    ],
)
def test_bad_options_are_one_sentence(empty_cwd, args, message):
    assert_refused(invoke_recipe("classify", *args, "--out", "run"), message, cwd=empty_cwd)
