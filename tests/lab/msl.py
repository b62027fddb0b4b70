"""Emulated MSL hosts: one directory per host, laid out like the real file system.

``<state>/msl/<host>/``
  ``sbin/e-smith/db``, ``sbin/e-smith/signal-event``  generated from ``tests/lab/esmith.py``
  ``home/e-smith/db/configuration``                     the config db
  ``etc/ntp.conf``                                      rendered by ``timeserver-update``
  ``var/log/signal-event.log``                          one line per event
  ``var/lib/nupoint/oauth/``                            credential store (absent until installed)

A backup (``backup-msl``) is a copy of the config db without the OAuth record, as MSL backups do
not carry the OAuth data; ``restore-msl`` puts that copy back, drops the OAuth record and the
credential files, and logs the ``post-restore`` event.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.lab import config as labconfig
from tests.lab import esmith

ESMITH_SOURCE = Path(esmith.__file__)


def initial_records(host: str) -> dict[str, tuple[str, dict[str, str]]]:
    """A small, realistic config db of a fresh MSL server (network time off)."""
    return {
        "DomainName": (labconfig.DOMAIN, {}),
        "SystemName": (host, {}),
        "TimeZone": ("UTC", {}),
        "sysconfig": ("configuration", {"ProductName": "Mitel Standard Linux", "ReleaseVersion": "11.0"}),
        "ntpd": ("service", {"NTPServer": "", "status": "disabled"}),
        "sshd": ("service", {"PermitRootLogin": "yes", "TCPPort": "22", "access": "private", "status": "enabled"}),
        "httpd-e-smith": ("service", {"TCPPort": "80", "access": "private", "status": "enabled"}),
    }


def host_paths(cfg: labconfig.LabConfig, host: str) -> dict[str, str]:
    root = cfg.msl_root(host)

    def under(path: str) -> str:
        return str(root / path.lstrip("/"))

    return {
        "root": str(root),
        "db_command": under(labconfig.MSL_DB_COMMAND),
        "signal_event_command": under(labconfig.MSL_SIGNAL_EVENT_COMMAND),
        "credential_dir": under(labconfig.MSL_CREDENTIAL_DIR),
        "db_file": esmith.db_path(str(root), labconfig.MSL_DB_NAME),
        "ntp_conf": under("/etc/ntp.conf"),
        "event_log": under("/var/log/signal-event.log"),
        "backup_file": str(cfg.msl_backup(host)),
    }


def install_tools(cfg: labconfig.LabConfig, host: str, python: str) -> None:
    """(Re)write ``db`` and ``signal-event`` with ``python`` as interpreter."""
    source = ESMITH_SOURCE.read_text()
    paths = host_paths(cfg, host)
    for target in (paths["db_command"], paths["signal_event_command"]):
        script = Path(target)
        script.parent.mkdir(parents=True, exist_ok=True)
        tmp = script.with_name(script.name + ".tmp")
        tmp.write_text(f"#!{python}\n{source}")
        tmp.chmod(0o755)
        tmp.replace(script)


def create_stdlib_python(cfg: labconfig.LabConfig) -> str:
    """A Python with the standard library and nothing else, for the MSL hosts (and their db tools).

    A stock MSL host has its Enterprise Linux Python and no package from PyPI; a venv without pip and
    without the system's site-packages is the closest this machine has. Modules that would need
    google-auth, requests or cryptography on MSL fail here as they would there.
    """
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--clear", str(cfg.msl_python_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return str(cfg.msl_python)


def create_host(cfg: labconfig.LabConfig, host: str, python: str) -> None:
    root = cfg.msl_root(host)
    if root.exists():
        shutil.rmtree(root)
    for sub in ("etc", "var/log", "var/lib/nupoint", "root"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    install_tools(cfg, host, python)
    with esmith.Database(host_paths(cfg, host)["db_file"]) as db:
        for key, (record_type, props) in initial_records(host).items():
            db.put(key, record_type, props)
        db.save()
    esmith.render_ntp_conf(str(root))


def backup(cfg: labconfig.LabConfig, host: str) -> Path:
    """What an MSL backup keeps of the config db: everything but the OAuth record."""
    paths = host_paths(cfg, host)
    with esmith.Database(paths["db_file"]) as db:
        records = {key: value for key, value in db.records.items() if key != labconfig.MSL_CREDENTIAL_RECORD}
    target = Path(paths["backup_file"])
    target.parent.mkdir(parents=True, exist_ok=True)
    esmith.write_db(str(target), records)
    return target


def restore(cfg: labconfig.LabConfig, host: str) -> None:
    """What an MSL restore does to the OAuth integration (see the module docstring)."""
    paths = host_paths(cfg, host)
    backup_file = Path(paths["backup_file"])
    if not backup_file.exists():
        raise FileNotFoundError(f"no backup of {host}: run backup-msl {host} first")
    saved = esmith.read_db(str(backup_file))
    saved.pop(labconfig.MSL_CREDENTIAL_RECORD, None)
    with esmith.Database(paths["db_file"]) as db:
        db.records = saved
        db.save()
    shutil.rmtree(paths["credential_dir"], ignore_errors=True)
    root = paths["root"]
    esmith.log_event(root, "post-restore")
    esmith.render_ntp_conf(root)


def check_host(host: str) -> str:
    if host not in labconfig.MSL_HOSTS:
        raise ValueError(f"unknown MSL host {host!r} (lab hosts: {', '.join(labconfig.MSL_HOSTS)})")
    return host
