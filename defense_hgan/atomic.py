"""Atomic file writes: a temp file beside the target, fsynced, then renamed over it.

An interruption (crash, Ctrl-C, a full disk) leaves the previous complete file,
never a half-written one. A temp file is named after its target and its
writer's pid (``results.json.1234.5f0e.tmp``); one a killed process left
behind is removed by the next write of the same target. Files get the
permissions a plain ``open`` would give them: the target's own if it exists,
else 0666 less the umask.
"""
from __future__ import annotations

import os
import secrets
import stat
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
    make_folder(path.parent)
    _remove_stale_temps(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0666 less the umask, as open() gives
    try:
        with os.fdopen(fd, mode, **open_options) as f:  # closes the fd whatever fails below
            if path.exists():
                os.fchmod(f.fileno(), stat.S_IMODE(path.stat().st_mode))
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def make_folder(folder: str | os.PathLike) -> Path:
    """``folder``, created with its parents if missing; a ValueError naming the file in the way if one is."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((part for part in [folder, *folder.parents] if part.exists() and not part.is_dir()), folder)
        raise ValueError(f"{folder} must be a folder, but {blocker} is a file; "
                         f"choose another output folder (--out)") from None
    return folder


def _remove_stale_temps(path: Path) -> None:
    """Remove temp files of ``path`` whose writer is no longer running (killed mid-write)."""
    for tmp in path.parent.glob(f"{path.name}.*.*.tmp"):
        pid = tmp.name[len(path.name) + 1:].split(".")[0]
        if pid.isdigit() and not _running(int(pid)):
            tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        pass
    return True
