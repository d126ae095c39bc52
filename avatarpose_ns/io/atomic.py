"""Files that are either the old version or the complete new one, never half-written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomically(path: Path, write: Callable[[IO[bytes]], None], tmp_dir: Path | None = None) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file, then rename it over ``path``.

    Until the rename, ``path`` (if it existed) is untouched; a write that fails or is interrupted
    removes its temporary file. ``tmp_dir`` must be on the same filesystem (default: ``path``'s folder).
    """
    folder = Path(tmp_dir) if tmp_dir is not None else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
