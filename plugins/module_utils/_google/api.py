# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small JSON REST client for Google APIs called as delegated users (Gmail, Cloud Identity).

::

    source = DelegatedTokenSource(key_info, [SCOPE_GMAIL_SETTINGS_BASIC], session=session, ...)
    client = GoogleApiClient(source, api_base_url=None, ca_path=ca_path, timeout=10, retries=3)
    settings = client.request("GET", "gmail", "/gmail/v1/users/me/settings/imap", subject="user@example.com",
                              scopes=[SCOPE_GMAIL_SETTINGS_BASIC])

Why it is built this way:

- One pooled session (``session.new_session``) serves the token endpoint and every API host, so a run
  over 2,500 users keeps its TLS connections alive.
- Tokens are minted per subject by ``token.DelegatedTokenSource`` and cached per
  ``(subject, scopes)`` until shortly before expiry; a 401 drops the cached token and tries once more
  with a fresh one (a token can expire or be revoked between two calls).
- Retries (``pool.backoff_delay``) only for what can succeed on a second try: HTTP 408, 429 and 5xx
  (honouring ``Retry-After``), timeouts and reset connections. A refusal (4xx) is final.
- Google's JSON error envelope (``{"error": {"code", "message", "status", "errors": [{"reason"}],
  "details": [{"@type": ".../google.rpc.ErrorInfo", "reason"}]}}``) becomes one :class:`GoogleApiError`
  with the HTTP status, Google's status name, reason and message, and a ``failure_class`` from the
  collection's vocabulary (``failures.parse_api_error`` / ``classify_api_error``). Messages name the method and path, never a token.

Thread safety: :meth:`GoogleApiClient.request` may be called from many threads at once; the token
cache is the only shared mutable state and is guarded by a lock.

Parses as Python 3.6; needs requests (through ``session``) at run time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import json
import random
import threading
import time

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass


from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import raise_from, urlsplit
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import (
    API_FAILURE_CLASS,
    ENDPOINT_API,
    GoogleApiError,
    classify_api_error,
    classify_network_error,
    network_summary,
    parse_activation_url,
    parse_api_error,
    shorten,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.pool import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_MAX,
    backoff_delay,
    retry_after_seconds,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.session import new_session
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.token import DEFAULT_RETRIES, DEFAULT_TIMEOUT

SCOPE_GMAIL_SETTINGS_BASIC = "https://www.googleapis.com/auth/gmail.settings.basic"
SCOPE_POLICIES_READONLY = "https://www.googleapis.com/auth/cloud-identity.policies.readonly"

# Where each API lives at Google; ``api_base_url`` replaces all of them (the lab serves every API).
SERVICE_ROOTS = {
    "gmail": "https://gmail.googleapis.com",
    "cloudidentity": "https://cloudidentity.googleapis.com",
    "admin": "https://admin.googleapis.com",
    "iam": "https://iam.googleapis.com",
}

# Refresh a cached token this many seconds before Google's expiry, so no call starts with a dying token.
TOKEN_EXPIRY_MARGIN = 120.0


class GoogleApiClient:
    """Calls Google REST APIs as delegated users; see the module docstring.

    ``token_source``: anything with ``token(subject, scopes) -> (access_token, expiry)`` raising
    ``TokenError`` (``token.DelegatedTokenSource``). ``api_base_url``: one base URL for
    every API (the lab), else ``base_urls`` per service, else Google's hosts. ``session``: share the
    token source's session (``session.new_session``).
    """

    def __init__(
        self,
        token_source,  # type: Any
        api_base_url=None,  # type: Optional[str]
        base_urls=None,  # type: Optional[Mapping[str, str]]
        ca_path=None,  # type: Optional[str]
        timeout=DEFAULT_TIMEOUT,  # type: float
        retries=DEFAULT_RETRIES,  # type: int
        backoff_base=DEFAULT_BACKOFF_BASE,  # type: float
        backoff_max=DEFAULT_BACKOFF_MAX,  # type: float
        max_connections=10,  # type: int
        session=None,  # type: Any
        sleep=time.sleep,  # type: Callable[[float], None]
        rng=random.random,  # type: Callable[[], float]
        clock=time.time,  # type: Callable[[], float]
    ):
        # type: (...) -> None
        self._token_source = token_source
        # Identities for messages and Admin console links (DelegatedTokenSource has them).
        self.client_id = str(getattr(token_source, "client_id", "") or "")  # type: str
        self.client_email = str(getattr(token_source, "client_email", "") or "")  # type: str
        self._roots = dict(SERVICE_ROOTS)
        self._roots.update(base_urls or {})
        self._api_base_url = api_base_url.rstrip("/") if api_base_url else None
        self.ca_path = ca_path
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        if session is None:
            session = new_session(ca_path, max_connections)
        self._session = session
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        self._tokens = {}  # type: Dict[Tuple[str, Tuple[str, ...]], Tuple[str, Optional[float]]]
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ URLs and tokens

    def url(self, service, path):  # type: (str, str) -> str
        root = self._api_base_url or self._roots.get(service)
        if not root:
            raise ValueError("unknown Google API service %r" % service)
        return root.rstrip("/") + "/" + path.lstrip("/")

    def access_token(self, subject, scopes):  # type: (str, Sequence[str]) -> str
        """A cached token for ``subject`` with ``scopes``, minted when missing or near expiry (raises TokenError)."""
        cache_key = (subject.lower(), tuple(sorted(scopes)))
        with self._lock:
            cached = self._tokens.get(cache_key)
        if cached is not None:
            token, expires_at = cached
            if expires_at is None or expires_at - TOKEN_EXPIRY_MARGIN > self._clock():
                return token
        token, expiry = self._token_source.token(subject, list(scopes))
        expires_at = None
        if expiry is not None:
            # google-auth's expiry is a naive UTC datetime.
            expires_at = float(calendar.timegm(expiry.timetuple()))
        with self._lock:
            self._tokens[cache_key] = (token, expires_at)
        return token

    def forget_token(self, subject, scopes):  # type: (str, Sequence[str]) -> None
        with self._lock:
            self._tokens.pop((subject.lower(), tuple(sorted(scopes))), None)

    # ------------------------------------------------------------------ requests

    def request(
        self,
        method,
        service,
        path,
        subject,
        scopes,
        params=None,
        body=None,
    ):  # type: (str, str, str, str, Sequence[str], Optional[Mapping[str, Any]], Any) -> Any
        """Call ``method path`` of ``service`` as ``subject``; return the decoded JSON (``{}`` for no body).

        Raises :class:`TokenError` when no token can be minted and :class:`GoogleApiError` for anything else.
        """
        url = self.url(service, path)
        what = "%s %s" % (method, path)
        attempts = 0
        refreshed = False
        while True:
            attempts += 1
            headers = {"Authorization": "Bearer " + self.access_token(subject, scopes), "Accept": "application/json"}
            data = None
            if body is not None:
                headers["Content-Type"] = "application/json"
                data = json.dumps(body).encode("utf-8")
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                    verify=self.ca_path if self.ca_path else True,
                )
            except Exception as exc:  # noqa: BLE001 - every transport failure is classified, none escapes raw
                network = classify_network_error(exc)
                if network is None:
                    raise_from(
                        GoogleApiError(
                            API_FAILURE_CLASS,
                            "%s failed unexpectedly (%s: %s)." % (what, type(exc).__name__, shorten(str(exc), 300)),
                            attempts=attempts,
                        ),
                        None,
                    )
                failure_class, retryable = network
                if retryable and attempts <= self.retries:
                    self._sleep(backoff_delay(attempts, self.backoff_base, self.backoff_max, self._rng))
                    continue
                raise_from(
                    GoogleApiError(
                        failure_class,
                        "%s: %s %s (%s)."
                        % (network_summary(failure_class, ENDPOINT_API), what, _host(url), shorten(str(exc), 300)),
                        retryable=retryable,
                        attempts=attempts,
                    ),
                    None,
                )
            status = int(response.status_code)
            if 200 <= status < 300:
                return _json_body(response, what)
            api_status, reason, google_message = parse_api_error(response.content)
            if status == 401 and not refreshed:
                # The cached token expired or was revoked between calls: one more try with a fresh token.
                refreshed = True
                self.forget_token(subject, scopes)
                attempts -= 1
                continue
            failure_class, retryable = classify_api_error(status, api_status, reason, google_message)
            if retryable and attempts <= self.retries:
                wait = retry_after_seconds(response.headers.get("Retry-After"), self.backoff_max)
                if wait is None:
                    wait = backoff_delay(attempts, self.backoff_base, self.backoff_max, self._rng)
                self._sleep(wait)
                continue
            said = "HTTP %d" % status
            if api_status or reason:
                said += " %s" % "/".join(part for part in (api_status, reason) if part)
            message = "Google refused %s (%s): %s" % (what, said, google_message or response.reason or "no message")
            if retryable:
                message = "%s kept failing after %d attempts (%s: %s); Google may be having an outage, retry later." % (
                    what,
                    attempts,
                    said,
                    google_message or "no message",
                )
            raise GoogleApiError(
                failure_class,
                message,
                status,
                api_status,
                reason,
                google_message,
                retryable,
                attempts,
                activation_url=parse_activation_url(response.content) if status == 403 else None,
            )

    def close(self):  # type: () -> None
        self._session.close()


def _json_body(response, what):  # type: (Any, str) -> Any
    if not response.content:
        return {}
    try:
        return json.loads(response.content.decode("utf-8"))
    except ValueError:
        raise_from(
            GoogleApiError(
                API_FAILURE_CLASS,
                "%s answered HTTP %d with a body that is not JSON; is api_base_url right?"
                % (what, response.status_code),
                status=int(response.status_code),
            ),
            None,
        )


def _host(url):  # type: (str) -> str
    return "at " + (urlsplit(url).netloc or url)
