"""An in-memory Gmail users.settings.imap for unit tests, speaking _google.api.GoogleApiClient's interface."""

import threading
import time

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import GoogleApiError, TokenError

DEFAULTS = {"enabled": False, "autoExpunge": True, "expungeBehavior": "archive", "maxFolderSize": 0}


class FakeGmail:
    """Users' ImapSettings in memory; unknown users fail like Google's token endpoint does."""

    client_id = "110987654321098765432"
    client_email = "nupoint-um@unit-project.iam.gserviceaccount.com"

    def __init__(self, users, token_errors=None, api_errors=None, ignore_put_fields=(), delay=0.0):
        self.settings = {user: dict(DEFAULTS) for user in users}
        self.token_errors = dict(token_errors or {})
        self.api_errors = dict(api_errors or {})
        self.ignore_put_fields = set(ignore_put_fields)
        self.calls = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.closed = False
        self.delay = delay

    def request(self, method, service, path, subject, scopes, params=None, body=None):
        assert service == "gmail"
        assert path == "/gmail/v1/users/me/settings/imap"
        assert list(scopes) == ["https://www.googleapis.com/auth/gmail.settings.basic"]
        with self.lock:
            self.calls.append((method, subject, body))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            if subject in self.token_errors:
                raise self.token_errors[subject]
            if subject not in self.settings:
                raise TokenError("token_invalid_user", "Google refused the token request (invalid_grant).")
            if (method, subject) in self.api_errors:
                raise self.api_errors[(method, subject)]
            with self.lock:
                if method == "PUT":
                    stored = self.settings[subject]
                    stored.update({k: v for k, v in body.items() if k not in self.ignore_put_fields})
                return dict(self.settings[subject])
        finally:
            with self.lock:
                self.active -= 1

    def puts(self):
        return [call for call in self.calls if call[0] == "PUT"]

    def close(self):
        self.closed = True


def scope_error():
    return GoogleApiError(
        "token_unauthorized_scope",
        "Google refused GET /gmail/v1/users/me/settings/imap (HTTP 403 PERMISSION_DENIED/ACCESS_TOKEN_SCOPE_INSUFFICIENT)",
        403,
        "PERMISSION_DENIED",
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    )
