"""Atomic file writes: a temp file beside the target, fsynced, then renamed over it.

An interruption (crash, Ctrl-C, a full disk) leaves the previous complete file
and no temp file behind, never a half-written one.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_options):
    """Open a temp file for writing (``open``'s mode and options); on success it replaces ``path``.

    Example::

        with atomic_write(out / "results.json") as f:
            f.write(text)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_options) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
