"""One private sshd per emulated MSL host, on 127.0.0.1:B+10+i, key authentication only.

All hosts share one generated client key (``<state>/ssh/id_ed25519``) and log in as root; what
makes ``msl1`` and ``msl2`` different hosts is the host directory the inventory points at
(sessions also get ``NUPOINT_MSL_HOST`` / ``NUPOINT_MSL_ROOT`` in their environment). sshd runs
in the foreground (``-D``) so the PID we record is the listener's; it logs to
``<state>/logs/sshd-<host>.log``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from tests.lab import process
from tests.lab.config import LISTEN_HOST, LabConfig

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")


def host_dir(cfg: LabConfig, host: str) -> Path:
    return cfg.ssh_dir / host


def conf_path(cfg: LabConfig, host: str) -> Path:
    return host_dir(cfg, host) / "sshd_config"


def authorized_keys(cfg: LabConfig) -> Path:
    return cfg.ssh_dir / "authorized_keys"


def _keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def ensure_client_key(cfg: LabConfig) -> None:
    _keygen(cfg.ssh_client_key, "nupoint.gworkspace lab client")
    public = Path(str(cfg.ssh_client_key) + ".pub").read_text()
    keys = authorized_keys(cfg)
    keys.write_text(public)
    keys.chmod(0o600)


def write_config(cfg: LabConfig, host: str, msl_root: Path) -> None:
    directory = host_dir(cfg, host)
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "ssh_host_ed25519_key"
    _keygen(host_key, f"{host} lab host key")
    conf_path(cfg, host).write_text(
        "\n".join(
            [
                f"# nupoint.gworkspace lab: sshd of emulated MSL host {host}",
                f"ListenAddress {LISTEN_HOST}:{cfg.ssh_port(host)}",
                f"HostKey {host_key}",
                f"PidFile {directory / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized_keys(cfg)}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "AllowUsers root",
                "UsePAM no",
                "StrictModes no",
                "UseDNS no",
                "PrintMotd no",
                "X11Forwarding no",
                "AllowTcpForwarding no",
                # Ansible forks open many sessions at once.
                "MaxStartups 200:30:400",
                "MaxSessions 200",
                "LogLevel INFO",
                f"SetEnv NUPOINT_MSL_HOST={host} NUPOINT_MSL_ROOT={msl_root}",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )


def _banner(port: int) -> bool:
    try:
        with socket.create_connection((LISTEN_HOST, port), timeout=0.5) as sock:
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def start(cfg: LabConfig, host: str, msl_root: Path) -> subprocess.Popen[bytes]:
    # sshd's privilege-separation directory (normally created by the service unit).
    PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    ensure_client_key(cfg)
    write_config(cfg, host, msl_root)
    log = cfg.log_file(f"sshd-{host}")
    log.parent.mkdir(parents=True, exist_ok=True)
    binary = SSHD if os.path.exists(SSHD) else (shutil.which("sshd") or SSHD)
    # -t first: a config error is reported clearly instead of as "exited with 255".
    test = subprocess.run([binary, "-t", "-f", str(conf_path(cfg, host))], capture_output=True, text=True, check=False)
    if test.returncode != 0:
        raise RuntimeError(f"sshd config for {host} rejected: {test.stderr.strip()}")
    proc = process.spawn([binary, "-D", "-f", str(conf_path(cfg, host)), "-E", str(log)], log)
    process.wait_until(lambda: _banner(cfg.ssh_port(host)), 30, f"sshd {host}", proc, log)
    return proc


def ssh_command(cfg: LabConfig, host: str, command: str, key: Path | None = None) -> list[str]:
    """argv for running ``command`` on ``host`` with the lab key (no host-key prompts)."""
    return [
        "ssh",
        "-i",
        str(key or cfg.ssh_client_key),
        "-p",
        str(cfg.ssh_port(host)),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        f"root@{LISTEN_HOST}",
        command,
    ]
