"""service_account_key_info through ansible-playbook: results, failures, and no key material at -vvv."""

import pytest

from tests.integration.playbook import run_playbook
from tests.unit import keyfactory as kf


@pytest.fixture(scope="module")
def key_material(tmp_path_factory):
    key = kf.rsa_key()
    directory = tmp_path_factory.mktemp("keys")
    json_path = directory / "sa.json"
    json_path.write_text(kf.key_json(key))
    p12_path = directory / "sa.p12"
    p12_path.write_bytes(kf.p12_bytes(key))
    other_p12 = directory / "other.p12"
    other_p12.write_bytes(kf.p12_bytes(kf.rsa_key(index=1)))
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
