"""gmail_imap_settings main(): options, check/diff mode, idempotency, failures, no key in results."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest
from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.module import GoogleModule
from ansible_collections.nupoint.gworkspace.plugins.modules import gmail_imap_settings
from tests.unit import keyfactory as kf
from tests.unit.gmail_fake import FakeGmail, scope_error

USERS = ["alice@example.test", "bob@example.test", "carol@example.test"]


@pytest.fixture(scope="module")
def key_text():
    return kf.key_json(kf.rsa_key())


@pytest.fixture
def gmail(monkeypatch):
    # AnsibleModule collects warnings in a module-global list; start every test with none.
    monkeypatch.setattr(ansible_warnings, "_global_warnings", [])
    fake = FakeGmail(USERS)
    created = []

    def fake_client(self, scopes, max_connections):
        created.append((dict(self.params), self.key_text(), tuple(scopes), max_connections))
        return fake

    monkeypatch.setattr(GoogleModule, "api_client", fake_client)
    fake.created = created
    return fake


def test_enables_then_is_idempotent(run_module, gmail, key_text):
    args = {"content": key_text, "users": USERS}
    first = run_module(gmail_imap_settings, args)
    assert first["changed"] is True
    assert first["summary"]["changed"] == 3
    assert first["failed_users"] == []
    assert first["client_id"] == FakeGmail.client_id
    assert [result["after"]["enabled"] for result in first["results"]] == [True, True, True]
    second = run_module(gmail_imap_settings, args)
    assert second["changed"] is False
    assert second["summary"]["unchanged"] == 3
    assert gmail.closed


def test_check_mode_writes_nothing_and_diff_shows_the_change(run_module, gmail, key_text):
    result = run_module(gmail_imap_settings, {"content": key_text, "users": USERS[:1]}, check_mode=True, diff=True)
    assert result["changed"] is True
    assert gmail.puts() == []
    assert result["diff"]["before"] == {
        "alice@example.test": {
            "enabled": False,
            "auto_expunge": True,
            "expunge_behavior": "archive",
            "max_folder_size": 0,
        }
    }
    assert result["diff"]["after"]["alice@example.test"]["enabled"] is True


def test_options_are_passed_and_per_user_overrides_apply(run_module, gmail, key_text):
    args = {
        "content": key_text,
        "users": [{"user": "alice@example.test", "enabled": False, "max_folder_size": 1000}, "bob@example.test"],
        "expunge_behavior": "trash",
        "concurrency": 4,
        "api_base_url": "https://127.0.0.1:18400",
        "ca_path": "/lab/ca.pem",
    }
    result = run_module(gmail_imap_settings, args)
    params, passed_key, scopes, max_connections = gmail.created[0]
    assert passed_key == key_text
    assert scopes == ("https://www.googleapis.com/auth/gmail.settings.basic",)
    assert max_connections == 4
    assert params["api_base_url"] == "https://127.0.0.1:18400"
    assert gmail.settings["alice@example.test"] == {
        "enabled": False,
        "autoExpunge": True,
        "expungeBehavior": "trash",
        "maxFolderSize": 1000,
    }
    assert gmail.settings["bob@example.test"]["enabled"] is True
    assert [r["changed_settings"] for r in result["results"]] == [
        ["expunge_behavior", "max_folder_size"],
        ["enabled", "expunge_behavior"],
    ]


def test_users_file_and_warnings(run_module, gmail, key_text, tmp_path):
    users_file = tmp_path / "users.csv"
    users_file.write_text("email,name\nalice@example.test,Alice\nALICE@example.test,dup\nnot-an-address,x\n")
    result = run_module(
        gmail_imap_settings,
        {"content": key_text, "users_file": str(users_file), "users": ["bob@example.test"], "duplicates": "warn"},
    )
    assert [r["user"] for r in result["results"]] == ["bob@example.test", "alice@example.test"]
    assert any("not e-mail addresses" in warning for warning in result["warnings"])
    assert any("duplicate" in warning for warning in result["warnings"])


def test_a_duplicate_address_fails_before_any_change(run_module, gmail, key_text):
    result = run_module(
        gmail_imap_settings,
        {"content": key_text, "users": ["alice@example.test", "bob@example.test", "ALICE@example.test"]},
    )
    assert result["failed"] is True
    assert result["changed"] is False
    assert result["reason"] == "duplicate_users"
    assert "alice@example.test" in result["msg"]


def test_unknown_user_fails_the_task_with_a_per_user_result(run_module, gmail, key_text):
    result = run_module(gmail_imap_settings, {"content": key_text, "users": ["ghost@example.test", *USERS]})
    assert result["failed"] is True
    assert result["summary"]["failed"] == 1
    assert result["failed_users"][0]["user"] == "ghost@example.test"
    assert result["failed_users"][0]["failure_class"] == "token_invalid_user"
    assert result["msg"].startswith("1 of 4 users failed (token_invalid_user 1). First: ghost@example.test")
    assert result["changed"] is True  # the other three were enabled
    assert "admin_console_url" not in result


def test_fail_threshold_tolerates_failures(run_module, gmail, key_text):
    result = run_module(
        gmail_imap_settings, {"content": key_text, "users": ["ghost@example.test", *USERS], "fail_threshold": "25%"}
    )
    assert not result.get("failed")
    assert result["summary"]["failed"] == 1


def test_scope_not_authorised_gives_the_admin_console_link(run_module, gmail, key_text):
    gmail.api_errors = {("GET", user): scope_error() for user in USERS}
    result = run_module(gmail_imap_settings, {"content": key_text, "users": USERS})
    assert result["failed"] is True
    assert result["summary"]["skipped"] == 2
    url = result["admin_console_url"]
    assert url.startswith("https://admin.google.com/ac/owl/domainwidedelegation?")
    assert "https://www.googleapis.com/auth/gmail.settings.basic" in url
    assert "clientIdToAdd=%s" % FakeGmail.client_id in url
    assert url in result["msg"]


def test_key_from_a_path_on_the_node(run_module, gmail, key_text, tmp_path):
    key_path = tmp_path / "sa.json"
    key_path.write_text(key_text)
    result = run_module(gmail_imap_settings, {"path": str(key_path), "users": USERS[:1]})
    assert result["changed"] is True
    assert gmail.created[0][1] == key_text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"users": USERS}, "No service-account key"),
        ({"path": "/nonexistent/sa.json", "users": USERS}, "Cannot read the key file /nonexistent/sa.json"),
        ({"content": "{not json", "users": USERS}, "not complete JSON"),
        ({"content": "KEY", "users": [{"user": "a@example.test", "max_folder_size": 3}]}, "max_folder_size must be"),
        ({"content": "KEY", "users": USERS, "concurrency": 0}, "concurrency must be at least 1"),
        ({"content": "KEY", "users": USERS, "fail_threshold": "lots"}, "fail_threshold must be"),
        ({"content": "KEY"}, "one of the following is required: users, users_file"),
        ({"content": "KEY", "users_file": "/nonexistent/users.txt"}, "Cannot read users_file"),
    ],
)
def test_bad_input_fails_before_google(run_module, gmail, key_text, args, message):
    if args.get("content") == "KEY":
        args = dict(args, content=key_text)
    result = run_module(gmail_imap_settings, args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert gmail.calls == []


def test_no_key_material_in_the_result(run_module, gmail, key_text):
    key = json.loads(key_text)
    result = run_module(gmail_imap_settings, {"content": key_text, "users": ["ghost@example.test"]})
    text = json.dumps(result)
    assert key["private_key"][40:80] not in text
    assert "PRIVATE KEY" not in text
