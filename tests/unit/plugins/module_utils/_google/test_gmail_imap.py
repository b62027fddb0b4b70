"""Unit tests for _google.gmail_imap: input cleaning, merge, one user, many users, summary."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import gmail_imap as gi
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import (
    FAILURE_CLASSES,
    GoogleApiError,
    TokenError,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.users import UsersError
from tests.unit.gmail_fake import FakeGmail, scope_error

ENABLE = {"enabled": True}

# --------------------------------------------------------------------------- users file


def test_users_file_one_per_line_skips_blanks_and_comments():
    text = "# Advanced UM users\nalice@example.com\n\n  bob@example.com  \n# end\n"
    assert gi.users_file_addresses(text) == (["alice@example.com", "bob@example.com"], [])


def test_users_file_csv_with_email_column():
    text = "name,Email,extension\nAlice,alice@example.com,2001\nNo Mail,,2002\nBob,bob@example.com,2003\n"
    addresses, warnings = gi.users_file_addresses(text)
    assert addresses == ["alice@example.com", "bob@example.com"]
    assert warnings == ["users_file row 3 has no email value; skipped."]


def test_users_file_csv_without_email_column_is_refused():
    with pytest.raises(gi.SettingsInputError, match="no 'email' column"):
        gi.users_file_addresses("name,address\nAlice,alice@example.com\n")


def test_users_file_single_email_header_and_empty_file():
    assert gi.users_file_addresses("email\nalice@example.com\n") == (["alice@example.com"], [])
    assert gi.users_file_addresses("\n# nothing\n") == ([], [])


def test_users_file_gam_export_with_semicolons_comments_and_blank_lines():
    text = "primaryEmail;name\n# leavers below\nalice@example.com;Alice\n\n;No Mail\n"
    assert gi.users_file_addresses(text) == (["alice@example.com"], ["users_file row 5 has no email value; skipped."])


# --------------------------------------------------------------------------- targets


def test_targets_are_cleaned_deduplicated_and_lower_cased():
    targets, warnings = gi.build_targets(
        ["Alice@Example.com", " bob@example.com", "", "not-an-address", "alice@example.com"],
        ["bob@example.com", "carol@example.com", "x@y"],
        ENABLE,
        duplicates="warn",
    )
    assert [user for user, _wanted in targets] == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert all(wanted == ENABLE for _user, wanted in targets)
    assert warnings == [
        "Skipped 2 entries that are not e-mail addresses: not-an-address (users), x@y (users_file).",
        "Merged 2 duplicate entries (addresses compare case-insensitively; duplicates: warn): alice@example.com, "
        "bob@example.com.",
    ]


def test_a_duplicate_is_refused_by_default():
    with pytest.raises(UsersError) as caught:
        gi.build_targets(["alice@example.com"], ["ALICE@example.com"], ENABLE)
    assert caught.value.reason == "duplicate_users"
    assert "users and users_file" in caught.value.msg


def test_targets_use_the_shared_address_rule():
    entries = ["us..er@example.com", "user@example.c", "o'brien@example.ie", "user@-example.com"]
    targets, warnings = gi.build_targets(entries, [], ENABLE)
    assert [user for user, _wanted in targets] == ["o'brien@example.ie"]
    assert warnings == [
        "Skipped 3 entries that are not e-mail addresses: us..er@example.com (users), user@example.c (users), "
        "user@-example.com (users)."
    ]


def test_per_user_dicts_override_the_task_settings():
    targets, warnings = gi.build_targets(
        [
            {"user": "kiosk@example.com", "enabled": False},
            {"user": "ops@example.com", "expunge_behavior": "trash", "max_folder_size": "1000", "auto_expunge": "no"},
            "alice@example.com",
        ],
        [],
        {"enabled": True, "max_folder_size": 0},
    )
    assert warnings == []
    assert targets == [
        ("kiosk@example.com", {"enabled": False, "max_folder_size": 0}),
        (
            "ops@example.com",
            {"enabled": True, "expunge_behavior": "trash", "max_folder_size": 1000, "auto_expunge": False},
        ),
        ("alice@example.com", {"enabled": True, "max_folder_size": 0}),
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"user": "a@example.com", "enabled": "maybe"}, "enabled must be a boolean"),
        ({"user": "a@example.com", "expunge_behavior": "delete"}, "expunge_behavior must be one of"),
        ({"user": "a@example.com", "max_folder_size": 1500}, "max_folder_size must be one of"),
        ({"user": "a@example.com", "max_folder_size": True}, "max_folder_size must be one of"),
        ({"user": "a@example.com", "imap": True}, "unknown keys imap"),
        ({"enabled": True}, "has no 'user' address"),
        (42, "must be addresses or dicts"),
    ],
)
def test_bad_entries_are_refused_before_any_call(entry, message):
    with pytest.raises(gi.SettingsInputError, match=message):
        gi.build_targets([entry], [], ENABLE)


def test_same_user_with_different_settings_is_refused():
    with pytest.raises(gi.SettingsInputError, match="listed more than once with different settings"):
        gi.build_targets(["a@example.com", {"user": "A@example.com", "enabled": False}], [], ENABLE)


def test_task_settings_leave_unset_options_unmanaged():
    params = {"enabled": True, "auto_expunge": None, "expunge_behavior": "trash", "max_folder_size": None}
    assert gi.task_settings(params) == {"enabled": True, "expunge_behavior": "trash"}


# --------------------------------------------------------------------------- merge


def test_merge_overlays_only_wanted_fields_and_keeps_unknown_ones():
    current = {"enabled": False, "autoExpunge": True, "expungeBehavior": "archive", "maxFolderSize": 0, "future": 1}
    merged, differing = gi.merge(current, {"enabled": True, "max_folder_size": 0})
    assert differing == ["enabled"]
    assert merged == dict(current, enabled=True)
    assert gi.to_info(merged) == {
        "enabled": True,
        "auto_expunge": True,
        "expunge_behavior": "archive",
        "max_folder_size": 0,
    }
    assert gi.to_info({"enabled": True}) == {"enabled": True}
    assert gi.to_info(None) is None


# --------------------------------------------------------------------------- one user


def test_apply_user_enables_and_preserves_other_fields():
    gmail = FakeGmail(["a@example.com"])
    gmail.settings["a@example.com"].update(expungeBehavior="trash", maxFolderSize=2000)
    result = gi.apply_user(gmail, "a@example.com", ENABLE, check_mode=False)
    assert result["changed"] is True
    assert result["failure_class"] == "ok"
    assert result["changed_settings"] == ["enabled"]
    assert result["before"]["enabled"] is False
    assert result["after"] == {
        "enabled": True,
        "auto_expunge": True,
        "expunge_behavior": "trash",
        "max_folder_size": 2000,
    }
    assert gmail.puts() == [
        (
            "PUT",
            "a@example.com",
            {"enabled": True, "autoExpunge": True, "expungeBehavior": "trash", "maxFolderSize": 2000},
        )
    ]


def test_apply_user_already_right_does_not_write():
    gmail = FakeGmail(["a@example.com"])
    gmail.settings["a@example.com"]["enabled"] = True
    result = gi.apply_user(gmail, "a@example.com", ENABLE, check_mode=False)
    assert result["changed"] is False
    assert result["before"] == result["after"]
    assert gmail.puts() == []


def test_apply_user_check_mode_only_reads():
    gmail = FakeGmail(["a@example.com"])
    result = gi.apply_user(gmail, "a@example.com", {"enabled": True, "expunge_behavior": "trash"}, check_mode=True)
    assert result["changed"] is True
    assert result["changed_settings"] == ["enabled", "expunge_behavior"]
    assert result["after"]["expunge_behavior"] == "trash"
    assert gmail.puts() == []
    assert gmail.settings["a@example.com"]["enabled"] is False


def test_apply_user_token_failure_is_classified():
    gmail = FakeGmail([])
    result = gi.apply_user(gmail, "ghost@example.com", ENABLE, check_mode=False)
    assert result["failure_class"] == "token_invalid_user"
    assert result["changed"] is False
    assert result["before"] is None


def test_apply_user_insufficient_scope_names_the_scope():
    gmail = FakeGmail(["a@example.com"], api_errors={("GET", "a@example.com"): scope_error()})
    result = gi.apply_user(gmail, "a@example.com", ENABLE, check_mode=False)
    assert result["failure_class"] == "token_unauthorized_scope"
    assert "https://www.googleapis.com/auth/gmail.settings.basic" in result["message"]
    assert result["http_status"] == 403


def test_apply_user_put_refused_is_not_changed():
    refused = GoogleApiError("api_error", "Google refused PUT ... (HTTP 400 invalidArgument)", 400, None, "invalid")
    gmail = FakeGmail(["a@example.com"], api_errors={("PUT", "a@example.com"): refused})
    result = gi.apply_user(gmail, "a@example.com", ENABLE, check_mode=False)
    assert (result["failure_class"], result["changed"], result["http_status"]) == ("api_error", False, 400)
    assert result["before"]["enabled"] is False


def test_apply_user_failed_precondition_hints_at_gmail_service():
    precondition = GoogleApiError("api_error", "Google refused GET", 400, "FAILED_PRECONDITION", "failedPrecondition")
    gmail = FakeGmail(["a@example.com"], api_errors={("GET", "a@example.com"): precondition})
    result = gi.apply_user(gmail, "a@example.com", ENABLE, check_mode=False)
    assert "Gmail may not be enabled for a@example.com" in result["message"]


def test_apply_user_update_that_does_not_stick_is_reported():
    gmail = FakeGmail(["a@example.com"], ignore_put_fields={"enabled"})
    result = gi.apply_user(gmail, "a@example.com", ENABLE, check_mode=False)
    assert result["changed"] is True
    assert result["failure_class"] == "api_error"
    assert "still reports enabled=False" in result["message"]


def test_apply_user_unexpected_error_stays_with_that_user():
    gmail = FakeGmail(["a@example.com"], api_errors={("GET", "a@example.com"): KeyError("enableImap")})
    result = gi.apply_user(gmail, "a@example.com", ENABLE, check_mode=False)
    assert result["failure_class"] == "api_error"
    assert "Unexpected error for a@example.com (KeyError" in result["message"]


# --------------------------------------------------------------------------- many users


def test_apply_all_keeps_order_runs_concurrently_and_summarises():
    users = ["user%04d@example.com" % index for index in range(200)]
    gmail = FakeGmail(users[:-2], delay=0.002)
    for user in users[:50]:
        gmail.settings[user]["enabled"] = True
    targets = [(user, ENABLE) for user in users]
    ticks = iter([100.0, 102.0])
    results, summary = gi.apply_all(gmail, targets, check_mode=False, concurrency=8, clock=lambda: next(ticks))
    assert [result["user"] for result in results] == users
    assert summary == {
        "total": 200,
        "changed": 148,
        "unchanged": 50,
        "failed": 2,
        "skipped": 0,
        "ok": 198,
        "by_class": dict(dict.fromkeys(FAILURE_CLASSES, 0), ok=198, token_invalid_user=2),
        "duration_seconds": 2.0,
        "users_per_second": 100.0,
    }
    assert 1 < gmail.max_active <= 8


def test_client_wide_failure_of_the_first_user_skips_the_rest():
    refusal = TokenError("token_unauthorized_scope", "Google refused the token request (unauthorized_client).")
    users = ["user%04d@example.com" % index for index in range(5)]
    gmail = FakeGmail(users, token_errors=dict.fromkeys(users, refusal))
    results, summary = gi.apply_all(gmail, [(user, ENABLE) for user in users], check_mode=False)
    assert len(gmail.calls) == 1
    assert summary["failed"] == 5 and summary["skipped"] == 4
    assert results[1]["skipped"] is True
    assert "user0000@example.com failed with token_unauthorized_scope" in results[1]["message"]


def test_user_specific_failure_of_the_first_user_does_not_skip():
    gmail = FakeGmail(["b@example.com"])
    results, summary = gi.apply_all(gmail, [("ghost@example.com", ENABLE), ("b@example.com", ENABLE)], False)
    assert [result["failure_class"] for result in results] == ["token_invalid_user", "ok"]
    assert summary["skipped"] == 0


def test_apply_all_with_nothing_to_do():
    results, summary = gi.apply_all(FakeGmail([]), [], check_mode=False)
    assert results == []
    assert summary["total"] == 0


def test_no_thread_per_user():
    before = threading.active_count()
    users = ["user%04d@example.com" % index for index in range(300)]
    seen = set()
    gmail = FakeGmail(users)
    original = gmail.request

    def recording(*args, **kwargs):
        seen.add(threading.get_ident())
        return original(*args, **kwargs)

    gmail.request = recording
    gi.apply_all(gmail, [(user, ENABLE) for user in users], check_mode=True, concurrency=4)
    assert len(seen) <= 5  # the caller's thread for the first user + the pool's 4
    assert threading.active_count() == before


def test_diff_lists_only_changing_users():
    results = [
        dict(gi.new_result("a@example.com"), changed=True, before={"enabled": False}, after={"enabled": True}),
        dict(gi.new_result("b@example.com"), before={"enabled": True}, after={"enabled": True}),
    ]
    assert gi.diff_of(results) == {
        "before": {"a@example.com": {"enabled": False}},
        "after": {"a@example.com": {"enabled": True}},
    }
