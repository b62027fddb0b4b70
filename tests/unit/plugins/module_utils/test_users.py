"""Unit tests for module_utils.users: users files, address cleaning, the user limit, fail_threshold.

Moved here from test_imap_probe.py and test_gmail_imap.py when both modules started sharing these rules.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils import users as us

# --------------------------------------------------------------------------- users


def test_users_file_csv_with_email_column():
    text = "name,email,ou\nAlice,alice@example.test,/\nBob,BOB@example.test,/\n,,\nCarol,not-an-address,/\n"
    entries = us.parse_users_file(text)
    assert entries == [(2, "alice@example.test"), (3, "BOB@example.test"), (4, ""), (5, "not-an-address")]


def test_users_file_gam_primary_email_and_semicolons():
    assert us.parse_users_file("primaryEmail;name\na@example.test;A\n") == [(2, "a@example.test")]


def test_users_file_one_address_per_line_with_comments_blanks_and_bom():
    text = "\ufeff# Advanced UM users\nalice@example.test\n\n  bob@example.test  \n"
    assert us.parse_users_file(text) == [(2, "alice@example.test"), (3, ""), (4, "bob@example.test")]


def test_users_file_empty():
    assert us.parse_users_file("") == []
    assert us.parse_users_file("\n\n") == [(1, ""), (2, "")]


def test_users_file_csv_without_an_address_column_is_refused():
    with pytest.raises(us.UsersError, match="no 'email' column"):
        us.parse_users_file("name,address\nAlice,alice@example.test\n")
    with pytest.raises(us.UsersError, match="no 'email' column"):
        us.parse_users_file("# users\nname;ou\nAlice;/\n")


def test_users_file_comments_inside_csv_keep_file_line_numbers():
    text = (
        "# exported\nname,Email,ext\nAlice,alice@example.test,1\n# a note\n\nNo Mail,,2\n,,\nBob,bob@example.test,3\n"
    )
    assert us.users_file_entries(text) == [
        (3, "alice@example.test", True),
        (5, "", False),
        (6, "", True),
        (7, "", False),
        (8, "bob@example.test", True),
    ]
    assert us.parse_users_file("name\temail\nA\ta@example.test\n") == [(2, "a@example.test")]


def test_screen_address_verdicts():
    seen = set()
    assert us.screen_address("  Alice@Example.test ", seen) == (us.NEW, "Alice@Example.test")
    assert us.screen_address("alice@example.test", seen) == (us.DUPLICATE, "alice@example.test")
    assert us.screen_address(" ", seen) == (us.BLANK, "")
    assert us.screen_address("alice@", seen) == (us.INVALID, "alice@")
    assert seen == {"alice@example.test"}


def test_clean_users_drops_blanks_duplicates_and_invalid_with_warnings():
    text = (
        "email\nalice@example.test\n\nALICE@example.test\nbob@example.test\nbob@\n@example.test\n"
        "carol@example\nd ave@example.test\nalice@example.test\n"
    )
    users, warnings, skipped = us.clean_users(us.parse_users_file(text), "users_file", duplicates="warn")
    assert users == ["alice@example.test", "bob@example.test"]
    assert skipped["blank"] == 1
    assert skipped["duplicate"] == ["ALICE@example.test", "alice@example.test"]
    assert len(skipped["invalid"]) == 4
    assert "users_file line 6" in skipped["invalid"][0]
    assert len(warnings) == 3
    assert warnings[0] == "Ignored 1 blank entry in users_file."
    assert warnings[1].startswith("Ignored 2 duplicate addresses in users_file (duplicates: warn): ALICE@example.test")
    assert "deletes all their voice messages" in warnings[1]
    assert warnings[2].startswith("Ignored 4 invalid addresses in users_file: 'bob@' (users_file line 6)")


def test_clean_users_from_a_list_and_long_listings_are_capped():
    entries = ["user%02d@example.test" % (number % 3) for number in range(20)] + [" ", ""]
    users, warnings, skipped = us.clean_users(entries, duplicates="warn")
    assert users == ["user00@example.test", "user01@example.test", "user02@example.test"]
    assert skipped["blank"] == 2
    assert len(skipped["duplicate"]) == 17
    assert "and 7 more" in warnings[1]


@pytest.mark.parametrize(
    "entries",
    [
        ["alice@example.test", "bob@example.test", "Alice@Example.TEST"],
        ["alice@example.test", "  alice@example.test  "],
        [(2, "alice@example.test"), (9, "ALICE@example.test")],
    ],
    ids=["case", "whitespace", "file-lines"],
)
def test_a_duplicate_fails_by_default_and_says_why(entries):
    with pytest.raises(us.UsersError) as caught:
        us.clean_users(entries, "users_file")
    error = caught.value
    assert error.reason == "duplicate_users"
    assert "1 address is listed more than once in users_file" in error.msg
    assert "alice@example.test" in error.msg
    assert "deletes all their voice messages" in error.msg
    assert "duplicates: warn" in error.msg  # the way out, for a list that only repeats the same mailbox


def test_every_users_error_has_a_reason():
    refusals = [
        lambda: us.parse_fail_threshold("many"),
        lambda: us.users_file_entries("id,name\n1,alice\n"),
        lambda: us.read_users_file("/nonexistent/users.txt"),
        lambda: us.clean_users(["a@example.test", "A@example.test"]),
    ]
    reasons = []
    for refuse in refusals:
        with pytest.raises(us.UsersError) as caught:
            refuse()
        reasons.append(caught.value.reason)
    assert reasons == ["invalid_fail_threshold", "invalid_users_file", "users_file_unreadable", "duplicate_users"]


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("user0001@example.test", True),
        ("first.last+tag@sub.example.com", True),
        ("o'brien@example.ie", True),
        ("user@example", False),
        ("user@@example.com", False),
        (".user@example.com", False),
        ("user.@example.com", False),
        ("us..er@example.com", False),
        ("user@-example.com", False),
        ("user example@example.com", False),
        ("<user@example.com>", False),
        ("user@example.com,", False),
    ],
)
def test_is_valid_address(address, valid):
    assert us.is_valid_address(address) is valid


def test_user_limit():
    assert us.enforce_max_users(2500, 2500) is None
    refusal = us.enforce_max_users(2501, 2500)
    assert "2501 users" in refusal and "2,500" in refusal and "enforce_user_limit: false" in refusal
    assert us.enforce_max_users(2501, 2500, enforce=False).startswith("warning:")


# --------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (0, ("count", 0)),
        ("0", ("count", 0)),
        (10, ("count", 10)),
        ("10", ("count", 10)),
        (2.0, ("count", 2)),
        ("5%", ("fraction", 0.05)),
        (" 12.5 % ", ("fraction", 0.125)),
        ("0.05", ("fraction", 0.05)),
        (0.05, ("fraction", 0.05)),
        ("0%", ("fraction", 0.0)),
    ],
)
def test_parse_fail_threshold(value, parsed):
    kind, number = us.parse_fail_threshold(value)
    assert kind == parsed[0]
    assert number == pytest.approx(parsed[1])


@pytest.mark.parametrize("value", [-1, "-0.5", "1.5", "150%", True, "", "lots", "nan"])
def test_parse_fail_threshold_rejects(value):
    with pytest.raises(ValueError):
        us.parse_fail_threshold(value)


@pytest.mark.parametrize(
    ("failed", "total", "threshold", "exceeded"),
    [
        (0, 100, ("count", 0), False),
        (1, 100, ("count", 0), True),
        (10, 100, ("count", 10), False),
        (11, 100, ("count", 10), True),
        (5, 100, ("fraction", 0.05), False),
        (6, 100, ("fraction", 0.05), True),
        (0, 0, ("fraction", 0.0), False),
    ],
)
def test_threshold_exceeded(failed, total, threshold, exceeded):
    assert us.threshold_exceeded(failed, total, threshold) is exceeded


def test_describe_threshold():
    assert us.describe_threshold(("count", 0)) == "0 failed users"
    assert us.describe_threshold(("count", 1)) == "1 failed user"
    assert us.describe_threshold(("fraction", 0.05)) == "5% of users failing"


# --------------------------------------------------------------------------- thresholds (gmail_imap_settings)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (0, ("count", 0)),
        (10, ("count", 10)),
        ("3", ("count", 3)),
        (0.05, ("fraction", 0.05)),
        ("0.5", ("fraction", 0.5)),
        ("5%", ("fraction", 0.05)),
        (2.0, ("count", 2)),
    ],
)
def test_parse_fail_threshold_as_gmail_imap_settings_read_it(value, parsed):
    assert us.parse_fail_threshold(value) == parsed


@pytest.mark.parametrize("value", [-1, "1.5", "150%", "many", True, "", float("nan"), "inf"])
def test_bad_fail_threshold_names_the_accepted_forms(value):
    with pytest.raises(us.UsersError, match="fail_threshold must be"):
        us.parse_fail_threshold(value)


@pytest.mark.parametrize(
    ("failed", "total", "threshold", "exceeded"),
    [
        (0, 10, 0, False),
        (1, 10, 0, True),
        (2, 10, 2, False),
        (3, 10, 2, True),
        (1, 10, 0.1, False),
        (2, 10, "10%", True),
    ],
)
def test_threshold_from_parsed_values(failed, total, threshold, exceeded):
    assert us.threshold_exceeded(failed, total, us.parse_fail_threshold(threshold)) is exceeded


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("lots", "'lots' is not a number"),
        ("150%", "'150%' is not between 0% and 100%"),
        (-1, "-1 is negative"),
        ("1.5", "'1.5' is neither a whole count nor a fraction below 1"),
        ("1e400", "'1e400' is not a finite number"),
        (True, "True is a boolean"),
    ],
)
def test_bad_fail_threshold_says_why(value, reason):
    with pytest.raises(us.UsersError) as excinfo:
        us.parse_fail_threshold(value)
    assert excinfo.value.msg.startswith("fail_threshold: %s. fail_threshold must be a whole count" % reason)
