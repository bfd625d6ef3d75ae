import signal
import subprocess
import sys

import pytest

from defense_hgan.locking import FolderInUseError, output_lock

HOLD = ("import sys\n"
        "from defense_hgan.locking import output_lock\n"
        "with output_lock(sys.argv[1]):\n"
        "    print('locked', flush=True)\n"
        "    sys.stdin.read()\n")  # holds the lock until the test closes its stdin


def holder(folder):
    """A second process holding ``folder``'s lock; it has taken it once this returns."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "locked\n"
    return process


def test_a_folder_locked_by_another_process_is_refused_naming_its_pid(tmp_path):
    process = holder(tmp_path / "out")
    try:
        with pytest.raises(FolderInUseError, match=f"out is in use by another run \\(pid {process.pid}\\).*--out"):
            with output_lock(tmp_path / "out"):
                pass
    finally:
        process.stdin.close()
        process.wait()
    with output_lock(tmp_path / "out"):  # released when its holder ended
        pass


def test_a_killed_holder_leaves_the_folder_unlocked(tmp_path):
    process = holder(tmp_path / "out")
    process.send_signal(signal.SIGKILL)
    process.wait()
    with output_lock(tmp_path / "out"):
        pass


def test_an_out_that_is_a_file_is_refused_clearly(tmp_path):
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(ValueError, match="results must be a folder, but .*results is a file; choose another"):
        with output_lock(tmp_path / "results"):
            pass
    with pytest.raises(ValueError, match="results/run must be a folder, but .*results is a file"):
        with output_lock(tmp_path / "results" / "run"):
            pass
