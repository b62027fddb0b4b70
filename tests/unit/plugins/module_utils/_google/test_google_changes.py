"""Google's 2024-2025 changes (issue 11, item 4), one test per change; docs/gmail-imap.md cites each source.

- a 403 SERVICE_DISABLED / accessNotConfigured is the ``service_disabled`` refusal with Google's activationUrl,
  not ``not_admin`` (googleapis "ErrorReason": SERVICE_DISABLED);
- only super administrators may use the Cloud Identity Policy API ("Policy API overview");
- the Policy API exposes nothing for "OAuth mail clients only" ("Policy API supported settings";
  "Recommendations for setting up IMAP": a domain-wide-delegation client cannot be allow-listed);
- changes can take up to 24 hours, and multi-party approval can hold a delegation change pending
  ("Recommendations for setting up IMAP", "How changes propagate to Google services", "Multi-party approval
  for sensitive actions");
- Gmail may not keep a user's ``enabled`` (the users' own IMAP switch is going away); the user is then not
  called ``imap_disabled``, only Gmail's IMAP refusal does that.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import delegation, gmail_imap
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import failures as fl
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import imap_policy as ip
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import GoogleApiError
from tests.unit.gmail_fake import FakeGmail

PROJECT = "123456789012"
LINK = "https://console.developers.google.com/apis/api/cloudidentity.googleapis.com/overview?project=" + PROJECT
MESSAGE = (
    "Cloud Identity API has not been used in project %s before or it is disabled. Enable it by visiting %s then "
    "retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and "
    "retry." % (PROJECT, LINK)
)
# Google's body, as the lab and Google send it.
BODY = {
    "error": {
        "code": 403,
        "message": MESSAGE,
        "errors": [
            {"message": MESSAGE, "domain": "usageLimits", "reason": "accessNotConfigured", "extendedHelp": LINK}
        ],
        "status": "PERMISSION_DENIED",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "SERVICE_DISABLED",
                "domain": "googleapis.com",
                "metadata": {
                    "service": "cloudidentity.googleapis.com",
                    "consumer": "projects/" + PROJECT,
                    "activationUrl": LINK,
                },
            }
        ],
    }
}


class FailingApi:
    client_id = "110987654321098765432"

    def __init__(self, error):
        self.error = error

    def request(self, *args, **kwargs):
        raise self.error


def disabled_error(with_metadata=True, message=MESSAGE):
    api_status, reason, google_message = fl.parse_api_error(json.dumps(BODY))
    return GoogleApiError(
        "api_error",
        "Google refused GET /v1/policies (HTTP 403 %s/%s): %s" % (api_status, reason, google_message),
        403,
        api_status,
        reason,
        message,
        activation_url=fl.parse_activation_url(json.dumps(BODY)) if with_metadata else None,
    )


# --------------------------------------------------------------------------- SERVICE_DISABLED


def test_the_activation_url_is_googles_metadata():
    assert fl.parse_activation_url(BODY) == LINK
    assert fl.parse_activation_url(json.dumps(BODY).encode()) == LINK
    # No ErrorInfo, another reason, not JSON: no link.
    assert fl.parse_activation_url({"error": {"code": 403, "message": "The caller does not have permission"}}) is None
    other = json.loads(json.dumps(BODY))
    other["error"]["details"][0]["reason"] = "IAM_PERMISSION_DENIED"
    assert fl.parse_activation_url(other) is None
    assert fl.parse_activation_url("<html>proxy</html>") is None


def test_enable_link_prefers_the_metadata_and_falls_back_to_the_message():
    assert fl.enable_link(disabled_error()) == LINK
    assert fl.enable_link(disabled_error(with_metadata=False)) == LINK
    assert fl.enable_link(disabled_error(with_metadata=False, message="no link here")) is None


def test_policy_read_refused_because_the_api_is_disabled_is_not_not_admin():
    result = ip.read_imap_policy(FailingApi(disabled_error()), "admin@example.test", None)
    assert result["policy_readable"] is False
    assert (result["failure_class"], result["reason"]) == ("api_error", "service_disabled")
    assert result["activation_url"] == LINK
    assert LINK in result["message"] and "Cloud Identity API" in result["message"]
    assert "cloudidentity.googleapis.com" in result["message"]
    assert "super administrator" not in result["message"]
    assert result["http_status"] == 403


def test_an_accessnotconfigured_without_details_is_the_same_refusal():
    error = GoogleApiError(
        "api_error",
        "Google refused GET /v1/policies (HTTP 403 accessNotConfigured)",
        403,
        None,
        "accessNotConfigured",
        MESSAGE,
    )
    result = ip.read_imap_policy(FailingApi(error), "admin@example.test", None)
    assert (result["reason"], result["activation_url"]) == ("service_disabled", LINK)


def test_gmail_settings_refused_because_the_gmail_api_is_disabled_names_the_link():
    link = LINK.replace("cloudidentity", "gmail")
    error = GoogleApiError(
        "api_error",
        "Google refused GET (HTTP 403)",
        403,
        "PERMISSION_DENIED",
        "SERVICE_DISABLED",
        MESSAGE.replace(LINK, link).replace("Cloud Identity", "Gmail"),
        activation_url=link,
    )
    gmail = FakeGmail(["a@example.test"], api_errors={("GET", "a@example.test"): error})
    result = gmail_imap.apply_user(gmail, "a@example.test", {"enabled": True}, False)
    assert result["failure_class"] == "api_error"
    assert link in result["message"] and "gmail.googleapis.com" in result["message"]
    assert result["refusal"] == "service_disabled"


def test_a_disabled_gmail_api_is_met_once_not_for_every_user():
    users = ["a@example.test", "b@example.test", "c@example.test"]
    error = GoogleApiError(
        "api_error", "Google refused GET (HTTP 403)", 403, "PERMISSION_DENIED", "SERVICE_DISABLED", MESSAGE
    )
    gmail = FakeGmail(users, api_errors={("GET", user): error for user in users})
    results, summary = gmail_imap.apply_all(gmail, [(user, {"enabled": True}) for user in users], False, 4)
    assert [result.get("skipped", False) for result in results] == [False, True, True]
    assert summary["skipped"] == 2


# --------------------------------------------------------------------------- super administrators only


def test_not_admin_says_only_super_administrators_may_use_the_policy_api():
    error = GoogleApiError(
        "api_error",
        "Google refused GET /v1/policies (HTTP 403 PERMISSION_DENIED): The caller does not have permission",
        403,
        "PERMISSION_DENIED",
    )
    result = ip.read_imap_policy(FailingApi(error), "helpdesk@example.test", None)
    assert result["reason"] == "not_admin"
    assert "Only a super administrator can use the Cloud Identity Policy API" in result["message"]
    assert "helpdesk@example.test" in result["message"]


# --------------------------------------------------------------------------- "OAuth mail clients only"


def test_the_client_restriction_cannot_be_read_and_the_result_says_where_to_look():
    class Enabled:
        client_id = "1"

        def request(self, *args, **kwargs):
            return {
                "policies": [{"setting": {"type": "settings/gmail.imap_access", "value": {"enableImapAccess": True}}}]
            }

    result = ip.read_imap_policy(Enabled(), "admin@example.test", None)
    assert result["imap_access"] == "enabled"
    assert result["client_restriction"] == "unknown"
    note = result["client_restriction_message"]
    assert "does not expose" in note
    assert "Restrict which mail clients users can use (OAuth mail clients only)" in note
    assert "Allow any mail client" in note
    assert fl.ADMIN_CONSOLE_IMAP_PAGE in note
    assert "domain-wide delegation" in note
    # The verdict does not claim more than Google showed.
    assert "client_restriction_message" in result["message"]
    # Unreadable policy: the restriction is unknown too.
    failed = ip.read_imap_policy(FailingApi(disabled_error()), "admin@example.test", None)
    assert failed["client_restriction"] == "unknown" and failed["client_restriction_message"] == note


# --------------------------------------------------------------------------- 24 hours, multi-party approval


def test_no_message_promises_a_few_minutes():
    texts = [fl.HINTS[name] for name in fl.HINTS] + list(fl.API_REFUSAL_HINTS.values())
    for text in texts:
        assert "few minutes" not in text
    assert "24 hours" in fl.HINTS["imap_disabled"]
    assert "24 hours" in fl.HINTS["token_unauthorized_scope"]


def test_delegation_advice_says_24_hours_and_multi_party_approval():
    class Source:
        client_id = "110987654321098765432"
        client_email = "sa@p.iam.gserviceaccount.com"

    text = delegation.build_message(
        Source(),
        ["admin@example.test"],
        ["https://mail.google.com/"],
        [
            {
                "subject": "admin@example.test",
                "scope": "https://mail.google.com/",
                "authorized": False,
                "failure_class": "token_unauthorized_scope",
                "message": "refused",
            }
        ],
        ["https://mail.google.com/"],
        "https://admin.google.com/ac/owl/domainwidedelegation?x",
        0.0,
    )
    assert "few minutes" not in text
    assert "up to 24 hours" in text
    assert "multi-party approval" in text


def test_the_disabled_domain_verdict_says_24_hours():
    summary = ip.summarize_policies(
        [{"setting": {"type": "settings/gmail.imap_access", "value": {"enableImapAccess": False}}}]
    )
    assert "up to 24 hours" in ip.verdict_message(summary)


# --------------------------------------------------------------------------- the users' own IMAP switch


def test_gmail_not_keeping_enabled_is_explained_not_called_imap_disabled():
    gmail = FakeGmail(["kiosk@example.test"], ignore_put_fields=("enabled",))
    result = gmail_imap.apply_user(gmail, "kiosk@example.test", {"enabled": True}, False)
    assert result["failure_class"] == "api_error"
    assert result["failure_class"] != "imap_disabled"
    assert "enabled=False" in result["message"]
    assert "administrator" in result["message"] and fl.ADMIN_CONSOLE_IMAP_PAGE in result["message"]
    assert "imap_check" in result["message"]


def test_the_imap_disabled_hint_is_the_administrators_setting_first():
    text = fl.HINTS["imap_disabled"]
    assert fl.ADMIN_CONSOLE_IMAP_PAGE in text
    assert "gmail_imap_settings" in text
    assert "up to 24 hours" in text


def test_imap_auth_failed_hint_names_the_mail_client_restriction():
    assert "OAuth mail clients only" in fl.HINTS["imap_auth_failed"]
    assert "suspended" in fl.HINTS["imap_auth_failed"]
