"""_google.delegation without main(): one token request per subject and scope, classified, and what to fix."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import delegation
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import TokenError, hint

MAIL = "https://mail.google.com/"
SETTINGS = "https://www.googleapis.com/auth/gmail.settings.basic"
CLIENT_ID = "110987654321098765432"


class Minted:
    def __init__(self):
        self.http_status = 200
        self.attempts = 1


class FakeSource:
    """A token source whose answers are decided per (subject, scope); records what was asked, from which threads."""

    client_id = CLIENT_ID
    client_email = "nupoint-um@example-project.iam.gserviceaccount.com"
    private_key_id = "ab" * 20
    token_uri = "https://oauth2.googleapis.com/token"

    def __init__(self, refusals=None, offset=0.2):
        self.refusals = refusals or {}
        self.offset = offset
        self.asked = []
        self.lock = threading.Lock()

    def mint(self, subject, scopes):
        with self.lock:
            self.asked.append((subject, tuple(scopes)))
        refusal = self.refusals.get((subject, scopes[0]))
        if refusal is not None:
            raise refusal
        return Minted()

    def clock_offset(self):
        return self.offset


def unauthorized():
    return TokenError(
        "token_unauthorized_scope",
        "Google refused the token request (unauthorized_client: Client is unauthorized).",
        "unauthorized_client",
        "Client is unauthorized to retrieve access tokens using this method.",
        status=401,
    )


def test_every_subject_with_every_scope_one_scope_per_request():
    source = FakeSource()
    result = delegation.check_delegation(source, ["admin@example.test", "user@example.test"], [MAIL, SETTINGS])
    assert sorted(source.asked) == sorted(
        (subject, (scope,)) for subject in ("admin@example.test", "user@example.test") for scope in (MAIL, SETTINGS)
    )
    assert result["authorized"] is True
    assert result["missing_scopes"] == []
    assert result["admin_console_url"] is None
    assert result["summary"]["total"] == 4
    assert result["summary"]["by_class"]["ok"] == 4
    assert result["warnings"] == []
    assert result["msg"].startswith("Domain-wide delegation works: client ID %s" % CLIENT_ID)
    assert [check["subject"] for check in result["checks"]] == [
        "admin@example.test",
        "admin@example.test",
        "user@example.test",
        "user@example.test",
    ]


def test_missing_scope_gives_the_link_with_every_scope_and_the_text_to_paste():
    source = FakeSource({("admin@example.test", SETTINGS): unauthorized()})
    result = delegation.check_delegation(source, ["admin@example.test"], [MAIL, SETTINGS])
    assert result["authorized"] is False
    assert result["missing_scopes"] == [SETTINGS]
    assert "clientScopeToAdd=%s,%s" % (MAIL, SETTINGS) in result["admin_console_url"]
    assert "clientIdToAdd=%s" % CLIENT_ID in result["admin_console_url"]
    assert "paste %s into Client ID and %s,%s into OAuth scopes" % (CLIENT_ID, MAIL, SETTINGS) in result["msg"]
    assert result["msg"].endswith("Link: %s" % result["admin_console_url"])
    assert result["summary"]["by_class"]["token_unauthorized_scope"] == 1
    refused = next(check for check in result["checks"] if not check["authorized"])
    assert (refused["google_error"], refused["http_status"]) == ("unauthorized_client", 401)


def test_unknown_user_is_named_with_the_fix():
    source = FakeSource({("ghost@example.test", MAIL): TokenError("token_invalid_user", "Invalid email or User ID")})
    result = delegation.check_delegation(source, ["admin@example.test", "ghost@example.test"], [MAIL])
    assert "Google does not know ghost@example.test. %s" % hint("token_invalid_user") in result["msg"]
    assert result["missing_scopes"] == []


@pytest.mark.parametrize(("offset", "blamed"), [(312.0, True), (0.4, False), (None, False)])
def test_clock_skew_blames_this_clock_only_when_it_is_off(offset, blamed):
    source = FakeSource({("admin@example.test", MAIL): TokenError("token_clock_skew", "Invalid JWT")}, offset=offset)
    result = delegation.check_delegation(source, ["admin@example.test"], [MAIL], warn_seconds=10.0)
    assert ("and that is the cause" in result["msg"]) is blamed
    assert ("The node that signs NuPoint's JWTs (MSL) may have a different clock" in result["msg"]) is not blamed
    assert bool(result["warnings"]) is blamed
    assert result["clock_offset_seconds"] == offset


def test_describe_offset_says_which_way():
    assert delegation.describe_offset(None) == "could not be measured"
    assert delegation.describe_offset(120.0) == "120.0 s behind Google's clock"
    assert delegation.describe_offset(-3.0) == "3.0 s ahead of Google's clock"
