"""The key's life through Google's APIs, against the lab: bootstrap, create, keep, disable, delete, refusals.

The admin credential is a service account of another project (``key-admin@nupoint-admin``) that the lab lets
administer the NuPoint project, as ``roles/iam.serviceAccountKeyAdmin`` would at Google.
"""

import json
import os
import stat
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.integration.lab_admin import ADMIN_PROJECT, add_admin
from tests.integration.playbook import run_playbook
from tests.unit import keyfactory

pytestmark = [pytest.mark.lab]

NEW_PROJECT = "nupoint-new"
ALL_APIS = ["iam.googleapis.com", "serviceusage.googleapis.com"]


@pytest.fixture
def admin(lab_reset, tmp_path):
    """The admin key file (on the controller) and the lab set up to honour it."""
    path, key = add_admin(lab_reset, tmp_path / "admin.json", administers=(lab_reset.project_id, NEW_PROJECT))
    return {"lab": lab_reset, "src": str(path), "key": key, "tmp": tmp_path}


def connection(admin: dict[str, Any]) -> dict[str, Any]:
    lab = admin["lab"]
    return {
        "src": admin["src"],
        "token_uri": lab.token_uri,
        "ca_path": lab.ca_path,
        "api_base_url": lab.google_base_url,
    }


def play(admin: dict[str, Any], *tasks: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "keys", "hosts": "localhost", "gather_facts": False, "tasks": list(tasks)}]


def key_task(admin: dict[str, Any], name: str = "key", **args: Any) -> dict[str, Any]:
    module_args = dict(connection(admin), service_account=admin["lab"].client_email)
    module_args.update(args)
    return {"name": name, "nupoint.gworkspace.service_account_key": module_args, "ignore_errors": True}


def lab_keys(lab: Any, email: str | None = None) -> list[str]:
    email = email or lab.client_email
    return next(a["keys"] for a in lab.google.state()["service_accounts"] if a["email"] == email)


def read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def markers_of(key_file: str) -> list[str]:
    document = json.loads(read(key_file))
    private = serialization.load_pem_private_key(document["private_key"].encode(), None)
    return keyfactory.secret_markers(private)


def test_present_creates_once_into_dest_0600_and_leaks_nothing(admin):
    lab, dest = admin["lab"], str(admin["tmp"] / "nupoint.json")
    before = lab_keys(lab)
    task = key_task(admin, dest=dest, encrypt="none")
    check = run_playbook(play(admin, task), check=True)
    assert check.result("key")["changed"] is True and check.result("key")["key"] is None
    assert not os.path.exists(dest) and lab_keys(lab) == before
    run = run_playbook(play(admin, task), verbosity=3)
    result = run.result("key")
    assert result["changed"] is True and result["created"] is True, result
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    created = json.loads(read(dest))
    assert created["private_key_id"] == result["key"]["key_id"]
    assert result["key"]["key_id"] in lab_keys(lab) and len(lab_keys(lab)) == len(before) + 1
    assert result["fingerprint_sha256"] and result["client_id"] == lab.client_id
    for marker in markers_of(dest) + keyfactory.secret_markers(admin["key"]):
        assert marker not in run.stdout + run.stderr
    # Idempotent: dest holds a live key.
    for check_mode in (True, False):
        again = run_playbook(play(admin, task), check=check_mode)
        assert again.result("key")["changed"] is False, again.result("key")
        assert again.result("key")["key"]["key_id"] == created["private_key_id"]
    assert len(lab_keys(lab)) == len(before) + 1
    # The new key works for delegation straight away.
    delegation = run_playbook(
        play(
            admin,
            {
                "name": "delegation",
                "nupoint.gworkspace.delegation_check": {
                    "src": dest,
                    "subjects": [lab.users[0]],
                    "token_uri": lab.token_uri,
                    "ca_path": lab.ca_path,
                },
            },
        )
    )
    assert delegation.rc == 0, delegation.stdout


def test_vault_encrypted_dest_and_disable_then_delete(admin):
    lab, tmp = admin["lab"], admin["tmp"]
    dest, password = str(tmp / "nupoint.vault.json"), tmp / "vault-pass"
    password.write_text("lab-vault-password\n")
    args = ["--vault-password-file", str(password)]
    run = run_playbook(play(admin, key_task(admin, dest=dest)), extra_args=args, verbosity=3)
    result = run.result("key")
    assert result["created"] is True and result["vault_encrypted"] is True, result
    assert read(dest).startswith("$ANSIBLE_VAULT;")
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert "PRIVATE KEY-----" not in run.stdout + run.stderr + read(dest)
    key_id = result["key"]["key_id"]
    again = run_playbook(play(admin, key_task(admin, dest=dest, max_age_days=90)), extra_args=args)
    assert again.result("key")["changed"] is False and again.result("key")["key"]["key_id"] == key_id
    for state in ("disabled", "absent"):
        for check_mode, changed in ((True, True), (False, True), (True, False), (False, False)):
            step = run_playbook(play(admin, key_task(admin, key_id=key_id, state=state)), check=check_mode)
            assert step.result("key")["changed"] is changed, (state, check_mode, step.result("key"))
        if state == "disabled":
            assert key_id in lab.google.state()["disabled_keys"]
    assert key_id not in lab_keys(lab)
    # The key at dest is gone at Google: present creates a new one.
    replaced = run_playbook(play(admin, key_task(admin, dest=dest)), extra_args=args)
    assert replaced.result("key")["created"] is True
    assert replaced.result("key")["reason"].endswith("no longer exists at Google")


def test_old_key_is_replaced_past_max_age_and_listed_with_its_age(admin):
    lab, dest = admin["lab"], str(admin["tmp"] / "old.json")
    # Google's clock in the past (and tolerant of the admin JWT's "future" iat): the key is born 100 days ago.
    lab.google.set_clock(tolerance_seconds=101 * 86400, offset_seconds=-100 * 86400)
    run_playbook(play(admin, key_task(admin, dest=dest, encrypt="none")))
    lab.google.set_clock(tolerance_seconds=300, offset_seconds=0)
    old_id = json.loads(read(dest))["private_key_id"]
    info = run_playbook(
        play(
            admin,
            {
                "name": "info",
                "nupoint.gworkspace.service_account_keys_info": dict(
                    connection(admin), service_account=lab.client_email, max_age_days=90
                ),
            },
        )
    ).result("info")
    assert [key["key_id"] for key in info["too_old"]] == [old_id]
    assert info["too_old"][0]["age_days"] >= 99
    assert info["user_managed_keys"] == 2 and info["quota_remaining"] == 8
    young = run_playbook(play(admin, key_task(admin, dest=dest, encrypt="none", max_age_days=200)))
    assert young.result("key")["changed"] is False
    rotated = run_playbook(play(admin, key_task(admin, dest=dest, encrypt="none", max_age_days=90)))
    assert rotated.result("key")["created"] is True
    assert "100 days old" in rotated.result("key")["reason"] or "days old" in rotated.result("key")["reason"]
    assert json.loads(read(dest))["private_key_id"] != old_id


def test_org_policy_refusal(admin):
    lab = admin["lab"]
    lab.google.set_key_creation_policy(lab.project_id, True)
    dest = admin["tmp"] / "refused.json"
    result = run_playbook(play(admin, key_task(admin, dest=str(dest), encrypt="none"))).result("key")
    assert result["failed"] is True and result["refusal"] == "org_policy"
    assert "constraints/iam.disableServiceAccountKeyCreation" in result["msg"]
    assert "roles/orgpolicy.policyAdmin" in result["msg"] and "--project=%s" % lab.project_id in result["msg"]
    assert not dest.exists()


def test_ten_key_quota(admin):
    lab = admin["lab"]
    for index in range(9):
        created = run_playbook(
            play(admin, key_task(admin, dest=str(admin["tmp"] / ("k%d.json" % index)), encrypt="none"))
        ).result("key")
        assert created["created"] is True, created
    result = run_playbook(play(admin, key_task(admin, dest=str(admin["tmp"] / "k10.json"), encrypt="none"))).result(
        "key"
    )
    assert result["failed"] is True and result["refusal"] == "key_quota", result
    assert "10" in result["msg"] and "service_account_keys_info" in result["msg"]
    assert len(lab_keys(lab)) == 10


def test_api_disabled_and_permission_denied(admin):
    lab = admin["lab"]
    lab.google.set_services(ADMIN_PROJECT, ["iam.googleapis.com"], enabled=False)
    info_task = {
        "name": "info",
        "nupoint.gworkspace.service_account_keys_info": dict(connection(admin), service_account=lab.client_email),
        "ignore_errors": True,
    }
    result = run_playbook(play(admin, info_task)).result("info")
    assert result["refusal"] == "service_disabled"
    assert result["activation_url"].startswith("https://console.developers.google.com/apis/api/iam.googleapis.com/")
    assert result["activation_url"] in result["msg"]
    lab.google.set_services(ADMIN_PROJECT, ["iam.googleapis.com"], enabled=True)
    lab.google.deny_permissions(["iam.serviceAccountKeys.list"])
    result = run_playbook(play(admin, info_task)).result("info")
    assert result["refusal"] == "permission_denied" and "roles/iam.serviceAccountKeyAdmin" in result["msg"]


def test_bootstrap_on_an_empty_project(admin):
    lab, tmp = admin["lab"], admin["tmp"]
    lab.google.set_services(ADMIN_PROJECT, ALL_APIS, enabled=True)
    bootstrap = {
        "name": "bootstrap",
        "nupoint.gworkspace.service_account": dict(
            connection(admin), project_id=NEW_PROJECT, account_id="nupoint-um", features=["iam", "gmail"]
        ),
    }
    check = run_playbook(play(admin, bootstrap), check=True).result("bootstrap")
    assert check["changed"] is True and check["created"] is True and check["service_account"] is None
    assert sorted(check["enabled"]) == ["gmail.googleapis.com", "iam.googleapis.com"]
    assert lab.google.state()["projects"][NEW_PROJECT]["services"] == []
    done = run_playbook(play(admin, bootstrap)).result("bootstrap")
    email = "nupoint-um@%s.iam.gserviceaccount.com" % NEW_PROJECT
    assert done["changed"] is True and done["service_account"]["email"] == email
    client_id = done["service_account"]["client_id"]
    assert done["admin_console_url"].endswith("clientIdToAdd=%s&overwriteClientId=true" % client_id)
    assert run_playbook(play(admin, bootstrap)).result("bootstrap")["changed"] is False
    # The first key into the controller's key home, then the manual delegation step (here: the control API).
    dest = str(tmp / "nupoint-new.json")
    first = run_playbook(play(admin, key_task(admin, service_account=email, dest=dest, encrypt="none"))).result("key")
    assert first["created"] is True and first["client_id"] == client_id
    lab.google.authorize_scopes(client_id, ["https://mail.google.com/"])
    delegation = run_playbook(
        play(
            admin,
            {
                "name": "delegation",
                "nupoint.gworkspace.delegation_check": {
                    "src": dest,
                    "subjects": [lab.users[1]],
                    "token_uri": lab.token_uri,
                    "ca_path": lab.ca_path,
                },
            },
        )
    )
    assert delegation.rc == 0, delegation.stdout
