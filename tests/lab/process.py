"""Start, find and stop lab processes by PID (never by name).

Each service is recorded as ``{"pid": N, "marker": "<string in its command line>"}``. The marker
(a path inside the state directory) guards against PID reuse: a PID whose command line no
longer contains the marker is not ours and is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

OPEN_FILES = 20000


def _read_proc(pid: int, name: str) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return None


def cmdline(pid: int) -> str:
    raw = _read_proc(pid, "cmdline")
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() if raw else ""


def _stat_fields(pid: int) -> list[str] | None:
    raw = _read_proc(pid, "stat")
    if raw is None:
        return None
    # The command name (field 2) may contain spaces; everything after the last ')' is fixed.
    text = raw.decode(errors="replace")
    return text[text.rfind(")") + 2 :].split()


def is_alive(pid: int) -> bool:
    """True if the PID runs (a zombie counts as gone: it has released everything)."""
    if pid <= 0:
        return False
    fields = _stat_fields(pid)
    if fields is None:
        return False
    return fields[0] not in ("Z", "X")


def is_ours(pid: int | None, marker: str) -> bool:
    """True if ``pid`` runs and its command line contains ``marker`` (our process, not a reused PID)."""
    return bool(pid) and is_alive(pid or 0) and marker in cmdline(pid or 0)


def children_map() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def descendants(pid: int, tree: dict[int, list[int]] | None = None) -> list[int]:
    tree = children_map() if tree is None else tree
    found: list[int] = []
    stack = list(tree.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(tree.get(child, []))
    return found


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    remaining = list(pids)
    deadline = time.monotonic() + timeout
    while remaining:
        for pid in remaining:
            _reap(pid)
        remaining = [pid for pid in remaining if is_alive(pid)]
        if not remaining or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return remaining


def stop(pid: int | None, marker: str, timeout: float = 5.0) -> list[int]:
    """SIGTERM the process and its descendants, then SIGKILL what is left.

    Returns the PIDs that still run afterwards (empty when all is well). Does nothing if
    ``pid`` is not (or no longer) the process recorded with ``marker``.
    """
    if not pid or not is_ours(pid, marker):
        if pid:
            _reap(pid)
        return []
    family = [pid, *descendants(pid)]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    remaining = _wait_gone([pid], timeout)
    # Daemons stop their own children on SIGTERM; anything still around gets the same chance.
    stragglers = [p for p in family if is_alive(p)]
    for straggler in stragglers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(straggler, signal.SIGTERM)
    remaining = _wait_gone(stragglers, 2.0)
    for straggler in remaining:
        with contextlib.suppress(ProcessLookupError):
            os.kill(straggler, signal.SIGKILL)
    return _wait_gone(remaining, 2.0)


def _raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else max(soft, min(OPEN_FILES, hard))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(wanted, soft), max(wanted, hard)))
    except (ValueError, OSError):
        # Not root and the hard limit is lower: keep what we may have.
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(wanted, hard)), hard))


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    many_files: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a long-running service in its own session, output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    preexec: Callable[[], None] | None = _raise_open_files if many_files else None
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            preexec_fn=preexec,  # noqa: PLW1509 - only setrlimit, no locks touched
        )


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tcp_port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def udp_port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll ``check`` until true; fail early (with the log tail) if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            # Answered, but by our process? (A stray server on the port would pass the check.)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what}: process exited with {proc.returncode}{log_tail(log_path)}")
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}{log_tail(log_path)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout:.0f}s{log_tail(log_path)}")
        time.sleep(0.05)


def log_tail(log_path: Path | None, lines: int = 15) -> str:
    if log_path is None or not log_path.exists():
        return ""
    tail = log_path.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log_path} ---\n" + "\n".join(tail)


def find_by_marker(marker: str, prefix: bool = False) -> list[int]:
    """Every running process whose command line contains (or, with ``prefix``, starts with) ``marker``."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me or not is_alive(int(entry)):
            continue
        line = cmdline(int(entry))
        if line.startswith(marker) if prefix else marker in line:
            found.append(int(entry))
    return found
