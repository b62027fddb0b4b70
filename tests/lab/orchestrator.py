"""Bring the lab up, take it down, report on it. Used by the CLI and the pytest plugin.

``up`` is idempotent: services whose recorded PID still runs (and still has our command line) are
left alone. When nothing runs, ``up`` starts fresh: it regenerates everything under the state
directory (CA, keys, users, MSL hosts, configs) and writes ``lab.json``. ``down`` stops every
recorded process by PID (SIGTERM, wait, SIGKILL), including any children they left, and checks
that nothing carrying the lab's configuration paths is still running.

All of this runs under an exclusive lock on ``<state>/.lock`` so concurrent callers (several pytest
workers, a developer's shell) never start the same service twice.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.lab import ca, chrony, dovecot, fixtures, inventory, msl, process, sntp, sshd
from tests.lab import config as labconfig
from tests.lab.config import LabConfig

LAB_JSON_VERSION = 1
SERVICES = ("google", "dovecot", "chrony", "sntp", *(f"sshd-{host}" for host in labconfig.MSL_HOSTS))


class LabError(RuntimeError):
    """Something the user must fix (port taken, missing binary, a service that does not start)."""


# --- state file and lock ------------------------------------------------------------------


@contextlib.contextmanager
def locked(cfg: LabConfig) -> Iterator[None]:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    with open(cfg.lock_file, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_state(cfg: LabConfig) -> dict[str, Any] | None:
    try:
        return json.loads(cfg.lab_json.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"{cfg.lab_json} is unreadable ({exc}); run `python -m tests.lab down` and remove it") from exc


def save_state(cfg: LabConfig, state: dict[str, Any]) -> None:
    tmp = cfg.lab_json.with_name(f"lab.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, cfg.lab_json)


def service_running(state: dict[str, Any] | None, name: str) -> bool:
    record = (state or {}).get("services", {}).get(name) or {}
    return process.is_ours(record.get("pid"), record.get("marker", "\0"))


def running_services(state: dict[str, Any] | None) -> list[str]:
    return [name for name in SERVICES if service_running(state, name)]


# --- generation (fresh start) ---------------------------------------------------------------


def _clean(cfg: LabConfig) -> None:
    for entry in cfg.generated_entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()


def generate(cfg: LabConfig, users_count: int = labconfig.DEFAULT_USERS) -> dict[str, Any]:
    """Create every generated file of a fresh lab and return the new lab.json document."""
    _clean(cfg)
    for directory in (cfg.logs_dir, cfg.keys_dir, cfg.google_dir, cfg.sntp_dir, cfg.ssh_dir, cfg.msl_dir):
        directory.mkdir(parents=True, exist_ok=True)
    # The state dir must be traversable by Dovecot's unprivileged processes (CA, mailboxes).
    cfg.state_dir.chmod(0o755)
    cfg.keys_dir.chmod(0o700)
    ca_files = ca.CaFiles(cfg.ca_path, cfg.ca_dir / "ca-key.pem", cfg.server_cert, cfg.server_key)
    ca.generate(ca_files)
    account = fixtures.generate_service_account(cfg)
    users = labconfig.user_addresses(users_count)
    fixtures.write_users_file(cfg, users)
    python = sys.executable
    msl_python = msl.create_stdlib_python(cfg)
    for host in labconfig.MSL_HOSTS:
        msl.create_host(cfg, host, msl_python)
        msl.backup(cfg, host)
    sntp.write_offset(cfg.sntp_offset_file, 0.0)
    inventory.write(cfg, python, msl_python, account)
    sshd.ensure_client_key(cfg)
    return {
        "version": LAB_JSON_VERSION,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "state_dir": str(cfg.state_dir),
        "repo_root": str(labconfig.REPO_ROOT),
        "python": python,
        "msl_python": msl_python,
        "owner": "cli",
        "port_base": cfg.port_base,
        "ports": {
            "google": cfg.google_port,
            "imap": cfg.imap_port,
            "ntp": cfg.ntp_port,
            "skewed_ntp": cfg.skewed_ntp_port,
            "latency_proxy": cfg.latency_proxy_port,
            "ssh": {host: cfg.ssh_port(host) for host in labconfig.MSL_HOSTS},
        },
        "google": {
            "base_url": cfg.google_base_url,
            "token_uri": cfg.token_uri,
            "tokeninfo_url": cfg.tokeninfo_url,
            "config": str(cfg.google_config),
        },
        "ca_path": str(cfg.ca_path),
        "server_cert": str(cfg.server_cert),
        "server_key": str(cfg.server_key),
        "domain": labconfig.DOMAIN,
        "admin": labconfig.ADMIN,
        "users_file": str(cfg.users_file),
        "users_count": users_count,
        "service_account": account.as_dict(),
        "scopes": [labconfig.MAIL_SCOPE],
        "ssh": {"client_key": str(cfg.ssh_client_key), "user": "root"},
        "msl": {host: {**msl.host_paths(cfg, host), "ssh_port": cfg.ssh_port(host)} for host in labconfig.MSL_HOSTS},
        "inventory": str(cfg.inventory),
        "sntp_offset_file": str(cfg.sntp_offset_file),
        "logs_dir": str(cfg.logs_dir),
        "services": {},
        "pids": {},
    }


def _google_document(cfg: LabConfig, state: dict[str, Any]) -> dict[str, Any]:
    account = fixtures.ServiceAccount(**state["service_account"])
    users = labconfig.user_addresses(int(state["users_count"]))
    return fixtures.google_config(cfg, account, users)


# --- starting services ----------------------------------------------------------------------


def _google_ready(cfg: LabConfig) -> bool:
    from tests.lab.google.client import GoogleControl, GoogleControlError

    try:
        GoogleControl(cfg.google_base_url, str(cfg.ca_path), timeout=1.0).health()
    except GoogleControlError:
        return False
    return True


def _start_google(cfg: LabConfig, state: dict[str, Any]) -> subprocess.Popen[bytes]:
    fixtures.write_google_config(cfg, _google_document(cfg, state))
    log = cfg.log_file("google")
    proc = process.spawn(
        [sys.executable, "-m", "tests.lab.google", "--config", str(cfg.google_config)],
        log,
        cwd=labconfig.REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(labconfig.REPO_ROOT)},
        many_files=True,
    )
    process.wait_until(lambda: _google_ready(cfg), 30, "emulated Google", proc, log)
    return proc


def _start_sntp(cfg: LabConfig) -> subprocess.Popen[bytes]:
    if not cfg.sntp_offset_file.exists():
        sntp.write_offset(cfg.sntp_offset_file, 0.0)
    log = cfg.log_file("sntp")
    proc = process.spawn(
        [
            sys.executable,
            "-m",
            "tests.lab.sntp",
            "--port",
            str(cfg.skewed_ntp_port),
            "--offset-file",
            str(cfg.sntp_offset_file),
        ],
        log,
        cwd=labconfig.REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(labconfig.REPO_ROOT)},
    )

    def answers() -> bool:
        try:
            sntp.query(labconfig.LISTEN_HOST, cfg.skewed_ntp_port, timeout=0.2)
        except (OSError, ValueError):
            return False
        return True

    process.wait_until(answers, 30, "skewed SNTP responder", proc, log)
    return proc


def signatures(cfg: LabConfig) -> dict[str, str]:
    """Per service, a fragment of its command line that only this lab's process has.

    Recorded as the PID's ``marker`` (guards against PID reuse) and used to find strays; exact
    argument sequences, so e.g. an editor open on a config file never matches.
    """
    found = {
        "google": f"-m tests.lab.google --config {cfg.google_config}",
        "dovecot": f"{dovecot.DOVECOT} -F -c {dovecot.conf_path(cfg)}",
        "chrony": f"chronyd -x -u root -d -f {chrony.conf_path(cfg)}",
        "sntp": f"-m tests.lab.sntp --port {cfg.skewed_ntp_port} --offset-file {cfg.sntp_offset_file}",
    }
    for host in labconfig.MSL_HOSTS:
        found[f"sshd-{host}"] = f"sshd -D -f {sshd.conf_path(cfg, host)} "
    return found


def _service_plan(cfg: LabConfig, state: dict[str, Any]) -> dict[str, tuple[str, int, str, Callable[[], Any]]]:
    """name -> (marker, port, protocol, start function)."""
    marker = signatures(cfg)
    plan: dict[str, tuple[str, int, str, Callable[[], Any]]] = {
        "google": (marker["google"], cfg.google_port, "tcp", lambda: _start_google(cfg, state)),
        "dovecot": (marker["dovecot"], cfg.imap_port, "tcp", lambda: dovecot.start(cfg)),
        "chrony": (marker["chrony"], cfg.ntp_port, "udp", lambda: chrony.start(cfg)),
        "sntp": (marker["sntp"], cfg.skewed_ntp_port, "udp", lambda: _start_sntp(cfg)),
    }
    for host in labconfig.MSL_HOSTS:
        plan[f"sshd-{host}"] = (
            marker[f"sshd-{host}"],
            cfg.ssh_port(host),
            "tcp",
            lambda host=host: sshd.start(cfg, host, cfg.msl_root(host)),  # type: ignore[misc]
        )
    return plan


def _require_binaries() -> None:
    missing = [binary for binary in (dovecot.DOVECOT, chrony.CHRONYD, sshd.SSHD) if not os.path.exists(binary)] + [
        tool for tool in ("ssh-keygen", "ssh") if shutil.which(tool) is None
    ]
    if missing:
        raise LabError(f"missing {', '.join(missing)}: run `make apt` (dovecot-imapd chrony openssh-server)")


def up(cfg: LabConfig, owner: str = "cli", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Start whatever is not running; returns the lab.json document.

    ``owner`` is recorded on a fresh start: the pytest plugin only ever stops a lab it started
    (owner ``pytest``). A CLI ``up`` always claims the lab for the CLI.
    """
    with locked(cfg):
        return _up_locked(cfg, owner, log)


def _up_locked(cfg: LabConfig, owner: str, log: Callable[[str], None]) -> dict[str, Any]:
    started_at = time.monotonic()
    state = load_state(cfg)
    already = running_services(state)
    fresh = state is None or not already
    if fresh:
        _require_binaries()
        if state is not None:
            # Left-overs of a lab that crashed: make sure none of its processes survive.
            _stop_all(cfg, state, log=lambda _msg: None)
        state = generate(cfg, int((state or {}).get("users_count", labconfig.DEFAULT_USERS)))
        save_state(cfg, state)
    assert state is not None
    if fresh or owner == "cli":
        state["owner"] = owner
    started: list[str] = []
    try:
        for name, (marker, port, proto, start) in _service_plan(cfg, state).items():
            if name in already:
                continue
            free = process.tcp_port_free(port) if proto == "tcp" else process.udp_port_free(port)
            if not free:
                raise LabError(
                    f"{name}: {proto} port 127.0.0.1:{port} is taken by another process "
                    f"(another lab? choose another {labconfig.ENV_PORT_BASE})"
                )
            service_started = time.monotonic()
            proc = start()
            state["services"][name] = {"pid": proc.pid, "marker": marker, "port": port, "protocol": proto}
            state["pids"][name] = proc.pid
            started.append(f"{name} ({time.monotonic() - service_started:.1f}s)")
            save_state(cfg, state)
    except Exception:
        if fresh:
            _stop_all(cfg, state, log=log)
            save_state(cfg, state)
        raise
    if started:
        state["up_seconds"] = round(time.monotonic() - started_at, 2)
    save_state(cfg, state)
    if started:
        also = f"; already running: {', '.join(already)}" if already else ""
        log(f"lab up in {state['up_seconds']:.1f}s: started {', '.join(started)}{also}")
    else:
        log("lab already up: " + ", ".join(already))
    return state


# --- pytest sessions (leases) ---------------------------------------------------------------


def _lease_path(cfg: LabConfig, holder: int) -> Path:
    return cfg.leases_dir / str(holder)


def acquire(cfg: LabConfig, holder: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    """A test session's claim on the lab: bring up what is missing, record a lease for ``holder``."""
    with locked(cfg):
        state = _up_locked(cfg, "pytest", log)
        cfg.leases_dir.mkdir(parents=True, exist_ok=True)
        _lease_path(cfg, holder).write_text(f"{holder}\n")
        return state


def release(cfg: LabConfig, holder: int, log: Callable[[str], None] = print) -> list[int]:
    """Drop ``holder``'s lease; the last session out stops a lab that a session started."""
    with locked(cfg):
        _lease_path(cfg, holder).unlink(missing_ok=True)
        live = []
        for lease in cfg.leases_dir.glob("*") if cfg.leases_dir.exists() else []:
            if lease.name.isdigit() and process.is_alive(int(lease.name)):
                live.append(lease)
            else:
                lease.unlink(missing_ok=True)
        state = load_state(cfg)
        if state is None or state.get("owner") != "pytest" or live:
            return []
        return _down_locked(cfg, state, log)


# --- stopping -----------------------------------------------------------------------------


def strays(cfg: LabConfig) -> dict[int, str]:
    """Running lab processes found by command line (pid -> the marker it matched).

    Service signatures, plus Dovecot's children, whose process titles start with the instance name.
    """
    found: dict[int, str] = {}
    for marker in signatures(cfg).values():
        found.update(dict.fromkeys(process.find_by_marker(marker), marker))
    children = f"dovecot-{dovecot.instance_name(cfg)}/"
    found.update(dict.fromkeys(process.find_by_marker(children, prefix=True), children))
    return found


def leftovers(cfg: LabConfig, state: dict[str, Any] | None) -> list[int]:
    """PIDs of lab processes still running: recorded PIDs plus strays."""
    pids = {
        record["pid"]
        for record in (state or {}).get("services", {}).values()
        if record.get("pid") and process.is_ours(record["pid"], record.get("marker", "\0"))
    }
    pids.update(strays(cfg))
    return sorted(pids)


def _stop_all(cfg: LabConfig, state: dict[str, Any], log: Callable[[str], None]) -> list[int]:
    for name in reversed(SERVICES):
        record = state.get("services", {}).get(name)
        if not record or not record.get("pid"):
            continue
        remaining = process.stop(record["pid"], record.get("marker", "\0"))
        if remaining:
            log(f"{name}: pids {remaining} survived SIGKILL")
        record["pid"] = None
        state.get("pids", {}).pop(name, None)
    # Children that outlived their parent (or processes of a lab.json that was lost).
    for pid, marker in strays(cfg).items():
        process.stop(pid, marker, timeout=2.0)
    return leftovers(cfg, None)


def down(cfg: LabConfig, log: Callable[[str], None] = print) -> list[int]:
    """Stop every lab process; returns PIDs that could not be stopped (empty on success)."""
    with locked(cfg):
        return _down_locked(cfg, load_state(cfg) or {}, log)


def stop_service(cfg: LabConfig, name: str) -> list[int]:
    """Stop one service (outage tests); ``up`` starts it again with the same files and identities.

    Returns PIDs that could not be stopped (empty on success).
    """
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r} (one of {', '.join(SERVICES)})")
    with locked(cfg):
        state = load_state(cfg) or {}
        record = state.get("services", {}).get(name)
        if not record or not record.get("pid"):
            return []
        remaining = process.stop(record["pid"], record.get("marker", "\0"))
        record["pid"] = None
        state.get("pids", {}).pop(name, None)
        save_state(cfg, state)
        return remaining


def _down_locked(cfg: LabConfig, state: dict[str, Any], log: Callable[[str], None]) -> list[int]:
    was_running = running_services(state)
    remaining = _stop_all(cfg, state, log)
    if not remaining and not dovecot.run_dir(cfg).is_relative_to(cfg.state_dir):
        shutil.rmtree(dovecot.run_dir(cfg).parent, ignore_errors=True)
    if state:
        state["stopped_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        save_state(cfg, state)
    for lease in cfg.leases_dir.glob("*") if cfg.leases_dir.exists() else []:
        lease.unlink(missing_ok=True)
    if remaining:
        log(f"lab down: processes still running: {remaining}")
    elif was_running:
        log(f"lab down: stopped {', '.join(was_running)}")
    else:
        log("lab down: nothing was running")
    return remaining


# --- status -------------------------------------------------------------------------------


def status(cfg: LabConfig) -> tuple[bool, list[str]]:
    """(all services up, report lines)."""
    state = load_state(cfg)
    lines = [f"lab {cfg.state_dir} (port base {cfg.port_base})"]
    if state is None:
        return False, [*lines, "not set up (run `python -m tests.lab up`)"]
    services = state.get("services", {})
    describe = {
        "google": f"https {cfg.google_base_url}",
        "dovecot": f"imaps 127.0.0.1:{cfg.imap_port}",
        "chrony": f"ntp udp 127.0.0.1:{cfg.ntp_port}",
        "sntp": f"skewed sntp udp 127.0.0.1:{cfg.skewed_ntp_port} (offset {sntp.read_offset(cfg.sntp_offset_file):+g}s)",
        **{f"sshd-{host}": f"ssh 127.0.0.1:{cfg.ssh_port(host)}" for host in labconfig.MSL_HOSTS},
    }
    all_up = True
    for name in SERVICES:
        running = service_running(state, name)
        all_up &= running
        pid = services.get(name, {}).get("pid") if running else None
        lines.append(
            f"  {name:<10} {'up' if running else 'down':<5} {('pid ' + str(pid)) if pid else '':<10} {describe[name]}"
        )
    lines.append(
        f"  users: {state.get('users_count')} ({state.get('users_file')}); inventory: {state.get('inventory')}"
    )
    return all_up, lines
