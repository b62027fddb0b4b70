"""P12 files for older NuPoint releases, against the lab.

- a P12 of another key of the same account (what Google hands out when both files are downloaded) is accepted,
  said to be unproven (result field and warning) by service_account_key_info and msl_oauth_credentials, which
  installs it; service_account_keys_info with ``p12_pair`` proves it at Google, and no longer once that key is
  disabled;
- ``service_account_key`` ``p12_dest`` derives a P12 of the JSON key's own key pair, vault-encrypted like the key,
  kept while it matches, replaced when it holds another key pair; check mode writes nothing.

The admin credential is a service account of another project the lab lets administer the NuPoint project.
"""

import json
import os
import stat
from typing import Any

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.integration.lab_admin import add_admin
from tests.integration.playbook import run_playbook
from tests.lab.google.server import service_account_pkcs12
from tests.unit import keyfactory

pytestmark = [pytest.mark.lab]

VAULT_PASSWORD = "lab-vault-password"


@pytest.fixture
def rig(lab_reset, msl_clean, tmp_path):
    lab = lab_reset
    admin_src, _key = add_admin(lab, tmp_path / "admin.json", administers=(lab.project_id,))
    password = tmp_path / "vault-pass"
    password.write_text(VAULT_PASSWORD + "\n")
    return {
        "lab": lab,
        "tmp": tmp_path,
        "admin_src": str(admin_src),
        "vault_args": ["--vault-password-file", str(password)],
    }


def connection(rig: dict[str, Any]) -> dict[str, Any]:
    lab = rig["lab"]
    return {
        "src": rig["admin_src"],
        "token_uri": lab.token_uri,
        "ca_path": lab.ca_path,
        "api_base_url": lab.google_base_url,
    }


def localhost(*tasks: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "p12", "hosts": "localhost", "gather_facts": False, "tasks": list(tasks)}]


def key_task(rig: dict[str, Any], name: str = "key", **args: Any) -> dict[str, Any]:
    module_args = dict(connection(rig), service_account=rig["lab"].client_email)
    module_args.update(args)
    return {"name": name, "nupoint.gworkspace.service_account_key": module_args, "ignore_errors": True}


def decrypt(path: str) -> bytes:
    with open(path, "rb") as handle:
        return VaultLib([("default", VaultSecret(VAULT_PASSWORD.encode()))]).decrypt(handle.read())


def public_der(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_a_downloaded_pair_is_accepted_unproven_then_proven_at_google(rig):
    lab, tmp = rig["lab"], rig["tmp"]
    # Two downloads from Google: a JSON key and a P12 key, two key pairs of one account.
    json_dest, other_dest = str(tmp / "sa.json"), str(tmp / "other.json")
    for dest in (json_dest, other_dest):
        created = run_playbook(localhost(key_task(rig, dest=dest, encrypt="none"))).result("key")
        assert created["created"] is True, created
    with open(other_dest) as handle:
        other = json.load(handle)
    other_key = serialization.load_pem_private_key(other["private_key"].encode(), None)
    p12_path = tmp / "sa.p12"
    p12_path.write_bytes(service_account_pkcs12(other_key, lab.client_id))
    os.unlink(other_dest)  # only the P12 of that key is kept, as after a P12 download

    info = run_playbook(
        localhost(
            {
                "name": "info",
                "nupoint.gworkspace.service_account_key_info": {"src": json_dest, "p12_src": str(p12_path)},
            }
        )
    ).result("info")
    assert info["p12_matches"] is False and info["p12_same_account"] == "unproven", info
    assert any("did not check at Google" in warning for warning in info["warnings"])

    # msl_oauth_credentials installs the pair (it refused it before) and says the same.
    install = run_playbook(
        [
            {
                "name": "install",
                "hosts": "msl1",
                "gather_facts": False,
                "tasks": [
                    {
                        "name": "install",
                        "nupoint.gworkspace.msl_oauth_credentials": {
                            "src": json_dest,
                            "p12_src": str(p12_path),
                            "db_command": "{{ gworkspace_msl_db_command }}",
                            "signal_event_command": "{{ gworkspace_msl_signal_event_command }}",
                            "credential_dir": "{{ gworkspace_msl_credential_dir }}",
                        },
                    }
                ],
            }
        ],
        inventory=lab.inventory_path,
    )
    installed = install.result("install")
    assert installed["changed"] is True and installed["p12_same_account"] == "unproven", installed
    assert any("did not check at Google" in warning for warning in installed["warnings"])
    with open(os.path.join(lab.credential_dir("msl1"), "service-account.p12"), "rb") as handle:
        assert handle.read() == p12_path.read_bytes()

    proof_task = {
        "name": "proof",
        "nupoint.gworkspace.service_account_keys_info": dict(
            connection(rig),
            service_account=lab.client_email,
            p12_pair={
                "key_fingerprint_sha256": info["public_key_fingerprint_sha256"],
                "p12_fingerprint_sha256": info["p12_fingerprint_sha256"],
            },
        ),
    }
    proof = run_playbook(localhost(proof_task)).result("proof")["p12_pair"]
    with open(json_dest) as handle:
        json_key_id = json.load(handle)["private_key_id"]
    assert proof == {"proven": True, "problems": [], "key_key_id": json_key_id, "p12_key_id": other["private_key_id"]}
    # The oauth_credentials role proves the pair when an admin credential is set, and says unproven without one.
    assert role_validation(rig, json_dest, str(p12_path), admin=True).result("facts")["p12_same_account"] == "proven"
    assert role_validation(rig, json_dest, str(p12_path), admin=False).result("facts")["p12_same_account"] == "unproven"

    lab.google.set_key_disabled(other["private_key_id"], True)
    refused = run_playbook(localhost(proof_task)).result("proof")["p12_pair"]
    assert refused["proven"] is False
    assert refused["problems"] == ["the P12 file is key %s, which is disabled" % other["private_key_id"]]
    stopped = role_validation(rig, json_dest, str(p12_path), admin=True)
    assert stopped.rc != 0
    message = stopped.result(STOP_TASK)["msg"]
    assert "is not a live key" in message and "which is disabled" in message and "p12_dest" in message


STOP_TASK = "nupoint.gworkspace.oauth_credentials : Stop when Google says the P12 is not a live key of the account"


def role_validation(rig: dict[str, Any], key_src: str, p12_src: str, admin: bool) -> Any:
    """The oauth_credentials role's controller-side validation of msl1's key and P12, then its published facts."""
    lab = rig["lab"]
    variables = {
        "gworkspace_key_src": key_src,
        "gworkspace_p12_src": p12_src,
        "gworkspace_token_uri": lab.token_uri,
        "gworkspace_ca_path": lab.ca_path,
        "gworkspace_api_base_url": lab.google_base_url,
        # The lab inventory pins the lab's own key; this is another key of its account.
        "gworkspace_key_fingerprint": None,
    }
    if admin:
        variables["gworkspace_admin_key_src"] = rig["admin_src"]
    play = {
        "name": "validate",
        "hosts": "msl1",
        "gather_facts": False,
        "tasks": [
            {
                "name": "validate",
                "ansible.builtin.include_role": {
                    "name": "nupoint.gworkspace.oauth_credentials",
                    "tasks_from": "validate.yml",
                },
            },
            {"name": "facts", "ansible.builtin.debug": {"msg": "{{ oauth_credentials_key_info }}"}},
        ],
    }
    # Extra vars: the role reads the play's keys through hostvars, where play vars are not.
    result = run_playbook([play], inventory=lab.inventory_path, extra_vars=variables)
    if result.rc == 0:
        result.tasks["facts"] = [dict(result.result("facts")["msg"], _host="msl1")]
    else:
        assert STOP_TASK in result.tasks, result.stdout[-3000:]
    return result


def test_p12_dest_derives_the_json_keys_own_pair(rig):
    lab, tmp = rig["lab"], rig["tmp"]
    dest, p12_dest = str(tmp / "sa.json.vault"), str(tmp / "sa.p12.vault")
    task = key_task(rig, dest=dest, p12_dest=p12_dest)
    planned = run_playbook(localhost(task), check=True, extra_args=rig["vault_args"]).result("key")
    assert planned["changed"] is True and planned["p12_changed"] is True
    assert not os.path.exists(dest) and not os.path.exists(p12_dest)

    done = run_playbook(localhost(task), extra_args=rig["vault_args"], verbosity=3)
    result = done.result("key")
    assert result["created"] is True and result["p12_changed"] is True and result["p12_vault_encrypted"] is True
    assert stat.S_IMODE(os.stat(p12_dest).st_mode) == 0o600
    key_file = json.loads(decrypt(dest))
    json_key = serialization.load_pem_private_key(key_file["private_key"].encode(), None)
    p12 = pkcs12.load_pkcs12(decrypt(p12_dest), b"notasecret")
    assert public_der(p12.key) == public_der(json_key)
    assert p12.cert is not None and p12.cert.friendly_name == b"privatekey"
    assert p12.cert.certificate.subject.rfc4514_string() == "CN=%s" % lab.client_id
    for marker in keyfactory.secret_markers(json_key):
        assert marker not in done.stdout + done.stderr

    for check_mode in (True, False):
        again = run_playbook(localhost(task), check=check_mode, extra_args=rig["vault_args"]).result("key")
        assert again["changed"] is False and again["p12_changed"] is False, again

    # A P12 of another key pair at p12_dest is replaced by the JSON key's own (check mode first: not written).
    stranger = service_account_pkcs12(keyfactory.rsa_key(index=2), lab.client_id)
    with open(p12_dest, "wb") as handle:
        handle.write(stranger)
    planned = run_playbook(localhost(task), check=True, extra_args=rig["vault_args"]).result("key")
    assert planned["changed"] is True and planned["p12_changed"] is True
    with open(p12_dest, "rb") as handle:
        assert handle.read() == stranger
    replaced = run_playbook(localhost(task), extra_args=rig["vault_args"]).result("key")
    assert replaced["created"] is False and replaced["p12_changed"] is True
    assert public_der(pkcs12.load_pkcs12(decrypt(p12_dest), b"notasecret").key) == public_der(json_key)
