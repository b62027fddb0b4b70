# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delegated (domain-wide delegation) access tokens from one service-account key.

One :class:`DelegatedTokenSource` loads the key once and mints access tokens for any number of users,
concurrently if wanted::

    source = DelegatedTokenSource(key_info, ["https://mail.google.com/"], ca_path=..., timeout=10, retries=3)
    try:
        access_token, expiry = source.token("user0001@example.test")
    except TokenError as exc:
        exc.failure_class   # "token_invalid_user", "timeout", ... (failures.FAILURE_CLASSES)

Why it is built this way:

- The key is parsed and the RSA signer loaded once (google-auth
  ``service_account.Credentials.from_service_account_info``, about 50 ms); per-user credentials are cheap
  copies (``with_subject`` / ``with_scopes``) that share the signer. Minting 2,500 tokens signs 2,500
  JWTs (about 0.8 ms each) and does nothing else locally.
- google-auth talks HTTP through a small transport adapter over one session from
  ``session.new_session`` (keep-alive, pooled for the caller's threads, the CA bundle passed per
  request). The adapter owns retries (``pool.backoff_delay``, ``Retry-After`` honoured), only for what
  can succeed on a second try; google-auth's own retry loop never sees a retryable answer, so attempts
  never multiply.
- Every failure, whatever raised it, becomes one ``failures.TokenError`` (``failures.classify_token_exception``).

Thread safety: :meth:`DelegatedTokenSource.token` and :meth:`DelegatedTokenSource.clock_offset` may be
called from many threads at once. Shared state is read-only after ``__init__`` or thread-safe by design
(the session); everything mutable lives in per-call objects.

Parses as Python 3.6; google-auth and requests are imported under guard, and
:func:`missing_google_library` is the one place that says which is missing.
"""

import datetime
import json
import random
import time
import traceback
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import (
    TokenError,
    classify_token_error,
    classify_token_exception,
    parse_token_error_body,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.pool import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_MAX,
    backoff_delay,
    retry_after_seconds,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.session import (
    DEFAULT_MAX_CONNECTIONS,
    HAS_REQUESTS,
    REQUESTS_IMPORT_ERROR,
    new_session,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.clock import date_header_offset

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
# Above this many seconds of difference from Google's clock, modules warn (JWTs are refused at ~5 min).
CLOCK_OFFSET_WARN_SECONDS = 10.0


def missing_google_library() -> Optional[Tuple[str, Optional[str]]]:
    """``(name, import traceback)`` of the first library a node that talks to Google lacks, or None."""
    for name, present, error in (
        ("google-auth", HAS_GOOGLE_AUTH, GOOGLE_AUTH_IMPORT_ERROR),
        ("requests", HAS_REQUESTS, REQUESTS_IMPORT_ERROR),
    ):
        if not present:
            return name, error
    return None


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
                error = classify_token_exception(exc, attempts=self.attempts)
                if error.retryable and self.attempts <= source.retries:
                    source._sleep(backoff_delay(self.attempts, source.backoff_base, source.backoff_max, source._rng))
                    continue
                error.attempts = self.attempts
                raise error from None
            self.status = response.status_code
            self.server_date = response.headers.get("Date")
            if response.status_code == 200:
                return _TransportResponse(response)
            google_error, description = parse_token_error_body(response.content)
            failure_class, retryable = classify_token_error(google_error, description, response.status_code)
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
    ``sleep``: backoff sleeps (``pool.deadline_sleep`` in a per-user run). ``rng``: injectable for tests.
    ``session``: share one with an API client; else one is made (``lean`` for bulk token minting).
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
        lean: bool = False,
    ) -> None:
        missing = missing_google_library()
        if missing is not None:
            raise TokenError(
                "token_other",
                "The Python library %s is required on the node that talks to Google; install the collection's "
                "requirements.txt for the interpreter Ansible uses there." % missing[0],
            )
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
        if session is None:
            session = new_session(ca_path, max_connections, lean=lean, url=self.token_uri)
        self._session = session

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
            raise classify_token_exception(exc, request.status, max(1, request.attempts)) from None
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
        offset = date_header_offset(response.headers.get("Date"), sent_at, received_at)
        # Resolution is about +-1 s plus half the round trip: tenths are all there is to report.
        return None if offset is None else round(offset, 1)

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
