"""Where the lab lives: the state directory and the port plan of docs/lab-contract.md.

Everything here is derived from two environment variables, so two labs (a developer's and a
test run's) can coexist on one machine:

- ``NUPOINT_LAB_DIR``: state directory, default ``<repo>/.lab``
- ``NUPOINT_LAB_PORT_BASE``: port base ``B``, default 18400
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORT_BASE = 18400
LISTEN_HOST = "127.0.0.1"

DOMAIN = "example.test"
ADMIN = "admin@example.test"
DEFAULT_USERS = 50
MAX_USERS = 3000
PROJECT_ID = "nupoint-lab"
SERVICE_ACCOUNT_EMAIL = "nupoint-um@nupoint-lab.iam.gserviceaccount.com"
MAIL_SCOPE = "https://mail.google.com/"
P12_PASSWORD = "notasecret"

MSL_HOSTS = ("msl1", "msl2")
# Collection defaults for the MSL adapter (paths are relative to an MSL host's root).
MSL_DB_COMMAND = "/sbin/e-smith/db"
MSL_SIGNAL_EVENT_COMMAND = "/sbin/e-smith/signal-event"
MSL_CREDENTIAL_DIR = "/var/lib/nupoint/oauth"
MSL_CREDENTIAL_RECORD = "nupoint-oauth"
MSL_DB_NAME = "configuration"

ENV_STATE_DIR = "NUPOINT_LAB_DIR"
ENV_PORT_BASE = "NUPOINT_LAB_PORT_BASE"


@dataclass(frozen=True)
class LabConfig:
    """Paths and ports of one lab instance; pure arithmetic, no I/O."""

    state_dir: Path
    port_base: int = DEFAULT_PORT_BASE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LabConfig:
        env = os.environ if environ is None else environ
        state_dir = Path(env.get(ENV_STATE_DIR) or REPO_ROOT / ".lab").expanduser().absolute()
        raw_base = env.get(ENV_PORT_BASE) or str(DEFAULT_PORT_BASE)
        try:
            port_base = int(raw_base)
        except ValueError:
            raise ValueError(f"{ENV_PORT_BASE} must be an integer, got {raw_base!r}") from None
        if not 1024 <= port_base <= 65535 - 20:
            raise ValueError(f"{ENV_PORT_BASE} out of range: {port_base}")
        return cls(state_dir=state_dir, port_base=port_base)

    # --- ports ------------------------------------------------------------------------------
    @property
    def google_port(self) -> int:
        return self.port_base

    @property
    def imap_port(self) -> int:
        return self.port_base + 1

    @property
    def ntp_port(self) -> int:
        return self.port_base + 2

    @property
    def skewed_ntp_port(self) -> int:
        return self.port_base + 3

    @property
    def latency_proxy_port(self) -> int:
        return self.port_base + 4

    def ssh_port(self, host: str) -> int:
        return self.port_base + 10 + MSL_HOSTS.index(host)

    # --- URLs -------------------------------------------------------------------------------
    @property
    def google_base_url(self) -> str:
        return f"https://{LISTEN_HOST}:{self.google_port}"

    @property
    def token_uri(self) -> str:
        return f"{self.google_base_url}/token"

    @property
    def tokeninfo_url(self) -> str:
        return f"{self.google_base_url}/tokeninfo"

    # --- paths ------------------------------------------------------------------------------
    @property
    def lab_json(self) -> Path:
        return self.state_dir / "lab.json"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / ".lock"

    @property
    def leases_dir(self) -> Path:
        return self.state_dir / "leases"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def ca_dir(self) -> Path:
        return self.state_dir / "ca"

    @property
    def ca_path(self) -> Path:
        return self.ca_dir / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.ca_dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.ca_dir / "server-key.pem"

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    @property
    def sa_json(self) -> Path:
        return self.keys_dir / "sa.json"

    @property
    def sa_p12(self) -> Path:
        return self.keys_dir / "sa.p12"

    @property
    def users_file(self) -> Path:
        return self.state_dir / "users.txt"

    @property
    def inventory(self) -> Path:
        return self.state_dir / "inventory.yml"

    @property
    def google_dir(self) -> Path:
        return self.state_dir / "google"

    @property
    def google_config(self) -> Path:
        return self.google_dir / "config.json"

    @property
    def dovecot_dir(self) -> Path:
        return self.state_dir / "dovecot"

    @property
    def chrony_dir(self) -> Path:
        return self.state_dir / "chrony"

    @property
    def sntp_dir(self) -> Path:
        return self.state_dir / "sntp"

    @property
    def sntp_offset_file(self) -> Path:
        return self.sntp_dir / "offset"

    @property
    def ssh_dir(self) -> Path:
        return self.state_dir / "ssh"

    @property
    def ssh_client_key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def msl_dir(self) -> Path:
        return self.state_dir / "msl"

    def msl_root(self, host: str) -> Path:
        return self.msl_dir / host

    @property
    def msl_python_dir(self) -> Path:
        """A venv with no packages: the MSL hosts' Python, standard library only, like a stock MSL's."""
        return self.state_dir / "msl-python"

    @property
    def msl_python(self) -> Path:
        return self.msl_python_dir / "bin" / "python3"

    @property
    def msl_backup_dir(self) -> Path:
        return self.state_dir / "msl-backups"

    def msl_backup(self, host: str) -> Path:
        return self.msl_backup_dir / host / MSL_DB_NAME

    def log_file(self, service: str) -> Path:
        return self.logs_dir / f"{service}.log"

    # Top-level entries `up` creates; a fresh `up` removes exactly these and nothing else.
    @property
    def generated_entries(self) -> tuple[Path, ...]:
        return (
            self.lab_json,
            self.logs_dir,
            self.ca_dir,
            self.keys_dir,
            self.users_file,
            self.inventory,
            self.google_dir,
            self.dovecot_dir,
            self.chrony_dir,
            self.sntp_dir,
            self.ssh_dir,
            self.msl_dir,
            self.msl_python_dir,
            self.msl_backup_dir,
        )


def user_address(index: int) -> str:
    """The lab's user number ``index`` (1-based): user0001@example.test ..."""
    return f"user{index:04d}@{DOMAIN}"


def user_addresses(count: int) -> list[str]:
    if not 1 <= count <= MAX_USERS:
        raise ValueError(f"user count must be 1..{MAX_USERS}, got {count}")
    return [user_address(i) for i in range(1, count + 1)]
