"""The sweep over classifiers: one model at a tiny budget, its row in the table, and a resumed sweep skipping it."""

import json

from tests.conftest import ROOT, run_cli
from tests.recipes.conftest import assert_refused, invoke_recipe

RECIPE = str(ROOT / "recipes" / "classify_all.py")


def test_one_model_sweep_and_resume(tmp_path):
    """One model through the sweep, in a real process (stderr stays empty: no TensorFlow chatter, no failed model),
    its row in the table, a test accuracy that LeNet-5 reaches in one epoch (measured: 40.6% with seed 0; chance,
    what shuffled labels or an untrained model score, is 10%), and a second sweep, in this process, that skips
    what is measured."""
    out = tmp_path / "sweep"
    result = run_cli(RECIPE, "--models", "lenet5", "--epochs", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"lenet5"}
    assert results["lenet5"]["image_size"] == 32 and results["lenet5"]["test_accuracy"] >= 0.25
    table = (out / "results.md").read_text().splitlines()
    assert results["lenet5"]["lr"] == 0.01  # no batch norm: --lr-unnormalised
    assert table[2].startswith("| `lenet5` | 32x32 | 0.01 | ")
    again = invoke_recipe("classify_all", "--models", "lenet5", "--epochs", "1", "--out", str(out))
    assert again.exit_code == 0, again.output
    assert "lenet5: test accuracy" not in again.stdout  # already measured: skipped
    assert json.loads((out / "results.json").read_text()) == results


def test_unknown_model_is_one_sentence(empty_cwd):
    result = invoke_recipe("classify_all", "--models", "lenet5,vgg99", "--out", "sweep")
    assert_refused(result, "error: There is no model named 'vgg99'", cwd=empty_cwd)


def test_learning_rate_follows_normalisation_and_size_follows_the_architecture():
    import importlib.util

    spec = importlib.util.spec_from_file_location("classify_all_recipe", RECIPE)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    assert recipe.probe("resnet20", 32) == (32, True)
    assert recipe.probe("vgg11", 32) == (32, False)
    assert recipe.probe("vgg11_bn", 32) == (32, False)  # batch norm, but its 4096-wide dense layers have none
    assert recipe.probe("googlenet", 32) == (32, True)
    assert recipe.probe("inception_v3", 32) == (75, True)  # its stem needs 75 pixels
