"""imap_check: main() with a fake token source and a scripted IMAP server (no network)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat

import pytest
from ansible.module_utils.common import warnings

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import imap_login
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import TokenError
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.module import GoogleModule
from ansible_collections.nupoint.gworkspace.plugins.modules import imap_check as module
from tests.unit import keyfactory as kf
from tests.unit.plugins.module_utils._google.test_imap_login import (
    GMAIL_DOMAIN_DISABLED,
    GMAIL_USER_DISABLED,
    FakeServer,
    FakeTokenSource,
)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(warnings, "_global_warnings", [])


class ModuleTokenSource(FakeTokenSource):
    client_id = kf.CLIENT_ID
    client_email = kf.CLIENT_EMAIL

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.closed = False
        self.created_with = None

    def close(self):
        self.closed = True


@pytest.fixture
def fakes(monkeypatch):
    """The module's token source and IMAP client factory, replaced by fakes; returns (server, source)."""
    server = FakeServer()
    source = ModuleTokenSource()

    def token_source(self, scopes, max_connections, **kwargs):
        json.loads(self.key_text())  # the key reached the module as one JSON string
        source.created_with = dict(kwargs, scope=scopes[0], concurrency=max_connections)
        return source

    monkeypatch.setattr(GoogleModule, "token_source", token_source)
    monkeypatch.setattr(imap_login, "ImapConnection", server.factory)
    return server, source


def users(count):
    return ["user%04d@example.test" % number for number in range(1, count + 1)]


def args(**overrides):
    base = {"content": kf.key_json(), "users": users(5), "imap_host": "imap.example.test"}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def test_all_ok(run_module, fakes):
    server, source = fakes
    result = run_module(module, args(concurrency=4))
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["summary"]["ok"] == 5
    assert result["summary"]["concurrency"] == 4
    assert result["failed_users"] == []
    assert [entry["user"] for entry in result["results"]] == users(5)
    assert result["client_email"] == kf.CLIENT_EMAIL
    assert result["msg"].startswith("IMAP login ok for 5 of 5 users")
    assert source.closed
    assert source.created_with["concurrency"] == 4
    assert source.created_with["scope"] == "https://mail.google.com/"
    assert len(server.selects) == 5


def test_failures_fail_the_task_by_default_with_every_result(run_module, fakes):
    server, _source = fakes
    server.auth = {"user0002@example.test": [GMAIL_USER_DISABLED], "user0004@example.test": [GMAIL_DOMAIN_DISABLED]}
    result = run_module(module, args())
    assert result["failed"] is True
    assert result["summary"]["by_class"]["imap_disabled"] == 2
    assert [entry["user"] for entry in result["failed_users"]] == ["user0002@example.test", "user0004@example.test"]
    assert "2 failed: imap_disabled 2" in result["msg"]
    assert "fail_threshold (0 failed users)" in result["msg"]
    assert len(result["results"]) == 5


@pytest.mark.parametrize(("threshold", "failed"), [(2, False), (1, True), ("40%", False), ("0.3", True)])
def test_fail_threshold(run_module, fakes, threshold, failed):
    server, _source = fakes
    server.auth = {"user0002@example.test": [GMAIL_USER_DISABLED], "user0004@example.test": [GMAIL_USER_DISABLED]}
    result = run_module(module, args(fail_threshold=threshold))
    assert bool(result.get("failed")) is failed
    assert result["summary"]["failed"] == 2


def test_bad_fail_threshold(run_module, fakes):
    result = run_module(module, args(fail_threshold="lots"))
    assert result["failed"] is True
    assert result["msg"].startswith("fail_threshold:")


def test_token_refusals_are_classified(run_module, fakes):
    _server, source = fakes
    source.errors = {
        "user0003@example.test": TokenError("token_invalid_user", "Google does not know this user.", "invalid_grant")
    }
    result = run_module(module, args(fail_threshold=1))
    assert not result.get("failed")
    assert result["failed_users"][0]["failure_class"] == "token_invalid_user"


def test_more_users_than_nupoint_supports_is_refused_before_any_login(run_module, fakes):
    server, source = fakes
    result = run_module(module, args(users=users(2501)))
    assert result["failed"] is True
    assert "2501 users" in result["msg"]
    assert "2,500" in result["msg"]
    assert "enforce_user_limit" in result["msg"]
    assert server.connects == 0
    assert source.calls == []


def test_user_limit_can_be_lifted(run_module, fakes):
    result = run_module(module, args(users=users(12), max_users=10, enforce_user_limit=False, return_results=False))
    assert not result.get("failed")
    assert result["summary"]["total"] == 12
    assert "results" not in result
    assert any("more than max_users=10" in warning for warning in result["warnings"])


def test_users_file_is_cleaned_with_warnings(run_module, fakes, tmp_path):
    users_file = tmp_path / "um-users.csv"
    users_file.write_text(
        "email,name\nuser0001@example.test,A\n,\nUSER0001@example.test,A again\nnot-an-address,X\nuser0002@example.test,B\n"
    )
    result = run_module(module, args(users=None, users_file=str(users_file), duplicates="warn"))
    assert not result.get("failed"), result
    assert result["users_count"] == 2
    assert result["skipped_users"]["blank"] == 1
    assert result["skipped_users"]["duplicate"] == ["USER0001@example.test"]
    assert result["skipped_users"]["invalid"] == ["'not-an-address' (users_file line 5)"]
    assert len(result["warnings"]) == 3


def test_a_duplicate_address_fails_the_task_before_any_check(run_module, fakes, tmp_path):
    users_file = tmp_path / "um-users.txt"
    users_file.write_text("user0001@example.test\nuser0002@example.test\nUser0001@Example.test\n")
    result = run_module(module, args(users=None, users_file=str(users_file)))
    assert result["failed"] is True
    assert result["changed"] is False
    assert result["reason"] == "duplicate_users"
    assert "user0001@example.test" in result["msg"]
    assert "results" not in result


def test_users_file_csv_without_an_address_column_fails(run_module, fakes, tmp_path):
    users_file = tmp_path / "um-users.csv"
    users_file.write_text("name,extension\nuser0001@example.test,2001\n")
    result = run_module(module, args(users=None, users_file=str(users_file)))
    assert result["failed"] is True
    assert "no 'email' column" in result["msg"]
    assert fakes[1].calls == []


def test_unreadable_users_file(run_module, fakes, tmp_path):
    result = run_module(module, args(users=None, users_file=str(tmp_path / "missing.txt")))
    assert result["failed"] is True
    assert "Cannot read users_file" in result["msg"]


def test_no_valid_user(run_module, fakes):
    result = run_module(module, args(users=["", "nobody"]))
    assert result["failed"] is True
    assert result["msg"].startswith("No valid user address to check: every entry of users")
    assert result["reason"] == "no_users"


def test_report_is_written_0600_and_not_in_check_mode(run_module, fakes, tmp_path):
    report = tmp_path / "imap.json"
    result = run_module(module, args(report_path=str(report)), check_mode=True)
    assert "report" not in result
    assert not report.exists()
    result = run_module(module, args(report_path=str(report)))
    assert result["report"] == {
        "json": str(report),
        "csv": str(tmp_path / "imap.csv"),
        "html": str(tmp_path / "imap.html"),
    }
    assert stat.S_IMODE(os.stat(report).st_mode) == 0o600
    assert json.loads(report.read_text())["summary"]["total"] == 5
    assert (tmp_path / "imap.csv").read_text().splitlines()[0].startswith("user,failure_class,phase")


def test_unwritable_report_fails_with_the_results(run_module, fakes, tmp_path):
    result = run_module(module, args(report_path=str(tmp_path / "missing-dir" / "imap.json")))
    assert result["failed"] is True
    assert "could not be written" in result["msg"]
    assert result["summary"]["ok"] == 5


def test_key_must_reach_the_module(run_module, fakes):
    result = run_module(module, {"src": "files/key.json", "users": users(1)})
    assert result["failed"] is True
    assert "No key reached the module" in result["msg"]
    result = run_module(module, {"users": users(1)})
    assert result["failed"] is True
    assert result["msg"].startswith("No service-account key: set src")
    assert (result["reason"], result["field"]) == ("read_error", "src")


def test_key_file_on_the_node(run_module, fakes, tmp_path):
    key_path = tmp_path / "service-account.json"
    key_path.write_text(kf.key_json())
    result = run_module(module, {"path": str(key_path), "users": users(2), "imap_host": "imap.example.test"})
    assert not result.get("failed"), result
    missing = run_module(module, {"path": str(tmp_path / "none.json"), "users": users(2)})
    assert missing["failed"] is True
    assert "Cannot read the key file" in missing["msg"]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("concurrency", 0, "concurrency must be between 1 and 256"),
        ("concurrency", 1000, "concurrency must be between 1 and 256"),
        ("user_timeout", 0, "user_timeout must be more than 0"),
        ("retries", -1, "retries must be 0 or more"),
        ("imap_port", 70000, "is not a TCP port"),
    ],
)
def test_option_checks(run_module, fakes, option, value, message):
    result = run_module(module, args(**{option: value}))
    assert result["failed"] is True
    assert message in result["msg"]


def test_invalid_key_is_reported(run_module, monkeypatch):
    result = run_module(module, args(content='{"type": "service_account"}'))
    assert result["failed"] is True
    assert result["failure_class"] == "token_invalid_key"


def test_no_token_in_the_result(run_module, fakes):
    server, _source = fakes
    server.auth = {"user0001@example.test": [GMAIL_USER_DISABLED]}
    result = run_module(module, args())
    dumped = json.dumps(result)
    assert server.seen_tokens
    for token in server.seen_tokens:
        assert token not in dumped
    assert "PRIVATE KEY" not in dumped
