"""The bad-input corpus of test_bad_input.py: every input, made at run time, and what the collection must say.

Nothing key-shaped is committed: keys, P12 files and vault files are generated into a temp directory from the
lab's key (so "valid by design" variants are the lab's own key pair) or from fresh keys (tests/unit/keyfactory).

A :class:`Case` is one task. ``reason`` is the ``reason`` the failed task must return; ``None`` marks an input the
collection accepts by design (its ``why`` says from which contract), run in check mode so it changes nothing either.
Argument strings starting with ``@`` name a generated file (``@file:NAME``) or a place in the MSL host tree
(``@msl:REL``, under the host's root); Jinja (``{{ gworkspace_* }}``) comes from the lab inventory.
"""

import json
import os
import secrets
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from tests.unit import keyfactory as kf

ANSIBLE_VAULT = os.path.join(os.path.dirname(sys.executable), "ansible-vault")
# NuPoint Advanced UM's limit (module_utils/users.NUPOINT_MAX_USERS) plus one.
TOO_MANY_USERS = 2501
# The command a shell would run if an NTP server name ever reached one: it creates this file.
MARKER_NAME = "shell-ran"

# Module groups: where the module runs.
ON_MSL = "msl1"  # over the lab's real sshd, the MSL host's stdlib-only Python
ON_CONTROLLER = "localhost"

MSL_CREDENTIAL_ARGS = {
    "db_command": "{{ gworkspace_msl_db_command }}",
    "signal_event_command": "{{ gworkspace_msl_signal_event_command }}",
    "credential_dir": "{{ gworkspace_msl_credential_dir }}",
}
MSL_TIME_ARGS = {
    "db_command": "{{ gworkspace_msl_db_command }}",
    "signal_event_command": "{{ gworkspace_msl_signal_event_command }}",
    "samples": 1,
    "sample_interval": 0.1,
    "timeout": 1,
    "ntp_port": "{{ gworkspace_ntp_port }}",
}
GOOGLE_ARGS = {
    "token_uri": "{{ gworkspace_token_uri }}",
    "ca_path": "{{ gworkspace_ca_path }}",
    "api_base_url": "{{ gworkspace_api_base_url }}",
    "timeout": 5,
    "retries": 0,
}
IMAP_ARGS = dict(
    {key: GOOGLE_ARGS[key] for key in ("token_uri", "ca_path", "timeout", "retries")},
    imap_host="{{ gworkspace_imap_host }}",
    imap_port="{{ gworkspace_imap_port }}",
    return_results=True,
)
MSL_FACTS_ARGS = {
    "root": "{{ gworkspace_msl_root }}",
    "db_command": "{{ gworkspace_msl_db_command }}",
    "client_id": "{{ gworkspace_expected_client_id }}",
    "client_email": "{{ gworkspace_expected_client_email }}",
}
MODULE_DEFAULTS = {
    "nupoint.gworkspace.msl_oauth_credentials": MSL_CREDENTIAL_ARGS,
    "nupoint.gworkspace.msl_time_sync": MSL_TIME_ARGS,
    "nupoint.gworkspace.msl_facts": MSL_FACTS_ARGS,
}


@dataclass(frozen=True)
class Case:
    id: str
    where: str
    module: str
    args: dict[str, Any]
    reason: str | None
    # Words the msg must contain (case-insensitive): the problem and the fix, not whole sentences.
    words: tuple[str, ...] = ()
    # For accepted inputs: result fields that must have these values (``@lab_fingerprint`` etc. resolved by the test).
    expect: dict[str, Any] = field(default_factory=dict)
    why: str = ""

    @property
    def accepted(self) -> bool:
        return self.reason is None


def _key(name: str) -> str:
    return "@file:" + name


def _install(**args: Any) -> dict[str, Any]:
    return args


MSL_KEY = "nupoint.gworkspace.msl_oauth_credentials"
FACTS = "nupoint.gworkspace.msl_facts"
TIME = "nupoint.gworkspace.msl_time_sync"
IMAP = "nupoint.gworkspace.imap_check"
KEY_INFO = "nupoint.gworkspace.service_account_key_info"
KEYS_INFO = "nupoint.gworkspace.service_account_keys_info"
DELEGATION = "nupoint.gworkspace.delegation_check"
GMAIL = "nupoint.gworkspace.gmail_imap_settings"
POLICY = "nupoint.gworkspace.workspace_imap_policy_info"
CLOCK = "nupoint.gworkspace.clock_offset_info"
FLEET = "nupoint.gworkspace.imap_check_fleet_report"
SERVICE_ACCOUNT = "nupoint.gworkspace.service_account"
KEY = "nupoint.gworkspace.service_account_key"

# The words every refused key's message carries: what to do about it.
NEW_KEY = "create new key"
REQUIRED_FIELDS = ("type", "project_id", "private_key_id", "private_key", "client_email", "client_id", "token_uri")
SAME_KEY = {"fingerprint_sha256": "@lab_fingerprint", "client_id": "@lab_client_id"}

CASES: list[Case] = [
    # ------------------------------------------------------------------ the key file (msl_oauth_credentials over SSH)
    Case("empty key file", ON_MSL, MSL_KEY, {"src": _key("empty")}, "not_json", ("empty", NEW_KEY)),
    Case("binary key file", ON_MSL, MSL_KEY, {"src": _key("binary")}, "not_json", ("not utf-8", NEW_KEY)),
    Case(
        "truncated key file",
        ON_MSL,
        MSL_KEY,
        {"src": _key("truncated")},
        "not_json",
        ("truncated", "copy the original file again"),
    ),
    Case("key file is a JSON array", ON_MSL, MSL_KEY, {"src": _key("array")}, "not_json", ("json array", NEW_KEY)),
    Case(
        "key file with a UTF-8 BOM",
        ON_MSL,
        MSL_KEY,
        {"src": _key("bom")},
        None,
        expect=dict(SAME_KEY, changed=False),
        why="docs/service_account_key_info.md: 'a BOM is tolerated'. The controller drops it, so MSL is handed the "
        "very bytes already installed: no change.",
    ),
    Case(
        "authorized_user credentials",
        ON_MSL,
        MSL_KEY,
        {"src": _key("authorized_user")},
        "wrong_type",
        ("authorized_user", "gcloud auth application-default login", NEW_KEY),
    ),
    Case(
        "OAuth client secret file (installed)",
        ON_MSL,
        MSL_KEY,
        {"src": _key("client_installed")},
        "wrong_type",
        ("oauth client secret", "domain-wide delegation", NEW_KEY),
    ),
    Case(
        "OAuth client secret file (web)",
        ON_MSL,
        MSL_KEY,
        {"src": _key("client_web")},
        "wrong_type",
        ("oauth client secret", "'web'", NEW_KEY),
    ),
    *[
        Case(
            "key without %s" % name,
            ON_MSL,
            MSL_KEY,
            {"src": _key("missing_" + name)},
            "missing_field",
            ("'%s'" % name if name != "type" else "'type'", NEW_KEY),
        )
        for name in REQUIRED_FIELDS
    ],
    Case(
        "private_key with CRLF line ends",
        ON_MSL,
        MSL_KEY,
        {"src": _key("pem_crlf")},
        None,
        expect=dict(SAME_KEY, changed=True),
        why="PEM readers ignore CR (RFC 7468 allows CRLF): the controller (cryptography) and MSL (key_format's "
        "stdlib reader) both read the same key pair. It is installed as given (the content differs, so check mode "
        "says it would change); nothing is rewritten.",
    ),
    Case(
        "key file with CRLF line ends (edited on Windows)",
        ON_MSL,
        MSL_KEY,
        {"src": _key("file_crlf")},
        None,
        expect=dict(SAME_KEY, changed=True),
        why="CR LF between JSON tokens is JSON whitespace: the same key, installed as given.",
    ),
    Case(
        "private_key with literal \\n",
        ON_MSL,
        MSL_KEY,
        {"src": _key("pem_escaped_newlines")},
        "bad_private_key",
        ("damaged", "line breaks", NEW_KEY),
    ),
    Case(
        "encrypted PEM private_key",
        ON_MSL,
        MSL_KEY,
        {"src": _key("pem_encrypted")},
        "bad_private_key",
        ("encrypted", "unencrypted", NEW_KEY),
    ),
    Case(
        "PKCS#1 private_key",
        ON_MSL,
        MSL_KEY,
        {"src": _key("pkcs1")},
        None,
        expect=dict(SAME_KEY, changed=True),
        why="docs/service_account_key_info.md: 'PKCS#8 or PKCS#1 PEM, unencrypted'; it is the same RSA key pair "
        "(same fingerprint on the controller and on MSL), installed as given.",
    ),
    Case(
        "1024-bit RSA key",
        ON_MSL,
        MSL_KEY,
        {"src": _key("rsa1024")},
        "weak_private_key",
        ("1024-bit", "2048", NEW_KEY),
    ),
    Case("EC key", ON_MSL, MSL_KEY, {"src": _key("ec")}, "unsupported_key_type", ("elliptic-curve", "rsa", NEW_KEY)),
    Case(
        "P12 with a wrong password",
        ON_MSL,
        MSL_KEY,
        {"src": "{{ gworkspace_key_file }}", "p12_src": "{{ gworkspace_p12_file }}", "p12_password": "wrong"},
        "p12_password",
        ("cannot be opened", "leave p12_password unset"),
    ),
    Case(
        "P12 file that is not PKCS#12",
        ON_MSL,
        MSL_KEY,
        {"src": "{{ gworkspace_key_file }}", "p12_src": _key("binary")},
        "p12_invalid",
        ("not a pkcs#12", "download the p12"),
    ),
    Case(
        "p12_content that is not base64",
        ON_MSL,
        MSL_KEY,
        {"src": "{{ gworkspace_key_file }}", "p12_content": "not base64 !"},
        "p12_invalid",
        ("not base64", "p12_path"),
    ),
    Case(
        "client_id not numeric",
        ON_MSL,
        MSL_KEY,
        {"src": _key("client_id_text")},
        "bad_field",
        ("client_id", "numeric", "was not edited"),
    ),
    Case(
        "private_key_id not hex",
        ON_MSL,
        MSL_KEY,
        {"src": _key("private_key_id_bad")},
        "bad_field",
        ("private_key_id", "hexadecimal", NEW_KEY),
    ),
    Case(
        "client_email of a user",
        ON_MSL,
        MSL_KEY,
        {"src": _key("client_email_user")},
        "bad_field",
        ("client_email", "not a service-account address"),
    ),
    Case(
        "token_uri plain http to a non-loopback host",
        ON_MSL,
        MSL_KEY,
        {"src": _key("token_uri_http")},
        "bad_field",
        ("token_uri", "https://", "loopback"),
    ),
    Case(
        "token_uri plain http to loopback",
        ON_MSL,
        MSL_KEY,
        {"src": _key("token_uri_http_loopback")},
        None,
        expect=dict(SAME_KEY, changed=True),
        why="service_account._check_token_uri: plain http is accepted for a loopback test server only (docs/"
        "service_account_key_info.md); nothing leaves the host in clear.",
    ),
    Case(
        "vault file with the wrong vault password",
        ON_MSL,
        MSL_KEY,
        {"src": _key("vaulted")},
        "read_error",
        ("decrypt", "vault password"),
    ),
    Case(
        "key file that does not exist",
        ON_MSL,
        MSL_KEY,
        {"src": "/nonexistent/sa.json"},
        "read_error",
        ("cannot find", "looked in files/"),
    ),
    Case(
        "src and content both",
        ON_MSL,
        MSL_KEY,
        {"src": "{{ gworkspace_key_file }}", "content": "{{ lookup('file', gworkspace_key_file) }}"},
        "bad_field",
        ("one of", "src and content"),
    ),
    # ------------------------------------------------------------------ the MSL credential store (over SSH)
    Case(
        "credential_dir is a symlink",
        ON_MSL,
        MSL_KEY,
        {"src": "{{ gworkspace_key_file }}", "credential_dir": "@msl:var/lib/nupoint/link"},
        "unsafe_path",
        ("symbolic link", "point credential_dir at the real directory", "nothing was changed"),
    ),
    Case(
        "credential_dir is a file",
        ON_MSL,
        MSL_KEY,
        {"src": "{{ gworkspace_key_file }}", "credential_dir": "@msl:var/lib/nupoint/afile"},
        "unsafe_path",
        ("not a directory", "nothing was changed"),
    ),
    Case(
        "credential_dir is world-writable",
        ON_MSL,
        MSL_KEY,
        {"src": "{{ gworkspace_key_file }}", "credential_dir": "@msl:var/lib/nupoint/open"},
        "unsafe_path",
        ("written by other users", "0777", "nothing was changed"),
    ),
    Case(
        "credential_dir under a world-writable directory",
        ON_MSL,
        MSL_KEY,
        {"src": "{{ gworkspace_key_file }}", "credential_dir": "@msl:var/lib/shared/oauth"},
        "unsafe_path",
        ("may be written by other users (mode 1777)", "only root can write", "nothing was changed"),
    ),
    Case(
        "credential_key_file with a path",
        ON_MSL,
        MSL_KEY,
        {"src": "{{ gworkspace_key_file }}", "credential_key_file": "../escape.json"},
        "invalid_option",
        ("credential_key_file", "not a plain file name", "without '/'"),
    ),
    Case(
        "msl_oauth_credentials_info: credential_p12_file with a path",
        ON_MSL,
        "nupoint.gworkspace.msl_oauth_credentials_info",
        dict(MSL_CREDENTIAL_ARGS, credential_p12_file="/etc/shadow"),
        "invalid_option",
        ("credential_p12_file", "not a plain file name"),
    ),
    Case(
        "db_command that does not exist",
        ON_MSL,
        MSL_KEY,
        {"src": "{{ gworkspace_key_file }}", "db_command": "/nonexistent/e-smith/db"},
        "msl_db",
        ("cannot run /nonexistent/e-smith/db", "set the db_command option"),
    ),
    # ------------------------------------------------------------------ NTP server names (msl_time_sync over SSH)
    *[
        Case(
            "NTP server %s" % label,
            ON_MSL,
            TIME,
            {"servers": ["{{ gworkspace_ntp_servers[0] }}", server], "state": "enabled"},
            "invalid_server",
            ("invalid ntp server", "letters, digits, dots and hyphens"),
        )
        for label, server in (
            ("with ;", "time.google.com; touch @marker"),
            ("with $()", "$(touch @marker)"),
            ("with backticks", "`touch @marker`"),
            ("with a pipe", "time.google.com|touch @marker"),
            ("with &&", "time.google.com && touch @marker"),
            ("with a newline", "time.google.com\ntouch @marker"),
        )
    ],
    # ------------------------------------------------------------------ users (imap_check on MSL, users_file on MSL)
    Case(
        "users file with 2,501 users",
        ON_MSL,
        IMAP,
        dict(IMAP_ARGS, src="{{ gworkspace_key_file }}", users_file=_key("users_2501")),
        "too_many_users",
        ("2501 users", "max_users=2500", "enforce_user_limit"),
    ),
    Case(
        "users file of invalid addresses only",
        ON_MSL,
        IMAP,
        dict(IMAP_ARGS, src="{{ gworkspace_key_file }}", users_file=_key("users_invalid")),
        "no_users",
        ("no valid user address",),
        expect={"warnings.0": "@contains:'not-an-address' (users_file line 1)"},
    ),
    Case(
        "users file of IDN addresses only",
        ON_MSL,
        IMAP,
        dict(IMAP_ARGS, src="{{ gworkspace_key_file }}", users_file=_key("users_idn")),
        "no_users",
        ("no valid user address",),
        expect={"warnings.0": "@contains:'jörg@bücher.example' (users_file line 1)"},
        why="Google's primary addresses are ASCII: an address with a Unicode domain is not one (it is named as "
        "invalid; the punycode form xn--... is an ordinary address).",
    ),
    Case(
        "users file with IDN and invalid addresses among valid ones",
        ON_MSL,
        IMAP,
        dict(IMAP_ARGS, src="{{ gworkspace_key_file }}", users_file=_key("users_mixed")),
        None,
        expect={"users_count": 2, "summary.ok": 2, "changed": False},
        why="docs/imap-check.md: invalid addresses are dropped with one warning naming them; the valid users are "
        "checked (here against the lab, read-only: imap_check changes nothing).",
    ),
    Case(
        "users file with duplicates",
        ON_MSL,
        IMAP,
        dict(IMAP_ARGS, src="{{ gworkspace_key_file }}", users_file=_key("users_duplicates")),
        "duplicate_users",
        ("duplicate", "duplicates"),
        why="issue 11: duplicated addresses fail by default (duplicates: warn downgrades them to a warning).",
    ),
    Case(
        "users CSV without an email column",
        ON_MSL,
        IMAP,
        dict(IMAP_ARGS, src="{{ gworkspace_key_file }}", users_file=_key("users_csv_no_email")),
        "invalid_users_file",
        ("no 'email' column", "primaryemail"),
    ),
    Case(
        "users file that does not exist on MSL",
        ON_MSL,
        IMAP,
        dict(IMAP_ARGS, src="{{ gworkspace_key_file }}", users_file="/nonexistent/users.txt"),
        "read_error",
        ("cannot read users_file", "/nonexistent/users.txt"),
    ),
    Case(
        "fail_threshold not a number",
        ON_MSL,
        IMAP,
        dict(IMAP_ARGS, src="{{ gworkspace_key_file }}", users=["user0001@example.test"], fail_threshold="many"),
        "invalid_fail_threshold",
        ("fail_threshold", "not a number", "percentage"),
    ),
    # ------------------------------------------------------------------ msl_facts (the learn procedure)
    Case(
        "msl_facts: compare_with a JSON file that is not a snapshot",
        ON_MSL,
        FACTS,
        {"compare_with": _key("authorized_user")},
        "snapshot_invalid",
        ("not a msl_facts snapshot", "take the snapshot again"),
    ),
    Case(
        "msl_facts: compare_with a snapshot that was never taken",
        ON_MSL,
        FACTS,
        {"compare_with": "/nonexistent/before.json"},
        "snapshot_missing",
        ("cannot read the snapshot", "snapshot_path=/nonexistent/before.json"),
    ),
    Case(
        "msl_facts: snapshot_path inside a search path",
        ON_MSL,
        FACTS,
        {"snapshot_path": "@msl:etc/nupoint-before.json"},
        "snapshot_path_in_search",
        ("inside a search path", "/var/tmp"),
    ),
    Case(
        "msl_facts: max_files 0",
        ON_MSL,
        FACTS,
        {"max_files": 0},
        "invalid_option",
        ("max_files", "greater than 0", "nothing was read or written"),
    ),
    Case(
        "msl_facts: relative search path",
        ON_MSL,
        FACTS,
        {"search_paths": ["etc"]},
        "invalid_option",
        ("search_paths", "absolute paths"),
    ),
    # ------------------------------------------------------------------ the controller's Google modules
    Case(
        "service_account_key_info: authorized_user as content",
        ON_CONTROLLER,
        KEY_INFO,
        {"content": "{{ lookup('file', '@file:authorized_user') }}"},
        "wrong_type",
        ("authorized_user", NEW_KEY),
    ),
    Case(
        "service_account_key_info: binary file at path",
        ON_CONTROLLER,
        KEY_INFO,
        {"path": _key("binary")},
        "not_json",
        ("not utf-8", NEW_KEY),
    ),
    Case(
        "service_account_keys_info: EC admin key",
        ON_CONTROLLER,
        KEYS_INFO,
        dict(GOOGLE_ARGS, src=_key("ec"), service_account="{{ gworkspace_expected_client_email }}"),
        "unsupported_key_type",
        ("elliptic-curve", NEW_KEY),
    ),
    Case(
        "service_account: truncated admin key",
        ON_CONTROLLER,
        SERVICE_ACCOUNT,
        dict(GOOGLE_ARGS, src=_key("truncated"), project_id="nupoint-lab", account_id="nupoint-um"),
        "not_json",
        ("truncated",),
    ),
    Case(
        "service_account_key: OAuth client file as admin key",
        ON_CONTROLLER,
        KEY,
        dict(
            GOOGLE_ARGS,
            src=_key("client_installed"),
            service_account="{{ gworkspace_expected_client_email }}",
            state="absent",
            key_id="0" * 40,
        ),
        "wrong_type",
        ("oauth client secret",),
    ),
    Case(
        "delegation_check: no subjects",
        ON_CONTROLLER,
        DELEGATION,
        dict(GOOGLE_ARGS, src="{{ gworkspace_key_file }}", subjects=[], scopes=["https://mail.google.com/"]),
        "invalid_option",
        ("subjects", "at least one"),
    ),
    Case(
        "delegation_check: token_uri plain http to a non-loopback host",
        ON_CONTROLLER,
        DELEGATION,
        dict(
            GOOGLE_ARGS,
            src="{{ gworkspace_key_file }}",
            subjects=["{{ gworkspace_admin_subject }}"],
            scopes=["https://mail.google.com/"],
            token_uri="http://oauth2.example.com/token",
        ),
        "invalid_option",
        ("token_uri", "https://", "loopback"),
    ),
    Case(
        "workspace_imap_policy_info: subject not an address",
        ON_CONTROLLER,
        POLICY,
        dict(GOOGLE_ARGS, src="{{ gworkspace_key_file }}", subject="admin"),
        "invalid_option",
        ("subject", "administrator's e-mail address"),
    ),
    Case(
        "gmail_imap_settings: concurrency 0",
        ON_CONTROLLER,
        GMAIL,
        dict(GOOGLE_ARGS, src="{{ gworkspace_key_file }}", users=["user0001@example.test"], concurrency=0),
        "invalid_option",
        ("concurrency", "at least 1"),
    ),
    Case(
        "imap_check: imap_port out of range",
        ON_CONTROLLER,
        IMAP,
        dict(IMAP_ARGS, src="{{ gworkspace_key_file }}", users=["user0001@example.test"], imap_port=70000),
        "invalid_option",
        ("imap_port", "70000", "tcp port"),
    ),
    Case(
        "clock_offset_info: NTP server with shell metacharacters",
        ON_CONTROLLER,
        CLOCK,
        {"servers": ["$(touch @marker)"], "timeout": 1, "samples": 1},
        "invalid_server",
        ("invalid ntp server", "letters, digits, dots and hyphens"),
    ),
    Case(
        "imap_check_fleet_report: a report that does not exist",
        ON_CONTROLLER,
        FLEET,
        {"reports": [{"host": "msl1", "json": "/nonexistent/report.json"}], "dest": "@file:fleet/index.html"},
        "read_error",
        ("cannot read", "/nonexistent/report.json"),
    ),
]


def case_ids() -> list[str]:
    return [case.id for case in CASES]


assert len(set(case_ids())) == len(CASES), "case ids must be unique"


# --------------------------------------------------------------------------- the generated files


def _write(path: Path, data: bytes | str, mode: int = 0o600) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    path.chmod(mode)
    return str(path)


def make_files(lab: Any, directory: Path, wrong_vault_password_file: Path) -> dict[str, str]:
    """Every generated input file, by name; the key variants are built from the lab's own key."""
    good_text = Path(lab.key_file).read_text()
    good = json.loads(good_text)
    lab_key = serialization.load_pem_private_key(good["private_key"].encode(), password=None)

    def variant(**changes: Any) -> str:
        data = dict(good)
        for name, value in changes.items():
            if value is None:
                data.pop(name, None)
            else:
                data[name] = value
        return json.dumps(data, indent=2) + "\n"

    texts: dict[str, bytes | str] = {
        "empty": b"",
        # Not UTF-8 (0x80-0xff alone), as a P12 or a zip would be.
        "binary": bytes(range(256)) * 8,
        "truncated": good_text[: len(good_text) // 2],
        "array": json.dumps([good], indent=2) + "\n",
        "bom": "\ufeff" + good_text,
        "authorized_user": json.dumps(
            {
                "type": "authorized_user",
                "client_id": "%d-%s.apps.googleusercontent.com" % (secrets.randbelow(10**12), secrets.token_hex(8)),
                "client_secret": secrets.token_urlsafe(18),
                "refresh_token": secrets.token_urlsafe(40),
            }
        ),
        "client_installed": json.dumps(
            {"installed": {"client_id": "x.apps.googleusercontent.com", "client_secret": secrets.token_urlsafe(18)}}
        ),
        "client_web": json.dumps(
            {"web": {"client_id": "x.apps.googleusercontent.com", "client_secret": secrets.token_urlsafe(18)}}
        ),
        "pem_crlf": variant(private_key=good["private_key"].replace("\n", "\r\n")),
        "file_crlf": good_text.replace("\n", "\r\n"),
        "pem_escaped_newlines": variant(private_key=good["private_key"].replace("\n", "\\n")),
        "pem_encrypted": variant(
            private_key=lab_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(secrets.token_bytes(12)),
            ).decode()
        ),
        "pkcs1": variant(private_key=kf.pem_pkcs1(lab_key)),
        "rsa1024": variant(private_key=kf.pem_pkcs8(kf.rsa_key(bits=1024))),
        "ec": variant(private_key=kf.pem_pkcs8(kf.ec_key())),
        "client_id_text": variant(client_id="nupoint-um"),
        "private_key_id_bad": variant(private_key_id="KEY-" + secrets.token_hex(8)),
        "client_email_user": variant(client_email="admin@example.test"),
        "token_uri_http": variant(token_uri="http://oauth2.googleapis.com/token"),
        "token_uri_http_loopback": variant(token_uri="http://127.0.0.1:9/token"),
    }
    for name in REQUIRED_FIELDS:
        texts["missing_" + name] = variant(**{name: None})
    users = lab.users
    texts["users_2501"] = "".join("um%04d@example.test\n" % index for index in range(TOO_MANY_USERS))
    texts["users_invalid"] = "not-an-address\nuser@\n@example.test\nuser@@example.test\n"
    texts["users_idn"] = "jörg@bücher.example\nuser@bücher.example\n"
    texts["users_mixed"] = "%s\njörg@bücher.example\nnot-an-address\n%s\n" % (users[0], users[1])
    texts["users_duplicates"] = "%s\n%s\n%s\n" % (users[0], users[1], users[0].upper())
    texts["users_csv_no_email"] = "name,extension\nAda,1001\n"

    paths = {name: _write(directory / name, data) for name, data in texts.items()}
    # users files are read on MSL by the module as root: readable is enough.
    for name, path in paths.items():
        if name.startswith("users_"):
            os.chmod(path, 0o644)
    paths["vaulted"] = _write(directory / "vaulted.json", good_text)
    right_password = directory / "right-vault-password"
    _write(right_password, secrets.token_hex(16))
    subprocess.run(
        [ANSIBLE_VAULT, "encrypt", "--vault-password-file", str(right_password), paths["vaulted"]],
        check=True,
        capture_output=True,
    )
    _write(wrong_vault_password_file, secrets.token_hex(16))
    paths["fleet/index.html"] = str(directory / "fleet" / "index.html")
    (directory / "fleet").mkdir(exist_ok=True)
    return paths


def make_unsafe_store_paths(root: Path) -> None:
    """The credential_dir cases' places inside the MSL host tree (made before the host is snapshotted)."""
    nupoint = root / "var" / "lib" / "nupoint"
    real = nupoint / "real"
    real.mkdir(mode=0o700, exist_ok=True)
    link = nupoint / "link"
    if not link.is_symlink():
        link.symlink_to(real)
    afile = nupoint / "afile"
    afile.write_text("not a directory\n")
    opened = nupoint / "open"
    opened.mkdir(exist_ok=True)
    opened.chmod(0o777)
    shared = root / "var" / "lib" / "shared"
    shared.mkdir(exist_ok=True)
    shared.chmod(0o1777)


def resolve(value: Any, files: dict[str, str], root: Path, marker: str) -> Any:
    """Argument placeholders: ``@file:NAME``, ``@msl:REL``, ``@marker`` inside strings (see the module docstring)."""
    if isinstance(value, dict):
        return {name: resolve(item, files, root, marker) for name, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, files, root, marker) for item in value]
    if not isinstance(value, str):
        return value
    if value.startswith("@file:"):
        return files[value[len("@file:") :]]
    if value.startswith("@msl:"):
        return str(root / value[len("@msl:") :])
    value = value.replace("@marker", marker)
    if "'@file:" in value:
        start = value.index("'@file:") + 1
        end = value.index("'", start)
        value = value[:start] + files[value[start + len("@file:") : end]] + value[end:]
    return value


def tree_digest(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root``: type, mode, owner and content hash (files) or target (links), by relative path."""
    import hashlib

    entries: dict[str, tuple[Any, ...]] = {}
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(directory, name)
            info = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(info.st_mode):
                entries[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[rel] = ("dir", oct(stat.S_IMODE(info.st_mode)), info.st_uid, info.st_gid)
            else:
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                entries[rel] = ("file", oct(stat.S_IMODE(info.st_mode)), info.st_uid, info.st_gid, digest)
    return entries
