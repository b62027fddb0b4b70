# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private files written atomically: the one way the collection writes a key, a credential or a report.

A reader sees the old file or the new one, never a partial one; a failure (disk full, a dropped
connection, a kill) leaves the old file; the new file is private (0600, root-owned when written as
root) from its first byte, never chmod-ed after the fact. Standard library only; parses as Python 3.6.
"""

import errno
import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator

PRIVATE_FILE_MODE = 0o600


def is_root() -> bool:
    """Running as root: new private files are then given to root:root explicitly."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def fsync_directory(path: str) -> None:
    """Make a rename in ``path`` durable (the directory entry, not only the file data)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage_file(directory: str, name: str, data: bytes, mode: int = PRIVATE_FILE_MODE) -> str:
    """Write ``data`` to a new temp file next to ``name`` (mode ``mode``, root:root as root), fsynced; return its path."""
    fd, tmp_path = tempfile.mkstemp(prefix="." + name + ".", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        if is_root():
            os.fchown(fd, 0, 0)
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        if fd != -1:
            os.close(fd)
        unlink_quietly(tmp_path)
        raise
    return tmp_path


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write(path: str, data: bytes, mode: int = PRIVATE_FILE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically: temp file in the same directory, fsync, rename, fsync dir.

    A reader sees the old file or the new one, never a partial one; a failure leaves the old file.
    """
    directory, name = os.path.split(path)
    tmp_path = stage_file(directory, name, data, mode)
    try:
        os.replace(tmp_path, path)
    except BaseException:
        unlink_quietly(tmp_path)
        raise
    fsync_directory(directory)


class LockTimeout(Exception):
    """Another process held the lock for longer than we were willing to wait."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


@contextmanager
def exclusive_lock(path: str, timeout: float = 120.0, poll: float = 0.2) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600) for the block; other holders are waited for.

    Two runs that change the same files (two playbooks installing different keys on one MSL host) take
    turns instead of interleaving, so the files and the db record always describe one key. The lock is
    advisory and dies with its process, so a killed run never leaves it held. Raises :class:`LockTimeout`
    after ``timeout`` seconds. The file is created once and never written: taking the lock changes nothing
    a byte-for-byte comparison of the host would see after the first run.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    raise LockTimeout(
                        "Another run has been changing these files for more than %d s (it holds the lock %s); "
                        "wait for it to finish (fuser %s names its process)." % (timeout, path, path)
                    ) from None
                time.sleep(poll)
        yield
    finally:
        os.close(fd)  # closing releases the lock
