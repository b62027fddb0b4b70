"""delegation_check against the lab's emulated Google: every failure class it promises, from real answers.

The lab's token endpoint verifies the JWT like Google (signature against the registered key, iss, aud,
iat/exp with a clock tolerance, subject, scopes) and answers with Google's error bodies; the control API
puts it into each state (scope revoked, account disabled, key deleted, clock shifted).
"""

from typing import Any

import pytest

from tests.integration.playbook import PlaybookRun, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

MAIL = "https://mail.google.com/"
SETTINGS = "https://www.googleapis.com/auth/gmail.settings.basic"


def check_task(name: str, **args: Any) -> dict[str, Any]:
    module_args = {
        "src": "{{ key_file }}",
        "token_uri": "{{ token_uri }}",
        "ca_path": "{{ ca_path }}",
        "retries": 1,
        "timeout": 5,
        "fail_on_error": False,
    }
    module_args.update(args)
    return {"name": name, "nupoint.gworkspace.delegation_check": module_args}


def run_checks(lab: Any, *tasks: dict[str, Any]) -> PlaybookRun:
    run = run_playbook(
        [{"name": "delegation", "hosts": "localhost", "gather_facts": False, "tasks": list(tasks)}],
        extra_vars={"key_file": lab.key_file, "token_uri": lab.token_uri, "ca_path": lab.ca_path},
    )
    assert run.rc == 0, run.stdout + run.stderr
    return run


def classes(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(check["subject"], check["scope"], check["failure_class"]) for check in result["checks"]]


def test_authorised_unknown_user_and_unauthorised_scope(lab, lab_reset):
    run = run_checks(
        lab,
        check_task("authorised", subjects=[lab.admin, lab.users[0]], fail_on_error=True),
        check_task("unknown user", subjects=["ghost@example.test"]),
        check_task("extra scope", subjects=[lab.admin], scopes=[MAIL, SETTINGS]),
    )
    authorised = run.result("authorised")
    assert authorised["authorized"] is True
    assert classes(authorised) == [(lab.admin, MAIL, "ok"), (lab.users[0], MAIL, "ok")]
    assert authorised["admin_console_url"] is None
    assert authorised["client_id"] == lab.client_id
    assert abs(authorised["clock_offset_seconds"]) < 2
    assert "ya29." not in run.stdout

    unknown = run.result("unknown user")
    assert classes(unknown) == [("ghost@example.test", MAIL, "token_invalid_user")]
    assert unknown["checks"][0]["google_description"] == "Invalid email or User ID"
    assert unknown["admin_console_url"] is None

    extra = run.result("extra scope")
    assert classes(extra) == [(lab.admin, MAIL, "ok"), (lab.admin, SETTINGS, "token_unauthorized_scope")]
    assert extra["missing_scopes"] == [SETTINGS]
    assert extra["admin_console_url"] == (
        "https://admin.google.com/ac/owl/domainwidedelegation?clientScopeToAdd=%s,%s&clientIdToAdd=%s"
        "&overwriteClientId=true" % (MAIL, SETTINGS, lab.client_id)
    )


def test_revoked_scope_fails_with_admin_console_instructions(lab, lab_reset, run_failing):
    lab.google.revoke_scopes(lab.client_id, [MAIL])
    result = run_failing("revoked", fail_on_error=True)
    assert result["failed"] is True
    assert classes(result) == [(lab.admin, MAIL, "token_unauthorized_scope")]
    assert result["checks"][0]["google_error"] == "unauthorized_client"
    assert result["checks"][0]["http_status"] == 401
    assert result["missing_scopes"] == [MAIL]
    assert "paste %s into Client ID and %s into OAuth scopes" % (lab.client_id, MAIL) in result["msg"]
    assert result["admin_console_url"].endswith("clientIdToAdd=%s&overwriteClientId=true" % lab.client_id)


@pytest.fixture
def run_failing(lab):
    def runner(name: str, **args: Any) -> dict[str, Any]:
        task = check_task(name, subjects=[lab.admin], **args)
        task["ignore_errors"] = True
        return run_checks(lab, task).result(name)

    return runner


def test_disabled_service_account_is_invalid_key(lab, lab_reset, run_failing):
    lab.google.disable_service_account(lab.client_email)
    result = run_failing("disabled", fail_on_error=True)
    assert result["failed"] is True
    assert classes(result) == [(lab.admin, MAIL, "token_invalid_key")]
    assert result["checks"][0]["google_description"] == "Invalid grant: account not found"
    assert "Cloud console" in result["msg"]


def test_deleted_key_is_invalid_key(lab, lab_reset, run_failing):
    assert lab.google.delete_key(lab.private_key_id) is True
    result = run_failing("deleted key")
    assert classes(result) == [(lab.admin, MAIL, "token_invalid_key")]
    assert result["checks"][0]["google_description"] == "Invalid JWT Signature."
    assert result["checks"][0]["attempts"] == 1  # a refusal is never retried


def test_skewed_clock_is_named_as_the_cause(lab, lab_reset, run_failing):
    # Google's clock an hour behind ours is, for the JWT, ours an hour ahead: its iat is in Google's future.
    lab.google.set_clock(offset_seconds=-3600)
    result = run_failing("skewed")
    assert classes(result) == [(lab.admin, MAIL, "token_clock_skew")]
    assert result["clock_offset_seconds"] == pytest.approx(-3600, abs=3)
    assert "ahead of Google's clock" in result["msg"]
    assert "that is the cause" in result["msg"]
    assert any("clock" in warning for warning in result.get("warnings", []))


def test_retryable_fault_is_retried_then_succeeds(lab, lab_reset):
    lab.google.inject_fault("/token", 503, count=1)
    run = run_checks(lab, check_task("after a 503", subjects=[lab.admin], fail_on_error=True))
    check = run.result("after a 503")["checks"][0]
    assert check["authorized"] is True
    assert check["attempts"] == 2
