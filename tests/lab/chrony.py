"""A private chronyd serving NTP on 127.0.0.1:B+2 without ever touching the host clock.

``-x`` disables clock control, ``cmdport 0`` disables the control socket, pid and drift files
live in the state directory, and ``local stratum 8`` makes it serve its own (the host's) time
from the first packet on. It runs in the foreground (``-d``) so the PID we record is chronyd's.
"""

from __future__ import annotations

import shutil
import subprocess

from tests.lab import process, sntp
from tests.lab.config import LISTEN_HOST, LabConfig

CHRONYD = "/usr/sbin/chronyd"


def conf_path(cfg: LabConfig) -> str:
    return str(cfg.chrony_dir / "chrony.conf")


def write_config(cfg: LabConfig) -> None:
    cfg.chrony_dir.mkdir(parents=True, exist_ok=True)
    (cfg.chrony_dir / "chrony.conf").write_text(
        "\n".join(
            [
                "# nupoint.gworkspace lab: NTP server on loopback, never adjusts the host clock",
                f"port {cfg.ntp_port}",
                f"bindaddress {LISTEN_HOST}",
                f"allow {LISTEN_HOST}",
                "local stratum 8",
                "cmdport 0",
                f"pidfile {cfg.chrony_dir / 'chronyd.pid'}",
                f"driftfile {cfg.chrony_dir / 'drift'}",
                "",
            ]
        )
    )


def _answers(cfg: LabConfig) -> bool:
    try:
        reply = sntp.query(LISTEN_HOST, cfg.ntp_port, timeout=0.2)
    except (OSError, ValueError):
        return False
    return reply.leap != sntp.LEAP_UNSYNCHRONISED and reply.stratum > 0


def start(cfg: LabConfig) -> subprocess.Popen[bytes]:
    binary = shutil.which("chronyd") or CHRONYD
    write_config(cfg)
    log = cfg.log_file("chrony")
    proc = process.spawn([binary, "-x", "-u", "root", "-d", "-f", conf_path(cfg)], log)
    process.wait_until(lambda: _answers(cfg), 30, "chrony NTP", proc, log)
    return proc
