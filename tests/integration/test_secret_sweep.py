"""One secret sweep over everything the administrators' playbooks write or print (issue 13, item 4).

Against the lab's two MSL hosts over real SSH, at ``-vvv``, with the controller's fact cache on (``jsonfile`` into the
test's directory) and an Ansible log file: ``provision.yml --check --diff``, ``provision.yml``, ``verify.yml``,
``post_restore.yml`` after ``restore-msl msl1`` and ``rotate_key.yml`` (forced; it proves the new key with IMAP logins).
Each run is the playbook itself, imported by a wrapper that adds one last play: ``set_fact cacheable: true`` (with
``no_log``) of every variable the run registered or set, so the fact cache holds what the run kept in memory, results
of ``no_log`` tasks included, as a site that caches facts for AWX/AAP would keep them.

Then it scans the runs' stdout and stderr, the Ansible log, every report the playbooks wrote (JSON, CSV, HTML,
``.progress``), every file under both MSL host directories (config db, event log, NTP config, lock files; only the
credential directory's key files and their backups are skipped: they are the key by design, and are checked to be
``0600``), the controller's side (the inventory, the pin, no staging file left; the key copies skipped), the modules'
temporary directory (``ansible_remote_tmp``, on MSL and for delegated tasks: what a run leaves there), the fact
cache, and molecule's files (``~/.cache/molecule``, untracked files under ``extensions/molecule/*/``) when present.
None of these may hold:

- PEM armour (``-----BEGIN``) or ``PRIVATE KEY``;
- base64 from a key: the DER body of each private key (the lab's, the rotated one, the admin credential's), the base64
  of each key file's bytes as on the controller and on MSL (what ``slurp`` would show) and of the P12s. Each is cut
  into 50-character chunks at offsets 0, 50, 100...; any leaked run of 99 or more characters contains a whole chunk.
  The text is searched with line breaks, spaces, escaped ``\\n`` and ``\\/`` removed, so a PEM body leaked line by
  line or JSON-escaped is found too;
- a JWT (three base64url segments, the first starting ``eyJ``), an XOAUTH2 initial response (base64 of
  ``user=...^Aauth=Bearer ...``), a ``ya29.`` token;
- each exact access token (and its random part after ``ya29.c.``) and assertion the lab issued during the run
  (``GET /_lab/issued``), each assertion's signature segment, and each token's XOAUTH2 initial response as Dovecot
  receives it.

``SWEEP`` holds what was scanned (files, bytes, patterns, exact strings), printed at the end for the closing note.
"""

import base64
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.integration.playbook import REPO_ROOT, PlaybookRun, run_playbook
from tests.lab.google import jwtutil
from tests.unit import keyfactory

pytestmark = [pytest.mark.lab, pytest.mark.slow]

HOSTS = ("msl1", "msl2")
ADMIN_PROJECT = "nupoint-sweep-admin"
ADMIN_SA = "key-admin@%s.iam.gserviceaccount.com" % ADMIN_PROJECT
# Key material in base64 is searched as chunks of this length at these offsets (see the module docstring).
CHUNK = 50
# The regular expressions every scanned text is searched with (on the raw text).
PATTERNS = {
    "PEM armour": re.compile(r"-----BEGIN"),
    "PRIVATE KEY": re.compile(r"PRIVATE KEY"),
    "JWT": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "access token": re.compile(r"ya29\.[A-Za-z0-9_.-]{8,}"),
    # base64("user=") starts dXNlcj; an XOAUTH2 initial response is that plus the address and the bearer token.
    "XOAUTH2 initial response": re.compile(r"dXNlcj[A-Za-z0-9+/]{60,}"),
}
# Files under a credential directory that are the key by design (and their backups, msl.backup_path_for).
KEY_FILE = re.compile(r"^service-account\.(json|p12)(\.\d+\.[^/]*~)?$")
# What the sweep scanned, filled by the test and printed at its end.
SWEEP: dict[str, int] = {}


# ----------------------------------------------------------------------------- the needles
def chunks(text: str) -> list[str]:
    return [text[i : i + CHUNK] for i in range(0, len(text) - CHUNK + 1, CHUNK)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def key_der_b64(private_key: Any) -> str:
    der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return b64(der)


def key_of_json(data: bytes) -> Any:
    document = json.loads(data)
    return serialization.load_pem_private_key(document["private_key"].encode(), None)


class Needles:
    """Every string whose presence in a scanned text is a leak."""

    def __init__(self) -> None:
        self.base64_chunks: dict[str, str] = {}  # chunk -> what it is from
        self.exact: dict[str, str] = {}  # exact string (tokens, assertions, XOAUTH2) -> what it is

    def add_base64(self, text: str, what: str) -> None:
        for piece in chunks(text):
            self.base64_chunks.setdefault(piece, what)

    def add_key_json(self, data: bytes, what: str) -> None:
        """A JSON key file: the DER body of its private key, and the base64 of the file's bytes."""
        self.add_base64(key_der_b64(key_of_json(data)), what + " (private key, DER base64)")
        self.add_base64(b64(data), what + " (file bytes, base64)")

    def add_p12(self, data: bytes, password: bytes, what: str) -> None:
        self.add_base64(b64(data), what + " (P12, base64)")
        private_key, _cert, _extra = pkcs12.load_key_and_certificates(data, password)
        self.add_base64(key_der_b64(private_key), what + " (P12's private key, DER base64)")

    def add_issued(self, issued: dict[str, Any]) -> int:
        assert issued["dropped"] == 0, "the lab's issued log overflowed: the sweep would miss tokens"
        for entry in issued["issued"]:
            token, assertion = entry["access_token"], entry["assertion"]
            self.exact[token] = "access token for %s" % (entry["subject"] or entry["account"])
            # The random part alone too (a token printed without its ya29.c. prefix).
            self.exact[token.rsplit(".", 1)[1]] = "access token for %s" % (entry["subject"] or entry["account"])
            self.exact[assertion] = "assertion for %s" % (entry["subject"] or entry["account"])
            self.exact[assertion.rsplit(".", 1)[1]] = "assertion signature for %s" % entry["subject"]
            if entry["subject"]:
                sasl = "user=%s\x01auth=Bearer %s\x01\x01" % (entry["subject"], token)
                self.exact[b64(sasl.encode())] = "XOAUTH2 initial response for %s" % entry["subject"]
        return len(issued["issued"])


# ----------------------------------------------------------------------------- the haystack
def normalized(text: str) -> str:
    """Line breaks, spaces, escaped newlines and escaped slashes out: a PEM body leaked line by line becomes one run."""
    return re.sub(r"\\+[nr]|\s+", "", text.replace("\\/", "/"))


BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{%d,}" % CHUNK)
URLSAFE_RUN = re.compile(r"[A-Za-z0-9+/=_.-]{20,}")


def scan(texts: dict[str, str], needles: Needles) -> list[str]:
    """Every leak in ``texts`` (name -> content), as ``name: what`` lines (never the secret itself)."""
    findings = []
    for name, text in texts.items():
        for label, pattern in PATTERNS.items():
            for match in pattern.finditer(text):
                findings.append("%s: %s at offset %d" % (name, label, match.start()))
        # Substring searches run over the text's runs of base64 characters only (a fraction of the text).
        base64_runs = "\n".join(BASE64_RUN.findall(normalized(text)))
        for piece, what in needles.base64_chunks.items():
            if piece in base64_runs:
                findings.append("%s: %s" % (name, what))
        token_runs = "\n".join(URLSAFE_RUN.findall(text))
        for needle, what in needles.exact.items():
            if needle in token_runs:
                findings.append("%s: %s" % (name, what))
    return findings


def read_tree(root: Path, label: str, skip: Any = None) -> dict[str, str]:
    texts = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or (skip is not None and skip(path)):
            continue
        texts["%s/%s" % (label, path.relative_to(root))] = path.read_bytes().decode("latin-1")
    return texts


def molecule_texts() -> dict[str, str]:
    """Molecule's ephemeral directories and anything untracked under the scenarios, when present."""
    texts: dict[str, str] = {}
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "molecule"
    if cache.is_dir():
        texts.update(read_tree(cache, "molecule-cache"))
    listed = subprocess.run(
        ["git", "ls-files", "--others", "--", "extensions/molecule"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    for name in listed.stdout.splitlines():
        path = Path(REPO_ROOT, name)
        if path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts:
            texts["repo/" + name] = path.read_bytes().decode("latin-1")
    return texts


def test_the_sweep_finds_each_kind_of_leak():
    """The scanner itself, without the lab: each way a secret could be written is found, clean text is not."""
    key = keyfactory.rsa_key(index=9)
    document = keyfactory.key_json(key)
    pem = keyfactory.pem_pkcs8(key)
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    p12 = keyfactory.p12_bytes(key)
    token, assertion = "ya29.c." + "Q" * 40 + "x7_-" * 20, "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0." + "s1g-_" * 60
    needles = Needles()
    needles.add_key_json(document.encode(), "key")
    needles.add_p12(p12, b"notasecret", "p12")
    issued = {"issued": [{"access_token": token, "assertion": assertion, "account": "sa", "subject": "u@x.test"}]}
    assert needles.add_issued(dict(issued, dropped=0)) == 1
    sasl = b64(("user=u@x.test\x01auth=Bearer %s\x01\x01" % token).encode())
    lines = pem.splitlines()[1:-1]
    planted = {
        "pem": ("msg: %s" % pem, "PEM armour"),
        "json-escaped": (json.dumps({"content": document})[400:900], "key (private key, DER base64)"),
        "lines only": ("\n".join("  " + line for line in lines[3:6]), "key (private key, DER base64)"),
        "slurped": ('{"content": "%s", "encoding": "base64"}' % b64(document.encode()), "key (file bytes, base64)"),
        "p12": ("p12_content=" + b64(p12)[200:400], "p12 (P12, base64)"),
        "token": ("Authorization: Bearer " + token[7:], "access token for u@x.test"),
        "jwt": ("presigned: " + assertion, "JWT"),
        "signature": ("sig=" + assertion.rsplit(".", 1)[1], "assertion signature for u@x.test"),
        "xoauth2": ("AUTHENTICATE XOAUTH2 " + sasl, "XOAUTH2 initial response for u@x.test"),
    }
    for name, (text, expected) in planted.items():
        found = scan({name: text}, needles)
        assert any(line.startswith("%s: %s" % (name, expected)) for line in found), (name, found)
        assert token not in "\n".join(found) and body[:CHUNK] not in "\n".join(found)
    clean = {
        "clean": "key %s of %s, sha256 %s; 50 users; /var/lib/nupoint/oauth/service-account.json"
        % ("a" * 40, keyfactory.CLIENT_EMAIL, "0f" * 32)
    }
    assert scan(clean, needles) == []


# ----------------------------------------------------------------------------- the runs
@pytest.fixture
def rig(lab, lab_reset, msl_clean, tmp_path):
    """The controller's copy of the key, an admin credential the lab honours, a fact cache, a log, report dirs."""
    admin_key = keyfactory.rsa_key(index=8)
    admin = keyfactory.key_dict(
        admin_key,
        client_email=ADMIN_SA,
        client_id="880000000000000000008",
        project_id=ADMIN_PROJECT,
        token_uri=lab.token_uri,
    )
    lab.google.add_service_account(ADMIN_SA, admin["client_id"], ADMIN_PROJECT)
    lab.google.register_key(ADMIN_SA, admin["private_key_id"], jwtutil.public_key_pem(admin_key))
    lab.google.add_project(lab.project_id, admins=[ADMIN_SA])
    controller = tmp_path / "controller"
    (controller / "keys").mkdir(parents=True)
    admin_src = controller / "keys" / "admin.json"
    admin_src.write_text(json.dumps(admin))
    key_src = controller / "keys" / "nupoint-sa.json"
    shutil.copyfile(lab.key_file, key_src)
    for path in (admin_src, key_src):
        path.chmod(0o600)
    for name in ("facts", "reports", "output", "remote-tmp"):
        (tmp_path / name).mkdir()
    return {
        "lab": lab,
        "tmp": tmp_path,
        "controller": controller,
        "key_src": key_src,
        "admin_src": admin_src,
        "fingerprint": lab.public_key_sha256,
        "runs": [],
    }


def wrapper(rig: dict[str, Any], name: str, label: str) -> str:
    """The playbook, then a play that caches every variable the run registered or set (no_log: the cache only)."""
    names = (
        "{{ hostvars[inventory_hostname].keys() | select('match', "
        "'^_*(oauth_credentials|post_restore|verify|provision|key_rotation|time_sync)_') | list }}"
    )
    plays = [
        {"import_playbook": "nupoint.gworkspace." + name},
        {
            "name": "Cache what the run kept in each host's variables",
            "hosts": "msl",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Cache the run's variables",
                    "ansible.builtin.set_fact": {
                        "cacheable": True,
                        "secret_sweep_" + label.replace("-", "_"): (
                            "{{ dict(sweep_names | zip(sweep_names | map('extract', hostvars[inventory_hostname]))) }}"
                        ),
                    },
                    "vars": {"sweep_names": names},
                    "no_log": True,
                }
            ],
        },
    ]
    path = rig["tmp"] / ("%s.yml" % label)
    path.write_text(yaml.safe_dump(plays, sort_keys=False))
    return str(path)


def run(rig: dict[str, Any], name: str, label: str, check: bool = False, **overrides: Any) -> PlaybookRun:
    lab, tmp = rig["lab"], rig["tmp"]
    reports = tmp / "reports" / label
    reports.mkdir()
    variables = {
        "gworkspace_key_src": str(rig["key_src"]),
        "gworkspace_um_users": "{{ gworkspace_um_users_file }}",
        "gworkspace_expected_client_id": lab.client_id,
        "gworkspace_expected_client_email": lab.client_email,
        "gworkspace_key_fingerprint": rig["fingerprint"],
        "gworkspace_admin_key_src": str(rig["admin_src"]),
        "gworkspace_imap_report_dir": str(reports),
        "post_restore_imap_report_dir": str(reports),
        "time_sync_samples": 1,
        "time_sync_sample_interval": 0.2,
        # The modules' files on MSL and on the controller (delegated tasks): whatever a run leaves there is scanned.
        "ansible_remote_tmp": str(tmp / "remote-tmp"),
    }
    variables.update(overrides)
    inventory = rig["controller"] / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"vars": variables}}))
    result = run_playbook(
        wrapper(rig, name, label),
        inventory=lab.inventory_path,
        extra_args=["-i", str(inventory)],
        check=check,
        diff=check,
        verbosity=3,
        env={
            "ANSIBLE_CACHE_PLUGIN": "jsonfile",
            "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp / "facts"),
            "ANSIBLE_LOG_PATH": str(tmp / "output" / "ansible.log"),
        },
    )
    (tmp / "output" / ("%s.stdout" % label)).write_text(result.stdout)
    (tmp / "output" / ("%s.stderr" % label)).write_text(result.stderr)
    rig["runs"].append(label)
    assert result.rc == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result


def pin_of(result: PlaybookRun) -> str:
    text = "\n".join(result.result("nupoint.gworkspace.key_rotation : Report the rotation", host="msl1")["msg"])
    match = re.search(r'gworkspace_key_fingerprint: "([0-9a-fA-F:]+)"', text)
    assert match, text
    return match.group(1)


def test_no_secret_in_anything_the_playbooks_print_or_leave(rig, figure):
    lab, tmp = rig["lab"], rig["tmp"]
    needles = Needles()
    needles.add_key_json(Path(lab.key_file).read_bytes(), "the lab's key")
    needles.add_key_json(rig["admin_src"].read_bytes(), "the admin credential")
    needles.add_p12(Path(lab.p12_file).read_bytes(), lab.p12_password.encode(), "the lab's P12")

    run(rig, "provision", "provision-check", check=True)
    run(rig, "provision", "provision")
    run(rig, "verify", "verify")
    lab.restore_msl("msl1")
    run(rig, "post_restore", "post-restore")
    old_id = lab.private_key_id
    rotated = run(rig, "rotate_key", "rotate-key", key_rotation_force=True)
    rig["fingerprint"] = pin_of(rotated)
    new_key = rig["key_src"].read_bytes()
    assert json.loads(new_key)["private_key_id"] != old_id, "the rotation did not replace the controller's copy"
    needles.add_key_json(new_key, "the rotated key")
    tokens = needles.add_issued(lab.google.issued_tokens())
    # Every run signed assertions and logged in: a sweep without tokens to look for would prove nothing.
    assert tokens >= 3 * lab.users_count, tokens

    # What the sweep reads, and what it skips (the keys by design, checked for their modes instead).
    texts: dict[str, str] = {}
    texts.update(read_tree(tmp / "output", "output"))
    texts.update(read_tree(tmp / "reports", "reports"))
    texts.update(read_tree(tmp / "facts", "fact-cache"))
    remote_tmp = read_tree(tmp / "remote-tmp", "remote-tmp")
    # The runs' modules did use it (on MSL and for the tasks delegated to the controller).
    assert str(tmp / "remote-tmp") in texts["output/provision.stdout"]
    texts.update(remote_tmp)
    skipped = []

    def controller_key(path: Path) -> bool:
        if path in (rig["key_src"], rig["admin_src"]):
            skipped.append(path)
            return True
        return False

    texts.update(read_tree(rig["controller"], "controller", controller_key))
    for host in HOSTS:
        credential_dir = Path(lab.credential_dir(host))

        def msl_key(path: Path, credential_dir: Path = credential_dir) -> bool:
            if path.parent == credential_dir and KEY_FILE.match(path.name):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
                if path.suffix == ".json":
                    needles.add_key_json(path.read_bytes(), "the key installed on %s" % path.parent)
                skipped.append(path)
                return True
            return False

        texts.update(read_tree(Path(lab.msl_root(host)), host, msl_key))
        assert stat.S_IMODE(credential_dir.stat().st_mode) == 0o700
    molecule = molecule_texts()
    if molecule:
        # Molecule runs against the default lab, or one per pytest-xdist worker (.lab-gw1...): their keys could leak.
        for lab_key in sorted(Path(REPO_ROOT).glob(".lab*/keys/sa.json")):
            needles.add_key_json(lab_key.read_bytes(), "the key of the lab in %s" % lab_key.parents[1].name)
    texts.update(molecule)

    # The sweep saw what it claims to: every kind of report, a fact cache with every run, both hosts' db.
    names = list(texts)
    for suffix in (".json", ".csv", ".html", ".progress"):
        assert any(n.startswith("reports/") and n.endswith(suffix) for n in names), suffix
    cache = "\n".join(text for name, text in texts.items() if name.startswith("fact-cache/"))
    for label in rig["runs"]:
        assert '"secret_sweep_%s"' % label.replace("-", "_") in cache, label
    for host in HOSTS:
        assert "%s/home/e-smith/db/configuration" % host in names
    assert len(skipped) >= 3  # both hosts' key files and the controller's copies

    findings = scan(texts, needles)
    SWEEP.update(
        {
            "playbook_runs": len(rig["runs"]),
            "files": len(texts),
            "bytes": sum(len(text) for text in texts.values()),
            "molecule_files": len(molecule),
            "remote_tmp_files": len(remote_tmp),
            "skipped_key_files": len(skipped),
            "patterns": len(PATTERNS),
            "base64_chunks": len(needles.base64_chunks),
            "exact_strings": len(needles.exact),
            "tokens_issued": tokens,
        }
    )
    figure("secret sweep: " + ", ".join("%s=%d" % item for item in SWEEP.items()))
    assert findings == [], "\n".join(findings[:50])
