"""kapps' version and commit, as `kapps --version`, run folders and export reports record them.

The commit is looked up in throwaway repositories made here, so every case (clean, changed, untracked files only,
kapps inside another project's repository, no repository, no git, GIT_DIR pointing elsewhere) is checked against
the commit git itself reports.
"""

import subprocess
import tomllib

import kapps
from kapps.cli import main
from kapps.provenance import checkout_commit, describe, package_versions

from click.testing import CliRunner

from tests.conftest import ROOT, git_commit_of_checkout


def git(folder, *args) -> str:
    """Run git in `folder` as a user without any git configuration would, and return its output."""
    command = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.org", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def make_checkout(top):
    """A repository at `top` holding a one-file kapps package at its top, committed; returns the package folder."""
    package = top / "kapps"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "9.9"\n')
    git(top, "init", "-q")
    git(top, "add", "kapps")
    git(top, "commit", "-q", "-m", "first")
    return package


def test_a_clean_checkout_gives_its_head_and_a_changed_one_says_dirty(tmp_path):
    package = make_checkout(tmp_path / "repo")
    head = git(tmp_path / "repo", "rev-parse", "HEAD")
    assert len(head) == 40 and checkout_commit(package) == head
    (package / "notes.txt").write_text("untracked files leave the tree clean\n")
    assert checkout_commit(package) == head
    (package / "__init__.py").write_text('__version__ = "9.10"\n')
    assert checkout_commit(package) == f"{head}-dirty"
    git(tmp_path / "repo", "add", "kapps/__init__.py")  # staged but not committed is still not the commit
    assert checkout_commit(package) == f"{head}-dirty"


def test_no_commit_outside_a_checkout_of_kapps(tmp_path, capfd):
    loose = tmp_path / "site-packages" / "kapps"
    loose.mkdir(parents=True)
    assert checkout_commit(loose) is None
    # an installed copy in a virtual environment inside some other project's repository: not kapps' commit
    project = tmp_path / "project"
    installed = project / ".venv" / "lib" / "site-packages" / "kapps"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text('__version__ = "9.9"\n')
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "the project")
    assert checkout_commit(project / ".venv" / "lib" / "site-packages" / "kapps") is None
    # a repository with no commit yet
    empty = tmp_path / "empty"
    (empty / "kapps").mkdir(parents=True)
    git(empty, "init", "-q")
    assert checkout_commit(empty / "kapps") is None
    assert capfd.readouterr() == ("", "")  # and git's complaints are not shown


def test_no_git_gives_no_commit_and_says_nothing(tmp_path, monkeypatch, capfd):
    package = make_checkout(tmp_path / "repo")
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    assert checkout_commit(package) is None
    assert capfd.readouterr() == ("", "")


def test_git_variables_pointing_elsewhere_are_not_followed(tmp_path, monkeypatch):
    """As inside a git hook of another repository, which sets GIT_DIR for the commands it runs."""
    package = make_checkout(tmp_path / "repo")
    make_checkout(tmp_path / "other")
    git(tmp_path / "other", "commit", "-q", "--allow-empty", "-m", "second")
    head, other = git(tmp_path / "repo", "rev-parse", "HEAD"), git(tmp_path / "other", "rev-parse", "HEAD")
    assert head != other
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "other" / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(tmp_path / "other"))
    assert checkout_commit(package) == head


def test_this_checkout_and_kapps_version(empty_cwd):
    expected = git_commit_of_checkout()
    assert expected is not None and len(expected) >= 40  # the tests run in a checkout
    assert checkout_commit(ROOT / "kapps") == expected
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout == f"kapps, version {kapps.__version__}, commit {expected} ({ROOT / 'kapps'})\n"
    assert result.stdout == describe() + "\n"
    assert list(empty_cwd.iterdir()) == []


def test_package_versions_name_kapps_and_each_distribution():
    import numpy as np

    versions = package_versions("numpy", "no-such-distribution-here")
    assert versions["kapps"] == kapps.__version__ and versions["kapps_commit"] == git_commit_of_checkout()
    assert versions["numpy"] == np.__version__
    assert versions["no-such-distribution-here"] is None
    assert versions["python"].count(".") == 2


def test_the_wheel_takes_its_version_from_kapps():
    """One version: the wheel's metadata reads kapps.__version__, so `kapps --version` and pip agree."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "kapps.__version__"}
