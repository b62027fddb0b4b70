"""msl_oauth_credentials(_info) against the lab: msl1 over real SSH, keys read on the controller.

Each stateful test follows the four-step pattern (check, real, check again, real again) inside one
playbook (task-level ``check_mode``), and every refused input is shown to leave msl1's credential
directory, config db and event log exactly as they were.
"""

import base64
import json
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.integration.playbook import run_playbook
from tests.unit import keyfactory as kf

pytestmark = [pytest.mark.lab, pytest.mark.slow]

HOST = "msl1"
MSL_ARGS = {
    "db_command": "{{ gworkspace_msl_db_command }}",
    "signal_event_command": "{{ gworkspace_msl_signal_event_command }}",
    "credential_dir": "{{ gworkspace_msl_credential_dir }}",
}
MODULE_DEFAULTS = {
    "nupoint.gworkspace.msl_oauth_credentials": MSL_ARGS,
    "nupoint.gworkspace.msl_oauth_credentials_info": MSL_ARGS,
}
ANSIBLE_VAULT = os.path.join(os.path.dirname(sys.executable), "ansible-vault")


def play(tasks: list[dict[str, Any]], hosts: str = HOST) -> list[dict[str, Any]]:
    return [
        {
            "name": "oauth credentials",
            "hosts": hosts,
            "gather_facts": False,
            "module_defaults": MODULE_DEFAULTS,
            "tasks": tasks,
        }
    ]


def install(name: str, check: bool = False, ignore_errors: bool = False, **args: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"name": name, "nupoint.gworkspace.msl_oauth_credentials": args, "diff": True}
    if check:
        task["check_mode"] = True
    if ignore_errors:
        task["ignore_errors"] = True
    return task


def info(name: str = "info") -> dict[str, Any]:
    return {"name": name, "nupoint.gworkspace.msl_oauth_credentials_info": {}}


def host_snapshot(lab: Any, host: str = HOST) -> dict[str, Any]:
    """msl1's credential dir (names, modes, bytes), config db file and event log, read on the host's disk."""
    paths = lab.msl_paths(host)
    files = {}
    credential_dir = Path(paths["credential_dir"])
    if credential_dir.exists():
        files["."] = oct(stat.S_IMODE(credential_dir.stat().st_mode))
        for path in sorted(credential_dir.iterdir()):
            files[path.name] = (oct(stat.S_IMODE(path.stat().st_mode)), path.read_bytes())
    return {
        "files": files,
        "db": Path(paths["db_file"]).read_text(),
        "events": lab.signal_events(host),
    }


def plain(fingerprint: str) -> str:
    """The lab writes fingerprints as bare hex; the collection as colon-separated pairs."""
    return fingerprint.strip().replace(":", "").lower()


def lab_key(lab: Any) -> Any:
    data = json.loads(Path(lab.key_file).read_text())
    return serialization.load_pem_private_key(data["private_key"].encode(), password=None)


def second_key_json(lab: Any, index: int = 2) -> tuple[Any, str, str]:
    """Another key of the lab's service account, registered with the emulated Google (as IAM would create it)."""
    key = kf.rsa_key(index=index)
    private_key_id = "%040x" % (0xC0FFEE + index)
    lab.google.register_key(
        lab.client_email,
        private_key_id,
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    )
    data = json.loads(Path(lab.key_file).read_text())
    data.update(private_key_id=private_key_id, private_key=kf.pem_pkcs8(key))
    return key, private_key_id, json.dumps(data, indent=2) + "\n"


def test_install_four_steps_over_ssh(lab, msl_clean):
    run = run_playbook(
        play(
            [
                install("check", check=True, src="{{ gworkspace_key_file }}", p12_src="{{ gworkspace_p12_file }}"),
                install("real", src="{{ gworkspace_key_file }}", p12_src="{{ gworkspace_p12_file }}"),
                install(
                    "check again", check=True, src="{{ gworkspace_key_file }}", p12_src="{{ gworkspace_p12_file }}"
                ),
                install("real again", src="{{ gworkspace_key_file }}", p12_src="{{ gworkspace_p12_file }}"),
                info(),
            ]
        ),
        inventory=lab.inventory_path,
    )
    assert run.rc == 0, run.stdout + run.stderr
    check, real = run.result("check"), run.result("real")
    assert (check["changed"], real["changed"]) == (True, True)
    assert check["changes"] == ["key_file", "p12_file", "record", "directory_mode"]
    assert check["diff"]["before"] == {"present": False}
    assert (run.result("check again")["changed"], run.result("real again")["changed"]) == (False, False)
    assert plain(real["fingerprint_sha256"]) == lab.public_key_sha256
    assert real["client_id"] == lab.client_id
    assert real["private_key_id"] == lab.private_key_id
    assert run.result("real again")["installed_at"] == real["installed_at"]

    credential_dir = Path(lab.credential_dir(HOST))
    assert stat.S_IMODE(credential_dir.stat().st_mode) == 0o700
    for name, source in (("service-account.json", lab.key_file), ("service-account.p12", lab.p12_file)):
        path = credential_dir / name
        assert path.read_bytes() == Path(source).read_bytes()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert (path.stat().st_uid, path.stat().st_gid) == (0, 0)
    assert plain(lab.db(HOST, "configuration", "getprop", "nupoint-oauth", "Fingerprint").stdout) == (
        lab.public_key_sha256
    )
    assert lab.signal_events(HOST).count("nupoint-oauth-update") == 1
    state = run.result("info")
    assert state["present"] is True
    assert state["consistent"] is True
    assert state["permission_problems"] == []
    assert plain(state["fingerprint_sha256"]) == lab.public_key_sha256


def test_rotation_to_a_second_key_with_backup(lab, lab_reset, msl_clean, tmp_path):
    _key, private_key_id, second = second_key_json(lab)
    second_file = tmp_path / "second.json"
    second_file.write_text(second)
    run = run_playbook(
        play(
            [
                install("first", src="{{ gworkspace_key_file }}", p12_src="{{ gworkspace_p12_file }}"),
                install("rotate check", check=True, src=str(second_file), backup=True),
                install("rotate", src=str(second_file), backup=True),
                install("rotate again", src=str(second_file), backup=True),
                info(),
            ]
        ),
        inventory=lab.inventory_path,
    )
    assert run.rc == 0, run.stdout + run.stderr
    rotate = run.result("rotate")
    assert run.result("rotate check")["changed"] is True
    assert rotate["changed"] is True
    assert rotate["changes"] == ["key_file", "p12_file", "record"]
    assert rotate["diff"]["before"]["private_key_id"] == lab.private_key_id
    assert rotate["diff"]["after"]["private_key_id"] == private_key_id
    assert run.result("rotate again")["changed"] is False
    assert Path(rotate["backup_file"]).read_bytes() == Path(lab.key_file).read_bytes()
    assert Path(rotate["p12_backup_file"]).read_bytes() == Path(lab.p12_file).read_bytes()
    assert stat.S_IMODE(Path(rotate["backup_file"]).stat().st_mode) == 0o600
    assert not (Path(lab.credential_dir(HOST)) / "service-account.p12").exists()
    assert run.result("info")["private_key_id"] == private_key_id
    assert run.result("info")["consistent"] is True
    assert lab.signal_events(HOST).count("nupoint-oauth-update") == 2


def vault_encrypt(source: str, target: Path, password_file: Path) -> None:
    target.write_bytes(Path(source).read_bytes())
    subprocess.run(
        [ANSIBLE_VAULT, "encrypt", "--vault-password-file", str(password_file), str(target)],
        check=True,
        capture_output=True,
    )
    assert target.read_bytes().startswith(b"$ANSIBLE_VAULT;")


def test_vault_encrypted_src_and_p12(lab, msl_clean, tmp_path):
    password_file = tmp_path / "vault-password"
    password_file.write_text("lab vault password\n")
    vault_json, vault_p12 = tmp_path / "sa.json.vault", tmp_path / "sa.p12.vault"
    vault_encrypt(lab.key_file, vault_json, password_file)
    vault_encrypt(lab.p12_file, vault_p12, password_file)
    run = run_playbook(
        play([install("vaulted", src=str(vault_json), p12_src=str(vault_p12)), info()]),
        inventory=lab.inventory_path,
        extra_args=["--vault-password-file", str(password_file)],
    )
    assert run.rc == 0, run.stdout + run.stderr
    assert plain(run.result("vaulted")["fingerprint_sha256"]) == lab.public_key_sha256
    credential_dir = Path(lab.credential_dir(HOST))
    # MSL gets the decrypted key, byte for byte (and the binary P12 intact).
    assert (credential_dir / "service-account.json").read_bytes() == Path(lab.key_file).read_bytes()
    assert (credential_dir / "service-account.p12").read_bytes() == Path(lab.p12_file).read_bytes()
    assert run.result("info")["consistent"] is True

    without_password = run_playbook(
        play([install("no vault password", src=str(vault_json))]), inventory=lab.inventory_path
    )
    assert without_password.rc != 0
    assert without_password.result("no vault password")["reason"] == "read_error"


def bad_input_files(lab: Any, tmp_path: Path) -> dict[str, str]:
    good = Path(lab.key_file).read_text()
    other = kf.rsa_key(index=3)
    files = {
        "truncated": good[: len(good) // 2],
        "not_json": "this is not a key\n",
        "client_secret": json.dumps({"installed": {"client_id": "x.apps.googleusercontent.com"}}),
        "weak_key": json.dumps(dict(json.loads(good), private_key=kf.pem_pkcs8(kf.rsa_key(bits=1024)))),
    }
    paths = {}
    for name, text in files.items():
        path = tmp_path / (name + ".json")
        path.write_text(text)
        paths[name] = str(path)
    other_p12 = tmp_path / "other.p12"
    other_p12.write_bytes(kf.p12_bytes(other, client_id=kf.OTHER_CLIENT_ID))
    paths["other_p12"] = str(other_p12)
    return paths


BAD_CASES = [
    # (task name, module args, expected reason)
    ("truncated json", {"src": "{truncated}"}, "not_json"),
    ("not json", {"src": "{not_json}"}, "not_json"),
    ("client secret file", {"src": "{client_secret}"}, "wrong_type"),
    ("1024-bit key", {"src": "{weak_key}"}, "weak_private_key"),
    ("p12 of another key", {"src": "{gworkspace_key_file}", "p12_src": "{other_p12}"}, "p12_mismatch"),
    (
        "wrong p12 password",
        {"src": "{gworkspace_key_file}", "p12_src": "{gworkspace_p12_file}", "p12_password": "wrong"},
        "p12_password",
    ),
    ("missing src", {"src": "/nonexistent/sa.json"}, "read_error"),
    ("unexpected client id", {"src": "{gworkspace_key_file}", "expected_client_id": "123456789012"}, "unexpected_key"),
    (
        "unexpected email",
        {"src": "{gworkspace_key_file}", "expected_client_email": "other@x.iam.gserviceaccount.com"},
        "unexpected_key",
    ),
    ("unexpected fingerprint", {"src": "{gworkspace_key_file}", "expected_fingerprint": "00:11:22"}, "unexpected_key"),
]


def test_every_bad_input_changes_nothing_on_msl(lab, msl_clean, tmp_path):
    files = bad_input_files(lab, tmp_path)
    first = run_playbook(
        play([install("good key", src="{{ gworkspace_key_file }}", p12_src="{{ gworkspace_p12_file }}")]),
        inventory=lab.inventory_path,
    )
    assert first.rc == 0, first.stdout + first.stderr
    before = host_snapshot(lab)

    def resolve(value: str) -> str:
        if value.startswith("{gworkspace_"):
            return "{{ %s }}" % value.strip("{}")
        if value.startswith("{"):
            return files[value.strip("{}")]
        return value

    tasks = [
        install(name, check=False, ignore_errors=True, **{option: resolve(value) for option, value in args.items()})
        for name, args, _reason in BAD_CASES
    ]
    run = run_playbook(play(tasks), inventory=lab.inventory_path)
    for name, _args, reason in BAD_CASES:
        result = run.result(name)
        assert result["failed"] is True, name
        assert result["reason"] == reason, (name, result["msg"])
        assert result["changed"] is False
    mismatch = run.result("unexpected client id")["msg"]
    assert "client ID is %s, expected 123456789012" % lab.client_id in mismatch
    assert "Nothing was changed" in mismatch
    assert host_snapshot(lab) == before


def test_restore_drops_credentials_and_info_says_so(lab, msl_clean):
    run = run_playbook(
        play([install("install", src="{{ gworkspace_key_file }}"), info("before restore")]),
        inventory=lab.inventory_path,
    )
    assert run.rc == 0, run.stdout + run.stderr
    assert run.result("before restore")["present"] is True
    restore = subprocess.run(
        [sys.executable, "-m", "tests.lab", "restore-msl", HOST],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        capture_output=True,
        text=True,
        check=False,
    )
    assert restore.returncode == 0, restore.stdout + restore.stderr
    after = run_playbook(play([info("after restore")]), inventory=lab.inventory_path)
    state = after.result("after restore")
    assert state["present"] is False
    assert state["record"] is None
    assert state["consistent"] is True
    again = run_playbook(play([install("reinstall", src="{{ gworkspace_key_file }}")]), inventory=lab.inventory_path)
    assert again.result("reinstall")["changed"] is True


def test_absent_four_steps(lab, msl_clean):
    absent = {"state": "absent", "backup": True}
    run = run_playbook(
        play(
            [
                install("install", src="{{ gworkspace_key_file }}"),
                install("check", check=True, **absent),
                install("real", **absent),
                install("check again", check=True, **absent),
                install("real again", **absent),
                info(),
            ]
        ),
        inventory=lab.inventory_path,
    )
    assert run.rc == 0, run.stdout + run.stderr
    assert [run.result(name)["changed"] for name in ("check", "real", "check again", "real again")] == [
        True,
        True,
        False,
        False,
    ]
    assert Path(run.result("real")["backup_file"]).read_bytes() == Path(lab.key_file).read_bytes()
    assert run.result("info")["present"] is False


def test_no_key_material_at_vvv(lab, lab_reset, msl_clean, tmp_path):
    """-vvv prints arguments, module invocations and results: no PEM, no key body, no P12, no access token."""
    run = run_playbook(
        play(
            [
                install("from src", src="{{ gworkspace_key_file }}", p12_src="{{ gworkspace_p12_file }}"),
                install(
                    "from content",
                    content="{{ lookup('ansible.builtin.file', gworkspace_key_file) }}",
                    backup=True,
                ),
                install(
                    "refused",
                    ignore_errors=True,
                    src="{{ gworkspace_key_file }}",
                    expected_fingerprint="00:11",
                ),
                info(),
                {
                    "name": "delegation from MSL, signed on the controller",
                    "nupoint.gworkspace.delegation_check": {
                        "src": "{{ gworkspace_key_file }}",
                        "subjects": ["{{ gworkspace_admin_subject }}", "ghost@example.test"],
                        "token_uri": "{{ gworkspace_token_uri }}",
                        "ca_path": "{{ gworkspace_ca_path }}",
                        "fail_on_error": False,
                    },
                },
                {
                    "name": "delegation from the controller",
                    "nupoint.gworkspace.delegation_check": {
                        "content": "{{ lookup('ansible.builtin.file', gworkspace_key_file) }}",
                        "subjects": ["{{ gworkspace_admin_subject }}"],
                        "token_uri": "{{ gworkspace_token_uri }}",
                        "ca_path": "{{ gworkspace_ca_path }}",
                    },
                    "delegate_to": "localhost",
                },
            ]
        ),
        inventory=lab.inventory_path,
        verbosity=3,
        diff=True,
    )
    output = run.stdout + run.stderr
    assert run.rc == 0, output
    assert lab.client_id in output  # the output is there, and ids are not masked
    assert run.result("delegation from MSL, signed on the controller")["checks"][0]["authorized"] is True
    assert "ya29." not in output
    assert not re.search(r"eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{20,}", output)  # no signed assertion
    for marker in kf.secret_markers(lab_key(lab)):
        assert marker not in output
    p12_b64 = base64.b64encode(Path(lab.p12_file).read_bytes()).decode()
    for start in (100, 600, 1200):
        assert p12_b64[start : start + 40] not in output


def test_two_runs_with_different_keys_at_once_end_with_one_consistent_key(lab, lab_reset, msl_clean, tmp_path):
    """Two playbooks install two keys on msl1 at the same moment: they take turns (the store's lock), never mix."""
    _key, private_key_id, second = second_key_json(lab)
    second_file = tmp_path / "second.json"
    second_file.write_text(second)
    sources = {"first": lab.key_file, "second": str(second_file)}
    runs: dict[str, Any] = {}

    def run(name: str) -> None:
        runs[name] = run_playbook(play([install(name, src=sources[name])] * 3), inventory=lab.inventory_path, diff=True)

    threads = [threading.Thread(target=run, args=(name,)) for name in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert set(runs) == set(sources)
    for result in runs.values():
        assert result.rc == 0, result.stdout + result.stderr

    paths = lab.msl_paths(HOST)
    installed = json.loads((Path(paths["credential_dir"]) / "service-account.json").read_text())
    first_id = json.loads(Path(lab.key_file).read_text())["private_key_id"]
    # The file is one whole key of the two ...
    assert installed["private_key_id"] in (first_id, private_key_id)
    # ... and the db record describes that same key (msl_oauth_credentials_info compares them).
    held = run_playbook(play([info()]), inventory=lab.inventory_path).result("info")
    assert held["private_key_id"] == installed["private_key_id"]
    assert held["consistent"] is True, held
