"""A malformed command line is one line on stderr and exit status 2, for `kapps` and for a recipe alike.

Click's own usage error is three lines ("Usage: ...", "Try ... for help.", "Error: ...") with status 2; kapps
prints `error: <click's message>` alone, keeps click's status 2 (the POSIX status of a malformed command line), and
keeps status 1 for the mistakes it finds itself. `--help` and `--version` still answer with status 0.
"""

from kapps.cli import main

import pytest
from click.testing import CliRunner

from tests.recipes.conftest import load_recipe


def invoke(command, args, cwd):
    """`command ARGS` in this process, in the empty folder `cwd`; a usage error must leave `cwd` empty."""
    result = CliRunner().invoke(command, args)
    assert list(cwd.iterdir()) == [], sorted(p.name for p in cwd.iterdir())
    return result


def assert_one_line(result, *parts, exit_code):
    """Status `exit_code` through click's exit (no exception escaped), nothing on stdout, and on stderr one line
    `error: ...` that holds each of `parts`."""
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])


@pytest.mark.parametrize(
    ("args", "parts"),
    [
        (["export", "run", "--format", "coreml"], ["Invalid value for '--format'", "'coreml'"]),
        (["export", "run", "--opset", "abc"], ["Invalid value for '--opset'", "'abc' is not a valid integer"]),
        (["benchmark", "export", "--colour", "red"], ["No such option", "--colour"]),
        (["--colour", "models"], ["No such option", "--colour"]),
        (["export"], ["Missing argument 'PATH'"]),
        (["predict", "model.keras"], ["Missing argument 'IMAGES...'"]),
        (["sing"], ["No such command 'sing'"]),
    ],
)
def test_kapps_usage_errors_are_one_line_with_status_2(tmp_path, monkeypatch, args, parts):
    monkeypatch.chdir(tmp_path)
    assert_one_line(invoke(main, args, tmp_path), *parts, exit_code=2)


def test_kapps_mistakes_keep_status_1(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(main, ["models", "--task", "poetry"], tmp_path)
    assert_one_line(result, "Unknown task 'poetry'", exit_code=1)


def test_help_version_and_a_bare_kapps_still_answer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["--help"], ["export", "--help"]):
        result = invoke(main, args, tmp_path)
        assert result.exit_code == 0 and result.stdout.startswith("Usage: ") and result.stderr == "", args
    result = invoke(main, ["--version"], tmp_path)
    assert result.exit_code == 0 and "version" in result.stdout and result.stderr == ""
    bare = invoke(main, [], tmp_path)  # click shows the whole help, not "error: <the help>"
    assert "Commands:" in bare.output and "export" in bare.output and "error:" not in bare.output


@pytest.mark.parametrize(
    ("args", "parts", "exit_code"),
    [
        (["--epochs", "abc"], ["Invalid value for '--epochs'", "'abc' is not a valid integer"], 2),
        (["--activation", "sigmoid"], ["Invalid value for '--activation'", "'sigmoid'"], 2),
        (["--colour", "red"], ["No such option", "--colour"], 2),
        (["--epochs", "0"], ["--epochs must be a positive whole number, not 0."], 1),  # kapps's own check
    ],
)
def test_recipe_usage_errors_are_one_line_with_status_2(tmp_path, monkeypatch, args, parts, exit_code):
    monkeypatch.chdir(tmp_path)
    result = invoke(load_recipe("lenet5").main, args, tmp_path)
    assert_one_line(result, *parts, exit_code=exit_code)


def test_recipe_help_still_answers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(load_recipe("lenet5").main, ["--help"], tmp_path)
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: ") and "--connection-table" in result.stdout
