# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private files written atomically: the one way the collection writes a key, a credential or a report.

A reader sees the old file or the new one, never a partial one; a failure (disk full, a dropped
connection, a kill) leaves the old file; the new file is private (0600, root-owned when written as
root) from its first byte, never chmod-ed after the fact. Standard library only; parses as Python 3.6.
"""

import os
import tempfile

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
