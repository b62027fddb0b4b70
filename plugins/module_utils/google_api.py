# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small JSON REST client for Google APIs called as delegated users (Gmail, Cloud Identity).

::

    source = DelegatedTokenSource(key_info, [SCOPE_GMAIL_SETTINGS_BASIC], session=new_session(ca_path, 16), ...)
    client = GoogleApiClient(source, api_base_url=None, ca_path=ca_path, timeout=10, retries=3)
    settings = client.request("GET", "gmail", "/gmail/v1/users/me/settings/imap", subject="user@example.com",
                              scopes=[SCOPE_GMAIL_SETTINGS_BASIC])

Why it is built this way:

- One pooled ``requests.Session`` serves the token endpoint and every API host, so a run over 2,500
  users keeps its TLS connections alive. :func:`new_session` makes a session that verifies against
  ``ca_path`` whenever one is given: ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` in the environment would
  otherwise silently replace ``session.verify`` for every request that does not pass ``verify=`` itself
  (requests' ``merge_environment_settings``), and google-auth's transport does not. Without ``ca_path``
  requests' usual default applies (the environment's bundle, else certifi). Proxies from the environment
  still apply.
- Tokens are minted per subject by google_oauth's :class:`DelegatedTokenSource` and cached per
  ``(subject, scopes)`` until shortly before expiry; a 401 drops the cached token and tries once more
  with a fresh one (a token can expire or be revoked between two calls).
- Retries with exponential backoff and jitter only for what can succeed on a second try: HTTP 408,
  429 and 5xx (honouring ``Retry-After``), timeouts and reset connections. A refusal (4xx) is final.
- Google's JSON error envelope (``{"error": {"code", "message", "status", "errors": [{"reason"}],
  "details": [{"@type": ".../google.rpc.ErrorInfo", "reason"}]}}``) becomes one :class:`GoogleApiError`
  with the HTTP status, Google's status name, reason and message, and a ``failure_class`` from the
  collection's vocabulary. Messages name the method and path, never a token.

Thread safety: :meth:`GoogleApiClient.request` may be called from many threads at once; the token
cache is the only shared mutable state and is guarded by a lock.

Runs where the calling module runs: parses as Python 3.6; third-party imports are guarded.
"""

import json
import random
import threading
import time
import traceback
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.nupoint.gworkspace.plugins.module_utils.google_oauth import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    TokenError,
    backoff_delay,
    classify_network_error,
    retry_after_seconds,
)

try:
    import requests
    from requests.adapters import HTTPAdapter
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR: Optional[str] = traceback.format_exc()
    _SessionBase: Any = object
else:
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
    _SessionBase = requests.Session

SCOPE_GMAIL_SETTINGS_BASIC = "https://www.googleapis.com/auth/gmail.settings.basic"
SCOPE_POLICIES_READONLY = "https://www.googleapis.com/auth/cloud-identity.policies.readonly"

# Where each API lives at Google; ``api_base_url`` replaces all of them (the lab serves every API).
SERVICE_ROOTS = {
    "gmail": "https://gmail.googleapis.com",
    "cloudidentity": "https://cloudidentity.googleapis.com",
    "admin": "https://admin.googleapis.com",
    "iam": "https://iam.googleapis.com",
}

# The API side of the failure vocabulary (DESIGN.md lists the token, network and IMAP classes).
API_FAILURE_CLASS = "api_error"
_RETRYABLE_STATUS = frozenset((408, 429, 500, 502, 503, 504))
# Refresh a cached token this many seconds before Google's expiry, so no call starts with a dying token.
TOKEN_EXPIRY_MARGIN = 120.0


class GoogleApiError(Exception):
    """An API call failed. ``failure_class`` is ``token_unauthorized_scope`` (the token lacks the API's scope),
    a network class (``dns``, ``connect``, ``tls``, ``timeout``) or ``api_error`` (Google refused or failed).

    ``status``: HTTP status (None when no answer); ``api_status``: Google's status name
    (``PERMISSION_DENIED``); ``reason``: the most specific reason Google gave (``ErrorInfo.reason`` such
    as ``ACCESS_TOKEN_SCOPE_INSUFFICIENT``, else ``errors[0].reason`` such as ``insufficientPermissions``);
    ``google_message``: Google's own message.
    """

    def __init__(
        self,
        failure_class: str,
        message: str,
        status: Optional[int] = None,
        api_status: Optional[str] = None,
        reason: Optional[str] = None,
        google_message: Optional[str] = None,
        retryable: bool = False,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.failure_class = failure_class
        self.msg = message
        self.status = status
        self.api_status = api_status
        self.reason = reason
        self.google_message = google_message
        self.retryable = retryable
        self.attempts = attempts

    @property
    def insufficient_scope(self) -> bool:
        return self.failure_class == "token_unauthorized_scope"

    @property
    def permission_denied(self) -> bool:
        """Google answered 403 for a reason other than the token's scopes (e.g. the caller is not an admin)."""
        return self.status == 403 and not self.insufficient_scope

    def as_result(self) -> Dict[str, Any]:
        return {
            "failure_class": self.failure_class,
            "message": self.msg,
            "http_status": self.status,
            "api_status": self.api_status,
            "api_reason": self.reason,
            "retryable": self.retryable,
            "attempts": self.attempts,
        }

    def __repr__(self) -> str:
        return "GoogleApiError(%r, %r, status=%r, reason=%r)" % (self.failure_class, self.msg, self.status, self.reason)


def parse_api_error(body: Any) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """``(api_status, reason, message)`` from Google's JSON error envelope (dict, text or bytes).

    ``reason`` prefers ``details[].ErrorInfo.reason`` (stable, upper case) over the legacy
    ``errors[0].reason``. Non-JSON bodies (an HTML page from a proxy) give ``(None, None, None)``.
    """
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return None, None, None
    if not isinstance(body, Mapping):
        return None, None, None
    error = body.get("error")
    if isinstance(error, str):
        # The OAuth dialect ({"error": "invalid_token", "error_description": ...}) from some front ends.
        return None, error, _text(body.get("error_description"))
    if not isinstance(error, Mapping):
        return None, None, None
    reason = None
    for detail in error.get("details") or ():
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo"):
            reason = _text(detail.get("reason"))
            break
    if reason is None:
        errors = error.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            reason = _text(errors[0].get("reason"))
    return _text(error.get("status")), reason, _text(error.get("message"))


def _text(value: Any) -> Optional[str]:
    return None if value is None else str(value)


_SCOPE_REASONS = frozenset(("ACCESS_TOKEN_SCOPE_INSUFFICIENT", "insufficientPermissions"))


def classify_api_error(
    status: Optional[int], api_status: Optional[str], reason: Optional[str], message: Optional[str]
) -> Tuple[str, bool]:
    """``(failure_class, retryable)`` for an API error answer."""
    if status in _RETRYABLE_STATUS:
        return API_FAILURE_CLASS, True
    if status == 403 and (reason in _SCOPE_REASONS or "insufficient authentication scopes" in (message or "").lower()):
        return "token_unauthorized_scope", False
    return API_FAILURE_CLASS, False


class _VerifyingSession(_SessionBase):
    """A ``requests.Session`` whose ``verify`` is used even when the environment names a CA bundle."""

    def request(self, method, url, *args, **kwargs):
        if kwargs.get("verify") is None:
            kwargs["verify"] = self.verify
        return super().request(method, url, *args, **kwargs)


def new_session(ca_path: Optional[str] = None, max_connections: int = 10) -> Any:
    """A keep-alive session for many threads: pool of ``max_connections`` per host, ``ca_path`` always honoured.

    Pass it to ``DelegatedTokenSource(session=...)`` too, so tokens and API calls share one pool.
    """
    import http.cookiejar

    session = _VerifyingSession()
    session.verify = ca_path if ca_path else True
    # Retries are the client's (see GoogleApiClient.request); urllib3's would hide what happened.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(1, int(max_connections)), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # No API we call needs cookies; refusing them keeps the shared session free of mutable state.
    session.cookies = requests.cookies.RequestsCookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


def require_requests() -> None:
    if not HAS_REQUESTS:
        raise TokenError(
            "token_other",
            "The Python library requests is required on the node that talks to Google; install it "
            "(pip install -r requirements.txt of the collection) for the interpreter Ansible uses there.",
        )


class GoogleApiClient:
    """Calls Google REST APIs as delegated users; see the module docstring.

    ``token_source``: anything with ``token(subject, scopes) -> (access_token, expiry)`` raising
    ``TokenError`` (google_oauth's :class:`DelegatedTokenSource`). ``api_base_url``: one base URL for
    every API (the lab), else ``base_urls`` per service, else Google's hosts. ``session``: share the
    token source's session (see :func:`new_session`).
    """

    def __init__(
        self,
        token_source: Any,
        api_base_url: Optional[str] = None,
        base_urls: Optional[Mapping[str, str]] = None,
        ca_path: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        max_connections: int = 10,
        session: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._token_source = token_source
        # Identities for messages and Admin console links (DelegatedTokenSource has them).
        self.client_id: str = str(getattr(token_source, "client_id", "") or "")
        self.client_email: str = str(getattr(token_source, "client_email", "") or "")
        self._roots = dict(SERVICE_ROOTS)
        self._roots.update(base_urls or {})
        self._api_base_url = api_base_url.rstrip("/") if api_base_url else None
        self.ca_path = ca_path
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        if session is None:
            require_requests()
            session = new_session(ca_path, max_connections)
        self._session = session
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        self._tokens: Dict[Tuple[str, Tuple[str, ...]], Tuple[str, Optional[float]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ URLs and tokens

    def url(self, service: str, path: str) -> str:
        root = self._api_base_url or self._roots.get(service)
        if not root:
            raise ValueError("unknown Google API service %r" % service)
        return root.rstrip("/") + "/" + path.lstrip("/")

    def access_token(self, subject: str, scopes: Sequence[str]) -> str:
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
            import calendar

            expires_at = float(calendar.timegm(expiry.timetuple()))
        with self._lock:
            self._tokens[cache_key] = (token, expires_at)
        return token

    def forget_token(self, subject: str, scopes: Sequence[str]) -> None:
        with self._lock:
            self._tokens.pop((subject.lower(), tuple(sorted(scopes))), None)

    # ------------------------------------------------------------------ requests

    def request(
        self,
        method: str,
        service: str,
        path: str,
        subject: str,
        scopes: Sequence[str],
        params: Optional[Mapping[str, Any]] = None,
        body: Any = None,
    ) -> Any:
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
                    raise GoogleApiError(
                        API_FAILURE_CLASS,
                        "%s failed unexpectedly (%s: %s)." % (what, type(exc).__name__, _short(exc)),
                        attempts=attempts,
                    ) from None
                failure_class, retryable = network
                if retryable and attempts <= self.retries:
                    self._sleep(backoff_delay(attempts, self.backoff_base, self.backoff_max, self._rng))
                    continue
                raise GoogleApiError(
                    failure_class,
                    "%s: %s %s (%s)." % (_NETWORK_SUMMARY[failure_class], what, _host(url), _short(exc)),
                    retryable=retryable,
                    attempts=attempts,
                ) from None
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
                failure_class, message, status, api_status, reason, google_message, retryable, attempts
            )

    def close(self) -> None:
        self._session.close()


_NETWORK_SUMMARY = {
    "dns": "Cannot resolve the API host for",
    "connect": "Cannot connect to the API host for",
    "tls": "TLS failure talking to the API host for",
    "timeout": "The API host timed out for",
}


def _json_body(response: Any, what: str) -> Any:
    if not response.content:
        return {}
    try:
        return json.loads(response.content.decode("utf-8"))
    except ValueError:
        raise GoogleApiError(
            API_FAILURE_CLASS,
            "%s answered HTTP %d with a body that is not JSON; is api_base_url right?" % (what, response.status_code),
            status=int(response.status_code),
        ) from None


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return "at " + (urlsplit(url).netloc or url)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def unique_scopes(scopes: Iterable[str]) -> List[str]:
    return list(dict.fromkeys(scope for scope in scopes if scope))


# --------------------------------------------------------------------------- module glue


def client_from_params(params: Mapping[str, Any], key_text: str, scopes: Sequence[str], max_connections: int) -> Any:
    """A :class:`GoogleApiClient` over a :class:`DelegatedTokenSource`, both on one pooled session.

    ``params`` holds google_oauth's ``google_argument_spec()`` options. Raises ``TokenError`` when the
    libraries are missing or the key cannot be loaded.
    """
    from ansible_collections.nupoint.gworkspace.plugins.module_utils.google_oauth import DelegatedTokenSource

    require_requests()
    session = new_session(params.get("ca_path"), max_connections)
    source = DelegatedTokenSource(
        key_text,
        scopes,
        token_uri=params.get("token_uri"),
        ca_path=params.get("ca_path"),
        timeout=params.get("timeout", DEFAULT_TIMEOUT),
        retries=params.get("retries", DEFAULT_RETRIES),
        max_connections=max_connections,
        session=session,
    )
    client = GoogleApiClient(
        source,
        api_base_url=params.get("api_base_url"),
        ca_path=params.get("ca_path"),
        timeout=params.get("timeout", DEFAULT_TIMEOUT),
        retries=params.get("retries", DEFAULT_RETRIES),
        session=session,
    )
    return client
