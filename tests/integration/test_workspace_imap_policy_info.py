"""workspace_imap_policy_info through ansible-playbook against the lab's emulated Cloud Identity Policy API."""

from typing import Any

import pytest

from tests.integration.playbook import run_playbook

pytestmark = [pytest.mark.lab]

SCOPE = "https://www.googleapis.com/auth/cloud-identity.policies.readonly"
MODULE = "nupoint.gworkspace.workspace_imap_policy_info"


def play(lab: Any, **args: Any) -> list[dict[str, Any]]:
    module_args = {
        "src": lab.key_file,
        "subject": lab.admin,
        "token_uri": lab.token_uri,
        "ca_path": lab.ca_path,
        "api_base_url": lab.google_base_url,
    }
    module_args.update(args)
    return [
        {
            "name": "imap policy",
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [{"name": "policy", MODULE: module_args}],
        }
    ]


@pytest.fixture
def policy_lab(lab_reset):
    lab_reset.google.authorize_scopes(lab_reset.client_id, [SCOPE])
    return lab_reset


def test_domain_imap_enabled(policy_lab):
    run = run_playbook(play(policy_lab, require_enabled=True), check=True)
    assert run.rc == 0, run.stdout + run.stderr
    result = run.result("policy")
    assert result["changed"] is False
    assert (result["imap_access"], result["imap_enabled"], result["policy_readable"]) == ("enabled", True, True)
    assert len(result["policies"]) == 1
    assert result["policies"][0]["enabled"] is True
    assert result["policies"][0]["org_unit"]
    assert result["client_id"] == policy_lab.client_id
    assert not result.get("warnings")


def test_domain_imap_disabled_warns_or_fails(policy_lab):
    policy_lab.google.set_domain_imap(False)
    run = run_playbook(play(policy_lab))
    assert run.rc == 0, run.stdout + run.stderr
    result = run.result("policy")
    assert (result["imap_access"], result["imap_enabled"]) == ("disabled", False)
    assert result["disabled_org_units"] == [result["policies"][0]["org_unit"]]
    assert any("IMAP access is disabled for the domain" in warning for warning in result["warnings"])
    strict = run_playbook(play(policy_lab, require_enabled=True))
    assert strict.rc != 0
    assert "IMAP access is disabled for the domain" in strict.result("policy")["msg"]
    policy_lab.google.set_domain_imap(True)
    assert run_playbook(play(policy_lab, require_enabled=True)).rc == 0


def test_scope_not_authorised_says_how_to_allow_it(lab_reset):
    lab = lab_reset  # only https://mail.google.com/ is authorised at the lab's start
    run = run_playbook(play(lab))
    assert run.rc == 0, run.stdout + run.stderr
    result = run.result("policy")
    assert result["policy_readable"] is False
    assert (result["failure_class"], result["reason"]) == ("token_unauthorized_scope", "unauthorized_scope")
    assert result["imap_access"] == "unknown"
    url = result["admin_console_url"]
    assert "clientIdToAdd=%s" % lab.client_id in url and SCOPE in url
    assert "[WARNING]" in run.stdout + run.stderr
    failing = run_playbook(play(lab, fail_on_error=True))
    assert failing.rc != 0
    assert url in failing.result("policy")["msg"]


def test_subject_not_an_admin_or_unknown(policy_lab):
    run = run_playbook(play(policy_lab, subject=policy_lab.users[0]))
    assert run.rc == 0, run.stdout + run.stderr
    result = run.result("policy")
    assert (result["reason"], result["http_status"]) == ("not_admin", 403)
    assert "super administrator" in result["message"]
    run = run_playbook(play(policy_lab, subject="ghost@" + policy_lab.domain, fail_on_error=True))
    assert run.rc != 0
    assert run.result("policy")["reason"] == "unknown_subject"


def test_not_admin_says_only_super_administrators_may_use_the_policy_api(policy_lab):
    result = run_playbook(play(policy_lab, subject=policy_lab.users[0])).result("policy")
    assert result["reason"] == "not_admin"
    assert "Only a super administrator can use the Cloud Identity Policy API" in result["message"]


def test_cloud_identity_api_disabled_is_service_disabled_with_googles_link(policy_lab):
    """Google's 403 SERVICE_DISABLED / accessNotConfigured is not a subject problem: it names the enable link."""
    policy_lab.google.set_services(policy_lab.project_id, ["cloudidentity.googleapis.com"], enabled=False)
    number = policy_lab.google.state()["projects"][policy_lab.project_id]["number"]
    link = "https://console.developers.google.com/apis/api/cloudidentity.googleapis.com/overview?project=%s" % number
    run = run_playbook(play(policy_lab))
    assert run.rc == 0, run.stdout + run.stderr
    result = run.result("policy")
    assert result["policy_readable"] is False
    assert (result["failure_class"], result["reason"], result["http_status"]) == ("api_error", "service_disabled", 403)
    assert result["activation_url"] == link
    assert link in result["message"]
    assert "not_admin" not in result["message"] and "super administrator" not in result["message"]
    assert result["client_restriction"] == "unknown"
    strict = run_playbook(play(policy_lab, fail_on_error=True))
    assert strict.rc != 0 and link in strict.result("policy")["msg"]
    policy_lab.google.set_services(policy_lab.project_id, ["cloudidentity.googleapis.com"], enabled=True)
    assert run_playbook(play(policy_lab, require_enabled=True)).rc == 0


def test_the_client_restriction_is_reported_as_unreadable(policy_lab):
    run = run_playbook(play(policy_lab))
    result = run.result("policy")
    assert result["imap_access"] == "enabled"
    assert result["client_restriction"] == "unknown"
    assert "Allow any mail client" in result["client_restriction_message"]
    assert "Restrict which mail clients users can use (OAuth mail clients only)" in result["client_restriction_message"]
