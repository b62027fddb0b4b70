"""A private Dovecot 2.3 on 127.0.0.1:B+1 (implicit TLS) checking OAuth tokens like Gmail.

XOAUTH2 / OAUTHBEARER tokens are validated by the ``oauth2`` passdb against the emulated
Google's tokeninfo endpoint (over TLS, verified with the lab CA). Every refusal Gmail words its own way
(IMAP off for the user or the domain, a bad or revoked token, a token of another user, a suspended user)
is answered with Gmail's text: tokeninfo carries lab-only fields, which three chained passdbs turn into
a refusal with that text (see ``USER_MATCH_CHECK`` and ``IMAP_ACCESS_CHECK``). The instance runs in the foreground (``-F``): the PID we record is the
master's, and the master takes its children down on SIGTERM.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

from tests.lab import process
from tests.lab.config import LISTEN_HOST, LabConfig

DOVECOT = "/usr/sbin/dovecot"
MAIL_USER = "nupointlab"

# How a refused login gets exactly Gmail's text (see docs/lab-contract.md, "What Gmail says"):
# - Dovecot calls tokeninfo with DOVECOT_TOKENINFO_FLAG, so the emulated Google answers every token 200: a token
#   Google would refuse (unknown, expired, revoked) comes back with an empty ``email`` and ``x_lab_imap`` =
#   ``invalid_token``; a suspended user's with ``suspended``. ``x_lab_imap_alert`` carries Gmail's refusal text
#   and ``x_lab_invalid_credentials`` Gmail's ``[AUTHENTICATIONFAILED] Invalid credentials (Failure)``.
# - passdb 1 (oauth2) keeps those fields as extra fields, and ``reason`` = Gmail's invalid-credentials text. Its own
#   username check is neutralised (``username_format`` is a constant, so the token's user and the login name
#   always "match"), because a mismatch there would answer Dovecot's ``Authentication failed.``.
# - A passdb that fails is answered with the extra fields of the passdbs that succeeded before it (its own are
#   dropped). So passdb 2 (static, only for users passdb 1 authenticated) fails the login when the token's
#   ``email`` is not the login name, with ``allow_nets`` set to a network the client is not in: Gmail's
#   invalid-credentials text (a token for user A presented as user B, and every token Google would refuse, whose
#   ``email`` is empty). When it succeeds it sets ``reason`` = ``x_lab_imap_alert``.
# - passdb 3 (static) fails the login the same way when ``x_lab_imap`` is not ``enabled`` (IMAP off for the user
#   or the domain, a suspended user): passdb 2's ``reason``, Gmail's text for that case.
# A failed login that carries ``reason`` is answered ``NO <reason>`` (``NO [ALERT] <reason>`` if the reason does
# not start with ``[``). (A plain ``nologin`` would answer ``NO [CONTACTADMIN] <reason>``, which Gmail never sends.)
DOVECOT_TOKENINFO_FLAG = "x_lab_dovecot=1"
OAUTH2_PASS_ATTRS = (
    "x_lab_imap=%{oauth2:x_lab_imap} x_lab_email=%{oauth2:email} x_lab_alert=%{oauth2:x_lab_imap_alert} "
    "reason=%{oauth2:x_lab_invalid_credentials} nodelay=yes"
)
_FOREIGN_NET = "192.0.2.1/32"
_ANY_NET = "0.0.0.0/0,::/0"
USER_MATCH_CHECK = (
    f"allow_nets=%{{if;%{{passdb:x_lab_email}};eq;%Lu;{_ANY_NET};{_FOREIGN_NET}}} reason=%{{passdb:x_lab_alert}}"
)
IMAP_ACCESS_CHECK = f"allow_nets=%{{if;%{{passdb:x_lab_imap}};eq;enabled;{_ANY_NET};{_FOREIGN_NET}}}"


def run_dir(cfg: LabConfig) -> Path:
    """Dovecot's base_dir (its unix sockets): in the state dir unless that path is too long.

    Socket paths are limited to 107 bytes and Dovecot's longest socket name under base_dir is
    about 30, so a deep state directory gets a short directory under /run instead.
    """
    preferred = cfg.dovecot_dir / "run"
    if len(str(preferred)) <= 64:
        return preferred
    digest = hashlib.sha256(str(cfg.state_dir).encode()).hexdigest()[:12]
    return Path("/run/nupoint-lab") / digest / "dovecot"


def conf_path(cfg: LabConfig) -> Path:
    return cfg.dovecot_dir / "dovecot.conf"


def instance_name(cfg: LabConfig) -> str:
    return f"nupoint-lab-{cfg.imap_port}"


def ensure_mail_user() -> tuple[str, int, int]:
    """The unprivileged owner of the lab's mailboxes (created once as a system user)."""
    try:
        entry = pwd.getpwnam(MAIL_USER)
    except KeyError:
        result = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "nupoint.gworkspace lab mailboxes",
                MAIL_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            entry = pwd.getpwnam(MAIL_USER)
        except KeyError:
            # No useradd, or not root: fall back to an existing unprivileged account.
            entry = pwd.getpwnam("nobody")
            if result.returncode not in (0, 9):
                print(f"lab: useradd {MAIL_USER} failed ({result.stderr.strip()}); using nobody")
    return entry.pw_name, entry.pw_uid, entry.pw_gid


def write_config(cfg: LabConfig) -> None:
    base = cfg.dovecot_dir
    base_dir = run_dir(cfg)
    # A stale base_dir (sockets, master.pid of a dead instance) makes dovecot refuse to start.
    shutil.rmtree(base_dir, ignore_errors=True)
    base_dir.mkdir(parents=True)
    for sub in ("state", "home"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    user, uid, gid = ensure_mail_user()
    os.chown(base / "home", uid, gid)
    group = grp.getgrgid(gid).gr_name
    cfg.logs_dir.mkdir(parents=True, exist_ok=True)

    oauth2_conf = base / "dovecot-oauth2.conf.ext"
    oauth2_conf.write_text(
        "\n".join(
            [
                "# oauth2 passdb: tokens are checked against the emulated Google's tokeninfo",
                f"tokeninfo_url = {cfg.tokeninfo_url}?{DOVECOT_TOKENINFO_FLAG}&access_token=",
                f"tls_ca_cert_file = {cfg.ca_path}",
                "username_attribute = email",
                "# a constant: the token's user is compared with the login name by the next passdb, in Gmail's words",
                "username_format = token-user",
                f"pass_attrs = {OAUTH2_PASS_ATTRS}",
                "timeout_msecs = 10000",
                "max_parallel_connections = 32",
                "",
            ]
        )
    )
    oauth2_conf.chmod(0o644)

    conf_path(cfg).write_text(
        f"""# nupoint.gworkspace lab: private Dovecot instance (generated by `python -m tests.lab up`)
instance_name = {instance_name(cfg)}
base_dir = {base_dir}
state_dir = {base / "state"}
protocols = imap
listen = {LISTEN_HOST}
log_path = {cfg.log_file("dovecot")}
login_greeting = Gimap ready for requests (nupoint.gworkspace lab)
verbose_proctitle = no

ssl = required
ssl_cert = <{cfg.server_cert}
ssl_key = <{cfg.server_key}
ssl_min_protocol = TLSv1.2

auth_mechanisms = xoauth2 oauthbearer
auth_failure_delay = 0
auth_cache_size = 0
disable_plaintext_auth = yes

first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}

passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth2_conf}
  result_success = continue-ok
  result_failure = return-fail
  result_internalfail = return-fail
}}
passdb {{
  driver = static
  mechanisms = xoauth2 oauthbearer
  skip = unauthenticated
  args = {USER_MATCH_CHECK}
  result_success = continue-ok
  result_failure = return-fail
  result_internalfail = return-fail
}}
passdb {{
  driver = static
  mechanisms = xoauth2 oauthbearer
  skip = unauthenticated
  args = {IMAP_ACCESS_CHECK}
  result_failure = return-fail
  result_internalfail = return-fail
}}
userdb {{
  driver = static
  args = uid={user} gid={group} home={base / "home"}/%Lu
}}

# Thousands of logins in a benchmark run: no per-login process, no auth penalty.
default_process_limit = 5000
default_client_limit = 20000
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = {LISTEN_HOST}
    port = {cfg.imap_port}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 2
  process_limit = 4
  client_limit = 5000
}}
service imap {{
  process_limit = 5000
}}
service auth {{
  client_limit = 20000
}}
service anvil {{
  client_limit = 20000
  # Without this, every login after a failure from the same IP waits ~4 s (auth penalty).
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
    )


def greets(port: int, ca_path: Path, timeout: float = 1.0) -> bool:
    """True when an IMAPS greeting arrives over a verified TLS connection."""
    context = ssl.create_default_context(cafile=str(ca_path))
    try:
        with (
            socket.create_connection((LISTEN_HOST, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=LISTEN_HOST) as tls,
        ):
            return tls.recv(256).startswith(b"* OK")
    except (OSError, ssl.SSLError):
        return False


def start(cfg: LabConfig) -> subprocess.Popen[bytes]:
    write_config(cfg)
    log = cfg.log_file("dovecot")
    proc = process.spawn([DOVECOT, "-F", "-c", str(conf_path(cfg))], log, many_files=True)
    process.wait_until(lambda: greets(cfg.imap_port, cfg.ca_path, 0.5), 30, "dovecot IMAPS", proc, log)
    return proc
