"""workspace_imap_policy_info main(): verdicts, warn-by-default, fail_on_error, require_enabled."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import GoogleApiError, TokenError
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.module import GoogleModule
from ansible_collections.nupoint.gworkspace.plugins.modules import workspace_imap_policy_info as module
from tests.unit import keyfactory as kf
from tests.unit.plugins.module_utils._google.test_imap_policy import FakePolicyApi, policy


@pytest.fixture(scope="module")
def key_text():
    return kf.key_json(kf.rsa_key())


@pytest.fixture
def api(monkeypatch):
    # AnsibleModule collects warnings in a module-global list; start every test with none.
    monkeypatch.setattr(ansible_warnings, "_global_warnings", [])
    holder = {"api": FakePolicyApi([{"policies": [policy(True)]}]), "created": []}

    def fake_client(self, scopes, max_connections):
        self.key_text()
        holder["created"].append((dict(self.params), tuple(scopes)))
        holder["api"].close = lambda: None
        return holder["api"]

    monkeypatch.setattr(GoogleModule, "api_client", fake_client)
    return holder


def test_enabled(run_module, api, key_text):
    result = run_module(module, {"content": key_text, "subject": "Admin@Example.test"}, check_mode=True)
    assert result["changed"] is False
    assert result["imap_access"] == "enabled"
    assert result["imap_enabled"] is True
    assert result["client_id"] == FakePolicyApi.client_id
    assert "admin_console_url" not in result
    assert not result.get("warnings")
    assert api["api"].calls[0][3] == "admin@example.test"
    assert api["created"][0][1] == ("https://www.googleapis.com/auth/cloud-identity.policies.readonly",)


def test_disabled_warns_and_require_enabled_fails(run_module, api, key_text):
    api["api"] = FakePolicyApi([{"policies": [policy(False)]}])
    result = run_module(module, {"content": key_text, "subject": "admin@example.test"})
    assert not result.get("failed")
    assert result["imap_access"] == "disabled"
    assert any("disabled for the domain" in warning for warning in result["warnings"])
    api["api"] = FakePolicyApi([{"policies": [policy(False)]}])
    result = run_module(module, {"content": key_text, "subject": "admin@example.test", "require_enabled": True})
    assert result["failed"] is True
    assert "disabled for the domain" in result["msg"]


def test_unreadable_warns_by_default_and_fails_when_told(run_module, api, key_text):
    refusal = TokenError("token_unauthorized_scope", "Google refused the token request (unauthorized_client).")
    api["api"] = FakePolicyApi(error=refusal)
    result = run_module(module, {"content": key_text, "subject": "admin@example.test"})
    assert not result.get("failed")
    assert result["policy_readable"] is False
    assert result["reason"] == "unauthorized_scope"
    assert result["admin_console_url"] in result["warnings"][0]
    for option in ("fail_on_error", "require_enabled"):
        result = run_module(module, {"content": key_text, "subject": "admin@example.test", option: True})
        assert result["failed"] is True
        assert result["reason"] == "unauthorized_scope"
        assert result["admin_console_url"] in result["msg"]


def test_not_admin(run_module, api, key_text):
    api["api"] = FakePolicyApi(
        error=GoogleApiError("api_error", "Google refused GET /v1/policies (HTTP 403)", 403, "PERMISSION_DENIED")
    )
    result = run_module(module, {"content": key_text, "subject": "user0001@example.test", "fail_on_error": True})
    assert result["failed"] is True
    assert result["reason"] == "not_admin"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"content": "KEY"}, "missing required arguments: subject"),
        ({"content": "KEY", "subject": "admin"}, "administrator's e-mail address"),
        ({"subject": "admin@example.test"}, "No service-account key"),
    ],
)
def test_bad_input(run_module, api, key_text, args, message):
    if args.get("content") == "KEY":
        args = dict(args, content=key_text)
    result = run_module(module, args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert api["api"].calls == []
