"""module_utils.files: atomic private files and the lock that makes concurrent runs take turns."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils import files


def test_atomic_write_is_private_from_the_start_and_replaces_whole(tmp_path):
    target = tmp_path / "key.json"
    target.write_bytes(b"old")
    files.atomic_write(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["key.json"]  # no temporary file left behind


HOLDER = textwrap.dedent(
    """
    import sys, time
    sys.path[:0] = {paths!r}
    from ansible_collections.nupoint.gworkspace.plugins.module_utils import files
    with files.exclusive_lock({lock!r}):
        print("held", flush=True)
        sys.stdin.readline()
    """
)


def test_a_second_run_waits_then_names_the_holder(tmp_path):
    lock = str(tmp_path / ".oauth.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(paths=sys.path, lock=lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(files.LockTimeout) as caught, files.exclusive_lock(lock, timeout=0.5, poll=0.05):
            pytest.fail("the lock was taken twice")
        assert "it holds the lock %s" % lock in caught.value.msg
    finally:
        holder.communicate("done\n", timeout=30)
    # The holder is gone: the lock is free again, and it was never left behind as a stale state.
    with files.exclusive_lock(lock, timeout=5):
        assert stat.S_IMODE(os.stat(lock).st_mode) == 0o600


def test_the_lock_dies_with_a_killed_holder(tmp_path):
    lock = str(tmp_path / ".oauth.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(paths=sys.path, lock=lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(timeout=30)
    with files.exclusive_lock(lock, timeout=5):
        pass
