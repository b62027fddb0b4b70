"""iam.py without main(): planning, key summaries, refusal classification, the calls it makes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import time

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import failures as fl
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import iam
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import token as tk
from tests.unit import keyfactory

ACCOUNT = "nupoint-um@nupoint-lab.iam.gserviceaccount.com"
NOW = 1_700_000_000.0
DAY = 86400


def resource(key_id, age_days, disabled=False, valid_before=iam.NEVER):
    created = NOW - age_days * DAY
    return {
        "name": "projects/nupoint-lab/serviceAccounts/%s/keys/%s" % (ACCOUNT, key_id),
        "validAfterTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
        "validBeforeTime": valid_before,
        "keyAlgorithm": "KEY_ALG_RSA_2048",
        "keyOrigin": "GOOGLE_PROVIDED",
        "keyType": "USER_MANAGED",
        "disabled": disabled,
    }


class FakeClient:
    """Answers like GoogleApiClient.request from a table; records what was asked."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def request(self, method, service, path, subject, scopes, params=None, body=None):
        self.calls.append((method, service, path, subject, tuple(scopes), params, body))
        answer = self.answers.get((method, path.split("/keys/")[-1] if "/keys/" in path else path))
        if answer is None:
            answer = self.answers.get(method)
        if isinstance(answer, Exception):
            raise answer
        return answer if answer is not None else {}


def api_error(status, api_status, message, reason=None):
    return fl.GoogleApiError(fl.API_FAILURE_CLASS, "Google refused it", status, api_status, reason, message)


def test_paths_name_the_project_from_the_address():
    assert iam.account_path(ACCOUNT) == "/v1/projects/nupoint-lab/serviceAccounts/" + ACCOUNT
    assert iam.project_of("someone@example.com") == "-"
    assert iam.key_path(ACCOUNT, "ab/c", "other").startswith("/v1/projects/other/")
    assert iam.key_path(ACCOUNT, "ab/c").endswith("/keys/ab%2Fc")


def test_key_summary_age_expiry_and_type():
    summary = iam.key_summary(resource("k1", 97), NOW)
    assert summary["key_id"] == "k1"
    assert summary["age_days"] == 97
    assert summary["expires"] is None and summary["expired"] is False
    assert summary["key_type"] == "USER_MANAGED"
    expiring = iam.key_summary(resource("k2", 3, valid_before="2000-01-01T00:00:00Z"), NOW)
    assert expiring["expires"] == "2000-01-01T00:00:00Z" and expiring["expired"] is True


def test_list_keys_acts_as_the_admin_and_sorts_oldest_first():
    client = FakeClient({"GET": {"keys": [resource("young", 1), resource("old", 120)]}})
    keys = iam.list_keys(client, ACCOUNT, now=NOW)
    assert [key["key_id"] for key in keys] == ["old", "young"]
    method, service, _path, subject, scopes, params, _body = client.calls[0]
    assert (method, service, subject, scopes) == ("GET", "iam", iam.NO_SUBJECT, iam.ADMIN_SCOPES)
    assert params == {"keyTypes": ["USER_MANAGED"]}


@pytest.mark.parametrize(
    ("keys", "held", "max_age", "force", "action"),
    [
        ([], None, None, False, "create"),
        ([resource("a", 10)], "a", None, False, "keep"),
        ([resource("a", 10)], "a", 90, False, "keep"),
        ([resource("a", 91)], "a", 90, False, "create"),
        ([resource("a", 10, disabled=True)], "a", None, False, "create"),
        ([resource("a", 10)], "gone", None, False, "create"),
        ([resource("a", 10)], "a", None, True, "create"),
    ],
)
def test_plan_key(keys, held, max_age, force, action):
    summaries = [iam.key_summary(item, NOW) for item in keys]
    decided, key, why = iam.plan_key(summaries, held, max_age, force)
    assert decided == action
    assert why
    assert (key is not None) == (action == "keep")


def test_create_key_returns_the_file_once_and_never_in_repr():
    document = keyfactory.key_dict()
    text = json.dumps(document)
    body = dict(resource(document["private_key_id"], 0), privateKeyData=base64.b64encode(text.encode()).decode())
    client = FakeClient({"POST": body})
    created = iam.create_key(client, ACCOUNT, now=NOW)
    assert created.key_file == text
    assert created.summary["key_id"] == document["private_key_id"]
    assert created.metadata["fingerprint_sha256"]
    assert "PRIVATE" not in repr(created)
    assert client.calls[0][6]["privateKeyType"] == "TYPE_GOOGLE_CREDENTIALS_FILE"


def test_org_policy_refusal_names_the_policy_and_who_lifts_it():
    client = FakeClient(
        {"POST": api_error(400, "FAILED_PRECONDITION", "Key creation is not allowed on this service account.")}
    )
    with pytest.raises(fl.ApiRefusal) as excinfo:
        iam.create_key(client, ACCOUNT)
    exc = excinfo.value
    assert exc.refusal == fl.REFUSAL_ORG_POLICY
    assert fl.ORG_POLICY_KEY_CREATION in exc.msg
    assert "roles/orgpolicy.policyAdmin" in exc.msg
    assert "--project=nupoint-lab" in exc.msg
    assert exc.as_result()["refusal"] == "org_policy"
    assert exc.failure_class == fl.API_FAILURE_CLASS


def test_bare_failed_precondition_on_create_is_the_key_quota():
    client = FakeClient({"POST": api_error(400, "FAILED_PRECONDITION", "Precondition check failed.")})
    with pytest.raises(fl.ApiRefusal) as excinfo:
        iam.create_key(client, ACCOUNT)
    assert excinfo.value.refusal == fl.REFUSAL_KEY_QUOTA
    assert "10" in excinfo.value.msg


def test_service_disabled_carries_the_enable_link():
    link = "https://console.developers.google.com/apis/api/iam.googleapis.com/overview?project=123456789012"
    message = (
        "Identity and Access Management (IAM) API has not been used in project 123456789012 before or it is "
        "disabled. Enable it by visiting %s then retry." % link
    )
    client = FakeClient({"GET": api_error(403, "PERMISSION_DENIED", message, "SERVICE_DISABLED")})
    with pytest.raises(fl.ApiRefusal) as excinfo:
        iam.list_keys(client, ACCOUNT)
    assert excinfo.value.refusal == fl.REFUSAL_SERVICE_DISABLED
    assert excinfo.value.activation_url == link


def test_permission_denied_names_the_role():
    client = FakeClient(
        {
            "DELETE": api_error(
                403, "PERMISSION_DENIED", "Permission 'iam.serviceAccountKeys.delete' denied", "IAM_PERMISSION_DENIED"
            )
        }
    )
    with pytest.raises(fl.ApiRefusal) as excinfo:
        iam.delete_key(client, ACCOUNT, "k1")
    assert excinfo.value.refusal == fl.REFUSAL_PERMISSION_DENIED
    assert "roles/iam.serviceAccountKeyAdmin" in excinfo.value.msg


def test_scope_refusal_and_outages_stay_what_they_are():
    scope = fl.GoogleApiError(
        "token_unauthorized_scope", "scope", 403, "PERMISSION_DENIED", "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "x"
    )
    assert iam.refused(scope, "list") is scope
    outage = api_error(503, "UNAVAILABLE", "The service is currently unavailable.")
    assert iam.refused(outage, "list") is outage


def test_delete_of_a_missing_key_is_no_error():
    client = FakeClient({"DELETE": api_error(404, "NOT_FOUND", "Service account key does not exist.")})
    assert iam.delete_key(client, ACCOUNT, "gone") is False


def test_service_account_and_services():
    client = FakeClient({"GET": api_error(404, "NOT_FOUND", "Unknown service account")})
    assert iam.get_service_account(client, ACCOUNT) is None
    assert iam.services_for(["iam", "gmail"], ["iam.googleapis.com", "drive.googleapis.com"]) == [
        "iam.googleapis.com",
        "gmail.googleapis.com",
        "drive.googleapis.com",
    ]
    summary = iam.account_summary({"email": ACCOUNT, "uniqueId": "1234", "oauth2ClientId": "1234", "projectId": "p"})
    assert summary["client_id"] == "1234"


def test_admin_signer_leaves_out_sub():
    document = keyfactory.key_dict()
    signer = tk.KeySigner(document, token_uri="https://127.0.0.1:1/token")
    assertion = signer.assertion(iam.NO_SUBJECT, iam.ADMIN_SCOPES)
    payload = assertion.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert "sub" not in claims
    assert claims["iss"] == document["client_email"]
    assert claims["scope"] == iam.SCOPE_CLOUD_PLATFORM
