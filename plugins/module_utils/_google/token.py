# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delegated (domain-wide delegation) access tokens: JWT assertions signed with the service-account key,
traded at the token endpoint.

One :class:`DelegatedTokenSource` mints access tokens for any number of users, concurrently if wanted::

    source = DelegatedTokenSource(key_info, ["https://mail.google.com/"], ca_path=..., timeout=10, retries=3)
    try:
        access_token, expiry = source.token("user0001@example.test")
    except TokenError as exc:
        exc.failure_class   # "token_invalid_user", "timeout", ... (failures.FAILURE_CLASSES)

The two halves of the OAuth 2.0 JWT-bearer grant (RFC 7523) are apart on purpose:

- **Signing** needs the key and an RSA implementation: :class:`KeySigner` uses google-auth
  (``google.auth.crypt.RSASigner``, the key parsed once in about 50 ms, each RS256 signature about
  0.8 ms; the claims are google-auth's ``service_account.Credentials``': ``iss``, ``sub``, ``scope``,
  ``aud`` = token URI, ``iat``, ``exp`` = ``iat`` + 1 h, header ``kid`` = ``private_key_id``).
  google-auth needs ``cryptography``, which a stock MSL host does not have (nothing from PyPI), so the
  controller signs for MSL: :func:`sign_assertions` there, :class:`PresignedAssertions` on MSL.
- **The exchange** (:meth:`DelegatedTokenSource.mint`) is one form POST per user, standard library
  only over ``session.new_session(lean=True)``, so MSL runs it with its own Python and every packet
  leaves from MSL's own network path, as NuPoint's do. It owns retries (``pool.backoff_delay``,
  ``Retry-After`` honoured) for what can succeed on a second try, and turns every answer into a
  token or one ``failures.TokenError``.

google-auth's own ``Credentials.refresh`` would do the exchange too, but it needs the key on the
node that exchanges: the point of the split is that MSL never needs anything but the standard library.

Thread safety: :meth:`DelegatedTokenSource.mint` and :meth:`DelegatedTokenSource.clock_offset` may be
called from many threads at once: the signer and the session are thread-safe, everything mutable lives
in per-call objects.

Parses as Python 3.6; google-auth and requests are imported under guard, and
:func:`missing_google_library` is the one place that says which is missing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import json
import random
import time
import traceback

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass


from ansible.module_utils.six import string_types

from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import raise_from, urlencode
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import (
    TokenError,
    classify_token_error,
    classify_token_exception,
    hint,
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
    from google.auth import crypt as google_auth_crypt
    from google.auth import jwt as google_auth_jwt
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    HAS_GOOGLE_AUTH = False
    GOOGLE_AUTH_IMPORT_ERROR = traceback.format_exc()  # type: Optional[str]
else:
    HAS_GOOGLE_AUTH = True
    GOOGLE_AUTH_IMPORT_ERROR = None

DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
SCOPE_MAIL = "https://mail.google.com/"
DEFAULT_SCOPES = (SCOPE_MAIL,)
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
# Above this many seconds of difference from Google's clock, modules warn (JWTs are refused at ~5 min).
CLOCK_OFFSET_WARN_SECONDS = 10.0
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth's service-account assertions live one hour; Google refuses longer ones.
ASSERTION_LIFETIME_SECONDS = 3600
# A pre-signed assertion with less than this left is not sent: it could expire on the way.
ASSERTION_MARGIN_SECONDS = 60
IDENTITY_FIELDS = ("client_id", "client_email", "private_key_id", "token_uri")


def missing_google_library(signing=True):  # type: (bool) -> Optional[Tuple[str, Optional[str]]]
    """``(name, import traceback)`` of the first library a node that talks to Google lacks, or None.

    With ``signing`` false (the node exchanges assertions signed elsewhere), nothing is needed.
    """
    if not signing:
        return None
    for name, present, error in (
        ("google-auth", HAS_GOOGLE_AUTH, GOOGLE_AUTH_IMPORT_ERROR),
        ("requests", HAS_REQUESTS, REQUESTS_IMPORT_ERROR),
    ):
        if not present:
            return name, error
    return None


def _key_info_dict(key_info):  # type: (Union[Mapping[str, Any], str, bytes]) -> Dict[str, Any]
    if isinstance(key_info, bytes):
        key_info = key_info.decode("utf-8-sig")
    if isinstance(key_info, string_types):
        try:
            key_info = json.loads(key_info)
        except ValueError:
            raise_from(
                TokenError(
                    "token_invalid_key",
                    "The service-account key is not valid JSON; validate it with service_account_key_info.",
                ),
                None,
            )
    if not isinstance(key_info, Mapping):
        raise TokenError("token_invalid_key", "The service-account key must be a JSON object.")
    return dict(key_info)


def assertion_key(subject, scopes):  # type: (str, Sequence[str]) -> str
    """How a pre-signed assertion is found again: the subject (case-folded) and its scopes, in order."""
    return "%s %s" % (subject.strip().lower(), " ".join(scopes))


def _assertion_claims(assertion):  # type: (str) -> Dict[str, Any]
    """The claims of a JWT (not verified: only the signer's own assertions are read, to see their expiry)."""
    try:
        payload = assertion.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8"))
    except (IndexError, ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


class KeySigner:
    """Signs delegated JWT assertions with the service-account key (google-auth; the key loaded once).

    ``token_uri`` replaces the key's as the assertion's audience and the exchange's URL (the lab).
    Raises :class:`TokenError` (``token_invalid_key``, or ``token_other`` when google-auth is missing).
    """

    def __init__(
        self,
        key_info,
        token_uri=None,
        clock=time.time,
    ):  # type: (Union[Mapping[str, Any], str, bytes], Optional[str], Callable[[], float]) -> None
        if not HAS_GOOGLE_AUTH:
            raise TokenError(
                "token_other",
                "The Python library google-auth is required to sign with the service-account key on this node; "
                "give the key as src or content so the controller signs, or install the collection's "
                "requirements.txt for the interpreter Ansible uses here.",
            )
        info = _key_info_dict(key_info)
        try:
            self._signer = google_auth_crypt.RSASigner.from_service_account_info(info)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            # The library's message may quote fields; say what failed without echoing anything from the key.
            raise_from(
                TokenError(
                    "token_invalid_key",
                    "The service-account key cannot be loaded (%s); validate it with "
                    "nupoint.gworkspace.service_account_key_info." % type(exc).__name__,
                ),
                None,
            )
        self.identity = {name: str(info.get(name) or "") for name in IDENTITY_FIELDS}
        self.identity["token_uri"] = token_uri or self.identity["token_uri"] or DEFAULT_TOKEN_URI
        self._clock = clock

    def assertion(self, subject, scopes):  # type: (str, Sequence[str]) -> str
        now = int(self._clock())
        payload = {
            "iss": self.identity["client_email"],
            "scope": " ".join(scopes),
            "aud": self.identity["token_uri"],
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
        }
        # No subject: the service account's own token (an administrator's key calling IAM), nobody impersonated.
        if subject:
            payload["sub"] = subject
        signed = google_auth_jwt.encode(self._signer, payload)
        return signed.decode("ascii") if isinstance(signed, bytes) else str(signed)


class PresignedAssertions:
    """Assertions signed elsewhere (by the controller, :func:`sign_assertions`), for a node without google-auth.

    ``presigned``: ``{"identity": {client_id, client_email, private_key_id, token_uri}, "assertions":
    {assertion_key(subject, scopes): JWT}}``. Asking for a subject and scopes it has no assertion for, or
    for one about to expire, raises ``TokenError``.
    """

    def __init__(self, presigned, clock=time.time):  # type: (Mapping[str, Any], Callable[[], float]) -> None
        identity = presigned.get("identity") or {}
        self.identity = {name: str(identity.get(name) or "") for name in IDENTITY_FIELDS}
        self.identity["token_uri"] = self.identity["token_uri"] or DEFAULT_TOKEN_URI
        self._assertions = dict(presigned.get("assertions") or {})
        self._clock = clock

    def assertion(self, subject, scopes):  # type: (str, Sequence[str]) -> str
        assertion = self._assertions.get(assertion_key(subject, scopes))
        if assertion is None:
            raise TokenError(
                "token_other",
                "The controller signed no assertion for %s with %s; this is a bug in the action plugin, "
                "please report it." % (subject, " ".join(scopes)),
            )
        expires = _assertion_claims(assertion).get("exp")
        if isinstance(expires, (int, float)) and expires - ASSERTION_MARGIN_SECONDS <= self._clock():
            raise TokenError(
                "token_clock_skew",
                "The assertion the controller signed for %s expires at %s (Unix time), and this node's clock says that "
                "is less than %d s away: the task ran for more than an hour since the controller signed, or this "
                "node's clock is ahead of the controller's. %s"
                % (subject, int(expires), ASSERTION_MARGIN_SECONDS, hint("token_clock_skew")),
            )
        return assertion


def sign_assertions(signer, requests):  # type: (KeySigner, Iterable[Tuple[str, Sequence[str]]]) -> Dict[str, Any]
    """The ``presigned`` document for :class:`PresignedAssertions`: one assertion per ``(subject, scopes)``."""
    assertions = {}
    for subject, scopes in requests:
        key = assertion_key(subject, scopes)
        if key not in assertions:
            assertions[key] = signer.assertion(subject.strip(), list(scopes))
    return {"identity": dict(signer.identity), "assertions": assertions}


class TokenResult:
    """A minted token and how it was obtained. ``repr`` never shows the token."""

    def __init__(
        self,
        access_token,
        expiry,
        attempts,
        http_status,
        server_date,
    ):  # type: (str, Optional[datetime.datetime], int, Optional[int], Optional[str]) -> None
        self.access_token = access_token
        self.expiry = expiry
        self.attempts = attempts
        self.http_status = http_status
        self.server_date = server_date

    def __repr__(self):  # type: () -> str
        return "TokenResult(expiry=%r, attempts=%r, http_status=%r)" % (self.expiry, self.attempts, self.http_status)


class DelegatedTokenSource:
    """Mints domain-wide-delegation access tokens for many users.

    ``key_info``: the service-account JSON key (dict or JSON text), signed with by a :class:`KeySigner`;
    or ``signer``: anything with ``identity`` and ``assertion(subject, scopes)`` (a
    :class:`PresignedAssertions`). ``scopes``: default scopes for :meth:`token`. ``token_uri``: overrides
    the key's (the lab's emulated Google). ``ca_path``: CA bundle to verify the endpoint with.
    ``timeout``: seconds per HTTP request. ``retries``: extra attempts for retryable failures.
    ``max_connections``: keep-alive pool size, set it to the caller's thread count.
    ``sleep``: backoff sleeps (``pool.deadline_sleep`` in a per-user run). ``rng``: injectable for tests.
    ``session``: share one with an API client; else one is made (``lean`` for bulk token minting).
    """

    def __init__(
        self,
        key_info=None,  # type: Union[Mapping[str, Any], str, bytes, None]
        scopes=DEFAULT_SCOPES,  # type: Sequence[str]
        token_uri=None,  # type: Optional[str]
        ca_path=None,  # type: Optional[str]
        timeout=DEFAULT_TIMEOUT,  # type: float
        retries=DEFAULT_RETRIES,  # type: int
        backoff_base=DEFAULT_BACKOFF_BASE,  # type: float
        backoff_max=DEFAULT_BACKOFF_MAX,  # type: float
        max_connections=DEFAULT_MAX_CONNECTIONS,  # type: int
        sleep=time.sleep,  # type: Callable[[float], None]
        rng=random.random,  # type: Callable[[], float]
        session=None,  # type: Any
        lean=False,  # type: bool
        signer=None,  # type: Any
    ):
        # type: (...) -> None
        if signer is None:
            signer = KeySigner(key_info if key_info is not None else {}, token_uri)
        self._signer = signer
        identity = signer.identity
        self.client_id = identity["client_id"]  # type: str
        self.client_email = identity["client_email"]  # type: str
        self.private_key_id = identity["private_key_id"]  # type: str
        self.token_uri = identity["token_uri"]  # type: str
        self.scopes = tuple(scopes)  # type: Tuple[str, ...]
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self._sleep = sleep
        self._rng = rng
        self.ca_path = ca_path
        # Per request, not only on the session: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override session.verify.
        self._request_options = {"verify": ca_path} if ca_path else {}  # type: Dict[str, Any]
        if session is None:
            session = new_session(ca_path, max_connections, lean=lean, url=self.token_uri)
        self._session = session

    def token(self, subject, scopes=None):  # type: (str, Optional[Sequence[str]]) -> Tuple[str, Optional[datetime.datetime]]
        """``(access_token, expiry)`` for ``subject`` with ``scopes`` (default: the source's scopes).

        ``expiry`` is a naive UTC datetime (google-auth's convention) or None. Raises :class:`TokenError`.
        """
        result = self.mint(subject, scopes)
        return result.access_token, result.expiry

    def mint(self, subject, scopes=None):  # type: (str, Optional[Sequence[str]]) -> "TokenResult"
        """Like :meth:`token`, with what it took: attempts, HTTP status, the endpoint's ``Date``."""
        assertion = self._signer.assertion(subject, list(scopes) if scopes is not None else list(self.scopes))
        body = urlencode({"grant_type": GRANT_TYPE, "assertion": assertion}).encode("ascii")
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        attempts = 0
        while True:
            attempts += 1
            try:
                options = dict(self._request_options, data=body, headers=headers, timeout=self.timeout)
                response = self._session.request("POST", self.token_uri, allow_redirects=False, **options)
            except Exception as exc:  # noqa: BLE001 - every transport failure is classified, none escapes raw
                error = classify_token_exception(exc, attempts)
                if error.retryable and attempts <= self.retries:
                    self._sleep(backoff_delay(attempts, self.backoff_base, self.backoff_max, self._rng))
                    continue
                raise_from(error, None)
            status = int(response.status_code)
            if status == 200:
                return _token_result(response, attempts)
            google_error, description = parse_token_error_body(response.content)
            failure_class, retryable = classify_token_error(google_error, description, status)
            said = "%s: %s" % (google_error, description) if google_error and description else google_error
            if not retryable:
                raise TokenError(
                    failure_class,
                    "Google refused the token request (%s). %s" % (said or "HTTP %d" % status, hint(failure_class)),
                    google_error,
                    description,
                    False,
                    status,
                    attempts,
                )
            if attempts <= self.retries:
                wait = retry_after_seconds(response.headers.get("Retry-After"), self.backoff_max)
                if wait is None:
                    wait = backoff_delay(attempts, self.backoff_base, self.backoff_max, self._rng)
                self._sleep(wait)
                continue
            raise TokenError(
                failure_class,
                "The token endpoint kept failing (%s) after %d attempts; Google may be having an outage, retry later."
                % (said or "HTTP %d" % status, attempts),
                google_error,
                description,
                True,
                status,
                attempts,
            )

    def clock_offset(self):  # type: () -> Optional[float]
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

    def close(self):  # type: () -> None
        self._session.close()

    def __enter__(self):  # type: () -> "DelegatedTokenSource"
        return self

    def __exit__(self, *exc_info):  # type: (*Any) -> None
        self.close()

    def __repr__(self):  # type: () -> str
        return "DelegatedTokenSource(client_email=%r, client_id=%r, token_uri=%r)" % (
            self.client_email,
            self.client_id,
            self.token_uri,
        )


def _token_result(response, attempts):  # type: (Any, int) -> TokenResult
    """The token in a 200 answer; a 200 without one is Google's (or a proxy's) fault, classed token_other."""
    try:
        data = json.loads(response.content.decode("utf-8"))
        access_token = str(data["access_token"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise_from(
            TokenError(
                "token_other",
                "The token endpoint answered HTTP 200 without an access token; is token_uri right (a proxy's page?)",
                status=200,
                attempts=attempts,
            ),
            None,
        )
    expiry = None
    if isinstance(data.get("expires_in"), (int, float)):
        # Naive UTC, google-auth's convention for expiry.
        expiry = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=time.time() + float(data["expires_in"]))
    return TokenResult(access_token, expiry, attempts, 200, response.headers.get("Date"))
