"""The imap_access role on msl1 over SSH: enable IMAP where it is off, check everyone, fetch the reports.

Users come from a CSV file on the controller; the key from the controller (src). Gmail settings and the
IMAP refusals come from the lab's emulated Google and Dovecot.
"""

import json
import os
import stat
from typing import Any

import pytest

from tests.integration.playbook import PlaybookRun, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SETTINGS_SCOPE = "https://www.googleapis.com/auth/gmail.settings.basic"
ROLE = "nupoint.gworkspace.imap_access : "


def run_role(lab: Any, tmp_path: Any, **role_vars: Any) -> PlaybookRun:
    variables = {
        "imap_access_key_src": lab.key_file,
        "imap_access_token_uri": lab.token_uri,
        "imap_access_api_base_url": lab.google_base_url,
        "imap_access_ca_path": lab.ca_path,
        "imap_access_imap_host": "127.0.0.1",
        "imap_access_imap_port": lab.imap_port,
        "imap_access_remote_report": str(tmp_path / "remote" / "imap-check.json"),
        "imap_access_report_dir": str(tmp_path / "reports"),
        "imap_access_timeout": 5,
    }
    variables.update(role_vars)
    (tmp_path / "remote").mkdir(exist_ok=True)
    play = {
        "name": "IMAP access",
        "hosts": "msl1",
        "gather_facts": False,
        "roles": [{"role": "nupoint.gworkspace.imap_access", "vars": variables}],
    }
    run = run_playbook([play], inventory=lab.inventory_path)
    assert "ya29." not in run.stdout + run.stderr
    assert "PRIVATE KEY" not in run.stdout + run.stderr
    return run


def published(run: PlaybookRun) -> dict[str, Any]:
    return run.result(ROLE + "Publish the result", host="msl1")["ansible_facts"]["imap_access_result"]


def test_role_enables_imap_checks_everyone_and_fetches_reports(lab, lab_reset, tmp_path):
    users = lab.users[:30]
    users_csv = tmp_path / "um-users.csv"
    users_csv.write_text("name,email\n" + "".join("User %d,%s\n" % (n, user) for n, user in enumerate(users)) + ",\n")
    lab.google.authorize_scopes(lab.client_id, [SETTINGS_SCOPE])
    lab.google.set_user_imap(users[2], False)
    lab.google.set_user_imap(users[7], False)

    run = run_role(lab, tmp_path, gworkspace_um_users=str(users_csv), imap_access_enable_imap=True)
    assert run.rc == 0, run.stdout + run.stderr
    result = published(run)
    assert result["failed"] is False
    assert result["settings_changed"] is True
    assert result["summary"]["ok"] == 30
    assert "IMAP access from msl1 to 127.0.0.1: 30 of 30 users OK" in run.stdout
    reports = result["report"]
    assert sorted(reports) == ["csv", "html", "json"]
    for path in reports.values():
        assert path.startswith(str(tmp_path / "reports" / "msl1"))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(reports["json"]) as handle:
        assert json.load(handle)["summary"]["total"] == 30
    # The staged copy of the users file is gone from the node; only the Gmail settings changed.
    staged = run.result(ROLE + "Create a private temporary file for the users", host="msl1")["path"]
    assert not os.path.exists(staged)
    assert "changed=1 " in run.stdout


def test_role_prints_the_summary_then_fails(lab, lab_reset, tmp_path):
    users = lab.users[:12]
    for user in users[:3]:
        lab.google.set_user_imap(user, False)
    run = run_role(
        lab, tmp_path, gworkspace_um_users=[*users, "ghost@example.test", "not-an-address"], imap_access_summary_users=2
    )
    assert run.rc != 0
    out = run.stdout
    assert "IMAP access from msl1 to 127.0.0.1: 9 of 13 users OK" in out
    assert "imap_disabled: 3" in out
    assert "token_invalid_user: 1" in out
    assert "... and 2 more in the report." in out
    assert "Report (json): %s" % (tmp_path / "reports" / "msl1" / "imap-check.json") in out
    assert "docs/imap-check.md" in out
    result = published(run)
    assert result["failed"] is True
    assert [entry["failure_class"] for entry in result["failed_users"]] == ["imap_disabled"] * 3 + [
        "token_invalid_user"
    ]
    assert os.path.exists(tmp_path / "reports" / "msl1" / "imap-check.csv")


def test_role_refuses_bad_inputs(lab, tmp_path):
    run = run_role(lab, tmp_path, gworkspace_um_users=[], imap_access_key_path="/nonexistent")
    assert run.rc != 0
    assert "imap_access needs the key as exactly one of" in run.stdout
