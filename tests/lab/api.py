"""``Lab``: what tests (and scripts) use to talk to a running lab; reads ``<state>/lab.json``.

    lab = Lab.load()                       # NUPOINT_LAB_DIR / NUPOINT_LAB_PORT_BASE, like the CLI
    lab.google.set_user_imap("user0001@example.test", False)
    lab.ssh("msl1", "/path/to/db configuration show ntpd")

Paths are returned as ``str`` (ready for subprocess, Ansible variables and module options).
"""

from __future__ import annotations

import json
import ssl
import subprocess
from functools import cached_property
from pathlib import Path
from typing import Any

from tests.lab import config as labconfig
from tests.lab import fixtures, msl, orchestrator, sntp, sshd
from tests.lab.config import LabConfig
from tests.lab.google.client import GoogleControl


class LabNotUp(RuntimeError):
    """There is no lab.json: the lab was never brought up in this state directory."""


class Lab:
    """A view of one lab instance (its lab.json) plus helpers that change its state."""

    host = labconfig.LISTEN_HOST
    msl_hosts = labconfig.MSL_HOSTS

    def __init__(self, cfg: LabConfig, data: dict[str, Any]) -> None:
        self.cfg = cfg
        self.data = data

    @classmethod
    def load(cls, cfg: LabConfig | None = None) -> Lab:
        cfg = cfg or LabConfig.from_env()
        try:
            data = json.loads(cfg.lab_json.read_text())
        except FileNotFoundError:
            raise LabNotUp(f"no {cfg.lab_json}: run `python -m tests.lab up`") from None
        return cls(cfg, data)

    def reload(self) -> None:
        self.data = json.loads(self.cfg.lab_json.read_text())

    def is_up(self) -> bool:
        self.reload()
        return len(orchestrator.running_services(self.data)) == len(orchestrator.SERVICES)

    def stop_service(self, name: str) -> None:
        """Stop one service, e.g. ``dovecot`` for an outage test; :meth:`start_services` brings it back."""
        remaining = orchestrator.stop_service(self.cfg, name)
        if remaining:
            raise RuntimeError(f"{name}: pids {remaining} survived")
        self.reload()

    def start_services(self) -> None:
        """Start whatever is stopped (same files and identities; the lab's owner is kept)."""
        orchestrator.up(self.cfg, owner=str(self.data.get("owner", "pytest")), log=lambda _message: None)
        self.reload()

    # --- locations ------------------------------------------------------------------------
    @property
    def state_dir(self) -> str:
        return str(self.cfg.state_dir)

    @property
    def port_base(self) -> int:
        return self.cfg.port_base

    @property
    def google_port(self) -> int:
        return self.cfg.google_port

    @property
    def imap_port(self) -> int:
        return self.cfg.imap_port

    @property
    def ntp_port(self) -> int:
        return self.cfg.ntp_port

    @property
    def skewed_ntp_port(self) -> int:
        return self.cfg.skewed_ntp_port

    @property
    def latency_proxy_port(self) -> int:
        return self.cfg.latency_proxy_port

    def ssh_port(self, host: str) -> int:
        return self.cfg.ssh_port(msl.check_host(host))

    @property
    def google_base_url(self) -> str:
        return self.cfg.google_base_url

    @property
    def token_uri(self) -> str:
        return self.cfg.token_uri

    @property
    def tokeninfo_url(self) -> str:
        return self.cfg.tokeninfo_url

    @property
    def ca_path(self) -> str:
        return str(self.cfg.ca_path)

    @property
    def key_file(self) -> str:
        """The service account's JSON key (Google's key-file format, token_uri = the lab)."""
        return str(self.cfg.sa_json)

    @property
    def p12_file(self) -> str:
        return str(self.cfg.sa_p12)

    @property
    def p12_password(self) -> str:
        return labconfig.P12_PASSWORD

    @property
    def inventory_path(self) -> str:
        return str(self.cfg.inventory)

    @property
    def users_file(self) -> str:
        return str(self.cfg.users_file)

    @property
    def logs_dir(self) -> str:
        return str(self.cfg.logs_dir)

    @property
    def ssh_key(self) -> str:
        return str(self.cfg.ssh_client_key)

    def log_file(self, service: str) -> str:
        """``google``, ``dovecot``, ``chrony``, ``sntp``, ``sshd-msl1`` ..."""
        return str(self.cfg.log_file(service))

    # --- identities -----------------------------------------------------------------------
    @property
    def domain(self) -> str:
        return labconfig.DOMAIN

    @property
    def admin(self) -> str:
        return labconfig.ADMIN

    @property
    def service_account(self) -> dict[str, str]:
        return dict(self.data["service_account"])

    @property
    def client_id(self) -> str:
        return str(self.data["service_account"]["client_id"])

    @property
    def client_email(self) -> str:
        return str(self.data["service_account"]["client_email"])

    @property
    def project_id(self) -> str:
        return str(self.data["service_account"]["project_id"])

    @property
    def private_key_id(self) -> str:
        return str(self.data["service_account"]["private_key_id"])

    @property
    def public_key_sha256(self) -> str:
        return str(self.data["service_account"]["public_key_sha256"])

    @property
    def users(self) -> list[str]:
        return [line.strip() for line in self.cfg.users_file.read_text().splitlines() if line.strip()]

    @property
    def users_count(self) -> int:
        return int(self.data["users_count"])

    # --- MSL hosts ------------------------------------------------------------------------
    def msl_paths(self, host: str) -> dict[str, str]:
        """root, db_command, signal_event_command, credential_dir, db_file, ntp_conf, event_log, backup_file."""
        return msl.host_paths(self.cfg, msl.check_host(host))

    def msl_root(self, host: str) -> str:
        return self.msl_paths(host)["root"]

    def db_command(self, host: str) -> str:
        return self.msl_paths(host)["db_command"]

    def signal_event_command(self, host: str) -> str:
        return self.msl_paths(host)["signal_event_command"]

    def credential_dir(self, host: str) -> str:
        return self.msl_paths(host)["credential_dir"]

    def db(self, host: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the host's ``db`` tool locally: ``lab.db("msl1", "configuration", "getprop", "ntpd", "status")``."""
        return subprocess.run([self.db_command(host), *args], capture_output=True, text=True, check=check)

    def signal_events(self, host: str) -> list[str]:
        """Event names logged by the host's signal-event, oldest first."""
        log = Path(self.msl_paths(host)["event_log"])
        if not log.exists():
            return []
        return [line.split()[1] for line in log.read_text().splitlines() if len(line.split()) > 1]

    def backup_msl(self, host: str) -> str:
        return str(msl.backup(self.cfg, msl.check_host(host)))

    def restore_msl(self, host: str) -> None:
        msl.restore(self.cfg, msl.check_host(host))

    def reset_msl(self, host: str) -> None:
        """Back to a freshly generated host (initial db, backup of it, no credentials, empty event log)."""
        msl.create_host(self.cfg, msl.check_host(host), str(self.data["msl_python"]))
        msl.backup(self.cfg, host)

    def ssh(
        self, host: str, command: str, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on ``host`` over the lab's real sshd (as root, with the lab key)."""
        return subprocess.run(
            sshd.ssh_command(self.cfg, msl.check_host(host), command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    # --- Google -----------------------------------------------------------------------------
    @cached_property
    def google(self) -> GoogleControl:
        """Control client of the emulated Google (``tests/lab/google/client.py``)."""
        return GoogleControl(self.google_base_url, self.ca_path)

    def reset_google(self) -> None:
        """Google back to its start-up baseline, with the lab's current user list."""
        self.google.reset()
        self.google.set_users(self.users)

    def set_users(self, count: int) -> list[str]:
        """Change the number of users (1..3000) in Google, users.txt and lab.json."""
        users = labconfig.user_addresses(count)
        with orchestrator.locked(self.cfg):
            data = orchestrator.load_state(self.cfg) or self.data
            if orchestrator.service_running(data, "google"):
                self.google.set_users(users)
            fixtures.write_users_file(self.cfg, users)
            data["users_count"] = count
            orchestrator.save_state(self.cfg, data)
            if self.cfg.google_config.exists():
                # A restarted Google starts with the same users.
                document = json.loads(self.cfg.google_config.read_text())
                document["users"] = users
                fixtures.write_google_config(self.cfg, document)
        self.data = data
        return users

    # --- time -------------------------------------------------------------------------------
    def skew(self, seconds: float) -> None:
        """Set the skewed SNTP responder's offset (takes effect on its next answer)."""
        sntp.write_offset(self.cfg.sntp_offset_file, float(seconds))

    @property
    def skew_seconds(self) -> float:
        return sntp.read_offset(self.cfg.sntp_offset_file)

    def sntp_query(self, port: int | None = None, timeout: float = 1.0) -> sntp.SntpResult:
        """One SNTP query to chrony (default) or to ``port`` (e.g. ``lab.skewed_ntp_port``)."""
        return sntp.query(self.host, port or self.ntp_port, timeout=timeout)

    # --- TLS clients --------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the lab CA only (for IMAP, raw HTTPS)."""
        return ssl.create_default_context(cafile=self.ca_path)

    def requests_session(self) -> Any:
        """A ``requests.Session`` verifying against the lab CA (what google-auth's transport needs)."""
        import requests

        session = requests.Session()
        session.verify = self.ca_path
        session.trust_env = False
        return session
