# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private files written atomically: the one way the collection writes a key, a credential or a report.

A reader sees the old file or the new one, never a partial one; a failure (disk full, a dropped
connection, a kill) leaves the old file; the new file is private (0600, root-owned when written as
root) from its first byte, never chmod-ed after the fact. Standard library only; parses as Python 3.6.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import os
import tempfile
import time
from contextlib import contextmanager

from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import monotonic, raise_from, replace

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Iterator  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass

PRIVATE_FILE_MODE = 0o600


def is_root():  # type: () -> bool
    """Running as root: new private files are then given to root:root explicitly."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def fsync_directory(path):  # type: (str) -> None
    """Make a rename in ``path`` durable (the directory entry, not only the file data)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage_file(directory, name, data, mode=PRIVATE_FILE_MODE):  # type: (str, str, bytes, int) -> str
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


def unlink_quietly(path):  # type: (str) -> None
    try:
        os.unlink(path)
    except (IOError, OSError):
        pass


def atomic_write(path, data, mode=PRIVATE_FILE_MODE):  # type: (str, bytes, int) -> None
    """Replace ``path`` with ``data`` atomically: temp file in the same directory, fsync, rename, fsync dir.

    A reader sees the old file or the new one, never a partial one; a failure leaves the old file.
    """
    directory, name = os.path.split(path)
    tmp_path = stage_file(directory, name, data, mode)
    try:
        replace(tmp_path, path)
    except BaseException:
        unlink_quietly(tmp_path)
        raise
    fsync_directory(directory)


class LockTimeout(Exception):
    """Another process held the lock for longer than we were willing to wait."""

    def __init__(self, msg):  # type: (str) -> None
        super(LockTimeout, self).__init__(msg)
        self.msg = msg


@contextmanager
def exclusive_lock(path, timeout=120.0, poll=0.2):  # type: (str, float, float) -> Iterator[None]
    """Hold an exclusive ``flock`` on ``path`` (created 0600) for the block; other holders are waited for.

    Two runs that change the same files (two playbooks installing different keys on one MSL host) take
    turns instead of interleaving, so the files and the db record always describe one key. The lock is
    advisory and dies with its process, so a killed run never leaves it held. Raises :class:`LockTimeout`
    after ``timeout`` seconds. The file is created once and never written: taking the lock changes nothing
    a byte-for-byte comparison of the host would see after the first run.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        deadline = monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or monotonic() >= deadline:
                    raise_from(
                        LockTimeout(
                            "Another run has been changing these files for more than %d s (it holds the lock %s); "
                            "wait for it to finish (fuser %s names its process)." % (timeout, path, path)
                        ),
                        None,
                    )
                time.sleep(poll)
        yield
    finally:
        os.close(fd)  # closing releases the lock
