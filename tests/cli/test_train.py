"""`kapps train`: every script in recipes/ is a recipe of the installed package, listed, run and helped by name.

The recipes live in kapps/recipes (the checkout's recipes/ links there), so the wheel carries them; these tests
read the recipe names off the files in recipes/, not off the code that lists them.
"""

import ast
import tomllib

from kapps.cli import main

import click
import pytest
from click.testing import CliRunner

from tests.conftest import ROOT
from tests.recipes.conftest import load_recipe

SCRIPTS = sorted(p.stem for p in (ROOT / "recipes").glob("*.py") if p.stem != "__init__")


def invoke(args, cwd):
    """`kapps ARGS` in this process, in the empty folder `cwd`, which nothing here may write in."""
    result = CliRunner().invoke(main, args)
    assert list(cwd.iterdir()) == [], sorted(p.name for p in cwd.iterdir())
    return result


def test_recipes_is_a_link_to_the_package_and_every_script_is_a_recipe():
    assert (ROOT / "recipes").is_symlink() and (ROOT / "recipes").resolve() == ROOT / "kapps" / "recipes"
    assert len(SCRIPTS) >= 17 and {"lenet5", "yolo", "classify", "gan", "kernels_demo"} <= set(SCRIPTS)
    for name in SCRIPTS:
        module = load_recipe(name)
        assert (ROOT / "recipes" / f"{name}.py").samefile(module.__file__), name
        assert isinstance(module.main, click.Command), name
        assert "__main__" in (ROOT / "recipes" / f"{name}.py").read_text(), name  # still a script


def test_the_wheel_would_carry_every_recipe():
    """What setuptools packs, found as the build finds it: pyproject.toml's package search, run on the checkout.
    (CI's .ci/installed_check.sh builds the real wheel and runs it from a venv of its own.)"""
    found = pyproject_packages()
    assert "kapps.recipes" in found
    assert {p.stem for p in (ROOT / "kapps" / "recipes").glob("*.py")} >= set(SCRIPTS)
    # every folder of kapps with Python in it is a package the wheel carries, so no module is left behind
    folders = {p.parent for p in (ROOT / "kapps").rglob("*.py") if "__pycache__" not in p.parts}
    dotted = {".".join(f.relative_to(ROOT).parts) for f in folders}
    assert dotted <= found, dotted - found
    # and kapps has no data files, which the wheel would leave out unless pyproject.toml named them as package data
    assert not [p for p in (ROOT / "kapps").rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")]


def pyproject_packages() -> set[str]:
    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    search = config["tool"]["setuptools"]["packages"]["find"]
    return set(find_packages(str(ROOT), include=search["include"], exclude=search.get("exclude", ())))


def test_kapps_train_alone_lists_every_recipe_with_its_summary(empty_cwd):
    result = invoke(["train"], empty_cwd)
    assert result.exit_code == 0 and result.stderr == "", result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Recipes (kapps train NAME --help shows a recipe's options):"
    listed = [line.split()[0] for line in lines[1:] if line.startswith("  ") and not line.startswith("   ")]
    assert listed == SCRIPTS
    unwrapped = "".join(result.stdout.split())  # click wraps the summaries at spaces and hyphens
    for name in SCRIPTS:  # each recipe's docstring's opening line follows its name
        source = (ROOT / "recipes" / f"{name}.py").read_text()
        first_line = ast.get_docstring(ast.parse(source)).splitlines()[0]
        assert name + "".join(first_line.split()) in unwrapped, name
    assert "  lenet5                 Train LeNet-5 on handwritten digits.\n  mask_rcnn  " in result.stdout


def test_kapps_train_help_lists_them_too(empty_cwd):
    result = invoke(["train", "--help"], empty_cwd)
    assert result.exit_code == 0 and result.stdout.startswith("Usage: main train [OPTIONS] NAME [RECIPE OPTIONS]...")
    assert "Recipes:\n" in result.stdout and "  yolo " in result.stdout


def test_an_unknown_recipe_is_one_sentence_that_names_the_known_ones(empty_cwd):
    result = invoke(["train", "yolov8", "--epochs", "1"], empty_cwd)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert result.stdout == ""
    assert result.stderr == f"error: Unknown recipe 'yolov8'; the recipes are {', '.join(SCRIPTS)}.\n"


@pytest.mark.parametrize("name", ["lenet5", "yolo", "classify_all"])
def test_kapps_train_name_help_is_the_recipes_own(name, empty_cwd):
    through_kapps = invoke(["train", name, "--help"], empty_cwd)
    own = CliRunner().invoke(load_recipe(name).main, ["--help"], prog_name=f"main train {name}")
    assert through_kapps.exit_code == 0 and own.exit_code == 0
    assert through_kapps.stdout.startswith(f"Usage: main train {name} [OPTIONS]")
    assert through_kapps.stdout == own.stdout
    assert "--epochs" in own.stdout


def test_recipe_options_reach_the_recipe(empty_cwd):
    """A value the recipe itself refuses (status 1) and an option only click refuses (status 2), both one line."""
    refused = invoke(["train", "lenet5", "--epochs", "0"], empty_cwd)
    assert (refused.exit_code, refused.stdout) == (1, "")
    assert refused.stderr == "error: --epochs must be a positive whole number, not 0.\n"
    unknown = invoke(["train", "lenet5", "--colour", "red"], empty_cwd)
    assert (unknown.exit_code, unknown.stdout) == (2, "")
    assert unknown.stderr.startswith("error: No such option '--colour'.") and len(unknown.stderr.splitlines()) == 1
    bad_choice = invoke(["train", "lenet5", "--activation", "sigmoid"], empty_cwd)
    assert bad_choice.exit_code == 2 and "'sigmoid'" in bad_choice.stderr
