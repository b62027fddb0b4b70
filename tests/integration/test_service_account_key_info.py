"""service_account_key_info through ansible-playbook: results, failures, and no key material at -vvv."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.playbook import run_playbook
from tests.unit import keyfactory as kf

ANSIBLE_VAULT = os.path.join(os.path.dirname(sys.executable), "ansible-vault")


@pytest.fixture(scope="module")
def key_material(tmp_path_factory):
    key = kf.rsa_key()
    directory = tmp_path_factory.mktemp("keys")
    json_path = directory / "sa.json"
    json_path.write_text(kf.key_json(key))
    p12_path = directory / "sa.p12"
    p12_path.write_bytes(kf.p12_bytes(key))
    other_p12 = directory / "other.p12"
    other_p12.write_bytes(kf.p12_bytes(kf.rsa_key(index=1), client_id=kf.OTHER_CLIENT_ID))
    truncated = directory / "truncated.json"
    truncated.write_text(kf.key_json(key)[:900])
    return {
        "key": key,
        "json": str(json_path),
        "p12": str(p12_path),
        "other_p12": str(other_p12),
        "truncated": str(truncated),
    }


def play(tasks):
    return [{"name": "key info", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]


def test_valid_key_from_path_and_content(key_material):
    run = run_playbook(
        play(
            [
                {
                    "name": "from path",
                    "nupoint.gworkspace.service_account_key_info": {
                        "path": key_material["json"],
                        "p12_path": key_material["p12"],
                    },
                },
                {
                    "name": "from content",
                    "nupoint.gworkspace.service_account_key_info": {
                        "content": "{{ lookup('ansible.builtin.file', '%s') }}" % key_material["json"]
                    },
                },
            ]
        )
    )
    assert run.rc == 0, run.stdout + run.stderr
    from_path = run.result("from path")
    assert from_path["client_id"] == kf.CLIENT_ID
    assert from_path["p12_matches"] is True
    assert from_path["changed"] is False
    assert run.result("from content")["public_key_fingerprint_sha256"] == from_path["public_key_fingerprint_sha256"]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"path": "truncated"}, "not_json"),
        ({"path": "json", "p12_path": "other_p12"}, "p12_mismatch"),
        ({"path": "json", "p12_path": "p12", "p12_password": "wrong"}, "p12_password"),
    ],
)
def test_bad_input_fails_with_reason(key_material, args, reason):
    module_args = {name: key_material.get(value, value) for name, value in args.items()}
    run = run_playbook(play([{"name": "check", "nupoint.gworkspace.service_account_key_info": module_args}]))
    assert run.rc != 0
    result = run.result("check")
    assert result["failed"] is True
    assert result["reason"] == reason


def test_no_key_material_in_verbose_output(key_material):
    """-vvv prints module arguments and results; the key must not be in either, on success or failure."""
    run = run_playbook(
        play(
            [
                {
                    "name": "content",
                    "nupoint.gworkspace.service_account_key_info": {
                        "content": "{{ lookup('ansible.builtin.file', '%s') }}" % key_material["json"],
                        "p12_path": key_material["p12"],
                    },
                },
                {
                    "name": "mismatch",
                    "nupoint.gworkspace.service_account_key_info": {
                        "content": "{{ lookup('ansible.builtin.file', '%s') }}" % key_material["json"],
                        "p12_path": key_material["other_p12"],
                    },
                    "ignore_errors": True,
                },
            ]
        ),
        verbosity=3,
    )
    output = run.stdout + run.stderr
    assert run.rc == 0, output
    assert "p12_mismatch" in output
    assert kf.CLIENT_ID in output
    for marker in kf.secret_markers(key_material["key"]):
        assert marker not in output


def vault_encrypt(source: str, target: Path, password_file: Path) -> None:
    target.write_bytes(Path(source).read_bytes())
    subprocess.run(
        [ANSIBLE_VAULT, "encrypt", "--vault-password-file", str(password_file), str(target)],
        check=True,
        capture_output=True,
    )


def test_vaulted_src_and_p12_src_are_read_on_the_controller(key_material, tmp_path):
    password_file = tmp_path / "vault-password"
    password_file.write_text("unit vault password\n")
    vault_json, vault_p12 = tmp_path / "sa.json.vault", tmp_path / "sa.p12.vault"
    vault_encrypt(key_material["json"], vault_json, password_file)
    vault_encrypt(key_material["p12"], vault_p12, password_file)
    tasks = [
        {
            "name": "vaulted",
            "nupoint.gworkspace.service_account_key_info": {"src": str(vault_json), "p12_src": str(vault_p12)},
        },
        {
            "name": "async",
            "nupoint.gworkspace.service_account_key_info": {"src": str(vault_json), "p12_src": str(vault_p12)},
            "async": 60,
            "poll": 1,
        },
        {
            "name": "two keys",
            "nupoint.gworkspace.service_account_key_info": {"src": str(vault_json), "path": key_material["json"]},
            "ignore_errors": True,
        },
    ]
    run = run_playbook(play(tasks), verbosity=3, extra_args=["--vault-password-file", str(password_file)])
    output = run.stdout + run.stderr
    assert run.rc == 0, output
    vaulted = run.result("vaulted")
    assert vaulted["client_id"] == kf.CLIENT_ID
    assert vaulted["p12_matches"] is True
    assert vaulted["invocation"]["module_args"] == {"src": str(vault_json), "p12_src": str(vault_p12)}
    assert run.result("async")["public_key_fingerprint_sha256"] == vaulted["public_key_fingerprint_sha256"]
    two_keys = run.result("two keys")
    assert (two_keys["reason"], two_keys["field"]) == ("bad_field", "src")
    assert two_keys["msg"] == "Give the key as one of src, content or path, not src and path."
    for marker in kf.secret_markers(key_material["key"]):
        assert marker not in output
