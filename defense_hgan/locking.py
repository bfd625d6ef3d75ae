"""One run per output folder: an exclusive lock held for the whole run.

Two runs writing one folder would each rewrite its files from what they
alone computed, so the last writer's results would silently replace the
other's. ``evaluate``, ``sweep`` and ``train-generator`` therefore hold
``flock`` on OUT/.defense-hgan.lock while they run; a second run into the
same folder is refused at once, naming the holder's pid. The kernel releases
the lock when its holder exits, however it ends (even SIGKILL), so a crash
never leaves the folder locked; the lock file itself stays, holding the last
holder's pid.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from defense_hgan.atomic import make_folder

LOCK_NAME = ".defense-hgan.lock"


class FolderInUseError(ValueError):
    """Another run holds the output folder's lock."""


@contextmanager
def output_lock(folder: str | os.PathLike):
    """Hold ``folder``'s lock (creating the folder) for the ``with`` block, or raise FolderInUseError at once."""
    path = make_folder(folder) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise FolderInUseError(f"{folder} is in use by another run (pid {holder}) writing there; "
                                   f"wait for it to finish, or choose another output folder (--out)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield Path(folder)
    finally:
        os.close(fd)  # closing releases the lock
