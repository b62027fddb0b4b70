# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delegated (domain-wide delegation) token minting and Google error classification.

One :class:`DelegatedTokenSource` loads the service-account key once and mints access tokens for any
number of users, concurrently if wanted::

    source = DelegatedTokenSource(key_info, ["https://mail.google.com/"], ca_path=..., timeout=10, retries=3)
    try:
        access_token, expiry = source.token("user0001@example.test")
    except TokenError as exc:
        exc.failure_class   # "token_invalid_user", "timeout", ... (DESIGN.md vocabulary)

Why it is built this way:

- The key is parsed and the RSA signer loaded once (google-auth
  ``service_account.Credentials.from_service_account_info``); per-user credentials are cheap copies
  (``with_subject`` / ``with_scopes``) that share the signer. Minting 2,500 tokens signs 2,500 JWTs
  and does nothing else locally.
- google-auth talks HTTP through a small transport adapter over one ``requests.Session`` (keep-alive,
  a connection pool sized for the caller's thread pool, the CA bundle, a per-request timeout, no
  cookies). The adapter owns retries: exponential backoff with jitter, only for what can succeed on a
  second try (HTTP 408/429/5xx, ``internal_failure``-style OAuth errors, timeouts, connection resets).
  google-auth's own retry loop never sees a retryable answer, so attempts never multiply.
- Every failure, whatever raised it (google-auth's ``RefreshError`` in either of its shapes, requests,
  urllib3, ssl, socket), becomes one :class:`TokenError` whose ``failure_class`` is one of
  :data:`FAILURE_CLASSES`. Messages carry Google's error code and description and the ids involved,
  never a key, an assertion or an access token.

Thread safety: :meth:`DelegatedTokenSource.token` and :meth:`DelegatedTokenSource.clock_offset` may be
called from many threads at once. Shared state is read-only after ``__init__`` (the base credentials,
the options) or thread-safe by design (``requests.Session`` with urllib3's locked connection pool;
cookies are refused so the session's cookie jar never changes); everything mutable lives in per-call
objects.

Runs where the calling module runs (MSL or the controller): parses as Python 3.6; third-party
imports are guarded so modules can ``fail_json(msg=missing_required_lib(...))``.
"""

import datetime
import json
import random
import re
import socket
import ssl
import time
import traceback
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ansible_collections.nupoint.gworkspace.plugins.module_utils.clock import date_header_offset, parse_http_date

try:
    import requests
    from requests.adapters import HTTPAdapter
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR: Optional[str] = traceback.format_exc()
else:
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None

try:
    from google.auth import transport as google_auth_transport
    from google.oauth2 import service_account as google_service_account
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    HAS_GOOGLE_AUTH = False
    GOOGLE_AUTH_IMPORT_ERROR: Optional[str] = traceback.format_exc()
    _TransportRequestBase: Any = object
    _TransportResponseBase: Any = object
else:
    HAS_GOOGLE_AUTH = True
    GOOGLE_AUTH_IMPORT_ERROR = None
    _TransportRequestBase = google_auth_transport.Request
    _TransportResponseBase = google_auth_transport.Response

DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
SCOPE_MAIL = "https://mail.google.com/"
DEFAULT_SCOPES = (SCOPE_MAIL,)
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_MAX = 32.0
DEFAULT_MAX_CONNECTIONS = 10
# Above this many seconds of difference from Google's clock, modules warn (JWTs are refused at ~5 min).
CLOCK_OFFSET_WARN_SECONDS = 10.0
ADMIN_CONSOLE_DWD_URL = "https://admin.google.com/ac/owl/domainwidedelegation"

# One vocabulary across modules, docs and reports (DESIGN.md). imap_* classes belong to imap_probe.
NETWORK_FAILURE_CLASSES = ("dns", "connect", "tls", "timeout")
TOKEN_FAILURE_CLASSES = (
    "token_unauthorized_scope",
    "token_invalid_user",
    "token_clock_skew",
    "token_invalid_key",
    "token_other",
)
FAILURE_CLASSES = ("ok", *NETWORK_FAILURE_CLASSES, *TOKEN_FAILURE_CLASSES)

# What to do about each class: appended to messages, reused by every module that mints tokens.
FAILURE_HINTS = {
    "dns": "The token endpoint's host name does not resolve: check the node's DNS resolver (/etc/resolv.conf).",
    "connect": (
        "No connection to the token endpoint: check the route, firewall and HTTPS proxy from this node to "
        "Google (TCP 443)."
    ),
    "tls": (
        "The TLS connection to the token endpoint failed: a wrong system clock makes Google's certificate look "
        "invalid; an intercepting proxy needs its CA in ca_path."
    ),
    "timeout": "The token endpoint did not answer in time: raise timeout, or check the network path and proxy.",
    "token_unauthorized_scope": (
        "Domain-wide delegation does not authorise the client ID for this scope: add the scope to the client ID "
        "in the Admin console (Security > Access and data control > API controls > Manage domain-wide delegation)."
    ),
    "token_invalid_user": (
        "Google does not know this user: check the address (primary address, not an alias) and that the user "
        "exists and is not deleted in the Admin console."
    ),
    "token_clock_skew": (
        "Google refused the JWT's issue/expiry time: the clock of the node that signs the JWT is wrong. Enable "
        "network time on MSL (nupoint.gworkspace.msl_time_sync) and check the offset."
    ),
    "token_invalid_key": (
        "Google does not accept the service-account key: the key was deleted, or the service account was deleted "
        "or disabled. Check IAM & Admin > Service Accounts in the Google Cloud console; create a new key and "
        "install it with nupoint.gworkspace.msl_oauth_credentials."
    ),
    "token_other": "Google refused the token request; see google_error and google_description.",
}

_RETRYABLE_STATUS = frozenset((408, 429, 500, 502, 503, 504))
_RETRYABLE_OAUTH_ERRORS = frozenset(("internal_failure", "server_error", "temporarily_unavailable", "backend_error"))
_DESCRIPTION_CLASSES = (
    # (class, lower-case fragments of Google's error_description); first match wins.
    ("token_invalid_user", ("invalid email or user id", "not a valid email", "account has been deleted")),
    ("token_invalid_user", ("invalid impersonation",)),
    (
        "token_clock_skew",
        ("short-lived token", "reasonable timeframe", "iat and exp", "token used too early", "token used too late"),
    ),
    (
        "token_invalid_key",
        ("invalid jwt signature", "no valid verifier", "account not found", "robot is disabled", "client was disabled"),
    ),
)
_ERROR_CODE_RE = re.compile(r"^([a-z_]+)(?::\s*(.*))?$", re.DOTALL)


def google_argument_spec() -> Dict[str, Dict[str, Any]]:
    """Options of every module that talks to Google (doc fragment ``nupoint.gworkspace.google``)."""
    return dict(
        token_uri=dict(type="str", no_log=False),  # a URL; "token" in the name only looks secret
        ca_path=dict(type="path"),
        timeout=dict(type="float", default=DEFAULT_TIMEOUT),
        retries=dict(type="int", default=DEFAULT_RETRIES),
        api_base_url=dict(type="str"),
    )


# Where the service-account key comes from (doc fragment ``nupoint.gworkspace.google.KEY_SOURCE``): the action
# plugin reads src or content on the controller and hands the module content; path is a file on the node.
KEY_SOURCE_OPTIONS = ("src", "content", "path")


def key_source_argument_spec() -> Dict[str, Dict[str, Any]]:
    """Options ``src``, ``content`` and ``path``; use with ``mutually_exclusive=[KEY_SOURCE_OPTIONS]``."""
    return dict(
        src=dict(type="path"),
        content=dict(type="str", no_log=True),
        path=dict(type="path"),
    )


def missing_google_library() -> Optional[Tuple[str, Optional[str]]]:
    """``(name, import traceback)`` of the first library a module that talks to Google lacks, or None.

    For ``module.fail_json(msg=missing_required_lib(name), exception=traceback)``.
    """
    for name, present, error in (
        ("google-auth", HAS_GOOGLE_AUTH, GOOGLE_AUTH_IMPORT_ERROR),
        ("requests", HAS_REQUESTS, REQUESTS_IMPORT_ERROR),
    ):
        if not present:
            return name, error
    return None


def no_key_message(params: Mapping[str, Any]) -> Optional[str]:
    """Why no key reached the module (neither ``content`` nor ``path``), or None when one did."""
    if params.get("content") is not None or params.get("path"):
        return None
    if params.get("src") is not None:
        return (
            "No key reached the module: src is read on the controller by the action plugin. Set src, content or "
            "path (a key file on this node)."
        )
    return (
        "No service-account key: set src (a file on the controller, read by the action plugin), content "
        "(the key itself, e.g. a vault variable) or path (a file on the node that runs the module)."
    )


def read_key_text(params: Mapping[str, Any]) -> str:
    """The JSON key handed over by the action plugin (``content``) or read from ``path`` on the node.

    Checked for structure (``service_account.parse_json_key``) so a wrong file fails with the same
    reasons as ``service_account_key_info``. Raises ``KeyValidationError``.
    """
    from ansible_collections.nupoint.gworkspace.plugins.module_utils.service_account import (
        KeyValidationError,
        parse_json_key,
    )

    missing = no_key_message(params)
    if missing is not None:
        raise KeyValidationError("read_error", missing, "src")
    text = params.get("content")
    if text is None:
        path = params["path"]
        try:
            with open(str(path), "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            raise KeyValidationError(
                "read_error",
                "Cannot read the key file %s on the node: %s. Check the path and its permissions."
                % (path, exc.strerror),
                "path",
            ) from None
        text = raw.decode("utf-8-sig", "replace")
    parse_json_key(text)
    return text


class TokenError(Exception):
    """Minting a token failed; ``failure_class`` is one of :data:`FAILURE_CLASSES` (never ``ok``).

    ``google_error`` / ``google_description`` are Google's OAuth ``error`` / ``error_description`` when
    Google answered; ``status`` the HTTP status; ``attempts`` how many requests were made.
    """

    def __init__(
        self,
        failure_class: str,
        message: str,
        google_error: Optional[str] = None,
        google_description: Optional[str] = None,
        retryable: bool = False,
        status: Optional[int] = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.failure_class = failure_class
        self.msg = message
        self.google_error = google_error
        self.google_description = google_description
        self.retryable = retryable
        self.status = status
        self.attempts = attempts

    def as_result(self) -> Dict[str, Any]:
        """The fields a module puts into its per-check result."""
        return {
            "failure_class": self.failure_class,
            "message": self.msg,
            "google_error": self.google_error,
            "google_description": self.google_description,
            "retryable": self.retryable,
            "http_status": self.status,
            "attempts": self.attempts,
        }

    def __repr__(self) -> str:
        return "TokenError(%r, %r, google_error=%r, status=%r, attempts=%r)" % (
            self.failure_class,
            self.msg,
            self.google_error,
            self.status,
            self.attempts,
        )


# --------------------------------------------------------------------------- classification


def classify_google_error(
    error: Optional[str], description: Optional[str], status: Optional[int] = None
) -> Tuple[str, bool]:
    """``(failure_class, retryable)`` for Google's OAuth ``error`` / ``error_description`` (and HTTP status).

    A disabled service account is ``token_invalid_key``: Google answers it with the same
    ``invalid_grant: Invalid grant: account not found`` as a deleted one (so they cannot be told apart),
    and the fix is the same, in the Cloud console's IAM pages, not in the Admin console.
    """
    code = (error or "").strip().lower()
    text = (description or "").strip().lower()
    if code in _RETRYABLE_OAUTH_ERRORS or text in _RETRYABLE_OAUTH_ERRORS or (status in _RETRYABLE_STATUS):
        return "token_other", True
    if code in ("unauthorized_client", "access_denied"):
        return "token_unauthorized_scope", False
    if code in ("disabled_client", "invalid_client"):
        return "token_invalid_key", False
    if code in ("invalid_grant", "invalid_request"):
        for failure_class, fragments in _DESCRIPTION_CLASSES:
            if any(fragment in text for fragment in fragments):
                return failure_class, False
    return "token_other", False


def parse_error_body(data: Any) -> Tuple[Optional[str], Optional[str]]:
    """Google's ``(error, error_description)`` from a token-endpoint body: dict, JSON text or bytes.

    Also understands the API style ``{"error": {"status": ..., "message": ...}}`` some front ends return.
    """
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None, None
    if not isinstance(data, Mapping):
        return None, None
    error = data.get("error")
    description = data.get("error_description")
    if isinstance(error, Mapping):
        description = error.get("message") if description is None else description
        error = error.get("status") or error.get("code")
    return (
        str(error) if error is not None else None,
        str(description) if description is not None else None,
    )


def refresh_error_details(exc: BaseException) -> Tuple[Optional[str], Optional[str]]:
    """``(error, error_description)`` from a google-auth ``RefreshError``, in any of its shapes.

    google-auth >= 2 raises ``RefreshError("error: description", response_data_dict, retryable=...)``;
    older releases passed the raw response body (a JSON string) as ``args[1]``; a non-JSON body or a
    locally raised error has only ``args[0]``.
    """
    args: Tuple[Any, ...] = tuple(getattr(exc, "args", ()) or ())
    if len(args) > 1:
        error, description = parse_error_body(args[1])
        if error is not None:
            return error, description
    if args and isinstance(args[0], str):
        match = _ERROR_CODE_RE.match(args[0].strip())
        if match:
            return match.group(1), match.group(2)
    return None, None


def _exception_chain(exc: BaseException) -> List[BaseException]:
    """The exception and everything it wraps: causes, contexts, urllib3's ``reason``, exception args."""
    seen: List[BaseException] = []
    pending = [exc]
    while pending and len(seen) < 20:
        current = pending.pop(0)
        if any(current is known for known in seen):
            continue
        seen.append(current)
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                pending.append(linked)
        pending.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
    return seen


def _type_names(exc: BaseException) -> List[str]:
    return [klass.__name__ for klass in type(exc).__mro__]


_DNS_TEXT = (
    "name or service not known",
    "nodename nor servname",
    "getaddrinfo failed",
    "temporary failure in name resolution",
    "failed to resolve",
    "no address associated",
)


def classify_network_error(exc: BaseException) -> Optional[Tuple[str, bool]]:
    """``(failure_class, retryable)`` for a transport failure, or None when ``exc`` is not one.

    Works on requests', urllib3's, ssl's and socket's exceptions by walking the wrapped chain (requests
    wraps urllib3 which wraps the socket error) and matching class names, so it does not depend on the
    installed versions of those libraries.
    """
    chain = _exception_chain(exc)
    names = set()
    for item in chain:
        names.update(_type_names(item))
    text = " ".join(str(item) for item in chain).lower()
    if any(isinstance(item, ssl.SSLError) for item in chain) or "SSLError" in names or "certificate verify" in text:
        return "tls", False
    if any(isinstance(item, socket.gaierror) for item in chain) or "NameResolutionError" in names:
        return "dns", False
    if any(fragment in text for fragment in _DNS_TEXT):
        return "dns", False
    new_connection = "NewConnectionError" in names
    # urllib3's NewConnectionError subclasses ConnectTimeoutError; a refused connection is no timeout.
    timed_out = any(isinstance(item, socket.timeout) for item in chain) or bool(
        names & {"ReadTimeout", "ReadTimeoutError", "ConnectTimeout", "Timeout"}
    )
    if timed_out or ("ConnectTimeoutError" in names and not new_connection) or "timed out" in text:
        return "timeout", True
    if any(isinstance(item, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)) for item in chain):
        return "connect", True
    if names & {"RemoteDisconnected", "ProtocolError", "ChunkedEncodingError", "IncompleteRead"}:
        return "connect", True
    if (
        new_connection
        or any(isinstance(item, OSError) for item in chain)
        or names & {"ConnectionError", "TransportError", "RequestException"}
    ):
        return "connect", False
    return None


def classify_exception(exc: BaseException, status: Optional[int] = None, attempts: int = 1) -> TokenError:
    """Turn any failure of a token request into a :class:`TokenError` (returned, not raised)."""
    if isinstance(exc, TokenError):
        return exc
    if _is_refresh_error(exc):
        error, description = refresh_error_details(exc)
        failure_class, retryable = classify_google_error(error, description, status)
        if error is not None:
            said = "%s: %s" % (error, description) if description else error
            message = "Google refused the token request (%s). %s" % (said, FAILURE_HINTS[failure_class])
        else:
            message = "Google refused the token request: %s. %s" % (_short_exception(exc), FAILURE_HINTS[failure_class])
        return TokenError(failure_class, message, error, description, retryable, status, attempts)
    network = classify_network_error(exc)
    if network is not None:
        failure_class, retryable = network
        return TokenError(
            failure_class,
            "%s: %s. %s" % (_NETWORK_SUMMARY[failure_class], _short_exception(exc), FAILURE_HINTS[failure_class]),
            retryable=retryable,
            status=status,
            attempts=attempts,
        )
    return TokenError(
        "token_other",
        "The token request failed unexpectedly (%s: %s)." % (type(exc).__name__, _short_exception(exc)),
        status=status,
        attempts=attempts,
    )


_NETWORK_SUMMARY = {
    "dns": "Cannot resolve the token endpoint",
    "connect": "Cannot connect to the token endpoint",
    "tls": "TLS failure talking to the token endpoint",
    "timeout": "The token endpoint timed out",
}


def _is_refresh_error(exc: BaseException) -> bool:
    return "RefreshError" in _type_names(exc)


def _short_exception(exc: BaseException) -> str:
    # The innermost cause says most (e.g. "[Errno 111] Connection refused"); the request body is never in it.
    chain = _exception_chain(exc)
    innermost = chain[-1] if chain else exc
    text = str(innermost) or type(innermost).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --------------------------------------------------------------------------- helpers


def backoff_delay(
    retry_number: int,
    base: float = DEFAULT_BACKOFF_BASE,
    cap: float = DEFAULT_BACKOFF_MAX,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry ``retry_number`` (1-based): ``base * 2**(n-1)``, capped, +-50 % jitter."""
    delay = min(cap, base * (2 ** (retry_number - 1)))
    return delay * (0.5 + rng())


def retry_after_seconds(value: Optional[str], cap: float = DEFAULT_BACKOFF_MAX) -> Optional[float]:
    """A ``Retry-After`` header in seconds (delta-seconds or HTTP date), capped; None when absent or odd."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(cap, float(value))
    when = parse_http_date(value)
    if when is None:
        return None
    return max(0.0, min(cap, when - time.time()))


def http_date_offset(date_header: Optional[str], sent_at: float, received_at: float) -> Optional[float]:
    """Seconds the server's clock is ahead of ours (negative: behind), from an HTTP ``Date`` header.

    ``clock.date_header_offset`` (the same measurement msl_time_sync's HTTP Date check makes), rounded
    to 0.1 s: resolution is about +-1 s plus half the round-trip time, plenty to tell a right clock
    from one minutes off.
    """
    offset = date_header_offset(date_header, sent_at, received_at)
    return None if offset is None else round(offset, 1)


def admin_console_url(client_id: str, scopes: Iterable[str]) -> str:
    """The Admin console link that pre-fills a domain-wide delegation entry (GAM's format).

    ``overwriteClientId=true`` makes the console *replace* the client's scope list with ``scopes``, so
    pass every scope the client needs, not only the missing ones.
    """
    unique = list(dict.fromkeys(scope for scope in scopes if scope))
    return "%s?clientScopeToAdd=%s&clientIdToAdd=%s&overwriteClientId=true" % (
        ADMIN_CONSOLE_DWD_URL,
        ",".join(unique),
        client_id,
    )


def _key_info_dict(key_info: Union[Mapping[str, Any], str, bytes]) -> Dict[str, Any]:
    if isinstance(key_info, bytes):
        key_info = key_info.decode("utf-8-sig")
    if isinstance(key_info, str):
        try:
            key_info = json.loads(key_info)
        except ValueError:
            raise TokenError(
                "token_invalid_key",
                "The service-account key is not valid JSON; validate it with service_account_key_info.",
            ) from None
    if not isinstance(key_info, Mapping):
        raise TokenError("token_invalid_key", "The service-account key must be a JSON object.")
    return dict(key_info)


# --------------------------------------------------------------------------- transport


class _TransportResponse(_TransportResponseBase):
    """google-auth's view of a ``requests`` response."""

    def __init__(self, response: Any) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return int(self._response.status_code)

    @property
    def headers(self) -> Any:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class _TransportRequest(_TransportRequestBase):
    """One token request's transport: the shared session plus this call's retry bookkeeping.

    Created per :meth:`DelegatedTokenSource.token` call, so the counters need no locking.
    """

    def __init__(self, source: "DelegatedTokenSource") -> None:
        self._source = source
        self.attempts = 0
        self.status: Optional[int] = None
        self.server_date: Optional[str] = None

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        source = self._source
        while True:
            self.attempts += 1
            try:
                response = source._session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    timeout=timeout if timeout is not None else source.timeout,
                    allow_redirects=False,
                    **dict(source._request_options, **kwargs),
                )
            except Exception as exc:  # noqa: BLE001 - every transport failure is classified, none escapes raw
                error = classify_exception(exc, attempts=self.attempts)
                if error.retryable and self.attempts <= source.retries:
                    source._sleep(backoff_delay(self.attempts, source.backoff_base, source.backoff_max, source._rng))
                    continue
                error.attempts = self.attempts
                raise error from None
            self.status = response.status_code
            self.server_date = response.headers.get("Date")
            if response.status_code == 200:
                return _TransportResponse(response)
            google_error, description = parse_error_body(response.content)
            failure_class, retryable = classify_google_error(google_error, description, response.status_code)
            if not retryable:
                # google-auth turns it into a RefreshError, which token() classifies.
                return _TransportResponse(response)
            if self.attempts <= source.retries:
                wait = retry_after_seconds(response.headers.get("Retry-After"), source.backoff_max)
                if wait is None:
                    wait = backoff_delay(self.attempts, source.backoff_base, source.backoff_max, source._rng)
                source._sleep(wait)
                continue
            # Raised here, not returned: google-auth would otherwise retry on its own.
            said = "%s: %s" % (google_error, description) if google_error else "HTTP %d" % response.status_code
            raise TokenError(
                failure_class,
                "The token endpoint kept failing (%s) after %d attempts; Google may be having an outage, retry later."
                % (said, self.attempts),
                google_error,
                description,
                True,
                response.status_code,
                self.attempts,
            )


class TokenResult:
    """A minted token and how it was obtained. ``repr`` never shows the token."""

    def __init__(
        self,
        access_token: str,
        expiry: Optional[datetime.datetime],
        attempts: int,
        http_status: Optional[int],
        server_date: Optional[str],
    ) -> None:
        self.access_token = access_token
        self.expiry = expiry
        self.attempts = attempts
        self.http_status = http_status
        self.server_date = server_date

    def __repr__(self) -> str:
        return "TokenResult(expiry=%r, attempts=%r, http_status=%r)" % (self.expiry, self.attempts, self.http_status)


class DelegatedTokenSource:
    """Mints domain-wide-delegation access tokens for many users from one loaded key.

    ``key_info``: the service-account JSON key (dict or JSON text). ``scopes``: default scopes for
    :meth:`token`. ``token_uri``: overrides the key's ``token_uri`` (the lab's emulated Google).
    ``ca_path``: CA bundle to verify the endpoint with (default: the system/certifi store).
    ``timeout``: seconds per HTTP request. ``retries``: extra attempts for retryable failures.
    ``max_connections``: keep-alive pool size, set it to the caller's thread count.
    ``sleep`` / ``rng``: injectable for tests.
    """

    def __init__(
        self,
        key_info: Union[Mapping[str, Any], str, bytes],
        scopes: Sequence[str] = DEFAULT_SCOPES,
        token_uri: Optional[str] = None,
        ca_path: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        session: Any = None,
    ) -> None:
        require_libraries()
        info = _key_info_dict(key_info)
        if token_uri:
            info["token_uri"] = token_uri
        info.setdefault("token_uri", DEFAULT_TOKEN_URI)
        try:
            self._base_credentials = google_service_account.Credentials.from_service_account_info(info)
        except (ValueError, KeyError, TypeError) as exc:
            # The library's message may quote fields; say what failed without echoing anything from the key.
            raise TokenError(
                "token_invalid_key",
                "The service-account key cannot be loaded (%s); validate it with "
                "nupoint.gworkspace.service_account_key_info." % type(exc).__name__,
            ) from None
        self.client_id: str = str(info.get("client_id", ""))
        self.client_email: str = str(info.get("client_email", ""))
        self.private_key_id: str = str(info.get("private_key_id", ""))
        self.token_uri: str = info["token_uri"]
        self.scopes: Tuple[str, ...] = tuple(scopes)
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self._sleep = sleep
        self._rng = rng
        self.ca_path = ca_path
        # Per request, not only on the session: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override session.verify.
        self._request_options: Dict[str, Any] = {"verify": ca_path} if ca_path else {}
        self._session = session if session is not None else _new_session(ca_path, max_connections)

    def token(self, subject: str, scopes: Optional[Sequence[str]] = None) -> Tuple[str, Optional[datetime.datetime]]:
        """``(access_token, expiry)`` for ``subject`` with ``scopes`` (default: the source's scopes).

        ``expiry`` is a naive UTC datetime (google-auth's convention) or None. Raises :class:`TokenError`.
        """
        result = self.mint(subject, scopes)
        return result.access_token, result.expiry

    def mint(self, subject: str, scopes: Optional[Sequence[str]] = None) -> "TokenResult":
        """Like :meth:`token`, with what it took: attempts, HTTP status, the endpoint's ``Date``."""
        credentials = self._base_credentials.with_subject(subject).with_scopes(
            list(scopes) if scopes is not None else list(self.scopes)
        )
        request = _TransportRequest(self)
        try:
            credentials.refresh(request)
        except TokenError:
            raise
        except Exception as exc:  # noqa: BLE001 - RefreshError and anything else become one TokenError
            raise classify_exception(exc, request.status, max(1, request.attempts)) from None
        return TokenResult(credentials.token, credentials.expiry, request.attempts, request.status, request.server_date)

    def clock_offset(self) -> Optional[float]:
        """Seconds Google's clock is ahead of this node's (negative: behind), from the token endpoint's ``Date``.

        One ``HEAD`` request to the token URI (GAM's method; any status carries a ``Date``). Returns None
        when the endpoint cannot be reached or sends no usable ``Date``: this is a diagnostic, it never raises.
        """
        sent_at = time.time()
        try:
            response = self._session.head(
                self.token_uri, timeout=self.timeout, allow_redirects=False, **self._request_options
            )
        except Exception:  # noqa: BLE001 - a failed measurement is reported as unknown, not as an error
            return None
        received_at = time.time()
        return http_date_offset(response.headers.get("Date"), sent_at, received_at)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "DelegatedTokenSource":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "DelegatedTokenSource(client_email=%r, client_id=%r, token_uri=%r)" % (
            self.client_email,
            self.client_id,
            self.token_uri,
        )


def require_libraries() -> None:
    """Raise :class:`TokenError` (class ``token_other``) when google-auth or requests is missing."""
    missing = [name for name, present in (("google-auth", HAS_GOOGLE_AUTH), ("requests", HAS_REQUESTS)) if not present]
    if missing:
        raise TokenError(
            "token_other",
            "The Python libraries %s are required on the node that talks to Google; install them "
            "(pip install -r requirements.txt of the collection) for the interpreter Ansible uses there."
            % " and ".join(missing),
        )


def _new_session(ca_path: Optional[str], max_connections: int) -> Any:
    import http.cookiejar

    session = requests.Session()
    session.verify = ca_path if ca_path else True
    # Retries are ours (see _TransportRequest); urllib3's would hide what happened.
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(1, int(max_connections)), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # The token endpoint sets no cookies we need; refusing all keeps the shared session free of mutable state.
    session.cookies = requests.cookies.RequestsCookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session
