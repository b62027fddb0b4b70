"""imap_check against the lab: real XOAUTH2 logins to Dovecot with tokens from the emulated Google.

Dovecot validates each token at the emulated tokeninfo and refuses IMAP-disabled users with Gmail's own
``[ALERT]`` texts; the emulated token endpoint answers with Google's error bodies. The control API puts
each into the state a test needs (IMAP off for a user or the domain, scope revoked, 503 burst), and the
lab API stops Dovecot for the outage test.
"""

import csv
import json
import os
import stat
import time
from typing import Any

import pytest

from tests.integration.lab_tasks import imap_check_task as check_task
from tests.integration.playbook import PlaybookRun, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

GMAIL_USER_DISABLED = "[ALERT] Your account is not enabled for IMAP use."
GMAIL_DOMAIN_DISABLED = "[ALERT] IMAP access is disabled for your domain."


def lab_vars(lab: Any) -> dict[str, Any]:
    return {"key_file": lab.key_file, "token_uri": lab.token_uri, "ca_path": lab.ca_path, "imap_port": lab.imap_port}


def run_checks(lab: Any, *tasks: dict[str, Any], hosts: str = "localhost", **kwargs: Any) -> PlaybookRun:
    run = run_playbook(
        [{"name": "imap", "hosts": hosts, "gather_facts": False, "tasks": list(tasks)}],
        extra_vars=lab_vars(lab),
        **kwargs,
    )
    assert "ya29." not in run.stdout + run.stderr
    return run


def by_user(result: dict[str, Any]) -> dict[str, str]:
    return {entry["user"]: entry["failure_class"] for entry in result["results"]}


@pytest.fixture
def users200(lab, lab_reset):
    """At least 200 users in the lab for the test; the previous count afterwards."""
    before = lab.users_count
    if before < 200:
        lab.set_users(200)
    yield lab.users[:200]
    if before < 200:
        lab.set_users(before)


def test_200_users_all_ok_with_report(lab, users200, tmp_path):
    users_file = tmp_path / "um-users.txt"
    users_file.write_text("\n".join(users200) + "\n")
    report = tmp_path / "reports" / "imap-check.json"
    report.parent.mkdir()
    run = run_checks(
        lab,
        check_task("all", users_file=str(users_file), report_path=str(report), fail_threshold=0, return_results=False),
    )
    assert run.rc == 0, run.stdout + run.stderr
    result = run.result("all")
    summary = result["summary"]
    assert (summary["total"], summary["ok"], summary["failed"]) == (200, 200, 0)
    assert "results" not in result
    assert result["failed_users"] == []
    assert result["client_id"] == lab.client_id
    assert set(summary["latency_ms"]) == {"token", "connect", "auth", "select", "total"}
    assert result["report"] == {
        "json": str(report),
        "csv": str(report.with_suffix(".csv")),
        "html": str(report.with_suffix(".html")),
    }

    document = json.loads(report.read_text())
    assert document["summary"]["ok"] == 200
    assert [entry["user"] for entry in document["results"]] == users200
    assert document["meta"]["imap_port"] == lab.imap_port
    with open(report.with_suffix(".csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 200
    assert {row["failure_class"] for row in rows} == {"ok"}
    for path in (report, report.with_suffix(".csv")):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert "ya29." not in path.read_text()


def test_imap_disabled_for_a_user_then_for_the_domain(lab, lab_reset):
    users = lab.users[:6]
    lab.google.set_user_imap(users[1], False)
    lab.google.set_user_imap(users[4], False)
    user_level = run_checks(lab, check_task("user level", users=users))
    assert user_level.rc == 0, user_level.stdout
    result = user_level.result("user level")
    classes = by_user(result)
    assert classes == {user: ("imap_disabled" if user in (users[1], users[4]) else "ok") for user in users}
    refused = result["results"][1]
    assert refused["phase"] == "auth"
    assert GMAIL_USER_DISABLED in refused["message"]
    assert "gmail_imap_settings" in refused["message"]

    lab.google.set_domain_imap(False)
    domain_level = run_checks(lab, check_task("domain level", users=users, fail_threshold=0))
    assert domain_level.rc != 0
    result = domain_level.result("domain level")
    assert result["failed"] is True
    assert set(by_user(result).values()) == {"imap_disabled"}
    assert all(GMAIL_DOMAIN_DISABLED in entry["message"] for entry in result["failed_users"])
    assert "6 failed: imap_disabled 6" in result["msg"]


def test_unknown_users_and_revoked_scope(lab, lab_reset):
    users = [lab.users[0], "ghost1@example.test", "ghost2@example.test"]
    unknown = run_checks(lab, check_task("unknown", users=users)).result("unknown")
    assert by_user(unknown) == {users[0]: "ok", users[1]: "token_invalid_user", users[2]: "token_invalid_user"}
    assert unknown["results"][1]["phase"] == "token"
    assert unknown["results"][1]["google_error"] == "invalid_grant"

    lab.google.revoke_scopes(lab.client_id, ["https://mail.google.com/"])
    revoked = run_checks(lab, check_task("revoked", users=lab.users[:3])).result("revoked")
    assert set(by_user(revoked).values()) == {"token_unauthorized_scope"}
    assert "Admin console" in revoked["failed_users"][0]["message"]


def test_dovecot_stopped_means_connect_for_everyone_quickly(lab, users200):
    users = users200[:100]
    lab.stop_service("dovecot")
    try:
        run = run_checks(lab, check_task("outage", users=users))
    finally:
        lab.start_services()
    result = run.result("outage")
    assert set(by_user(result).values()) == {"connect"}
    assert all(entry["phase"] == "connect" and entry["attempts"] <= 1 for entry in result["results"])
    assert "Connection refused" in result["results"][0]["message"]
    # A refused connection is not retried, and after 32 users in a row (2 x concurrency) the rest are not tried.
    assert result["results"][-1]["message"].startswith("Not tried: the previous 32 users all failed with connect")
    not_tried = [entry for entry in result["results"] if entry["attempts"] == 0]
    assert len(not_tried) >= len(users) - 32 - 16  # at most the streak plus one round of workers were tried
    after = run_checks(lab, check_task("back", users=users[:3], fail_threshold=0)).result("back")
    assert after["summary"]["ok"] == 3


def test_503_burst_on_the_token_endpoint_is_retried(lab, lab_reset):
    users = lab.users[:10]
    lab.google.reset_stats()
    lab.google.inject_fault("/token", 503, count=4)
    run = run_checks(lab, check_task("burst", users=users, concurrency=4, fail_threshold=0))
    assert run.rc == 0, run.stdout
    assert run.result("burst")["summary"]["ok"] == 10
    stats = lab.google.stats()
    assert stats["faults_served"] == 4
    assert stats["endpoints"]["token"]["503"] == 4
    assert stats["endpoints"]["token"]["200"] == 10


def test_more_than_2500_users_is_refused(lab, lab_reset):
    lab.google.reset_stats()
    users = ["user%05d@example.test" % number for number in range(1, 2502)]
    run = run_checks(lab, check_task("too many", users=users))
    result = run.result("too many")
    assert result["failed"] is True
    assert result["msg"].startswith("2501 users to check, more than max_users=2500.")
    assert "NuPoint Advanced UM supports at most 2,500 users" in result["msg"]
    assert lab.google.stats()["endpoints"].get("token", {}).get("total", 0) == 0


def test_users_file_is_cleaned_with_warnings(lab, lab_reset, tmp_path):
    good = lab.users[:3]
    users_file = tmp_path / "users.csv"
    users_file.write_text(
        "name,email\n"
        "A,%s\n"
        ",\n"
        "A again,%s\n"
        "B,%s\n"
        "Broken,not-an-address\n"
        "Half,half@\n"
        "\n"
        "C,%s\n" % (good[0], good[0].upper(), good[1], good[2])
    )
    # duplicates: warn, to see every cleaning rule at once (a duplicate fails the task by default).
    run = run_checks(lab, check_task("file", users_file=str(users_file), fail_threshold=0, duplicates="warn"))
    assert run.rc == 0, run.stdout
    result = run.result("file")
    assert [entry["user"] for entry in result["results"]] == good
    assert result["skipped_users"] == {
        "blank": 2,
        "duplicate": [good[0].upper()],
        "invalid": ["'not-an-address' (users_file line 6)", "'half@' (users_file line 7)"],
    }
    warnings = result["warnings"]
    assert any(warning.startswith("Ignored 2 blank entries") for warning in warnings)
    assert any(warning.startswith("Ignored 1 duplicate address") for warning in warnings)
    assert any(warning.startswith("Ignored 2 invalid addresses") for warning in warnings)
    assert "Ignored 2 invalid addresses" in run.stdout + run.stderr


def test_on_msl1_over_ssh_with_controller_key_and_no_secrets_at_vvv(lab, lab_reset, tmp_path):
    users = lab.users[:20]
    lab.google.set_user_imap(users[3], False)
    report = tmp_path / "msl1-imap.json"  # msl1 is this machine, logged in over SSH
    started = time.monotonic()
    run = run_checks(
        lab,
        check_task("on msl1", users=users, report_path=str(report)),
        hosts="msl1",
        inventory=lab.inventory_path,
        verbosity=3,
    )
    assert run.rc == 0, run.stdout + run.stderr
    assert time.monotonic() - started < 120
    assert "ESTABLISH SSH CONNECTION" in run.stdout
    result = run.result("on msl1", host="msl1")
    assert result["summary"]["ok"] == 19
    assert by_user(result)[users[3]] == "imap_disabled"
    assert json.loads(report.read_text())["summary"]["total"] == 20
    # The key went from the controller to the module as no_log content: neither it nor a token shows.
    with open(lab.key_file) as handle:
        key = json.load(handle)
    body = [line for line in key["private_key"].splitlines() if line and not line.startswith("-----")]
    output = run.stdout + run.stderr
    for marker in ("PRIVATE KEY-----", body[1], body[-2], "ya29.", "auth=Bearer"):
        assert marker not in output
    assert result["invocation"]["module_args"]["src"] == lab.key_file
    assert "content" not in result["invocation"]["module_args"]
