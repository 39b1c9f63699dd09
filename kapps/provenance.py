"""Which kapps made a file: its version and, when it runs from a git checkout, the commit.

Run folders (`config.json`), export reports (`export_report.json`), benchmark results and `kapps --version` carry
it, so that a result can be traced to the code that produced it. The git lookup asks nothing of the user: outside a
checkout, in an installed copy, or on a machine without git it gives None, silently.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

# Variables that would point git at another repository than the one kapps sits in (set inside git hooks, say).
_GIT_LOCATION_VARIABLES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY")


def version() -> str:
    """kapps' version (`kapps.__version__`, which pyproject.toml reads for the wheel too)."""
    import kapps

    return kapps.__version__


@functools.cache
def commit() -> str | None:
    """The commit of the git checkout that kapps is imported from, `-dirty` appended when tracked files differ from
    it; None for an installed copy, a kapps folder that is not the top of its repository, or no git."""
    return checkout_commit(PACKAGE_DIR)


def checkout_commit(package_dir: Path) -> str | None:
    """The commit of the checkout whose top folder holds `package_dir` (see `commit`); never raises, never prints."""
    root = Path(package_dir).resolve().parent
    top = _git(root, "rev-parse", "--show-toplevel")
    # A wheel installed into a virtual environment inside some other repository is inside a work tree too, but
    # that repository's commit says nothing about kapps: only a checkout of kapps itself counts.
    if top is None or Path(top).resolve() != root:
        return None
    head = _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    changes = _git(root, "status", "--porcelain", "--untracked-files=no")
    if not head or changes is None:
        return None
    return f"{head}-dirty" if changes else head


def _git(folder: Path, *args: str) -> str | None:
    """`git -C folder ARGS`'s output, or None when git is missing, fails or takes longer than 10 s."""
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARIABLES}
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def stamp() -> dict:
    """`{"kapps": version, "kapps_commit": commit or None}`: what a written file records about kapps."""
    return {"kapps": version(), "kapps_commit": commit()}


def package_versions(*packages: str) -> dict:
    """kapps' stamp, each distribution's installed version (None when it is not installed) and Python's."""
    versions = stamp()
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["python"] = platform.python_version()
    return versions


def describe() -> str:
    """One line for `kapps --version`: version, commit when there is one, and where kapps is imported from."""
    found = commit()
    return f"kapps, version {version()}" + (f", commit {found}" if found else "") + f" ({PACKAGE_DIR})"
