"""Output files written safely: a folder checked before any work is done, and files that appear whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kapps.errors import KappsError, OutputError


def check_output_folder(out: Path, *, error: type[KappsError] = OutputError) -> None:
    """Fail in one sentence, before any work, when the folder `out` could not be made or written.

    Nothing is made: the test write goes to `out` when it exists, else to its nearest existing parent, so a command
    refused later leaves no empty folders behind. The caller makes `out` (and its parents) when it writes.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise error(f"The output {str(out)!r} is a file, not a folder.")
    folder = out
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise error(f"The output folder {str(out)!r} cannot be written ({str(folder)!r} is a file).")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise error(f"The output folder {str(out)!r} cannot be written ({err.strerror}).") from None


def write_atomic(path: Path, write) -> None:
    """Write `path` by calling `write(binary_file)` on a temporary file in the same folder, renamed into place when
    complete, so a failure never leaves a half-written `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
