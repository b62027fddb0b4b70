"""playbooks/bootstrap.yml (role nupoint.gworkspace.bootstrap) against the lab, on an empty project.

- check mode, real run, check mode and real run again: the plan; the APIs enabled, the service account created, its
  first key vault-encrypted in the controller's key home, the client ID, scopes and Admin console link printed; then
  nothing changes; no key material in the ``-vvv`` output;
- the wait for the manual delegation step, both ways: authorised (through the lab's control API) while the run waits,
  after the run's first refused check -> the run passes; never authorised -> the run fails after exactly the checks its
  bound allows, saying that Google can take up to 24 hours and how to run again; a failure waiting cannot cure (an
  unknown user) ends the wait at once.

The admin credential is a service account of another project that the lab lets administer the new project, as
``roles/serviceusage.serviceUsageAdmin`` + ``roles/iam.serviceAccountAdmin`` + ``roles/iam.serviceAccountKeyAdmin``
would at Google. Nothing here asserts on time: the waits are proven by the number of checks Google (the lab) saw.
"""

import json
import os
import stat
import sys
import threading
import time
from typing import Any

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from cryptography.hazmat.primitives import serialization

from tests.integration.lab_admin import ADMIN_PROJECT, ADMIN_SA, add_admin
from tests.integration.playbook import PlaybookRun, run_playbook
from tests.unit import keyfactory

pytestmark = [pytest.mark.lab]

NEW_PROJECT = "nupoint-boot"
EMAIL = "nupoint-um@%s.iam.gserviceaccount.com" % NEW_PROJECT
MAIL_SCOPE = "https://mail.google.com/"
VAULT_PASSWORD = "lab-vault-password"
REPORT_TASK = "nupoint.gworkspace.bootstrap : Say what was done and the manual step"
NEXT_TASK = "nupoint.gworkspace.bootstrap : Say what is left to do"
WAIT_TASK = "nupoint.gworkspace.bootstrap : Prove domain-wide delegation, waiting for it"
TIMEOUT_TASK = "nupoint.gworkspace.bootstrap : Fail when the wait for delegation is over"
INCURABLE_TASK = "nupoint.gworkspace.bootstrap : Fail when delegation fails for a reason waiting cannot cure"


@pytest.fixture
def rig(lab_reset, tmp_path):
    """An admin credential the lab honours, an empty project, a key home and a vault password on the controller."""
    lab = lab_reset
    admin_src, key = add_admin(lab, tmp_path / "admin.json")
    # Google gates a call on the caller's project: the admin's own project has Service Usage and IAM on.
    lab.google.add_project(ADMIN_PROJECT, services=["iam.googleapis.com", "serviceusage.googleapis.com"])
    lab.google.add_project(NEW_PROJECT, admins=[ADMIN_SA])
    (tmp_path / "files").mkdir()
    password = tmp_path / "vault-pass"
    password.write_text(VAULT_PASSWORD + "\n")
    return {
        "lab": lab,
        "tmp": tmp_path,
        "admin_src": str(admin_src),
        "admin_key": key,
        "key_src": str(tmp_path / "files" / "nupoint-sa.json.vault"),
        "vault_args": ["--vault-password-file", str(password)],
    }


def inventory(rig: dict[str, Any], **overrides: Any) -> str:
    lab = rig["lab"]
    variables: dict[str, Any] = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "bootstrap_project_id": NEW_PROJECT,
        "gworkspace_key_src": rig["key_src"],
        "gworkspace_admin_key_src": rig["admin_src"],
        "gworkspace_um_users": lab.users[1:3],
        "gworkspace_token_uri": lab.token_uri,
        "gworkspace_ca_path": lab.ca_path,
        "gworkspace_api_base_url": lab.google_base_url,
        "bootstrap_delegation_poll_seconds": 1,
    }
    variables.update(overrides)
    path = rig["tmp"] / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": variables}}}))
    return str(path)


def bootstrap(rig: dict[str, Any], check: bool = False, verbosity: int = 0, **overrides: Any) -> PlaybookRun:
    result = run_playbook(
        "nupoint.gworkspace.bootstrap",
        inventory=inventory(rig, **overrides),
        extra_vars={"gworkspace_target": "localhost"},
        check=check,
        verbosity=verbosity,
        extra_args=rig["vault_args"],
    )
    assert "ya29." not in result.stdout + result.stderr
    return result


def lines(result: PlaybookRun, task: str) -> str:
    return "\n".join(result.result(task)["msg"])


def account(lab: Any) -> dict[str, Any] | None:
    return next((a for a in lab.google.state()["service_accounts"] if a["email"] == EMAIL), None)


def project_services(lab: Any) -> list[str]:
    return sorted(lab.google.state()["projects"][NEW_PROJECT]["services"])


def changed_tasks(result: PlaybookRun) -> list[str]:
    return sorted(name for name, results in result.tasks.items() for one in results if one.get("changed"))


def decrypted(path: str) -> dict[str, Any]:
    with open(path, "rb") as handle:
        vault = VaultLib([("default", VaultSecret(VAULT_PASSWORD.encode()))])
        return json.loads(vault.decrypt(handle.read()))


def token_answers(lab: Any, status: int) -> int:
    """How many token requests the lab answered with ``status`` since its stats were reset."""
    return int(lab.google.stats()["endpoints"].get("token", {}).get(str(status), 0))


def test_check_real_check_real_on_an_empty_project(rig):
    lab = rig["lab"]
    assert project_services(lab) == [] and account(lab) is None

    plan = bootstrap(rig, check=True)
    assert plan.rc == 0, plan.stdout + plan.stderr
    report = lines(plan, REPORT_TASK)
    assert "CHECK MODE" in report and "would be created" in report
    assert "gmail.googleapis.com (would be enabled)" in report and "iam.googleapis.com (would be enabled)" in report
    assert "key: one would be created into %s" % rig["key_src"] in report
    assert project_services(lab) == [] and account(lab) is None and not os.path.exists(rig["key_src"])

    done = bootstrap(rig, verbosity=3)
    assert done.rc == 0, done.stdout + done.stderr
    assert project_services(lab) == ["gmail.googleapis.com", "iam.googleapis.com"]
    created = account(lab)
    assert created is not None and len(created["keys"]) == 1
    key_file = decrypted(rig["key_src"])
    assert key_file["client_email"] == EMAIL and key_file["private_key_id"] == created["keys"][0]
    assert stat.S_IMODE(os.stat(rig["key_src"]).st_mode) == 0o600
    client_id = key_file["client_id"]
    report = lines(done, REPORT_TASK)
    assert "service account: %s created, client ID %s" % (EMAIL, client_id) in report
    assert "(vault-encrypted)" in report
    assert "clientIdToAdd=%s" % client_id in report and "OAuth scopes: %s" % MAIL_SCOPE in report
    assert 'gworkspace_expected_client_id: "%s"' % client_id in report
    # wait_seconds 0: one check, the manual step is what is left, and the run passes.
    facts = done.result(WAIT_TASK)
    assert facts["authorized"] is False and facts["missing_scopes"] == [MAIL_SCOPE]
    following = lines(done, NEXT_TASK)
    assert "NEXT STEP" in following and "24 hours" in following and "bootstrap_delegation_wait_seconds=" in following
    private = serialization.load_pem_private_key(key_file["private_key"].encode(), None)
    for marker in keyfactory.secret_markers(private) + keyfactory.secret_markers(rig["admin_key"]):
        assert marker not in done.stdout + done.stderr

    for check_mode in (True, False):
        again = bootstrap(rig, check=check_mode)
        assert again.rc == 0, again.stdout + again.stderr
        assert changed_tasks(again) == [], (check_mode, changed_tasks(again))
        assert "%s holds key %s, live at Google: kept" % (rig["key_src"], key_file["private_key_id"]) in lines(
            again, REPORT_TASK
        )
        assert again.result(WAIT_TASK)["authorized"] is False
    assert account(lab)["keys"] == created["keys"] and decrypted(rig["key_src"]) == key_file


def test_the_wait_ends_when_delegation_is_authorised_part_way(rig):
    lab = rig["lab"]
    lab.google.reset_stats()
    outcome: dict[str, PlaybookRun] = {}
    # Far longer than the test needs: the run must end because delegation came into effect, not because time ran out.
    runner = threading.Thread(
        target=lambda: outcome.setdefault("run", bootstrap(rig, bootstrap_delegation_wait_seconds=900)), daemon=True
    )
    runner.start()
    # The manual step, done while the run waits: after Google refused the run's first check.
    deadline = time.monotonic() + 600
    while token_answers(lab, 401) < 1:
        assert runner.is_alive(), "the run ended before its first delegation check was refused"
        assert time.monotonic() < deadline, "the run never checked delegation"
        time.sleep(0.2)
    client_id = account(lab)["client_id"]
    lab.google.authorize_scopes(client_id, [MAIL_SCOPE])
    runner.join(timeout=900)
    assert not runner.is_alive()
    done = outcome["run"]
    assert done.rc == 0, done.stdout + done.stderr
    waited = done.result(WAIT_TASK)
    assert waited["authorized"] is True and waited["attempts"] >= 2, waited
    assert token_answers(lab, 401) == waited["attempts"] - 1
    assert "DONE: domain-wide delegation is in effect" in lines(done, NEXT_TASK)


def test_the_wait_is_bounded_and_a_cureless_failure_ends_it(rig):
    lab = rig["lab"]
    lab.google.reset_stats()
    # 3 s with a check every second: the first check and 3 more, then a clear failure.
    failed = bootstrap(rig, bootstrap_delegation_wait_seconds=3)
    assert failed.rc != 0
    waited = failed.result(WAIT_TASK)
    assert waited["authorized"] is False and waited["attempts"] == 4, waited
    assert token_answers(lab, 401) == 4
    message = failed.result(TIMEOUT_TASK)["msg"]
    assert "after 4 checks over about 3 s" in message and "up to 24 hours" in message
    assert "nupoint.gworkspace.bootstrap" in message and "bootstrap_delegation_wait_seconds=" in message
    assert "clientIdToAdd=%s" % account(lab)["client_id"] in message
    # Everything before the wait is done and stays done.
    assert len(account(lab)["keys"]) == 1 and os.path.exists(rig["key_src"])

    # An unknown user cannot be waited for: one check, then the failure with its class, however long the wait.
    lab.google.reset_stats()
    unknown = "nobody@%s" % lab.domain
    cureless = bootstrap(rig, bootstrap_delegation_wait_seconds=900, bootstrap_delegation_subjects=[unknown])
    assert cureless.rc != 0
    assert cureless.result(WAIT_TASK)["attempts"] == 1
    assert token_answers(lab, 400) == 1 and token_answers(lab, 401) == 1
    assert "token_invalid_user" in cureless.result(INCURABLE_TASK)["msg"]
    assert changed_tasks(cureless) == []
