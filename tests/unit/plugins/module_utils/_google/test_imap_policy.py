"""Unit tests for _google.imap_policy: filter, paging, verdicts, and every way reading can fail."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import imap_policy as ip
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import GoogleApiError, TokenError

CLIENT_ID = "110987654321098765432"


def policy(enabled, org_unit="03ph8a2z1abcdef", group=None, name="policies/abc", kind="ADMIN"):
    query = {"query": "entity.org_units.exists(...)", "sortOrder": 1}
    if org_unit:
        query["orgUnit"] = "orgUnits/" + org_unit
    if group:
        query["group"] = group
    return {
        "name": name,
        "customer": "customers/C01abcdef",
        "policyQuery": query,
        "setting": {"type": "settings/gmail.imap_access", "value": {"enableImapAccess": enabled}},
        "type": kind,
    }


class FakePolicyApi:
    client_id = CLIENT_ID

    def __init__(self, pages=None, error=None):
        self.pages = list(pages or [{}])
        self.error = error
        self.calls = []

    def request(self, method, service, path, subject, scopes, params=None, body=None):
        self.calls.append((method, service, path, subject, tuple(scopes), dict(params or {})))
        if self.error is not None:
            raise self.error
        return self.pages[len(self.calls) - 1]


def test_filter_names_the_setting_type_and_the_customer():
    assert ip.policy_filter(None) == "setting.type.matches('settings/gmail.imap_access')"
    assert ip.policy_filter("my_customer") == (
        "customer == \"customers/my_customer\" && setting.type.matches('settings/gmail.imap_access')"
    )
    assert ip.policy_filter("customers/C01abc").startswith('customer == "customers/C01abc" && ')


def test_enabled_domain():
    api = FakePolicyApi([{"policies": [policy(True)]}])
    result = ip.read_imap_policy(api, "admin@example.test", "my_customer")
    assert result["policy_readable"] is True
    assert (result["imap_access"], result["imap_enabled"], result["failure_class"]) == ("enabled", True, "ok")
    assert result["policies"] == [
        {
            "name": "policies/abc",
            "org_unit": "03ph8a2z1abcdef",
            "group": None,
            "query": "entity.org_units.exists(...)",
            "sort_order": 1,
            "type": "ADMIN",
            "enabled": True,
        }
    ]
    method, service, path, subject, scopes, params = api.calls[0]
    assert (method, service, path, subject) == ("GET", "cloudidentity", "/v1/policies", "admin@example.test")
    assert scopes == ("https://www.googleapis.com/auth/cloud-identity.policies.readonly",)
    assert params["filter"].endswith("setting.type.matches('settings/gmail.imap_access')")
    assert result["reason"] is None
    assert result["admin_console_url"] is None


def test_disabled_domain():
    result = ip.read_imap_policy(FakePolicyApi([{"policies": [policy(False)]}]), "admin@example.test", None)
    assert (result["imap_access"], result["imap_enabled"]) == ("disabled", False)
    assert result["disabled_org_units"] == ["03ph8a2z1abcdef"]
    assert "disabled for the domain" in result["message"]
    assert "POP and IMAP access" in result["message"]


def test_mixed_policies_name_the_org_units_and_groups_and_pages_are_followed():
    pages = [
        {"policies": [policy(True, name="policies/root")], "nextPageToken": "page2"},
        {
            "policies": [
                policy(False, org_unit="03ph8a2zsales", name="policies/sales"),
                policy(False, org_unit=None, group="groups/kiosks", name="policies/kiosks"),
                # Another setting type slipping through the filter is ignored.
                {"name": "policies/pop", "setting": {"type": "settings/gmail.pop_access", "value": {}}},
            ]
        },
    ]
    api = FakePolicyApi(pages)
    result = ip.read_imap_policy(api, "admin@example.test", "my_customer")
    assert api.calls[1][5]["pageToken"] == "page2"
    assert (result["imap_access"], result["imap_enabled"]) == ("mixed", None)
    assert [item["name"] for item in result["policies"]] == ["policies/root", "policies/sales", "policies/kiosks"]
    assert result["disabled_org_units"] == ["03ph8a2zsales"]
    assert result["disabled_groups"] == ["groups/kiosks"]
    assert "org units 03ph8a2zsales and groups groups/kiosks" in result["message"]


def test_no_policy_is_unknown_not_assumed():
    result = ip.read_imap_policy(FakePolicyApi([{}]), "admin@example.test", None)
    assert result["policy_readable"] is True
    assert (result["imap_access"], result["imap_enabled"]) == ("unknown", None)
    assert "could not be verified" in result["message"]


def test_scope_not_authorised_at_the_token_endpoint_gives_the_console_link():
    refusal = TokenError("token_unauthorized_scope", "Google refused the token request (unauthorized_client).")
    result = ip.read_imap_policy(FakePolicyApi(error=refusal), "admin@example.test", None)
    assert result["policy_readable"] is False
    assert (result["failure_class"], result["reason"]) == ("token_unauthorized_scope", "unauthorized_scope")
    url = result["admin_console_url"]
    assert "clientIdToAdd=%s" % CLIENT_ID in url
    assert "https://www.googleapis.com/auth/cloud-identity.policies.readonly" in url
    assert "https://mail.google.com/" in url
    assert url in result["message"]
    assert result["imap_access"] == "unknown"


def test_insufficient_scope_from_the_api_is_the_same_case():
    error = GoogleApiError("token_unauthorized_scope", "Google refused GET /v1/policies (HTTP 403)", 403)
    result = ip.read_imap_policy(FakePolicyApi(error=error), "admin@example.test", None)
    assert result["reason"] == "unauthorized_scope"
    assert result["http_status"] == 403


def test_subject_not_an_admin():
    error = GoogleApiError(
        "api_error",
        "Google refused GET /v1/policies (HTTP 403 PERMISSION_DENIED): The caller does not have permission",
        403,
        "PERMISSION_DENIED",
    )
    result = ip.read_imap_policy(FakePolicyApi(error=error), "user0001@example.test", None)
    assert (result["failure_class"], result["reason"]) == ("api_error", "not_admin")
    assert "user0001@example.test cannot read the domain's policies" in result["message"]
    assert "super administrator" in result["message"]


def test_unknown_subject_and_other_failures():
    unknown = TokenError("token_invalid_user", "Google refused the token request (invalid_grant).")
    result = ip.read_imap_policy(FakePolicyApi(error=unknown), "ghost@example.test", None)
    assert (result["failure_class"], result["reason"]) == ("token_invalid_user", "unknown_subject")
    assert "super administrator" in result["message"]
    down = GoogleApiError("connect", "Cannot connect to the API host for GET /v1/policies")
    result = ip.read_imap_policy(FakePolicyApi(error=down), "admin@example.test", None)
    assert (result["failure_class"], result["reason"]) == ("connect", "error")


@pytest.mark.parametrize(
    ("values", "verdict"),
    [([True, True], "enabled"), ([False], "disabled"), ([True, False], "mixed"), ([], "unknown"), ([None], "unknown")],
)
def test_verdicts(values, verdict):
    summary = ip.summarize_policies([policy(value, name="policies/%d" % index) for index, value in enumerate(values)])
    assert summary["imap_access"] == verdict
