"""Helpers of the recipe tests: a recipe's click command run in this process, and the checks of a refusal."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from click.testing import CliRunner, Result


def load_recipe(name: str) -> ModuleType:
    """`recipes/NAME.py` as the module `kapps train NAME` runs: `kapps.recipes.NAME` (recipes/ links to it)."""
    return importlib.import_module(f"kapps.recipes.{name}")


def invoke_recipe(name: str, *args: str) -> Result:
    """`python recipes/NAME.py ARGS` in this process: no TensorFlow import to pay for, stdout and stderr apart."""
    return CliRunner().invoke(load_recipe(name).main, [str(a) for a in args])


def assert_refused(result: Result, message: str, *, cwd: Path, exit_code: int = 1) -> None:
    """The recipe refused as a user should see it: status `exit_code` through its own exit (no exception got out,
    which a real process would print as a traceback), nothing on stdout, exactly one line on stderr that begins
    with `message`, and nothing written in `cwd`."""
    assert result.exit_code == exit_code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert list(cwd.iterdir()) == [], sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*"))


def assert_no_chatter(stderr: str) -> None:
    """A real process that trained several models said nothing on stderr but TensorFlow's Python warning that its
    functions were traced again (each phase builds a new model; kapps leaves TensorFlow's Python logger at
    WARNING): no C++ start-up chatter, no traceback, nothing else."""
    lines = stderr.splitlines()
    assert all(line.startswith("WARNING:tensorflow:") and "retracing" in line for line in lines), stderr
