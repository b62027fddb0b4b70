"""delegation_check: main() with google-auth's real refresh over a scripted session (no network)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import email.utils
import json
import time

import pytest
from ansible.module_utils.common import warnings

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import module as google_module
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import token
from ansible_collections.nupoint.gworkspace.plugins.modules import delegation_check as module
from tests.unit import keyfactory as kf
from tests.unit.plugins.module_utils._google.test_token import (
    ACCOUNT_NOT_FOUND,
    CLOCK_SKEW,
    INVALID_USER,
    UNAUTHORIZED,
    FakeResponse,
    FakeSession,
    jwt_parts,
    ok_response,
)

MAIL = "https://mail.google.com/"
SETTINGS = "https://www.googleapis.com/auth/gmail.settings.basic"


class FakeGoogle:
    """Answers like the token endpoint: unknown users, unauthorised scopes, a clock offset, or everything refused."""

    def __init__(self, authorized=(MAIL,), users=("admin@example.test", "user0001@example.test"), offset=0.0):
        self.authorized = set(authorized)
        self.users = set(users)
        self.offset = offset
        self.refuse_all = None

    def __call__(self, form_body):
        headers = {"Date": email.utils.formatdate(time.time() + self.offset, usegmt=True)}
        if form_body is None:  # HEAD for the clock offset
            return FakeResponse(405, b"", headers)
        if self.refuse_all is not None:
            return FakeResponse(400, self.refuse_all, headers)
        claims = jwt_parts(form_body)[1]
        if claims["sub"] not in self.users:
            return FakeResponse(400, INVALID_USER, headers)
        if claims["scope"] not in self.authorized:
            return FakeResponse(401, UNAUTHORIZED, headers)
        return ok_response("ya29.secret-" + claims["sub"])


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """AnsibleModule keeps warnings in a module-level list; main() runs in-process here, so start each test clean."""
    monkeypatch.setattr(warnings, "_global_warnings", [])


@pytest.fixture
def google(monkeypatch):
    fake = FakeGoogle()
    real = token.DelegatedTokenSource

    def factory(*args, **kwargs):
        kwargs["session"] = FakeSession(fake)
        return real(*args, **kwargs)

    monkeypatch.setattr(google_module, "DelegatedTokenSource", factory)
    return fake


@pytest.fixture
def key():
    return kf.rsa_key()


def args(key, **extra):
    result = {"content": kf.key_json(key), "subjects": ["admin@example.test", "user0001@example.test"]}
    result.update(extra)
    return result


def assert_clean(key, result):
    rendered = json.dumps(result)
    assert "ya29." not in rendered
    for marker in kf.secret_markers(key):
        assert marker not in rendered


def test_authorised(run_module, google, key):
    result = run_module(module, args(key))
    assert "failed" not in result
    assert result["authorized"] is True
    assert result["changed"] is False
    assert [(c["subject"], c["scope"], c["failure_class"]) for c in result["checks"]] == [
        ("admin@example.test", MAIL, "ok"),
        ("user0001@example.test", MAIL, "ok"),
    ]
    assert result["missing_scopes"] == []
    assert result["admin_console_url"] is None
    assert result["client_id"] == kf.CLIENT_ID
    assert abs(result["clock_offset_seconds"]) < 1.5
    assert "Domain-wide delegation works" in result["msg"]
    assert_clean(key, result)


def test_missing_scope_gives_link_and_paste_instructions(run_module, google, key):
    result = run_module(module, args(key, scopes=[MAIL, SETTINGS]))
    assert result["failed"] is True
    assert result["missing_scopes"] == [SETTINGS]
    assert result["summary"]["by_class"]["ok"] == 2
    assert result["summary"]["by_class"]["token_unauthorized_scope"] == 2
    assert (result["summary"]["total"], result["summary"]["failed"]) == (4, 2)
    assert result["admin_console_url"] == (
        "https://admin.google.com/ac/owl/domainwidedelegation?clientScopeToAdd=%s,%s&clientIdToAdd=%s"
        "&overwriteClientId=true" % (MAIL, SETTINGS, kf.CLIENT_ID)
    )
    msg = result["msg"]
    assert "Manage domain-wide delegation" in msg
    assert "paste %s into Client ID and %s,%s into OAuth scopes" % (kf.CLIENT_ID, MAIL, SETTINGS) in msg
    unauthorised = [c for c in result["checks"] if not c["authorized"]]
    assert {c["google_error"] for c in unauthorised} == {"unauthorized_client"}
    assert {c["http_status"] for c in unauthorised} == {401}
    assert_clean(key, result)


def test_fail_on_error_false_reports_without_failing(run_module, google, key):
    google.authorized = set()
    result = run_module(module, args(key, fail_on_error=False))
    assert "failed" not in result
    assert result["authorized"] is False
    assert result["missing_scopes"] == [MAIL]


def test_unknown_user(run_module, google, key):
    result = run_module(module, args(key, subjects=["ghost@example.test"]))
    assert result["failed"] is True
    assert result["checks"][0]["failure_class"] == "token_invalid_user"
    assert "Google does not know ghost@example.test" in result["msg"]
    assert result["admin_console_url"] is None


def test_clock_skew_is_called_out_with_the_measured_offset(run_module, google, key):
    google.offset = 3600
    google.refuse_all = CLOCK_SKEW
    result = run_module(module, args(key))
    assert result["failed"] is True
    assert {c["failure_class"] for c in result["checks"]} == {"token_clock_skew"}
    assert result["clock_offset_seconds"] == pytest.approx(3600, abs=2)
    assert "behind Google's clock" in result["msg"]
    assert "that is the cause" in result["msg"]
    assert any("clock" in warning for warning in result["warnings"])


def test_clock_skew_with_right_clock_points_elsewhere(run_module, google, key):
    google.refuse_all = CLOCK_SKEW
    result = run_module(module, args(key))
    assert "yet this node's clock is" in result["msg"]
    assert not result.get("warnings")


def test_disabled_or_deleted_account_is_invalid_key(run_module, google, key):
    google.refuse_all = ACCOUNT_NOT_FOUND
    result = run_module(module, args(key))
    assert {c["failure_class"] for c in result["checks"]} == {"token_invalid_key"}
    assert "Cloud console" in result["msg"]


def test_path_on_the_node(run_module, google, key, tmp_path):
    key_file = tmp_path / "sa.json"
    key_file.write_text(kf.key_json(key))
    result = run_module(module, {"path": str(key_file), "subjects": ["admin@example.test"]})
    assert result["authorized"] is True
    missing = run_module(module, {"path": str(tmp_path / "nope.json"), "subjects": ["admin@example.test"]})
    assert missing["failed"] is True
    assert missing["reason"] == "read_error"


def test_unreachable_endpoint_is_connect(run_module, key):
    """No fake: the real session to a closed loopback port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_module(
        module, args(key, token_uri="https://127.0.0.1:%d/token" % port, retries=0, timeout=2, subjects=["a@b.test"])
    )
    assert result["failed"] is True
    assert result["checks"][0]["failure_class"] == "connect"
    assert result["clock_offset_seconds"] is None


@pytest.mark.parametrize(
    ("key_args", "reason", "message"),
    [
        ({"src": "files/sa.json"}, "read_error", "No key reached the module"),
        ({}, "read_error", "No service-account key"),
        ({"content": '{"type": "service_account"}'}, "missing_field", "has no 'project_id' field"),
    ],
)
def test_key_problems_fail_before_google(run_module, google, key_args, reason, message):
    result = run_module(module, dict(key_args, subjects=["admin@example.test"]))
    assert result["failed"] is True
    assert result["reason"] == reason
    assert message in result["msg"]
    assert "checks" not in result
