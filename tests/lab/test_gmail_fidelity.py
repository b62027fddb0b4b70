"""The lab says what Gmail says (issue 11, item 6): every IMAP refusal Gmail words its own way reaches the
client with Gmail's text through the real Dovecot, and the collection's IMAP check classes each one.

Gmail's answer to a refused XOAUTH2 login is a base64 JSON challenge, then, after the client's empty line,
``NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)`` (Google's "OAuth 2.0 Mechanism" page documents the
challenge; the tagged line is what Gmail sends, as captured in public client logs). docs/lab-contract.md lists
what is public for each case below and what still differs between the lab and Gmail.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from tests.lab.google.server import (
    ALERT_IMAP_DOMAIN_DISABLED,
    ALERT_IMAP_USER_DISABLED,
    GMAIL_XOAUTH2_CHALLENGE,
    IMAP_INVALID_CREDENTIALS,
    MSG_REVOKE_INVALID,
    lab_imap_fields,
)
from tests.lab.test_lab_services import mint_token, raw_authenticate, xoauth2

GMAIL_REFUSED = "a1 NO " + IMAP_INVALID_CREDENTIALS
# The challenge Dovecot 2.3 sends before the tagged NO: fixed in its XOAUTH2 code, so it cannot be Gmail's.
DOVECOT_XOAUTH2_CHALLENGE = {"status": "401", "schemes": "bearer", "scope": "mail"}


@pytest.fixture
def http(lab: Any) -> Any:
    session = lab.requests_session()
    yield session
    session.close()


def refusal(lab: Any, user: str, token: str) -> list[str]:
    """The server's lines for one XOAUTH2 login: the challenge and the tagged answer."""
    return raw_authenticate(lab, b"XOAUTH2", xoauth2(user, token))


def challenge_of(lines: list[str]) -> dict[str, str]:
    assert lines[0].startswith("+ ")
    return json.loads(base64.b64decode(lines[0][2:]))


class FixedTokens:
    """A token source for ImapChecker that hands out the token a test chose for each user."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens

    def token(self, subject: str, scopes: Any = None) -> tuple[str, float]:
        return self.tokens[subject], time.time() + 3000


def check(lab: Any, tokens: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The collection's own IMAP check (imap_login.ImapChecker, imap.ImapConnection) against the lab's Dovecot."""
    from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.imap_login import ImapChecker

    checker = ImapChecker(
        FixedTokens(tokens),
        host=lab.host,
        port=lab.imap_port,
        ssl_context=lab.ssl_context(),
        timeout=10,
        user_timeout=30,
        retries=0,
        select_mailbox="INBOX",
    )
    return {user: checker.check(user) for user in tokens}


def test_the_challenge_is_gmails_shape_but_dovecots_words(lab, lab_reset):
    """A documented difference (docs/lab-contract.md): same keys as Gmail's, Dovecot's fixed values."""
    lines = refusal(lab, lab.users[0], "ya29.not-a-token")
    assert challenge_of(lines) == DOVECOT_XOAUTH2_CHALLENGE
    assert set(challenge_of(lines)) == set(GMAIL_XOAUTH2_CHALLENGE)
    assert lines[-1] == GMAIL_REFUSED


def test_a_token_for_user_a_presented_as_user_b(lab, lab_reset):
    alice, bob = lab.users[0], lab.users[1]
    token = mint_token(lab, alice)
    assert refusal(lab, bob, token)[-1] == GMAIL_REFUSED
    # Bob's own IMAP state does not change the answer: the token is not Bob's.
    lab.google.set_user_imap(bob, False)
    assert refusal(lab, bob, token)[-1] == GMAIL_REFUSED
    # The same token is good for its own user, whatever the letter case of the login name.
    assert refusal(lab, alice.upper(), token)[-1].startswith("a1 OK ")
    results = check(lab, {bob: token})
    assert results[bob]["failure_class"] == "imap_auth_failed"
    assert results[bob]["phase"] == "auth"
    assert IMAP_INVALID_CREDENTIALS in results[bob]["message"]


def test_a_revoked_token(lab, lab_reset, http):
    user = lab.users[2]
    token = mint_token(lab, user)
    assert refusal(lab, user, token)[-1].startswith("a1 OK ")
    # Google's revocation endpoint: the token stops working at once; a second revocation is refused.
    assert http.post(f"{lab.google_base_url}/revoke", data={"token": token}).status_code == 200
    again = http.post(f"{lab.google_base_url}/revoke", data={"token": token})
    assert (again.status_code, again.json()) == (
        400,
        {"error": "invalid_token", "error_description": MSG_REVOKE_INVALID},
    )
    # Google's own tokeninfo still refuses it the OAuth way; Dovecot's refusal is Gmail's.
    assert http.get(f"{lab.google_base_url}/tokeninfo", params={"access_token": token}).status_code == 400
    assert refusal(lab, user, token)[-1] == GMAIL_REFUSED
    result = check(lab, {user: token})[user]
    assert (result["failure_class"], result["phase"]) == ("imap_auth_failed", "auth")
    assert "suspended" in result["message"]  # the hint names the causes an administrator can check


def test_a_suspended_user(lab, lab_reset, http):
    user = lab.users[3]
    token = mint_token(lab, user)
    lab.google.set_suspended([user])
    assert refusal(lab, user, token)[-1] == GMAIL_REFUSED
    assert check(lab, {user: token})[user]["failure_class"] == "imap_auth_failed"
    # The Directory says so, as the Admin console would.
    assert lab.google.state()["suspended_users"] == [user]
    # Restored, the same token works again; suspending does not touch other users.
    other = lab.users[4]
    assert refusal(lab, other, mint_token(lab, other))[-1].startswith("a1 OK ")
    lab.google.set_suspended([user], suspended=False)
    assert refusal(lab, user, token)[-1].startswith("a1 OK ")
    assert check(lab, {user: token})[user]["failure_class"] == "ok"


def test_imap_switched_off_is_still_gmails_alert_and_imap_disabled(lab, lab_reset):
    user, other = lab.users[5], lab.users[6]
    token, other_token = mint_token(lab, user), mint_token(lab, other)
    lab.google.set_user_imap(user, False)
    assert refusal(lab, user, token)[-1] == "a1 NO " + ALERT_IMAP_USER_DISABLED
    results = check(lab, {user: token, other: other_token})
    assert results[user]["failure_class"] == "imap_disabled"
    assert results[other]["failure_class"] == "ok"
    lab.google.set_domain_imap(False)
    assert refusal(lab, other, other_token)[-1] == "a1 NO " + ALERT_IMAP_DOMAIN_DISABLED
    assert check(lab, {other: other_token})[other]["failure_class"] == "imap_disabled"


def test_tokeninfo_answers_dovecot_for_every_token(lab, lab_reset, http):
    """The lab-only mode Dovecot uses; without the flag tokeninfo stays Google's."""
    url = f"{lab.google_base_url}/tokeninfo"
    bad = http.get(url, params={"x_lab_dovecot": "1", "access_token": "ya29.bad"})
    assert bad.status_code == 200
    assert bad.json() == {
        "email": "",
        "x_lab_imap": "invalid_token",
        "x_lab_imap_alert": IMAP_INVALID_CREDENTIALS,
        "x_lab_invalid_credentials": IMAP_INVALID_CREDENTIALS,
    }
    assert http.get(url, params={"access_token": "ya29.bad"}).status_code == 400
    user = lab.users[7]
    good = http.get(url, params={"x_lab_dovecot": "1", "access_token": mint_token(lab, user)}).json()
    assert (good["email"], good["x_lab_imap"], good["x_lab_imap_alert"]) == (user, "enabled", "")


def test_lab_imap_fields_suspended_wins() -> None:
    suspended = lab_imap_fields("A@X", False, {"a@x"}, {"a@x"})
    assert suspended == {"x_lab_imap": "suspended", "x_lab_imap_alert": IMAP_INVALID_CREDENTIALS}
    assert lab_imap_fields("a@x", True, set(), {"b@x"})["x_lab_imap"] == "enabled"


@pytest.mark.parametrize("text", [IMAP_INVALID_CREDENTIALS, ALERT_IMAP_USER_DISABLED, ALERT_IMAP_DOMAIN_DISABLED])
def test_the_classifier_knows_each_gmail_text(text: str) -> None:
    from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import classify_imap_text

    expected = "imap_auth_failed" if text == IMAP_INVALID_CREDENTIALS else "imap_disabled"
    # Known texts are classed by their words, whatever the phase.
    assert classify_imap_text(text, "auth") == (expected, False)
    assert classify_imap_text(text, None) == (expected, False)


# --- Google Cloud project gating (issue 11, item 4: a disabled API is its own refusal) --------------------

POLICIES = "https://www.googleapis.com/auth/cloud-identity.policies.readonly"
GMAIL_SETTINGS = "https://www.googleapis.com/auth/gmail.settings.basic"


@pytest.mark.parametrize(
    ("service", "scope", "path"),
    [
        ("cloudidentity.googleapis.com", POLICIES, "/v1/policies"),
        ("gmail.googleapis.com", GMAIL_SETTINGS, "/gmail/v1/users/me/settings/imap"),
    ],
)
def test_an_api_disabled_in_the_callers_project_is_googles_service_disabled(lab, lab_reset, http, service, scope, path):
    lab.google.authorize_scopes(lab.client_id, [scope])
    token = mint_token(lab, lab.admin, scopes=(scope,))
    headers = {"Authorization": f"Bearer {token}"}
    assert http.get(lab.google_base_url + path, headers=headers).status_code == 200
    lab.google.set_services(lab.project_id, [service], enabled=False)
    refused = http.get(lab.google_base_url + path, headers=headers)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["status"] == "PERMISSION_DENIED"
    assert error["errors"][0]["reason"] == "accessNotConfigured"
    info = error["details"][0]
    assert info["reason"] == "SERVICE_DISABLED"
    number = lab.google.state()["projects"][lab.project_id]["number"]
    link = f"https://console.developers.google.com/apis/api/{service}/overview?project={number}"
    assert info["metadata"]["activationUrl"] == link
    assert link in error["message"] and "has not been used in project" in error["message"]
