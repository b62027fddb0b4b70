# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The failure vocabulary: the collection's central contract, defined here and nowhere else.

Every Google-facing module, report and document speaks these classes (DESIGN.md)::

    ok
    dns  connect  tls  timeout                                   the network, before Google could answer
    token_unauthorized_scope  token_invalid_user  token_clock_skew  token_invalid_key  token_other
    imap_disabled  imap_auth_failed  imap_other                  the IMAP server's refusal
    api_error                                                    a Google REST API refused or failed

An IAM / Service Usage ``api_error`` also says why (:data:`API_REFUSALS`: org_policy, key_quota,
service_disabled, permission_denied, not_found, already_exists) in :class:`ApiRefusal`.

This file holds, for each class, what fixes it (:data:`HINTS`, :func:`hint`), whether a second try can
succeed (the classifiers return ``(failure_class, retryable)``), the classifiers themselves (token
endpoint answers, REST API error envelopes, IMAP refusal texts, transport exceptions), the exception
every layer raises (:class:`GoogleFailure` and its three kinds), and the one per-run summary shape
(:func:`summarize`, :func:`failed_users`).

Messages carry Google's words and the ids involved, never a key, an assertion or an access token.
Standard library only; parses as Python 3.6.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import imaplib
import json
import re
import socket
import ssl

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass
from ansible.module_utils.six import string_types

from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import is_stale_connection_error

OK = "ok"
NETWORK_FAILURE_CLASSES = ("dns", "connect", "tls", "timeout")
TOKEN_FAILURE_CLASSES = (
    "token_unauthorized_scope",
    "token_invalid_user",
    "token_clock_skew",
    "token_invalid_key",
    "token_other",
)
IMAP_FAILURE_CLASSES = ("imap_disabled", "imap_auth_failed", "imap_other")
API_FAILURE_CLASS = "api_error"
FAILURE_CLASSES = (OK,) + NETWORK_FAILURE_CLASSES + TOKEN_FAILURE_CLASSES + IMAP_FAILURE_CLASSES + (API_FAILURE_CLASS,)

# Classes that do not depend on the user: one user's answer holds for every other user of the run.
CLIENT_WIDE_CLASSES = frozenset(("token_unauthorized_scope", "token_invalid_key", "token_clock_skew", "dns", "tls"))

# Where a network failure happened, for the words of its message and its fix.
ENDPOINT_TOKEN = "token"  # noqa: S105 - the name of an endpoint, not a secret
ENDPOINT_IMAP = "imap"
ENDPOINT_API = "api"

_NETWORK_SUMMARY = {
    ENDPOINT_TOKEN: {
        "dns": "Cannot resolve the token endpoint",
        "connect": "Cannot connect to the token endpoint",
        "tls": "TLS failure talking to the token endpoint",
        "timeout": "The token endpoint timed out",
    },
    ENDPOINT_IMAP: {
        "dns": "Cannot resolve the IMAP server",
        "connect": "Cannot connect to the IMAP server",
        "tls": "TLS failure with the IMAP server",
        "timeout": "The IMAP server timed out",
    },
    ENDPOINT_API: {
        "dns": "Cannot resolve the API host for",
        "connect": "Cannot connect to the API host for",
        "tls": "TLS failure talking to the API host for",
        "timeout": "The API host timed out for",
    },
}

_NETWORK_HINTS = {
    ENDPOINT_TOKEN: {
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
    },
    ENDPOINT_IMAP: {
        "dns": "The IMAP server's host name does not resolve: check the node's DNS resolver (/etc/resolv.conf).",
        "connect": (
            "No connection to the IMAP server: check the route and firewall from this node to the IMAP server "
            "(imap.gmail.com, TCP 993)."
        ),
        "tls": (
            "The TLS connection to the IMAP server failed: a wrong system clock makes the certificate look invalid; "
            "an intercepting proxy needs its CA in ca_path."
        ),
        "timeout": "The IMAP server did not answer in time: raise timeout or user_timeout, or check the network path.",
    },
}
_NETWORK_HINTS[ENDPOINT_API] = _NETWORK_HINTS[ENDPOINT_TOKEN]

ADMIN_CONSOLE_DWD_URL = "https://admin.google.com/ac/owl/domainwidedelegation"
ADMIN_CONSOLE_DWD_PAGE = "Security > Access and data control > API controls > Manage domain-wide delegation"
ADMIN_CONSOLE_IMAP_PAGE = "Apps > Google Workspace > Gmail > End User Access > POP and IMAP access"
# The option of that page no API shows (Google's "Policy API supported settings" has only enableImapAccess), and
# which cannot admit NuPoint: "You can't add third-party email clients that use domain-wide delegation through a
# service account" (Google Workspace Admin Help, "Recommendations for setting up IMAP").
IMAP_CLIENT_RESTRICTION = "Restrict which mail clients users can use (OAuth mail clients only)"
IMAP_ANY_CLIENT = "Allow any mail client"
# How long Google takes, and what can hold a change: said once, here, wherever a fix is an Admin console change
# ("How changes propagate to Google services", "Recommendations for setting up IMAP", "Multi-party approval for
# sensitive actions").
PROPAGATION_NOTE = "Google can take up to 24 hours to apply a change made in the Admin console"
MULTI_PARTY_APPROVAL_NOTE = (
    "with multi-party approval on, a domain-wide delegation change waits, pending, until a second super "
    "administrator approves it (Admin console > Security > Multi-party approval)"
)

# What fixes each class that is not a network class (those depend on the endpoint: see hint()).
HINTS = {
    "token_unauthorized_scope": (
        "Domain-wide delegation does not authorise the client ID for this scope: add the scope to the client ID "
        "in the Admin console (%s). %s; %s." % (ADMIN_CONSOLE_DWD_PAGE, PROPAGATION_NOTE, MULTI_PARTY_APPROVAL_NOTE)
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
    "imap_disabled": (
        "Gmail refuses IMAP for this user. 'IMAP access is disabled for your domain': turn IMAP on for the domain or "
        "the user's organisational unit (Admin console > %s; nupoint.gworkspace.workspace_imap_policy_info reads "
        "it). 'Your account is not enabled for IMAP use': set the user's IMAP setting "
        "(nupoint.gworkspace.gmail_imap_settings enabled: true); Google has been removing the users' own IMAP "
        "switch, so when Gmail does not keep it, the organisational unit's setting decides. %s."
        % (ADMIN_CONSOLE_IMAP_PAGE, PROPAGATION_NOTE)
    ),
    "imap_auth_failed": (
        "The IMAP server refused the access token: check that the token's scope is https://mail.google.com/, "
        "that the address is the user's primary address, that the user is not suspended, and that the Admin "
        "console's IMAP setting (%s) is '%s' for the user's organisational unit: '%s' cannot admit a client "
        "that uses domain-wide delegation." % (ADMIN_CONSOLE_IMAP_PAGE, IMAP_ANY_CLIENT, IMAP_CLIENT_RESTRICTION)
    ),
    "imap_other": "The IMAP server refused the session; see the message for the server's words.",
    API_FAILURE_CLASS: "Google's API refused or failed the call; see the message for Google's status and reason.",
}


def network_summary(failure_class, endpoint):  # type: (str, str) -> str
    """The opening words of a network failure's message at ``endpoint`` ("Cannot connect to the IMAP server")."""
    return _NETWORK_SUMMARY[endpoint][failure_class]


def hint(failure_class, endpoint=ENDPOINT_TOKEN):  # type: (str, str) -> str
    """What fixes ``failure_class``; network classes are worded for ``endpoint`` (token, imap or api)."""
    if failure_class in NETWORK_FAILURE_CLASSES:
        return _NETWORK_HINTS[endpoint][failure_class]
    return HINTS.get(failure_class, "")


def admin_console_url(client_id, scopes):  # type: (str, Iterable[str]) -> str
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


# --------------------------------------------------------------------------- the exceptions


class GoogleFailure(Exception):
    """Something Google-facing failed; ``failure_class`` is one of :data:`FAILURE_CLASSES` (never ``ok``).

    ``retryable``: a second try can succeed; ``attempts``: requests made; ``status``: HTTP status, if any.
    """

    def __init__(self, failure_class, message, retryable=False, status=None, attempts=1):  # type: (str, str, bool, Optional[int], int) -> None
        super(GoogleFailure, self).__init__(message)
        self.failure_class = failure_class
        self.msg = message
        self.retryable = retryable
        self.status = status
        self.attempts = attempts

    def as_result(self):  # type: () -> Dict[str, Any]
        """The fields a module puts into its result for this failure."""
        return {
            "failure_class": self.failure_class,
            "message": self.msg,
            "retryable": self.retryable,
            "http_status": self.status,
            "attempts": self.attempts,
        }

    def __repr__(self):  # type: () -> str
        return "%s(%r, %r, status=%r, attempts=%r)" % (
            type(self).__name__,
            self.failure_class,
            self.msg,
            self.status,
            self.attempts,
        )


class TokenError(GoogleFailure):
    """Minting a token failed. ``google_error`` / ``google_description``: Google's OAuth ``error`` /
    ``error_description`` when Google answered."""

    def __init__(
        self,
        failure_class,
        message,
        google_error=None,
        google_description=None,
        retryable=False,
        status=None,
        attempts=1,
    ):  # type: (str, str, Optional[str], Optional[str], bool, Optional[int], int) -> None
        super(TokenError, self).__init__(failure_class, message, retryable, status, attempts)
        self.google_error = google_error
        self.google_description = google_description

    def as_result(self):  # type: () -> Dict[str, Any]
        result = super(TokenError, self).as_result()
        result.update(google_error=self.google_error, google_description=self.google_description)
        return result


class GoogleApiError(GoogleFailure):
    """A REST API call failed: ``token_unauthorized_scope`` (the token lacks the API's scope), a network class
    or ``api_error``. ``api_status``: Google's status name (``PERMISSION_DENIED``); ``reason``: the most specific
    reason Google gave (``ErrorInfo.reason`` such as ``ACCESS_TOKEN_SCOPE_INSUFFICIENT``, else
    ``errors[0].reason``); ``google_message``: Google's own message; ``activation_url``: the link that enables
    the API when Google refused because it is disabled in the caller's project (:func:`parse_activation_url`)."""

    def __init__(
        self,
        failure_class,
        message,
        status=None,
        api_status=None,
        reason=None,
        google_message=None,
        retryable=False,
        attempts=1,
        activation_url=None,
    ):  # type: (str, str, Optional[int], Optional[str], Optional[str], Optional[str], bool, int, Optional[str]) -> None
        super(GoogleApiError, self).__init__(failure_class, message, retryable, status, attempts)
        self.api_status = api_status
        self.reason = reason
        self.google_message = google_message
        # Google's "enable this API" link (ErrorInfo metadata.activationUrl of a SERVICE_DISABLED answer).
        self.activation_url = activation_url

    @property
    def insufficient_scope(self):  # type: () -> bool
        return self.failure_class == "token_unauthorized_scope"

    @property
    def permission_denied(self):  # type: () -> bool
        """Google answered 403 for a reason other than the token's scopes (e.g. the caller is not an admin)."""
        return self.status == 403 and not self.insufficient_scope

    def as_result(self):  # type: () -> Dict[str, Any]
        result = super(GoogleApiError, self).as_result()
        result.update(api_status=self.api_status, api_reason=self.reason)
        return result


class ImapFailure(GoogleFailure):
    """The IMAP side of a login check failed during ``phase`` (connect, auth, select)."""

    def __init__(self, failure_class, message, retryable=False, phase=None):  # type: (str, str, bool, Optional[str]) -> None
        super(ImapFailure, self).__init__(failure_class, message, retryable)
        self.phase = phase

    def __repr__(self):  # type: () -> str
        return "ImapFailure(%r, %r, retryable=%r, phase=%r)" % (
            self.failure_class,
            self.msg,
            self.retryable,
            self.phase,
        )


# --------------------------------------------------------------------------- transport exceptions


def exception_chain(exc):  # type: (BaseException) -> List[BaseException]
    """The exception and everything it wraps: causes, contexts, urllib3's ``reason``, exception args."""
    seen = []  # type: List[BaseException]
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


def _type_names(exc):  # type: (BaseException) -> List[str]
    return [klass.__name__ for klass in type(exc).__mro__]


def short_exception(exc):  # type: (BaseException) -> str
    """The innermost cause's text (e.g. "[Errno 111] Connection refused"), at most 300 characters."""
    chain = exception_chain(exc)
    innermost = chain[-1] if chain else exc
    return shorten(str(innermost) or type(innermost).__name__, 300)


def shorten(text, limit=400):  # type: (str, int) -> str
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_DNS_TEXT = (
    "name or service not known",
    "nodename nor servname",
    "getaddrinfo failed",
    "temporary failure in name resolution",
    "failed to resolve",
    "no address associated",
)


def classify_network_error(exc):  # type: (BaseException) -> Optional[Tuple[str, bool]]
    """``(failure_class, retryable)`` for a transport failure, or None when ``exc`` is not one.

    Works on requests', urllib3's, ssl's and socket's exceptions by walking the wrapped chain (requests
    wraps urllib3 which wraps the socket error) and matching class names, so it does not depend on the
    installed versions of those libraries.
    """
    chain = exception_chain(exc)
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
    if any(is_stale_connection_error(item) for item in chain):
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


# HTTP answers that can succeed on a second try, for the token endpoint and every API alike.
_RETRYABLE_STATUS = frozenset((408, 429, 500, 502, 503, 504))

# --------------------------------------------------------------------------- the token endpoint

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


def classify_token_error(error, description, status=None):  # type: (Optional[str], Optional[str], Optional[int]) -> Tuple[str, bool]
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


def _json_mapping(data):  # type: (Any) -> Optional[Mapping[str, Any]]
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    if isinstance(data, string_types):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    return data if isinstance(data, Mapping) else None


def parse_token_error_body(data):  # type: (Any) -> Tuple[Optional[str], Optional[str]]
    """Google's ``(error, error_description)`` from a token-endpoint body: dict, JSON text or bytes.

    Also understands the API style ``{"error": {"status": ..., "message": ...}}`` some front ends return.
    """
    body = _json_mapping(data)
    if body is None:
        return None, None
    error = body.get("error")
    description = body.get("error_description")
    if isinstance(error, Mapping):
        description = error.get("message") if description is None else description
        error = error.get("status") or error.get("code")
    return (
        str(error) if error is not None else None,
        str(description) if description is not None else None,
    )


def classify_token_exception(exc, attempts=1):  # type: (BaseException, int) -> TokenError
    """Turn anything a token request raised (a transport failure, mostly) into a :class:`TokenError` (returned)."""
    if isinstance(exc, TokenError):
        return exc
    network = classify_network_error(exc)
    if network is None:
        return TokenError(
            "token_other",
            "The token request failed unexpectedly (%s: %s)." % (type(exc).__name__, short_exception(exc)),
            attempts=attempts,
        )
    failure_class, retryable = network
    return TokenError(
        failure_class,
        "%s: %s. %s" % (network_summary(failure_class, ENDPOINT_TOKEN), short_exception(exc), hint(failure_class)),
        retryable=retryable,
        attempts=attempts,
    )


# --------------------------------------------------------------------------- REST APIs

_SCOPE_REASONS = frozenset(("ACCESS_TOKEN_SCOPE_INSUFFICIENT", "insufficientPermissions"))


def _text(value):  # type: (Any) -> Optional[str]
    return None if value is None else str(value)


def parse_api_error(body):  # type: (Any) -> Tuple[Optional[str], Optional[str], Optional[str]]
    """``(api_status, reason, message)`` from Google's JSON error envelope (dict, text or bytes).

    ``reason`` prefers ``details[].ErrorInfo.reason`` (stable, upper case) over the legacy
    ``errors[0].reason``. Non-JSON bodies (an HTML page from a proxy) give ``(None, None, None)``.
    """
    envelope = _json_mapping(body)
    if envelope is None:
        return None, None, None
    error = envelope.get("error")
    if isinstance(error, string_types):
        # The OAuth dialect ({"error": "invalid_token", "error_description": ...}) from some front ends.
        return None, error, _text(envelope.get("error_description"))
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


def classify_api_error(status, api_status, reason, message):  # type: (Optional[int], Optional[str], Optional[str], Optional[str]) -> Tuple[str, bool]
    """``(failure_class, retryable)`` for an API error answer."""
    if status in _RETRYABLE_STATUS:
        return API_FAILURE_CLASS, True
    if status == 403 and (reason in _SCOPE_REASONS or "insufficient authentication scopes" in (message or "").lower()):
        return "token_unauthorized_scope", False
    return API_FAILURE_CLASS, False


# --------------------------------------------------------------------------- IAM and Service Usage refusals
#
# Why a call that manages the project (IAM keys and service accounts, Service Usage) was refused. These are
# not per-user outcomes, so the per-user vocabulary above is unchanged: such a failure's ``failure_class`` is
# ``api_error`` and ``refusal`` (one of API_REFUSALS) says which refusal it was and, with API_REFUSAL_HINTS,
# who can lift it.

REFUSAL_ORG_POLICY = "org_policy"
REFUSAL_KEY_QUOTA = "key_quota"
REFUSAL_SERVICE_DISABLED = "service_disabled"
REFUSAL_PERMISSION_DENIED = "permission_denied"
REFUSAL_NOT_FOUND = "not_found"
REFUSAL_ALREADY_EXISTS = "already_exists"
API_REFUSALS = (
    REFUSAL_ORG_POLICY,
    REFUSAL_KEY_QUOTA,
    REFUSAL_SERVICE_DISABLED,
    REFUSAL_PERMISSION_DENIED,
    REFUSAL_NOT_FOUND,
    REFUSAL_ALREADY_EXISTS,
)
ORG_POLICY_KEY_CREATION = "constraints/iam.disableServiceAccountKeyCreation"
MAX_KEYS_PER_SERVICE_ACCOUNT = 10
API_REFUSAL_HINTS = {
    REFUSAL_ORG_POLICY: (
        "The organisation policy %s forbids creating service-account keys (Google enforces it by default in "
        "organisations created on or after 3 May 2024). Only an Organization Policy Administrator "
        "(roles/orgpolicy.policyAdmin, granted at the organisation; Organization Administrator alone is not enough) "
        "can lift it, best for this project only: Google Cloud console > IAM & Admin > Organization Policies > "
        "'Disable service account key creation' > Override parent's policy > Not enforced; or "
        "'gcloud resource-manager org-policies disable-enforce iam.disableServiceAccountKeyCreation --project=PROJECT'. "
        "Changes can take several minutes to apply." % ORG_POLICY_KEY_CREATION
    ),
    REFUSAL_KEY_QUOTA: (
        "A service account holds at most %d user-managed keys and this one has them all. Delete keys no MSL host "
        "uses (nupoint.gworkspace.service_account_keys_info lists them with their age; "
        "nupoint.gworkspace.service_account_key state=absent deletes one), then try again."
        % MAX_KEYS_PER_SERVICE_ACCOUNT
    ),
    REFUSAL_SERVICE_DISABLED: (
        "The API is not enabled in the Google Cloud project the credential belongs to: enable it at the link in the "
        "message (or list it in nupoint.gworkspace.service_account's services option), give it time to propagate "
        "(Google's message asks for minutes), and retry."
    ),
    REFUSAL_PERMISSION_DENIED: (
        "The admin credential may not do this. Managing keys needs roles/iam.serviceAccountKeyAdmin on the service "
        "account or its project; creating service accounts roles/iam.serviceAccountAdmin (or "
        "roles/iam.serviceAccountCreator); enabling APIs roles/serviceusage.serviceUsageAdmin. Grant the role to the "
        "admin credential's identity (Google Cloud console > IAM & Admin > IAM), or use another credential."
    ),
    REFUSAL_NOT_FOUND: (
        "Google does not know this service account, key or project: check the e-mail address, key ID and project "
        "ID (the service account or key may have been deleted)."
    ),
    REFUSAL_ALREADY_EXISTS: "It exists already.",
}
_ACTIVATION_URL = re.compile(r"https://console\.(?:developers|cloud)\.google\.com/apis/api/[^\s\"'<>]+")


def activation_url(message):  # type: (Optional[str]) -> Optional[str]
    """The "enable this API" link of Google's SERVICE_DISABLED / accessNotConfigured message, if it has one."""
    found = _ACTIVATION_URL.search(message or "")
    return found.group(0).rstrip(".,)") if found else None


def parse_activation_url(body):  # type: (Any) -> Optional[str]
    """``metadata.activationUrl`` of the ``SERVICE_DISABLED`` ErrorInfo in Google's error envelope, else None.

    Google answers a call to an API that is disabled in the caller's project with HTTP 403, ``ErrorInfo.reason``
    ``SERVICE_DISABLED`` (googleapis' ErrorReason: "The request is calling a disabled service for a consumer") and
    the enable link in its metadata; the legacy ``errors[0].reason`` is ``accessNotConfigured``.
    """
    envelope = _json_mapping(body)
    error = envelope.get("error") if envelope is not None else None
    if not isinstance(error, Mapping):
        return None
    for detail in error.get("details") or ():
        if (
            isinstance(detail, Mapping)
            and str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo")
            and detail.get("reason") == "SERVICE_DISABLED"
        ):
            metadata = detail.get("metadata")
            link = metadata.get("activationUrl") if isinstance(metadata, Mapping) else None
            return _text(link) if link else None
    return None


def enable_link(exc):  # type: (GoogleApiError) -> Optional[str]
    """The link that enables the disabled API ``exc`` names: Google's activationUrl, else the one in its message."""
    return getattr(exc, "activation_url", None) or activation_url(exc.google_message)


def is_service_disabled(exc):  # type: (GoogleApiError) -> bool
    """Google refused because the API is disabled in the caller's Cloud project (the ``service_disabled`` refusal)."""
    return (
        exc.failure_class == API_FAILURE_CLASS
        and classify_api_refusal(exc.status, exc.api_status, exc.reason, exc.google_message) == REFUSAL_SERVICE_DISABLED
    )


def classify_api_refusal(
    status,
    api_status,
    reason,
    message,
    creating_key=False,
):  # type: (Optional[int], Optional[str], Optional[str], Optional[str], bool) -> Optional[str]
    """Which of :data:`API_REFUSALS` an IAM / Service Usage error answer is, or None (another failure).

    Google answers the 10-key limit with a bare ``400 FAILED_PRECONDITION "Precondition check failed."``, so it is
    only recognised as such for a key creation (``creating_key``); the organisation policy says so in its message.
    """
    text = (message or "").lower()
    if "key creation is not allowed" in text or "disableserviceaccountkeycreation" in text:
        return REFUSAL_ORG_POLICY
    if reason in ("SERVICE_DISABLED", "accessNotConfigured") or "has not been used in project" in text:
        return REFUSAL_SERVICE_DISABLED
    if creating_key and api_status == "FAILED_PRECONDITION":
        return REFUSAL_KEY_QUOTA
    if status == 403 and reason not in _SCOPE_REASONS:
        return REFUSAL_PERMISSION_DENIED
    if status == 404:
        return REFUSAL_NOT_FOUND
    if status == 409:
        return REFUSAL_ALREADY_EXISTS
    return None


class ApiRefusal(GoogleApiError):
    """An IAM / Service Usage call was refused for a reason an administrator can fix: ``refusal`` is one of
    :data:`API_REFUSALS`; ``activation_url`` the link that enables a disabled API."""

    def __init__(self, refusal, message, source, activation=None):  # type: (str, str, GoogleApiError, Optional[str]) -> None
        super(ApiRefusal, self).__init__(
            source.failure_class,
            message,
            source.status,
            source.api_status,
            source.reason,
            source.google_message,
            source.retryable,
            source.attempts,
        )
        self.refusal = refusal
        self.activation_url = activation or source.activation_url

    def as_result(self):  # type: () -> Dict[str, Any]
        result = super(ApiRefusal, self).as_result()
        result.update(refusal=self.refusal, activation_url=self.activation_url)
        return result


# --------------------------------------------------------------------------- IMAP

# Gmail's (and Dovecot's) refusal texts, lower case, first match wins. Retryable entries first: a
# "[ALERT] Too many simultaneous connections" must not be taken for an account problem.
_IMAP_TEXT_CLASSES = (
    # (class, retryable, fragments)
    (
        "imap_other",
        True,
        (
            "too many simultaneous connections",
            "[unavailable]",
            "temporary system problem",
            "try again later",
            "temporary authentication failure",
            "[inuse]",
            "server busy",
            "service unavailable",
        ),
    ),
    (
        "imap_disabled",
        False,
        ("not enabled for imap", "imap access is disabled", "imap is disabled", "imap access disabled"),
    ),
    (
        "imap_auth_failed",
        False,
        (
            "[authenticationfailed]",
            "[authorizationfailed]",
            "invalid credentials",
            "authentication failed",
            "[webalert",
            "web login required",
            "log in via your web browser",
            "application-specific password",
            "[contactadmin]",
            "[expired]",
            "account is disabled",
            "suspended",
        ),
    ),
)
_IMAP_NETWORK_TEXT = (
    # imaplib wraps socket errors in IMAP4.abort("socket error: ...") and reports a closed connection as EOF.
    ("timeout", True, ("timed out", "timeout")),
    ("connect", True, ("eof", "connection reset", "broken pipe", "connection aborted", "socket error")),
)
IMAP_PHASE_WORDS = {
    "connect": "the connection",
    "auth": "the XOAUTH2 login",
    "select": "to open the mailbox",
}
_BYE_OR_NO = re.compile(r"^(?:\*\s+)?(?:BYE|NO|BAD)\s+", re.IGNORECASE)


def _known_imap_text(text):  # type: (str) -> Optional[Tuple[str, bool]]
    lowered = (text or "").lower()
    for failure_class, retryable, fragments in _IMAP_TEXT_CLASSES:
        if any(fragment in lowered for fragment in fragments):
            return failure_class, retryable
    return None


def classify_imap_text(text, phase=None):  # type: (str, Optional[str]) -> Tuple[str, bool]
    """``(failure_class, retryable)`` for an IMAP server's refusal text (a ``NO``/``BAD``/``BYE`` line).

    Knows Gmail's texts, for example::

        [ALERT] Your account is not enabled for IMAP use. Please visit your Gmail settings page ...  -> imap_disabled
        [ALERT] IMAP access is disabled for your domain. Please contact your domain administrator ...  -> imap_disabled
        [AUTHENTICATIONFAILED] Invalid credentials (Failure)                                         -> imap_auth_failed
        [ALERT] Too many simultaneous connections. (Failure)                                         -> imap_other, retry
        [UNAVAILABLE] Temporary System Problem. Try again later.                                     -> imap_other, retry

    An unknown refusal of ``AUTHENTICATE`` is ``imap_auth_failed``; anything else unknown is ``imap_other``.
    """
    known = _known_imap_text(text)
    if known is not None:
        return known
    if phase == "auth":
        return "imap_auth_failed", False
    return "imap_other", False


def _innermost_text(exc):  # type: (BaseException) -> str
    current = exc
    for _depth in range(10):
        nxt = current.__cause__ or current.__context__
        if nxt is None:
            break
        current = nxt
    return str(current) or type(current).__name__


def classify_imap_failure(exc, phase):  # type: (BaseException, str) -> ImapFailure
    """Turn anything the IMAP side raised during ``phase`` (connect, auth, select) into an :class:`ImapFailure`.

    The IMAP client raises imaplib's exception types (``IMAP4.error`` for ``NO``/``BAD`` with the server's
    text, ``IMAP4.abort`` for ``BYE`` and a dropped connection); socket and TLS errors as they are.
    """
    if isinstance(exc, ImapFailure):
        if exc.phase is None:
            exc.phase = phase
        return exc
    if isinstance(exc, imaplib.IMAP4.error):
        text = _BYE_OR_NO.sub("", (str(exc) or type(exc).__name__).strip())
        if isinstance(exc, imaplib.IMAP4.abort) and _known_imap_text(text) is None:
            # The connection broke rather than the server refusing: imaplib says "socket error: EOF" and the like.
            lowered = text.lower()
            for failure_class, retryable, fragments in _IMAP_NETWORK_TEXT:
                if any(fragment in lowered for fragment in fragments):
                    return ImapFailure(
                        failure_class,
                        "The IMAP connection failed during %s: %s. %s"
                        % (phase, shorten(text), hint(failure_class, ENDPOINT_IMAP)),
                        retryable,
                        phase,
                    )
        failure_class, retryable = classify_imap_text(text, phase)
        return ImapFailure(
            failure_class,
            "The IMAP server refused %s: %s. %s"
            % (IMAP_PHASE_WORDS.get(phase, phase), shorten(text), hint(failure_class, ENDPOINT_IMAP)),
            retryable,
            phase,
        )
    network = classify_network_error(exc)
    if network is not None:
        failure_class, retryable = network
        return ImapFailure(
            failure_class,
            "%s (%s): %s. %s"
            % (
                network_summary(failure_class, ENDPOINT_IMAP),
                phase,
                shorten(_innermost_text(exc)),
                hint(failure_class, ENDPOINT_IMAP),
            ),
            retryable,
            phase,
        )
    return ImapFailure(
        "imap_other",
        "The IMAP check failed unexpectedly during %s (%s: %s)."
        % (phase, type(exc).__name__, shorten(str(exc) or type(exc).__name__)),
        False,
        phase,
    )


# --------------------------------------------------------------------------- the summary shape


def count_classes(results):  # type: (Iterable[Mapping[str, Any]]) -> Dict[str, int]
    """Users per class: every class of the vocabulary, zeros included, so a report's columns never move."""
    by_class = dict.fromkeys(FAILURE_CLASSES, 0)
    for result in results:
        by_class[result["failure_class"]] = by_class.get(result["failure_class"], 0) + 1
    return by_class


def summarize(results, duration=None):  # type: (Sequence[Mapping[str, Any]], Optional[float]) -> Dict[str, Any]
    """The summary every per-user module returns: ``total``, ``ok``, ``failed``, ``by_class`` and, given a
    ``duration`` in seconds, ``duration_seconds`` and ``users_per_second``. Modules add their own counts."""
    by_class = count_classes(results)
    total = len(results)
    summary = {"total": total, "ok": by_class[OK], "failed": total - by_class[OK], "by_class": by_class}  # type: Dict[str, Any]
    if duration is not None:
        summary["duration_seconds"] = round(duration, 3)
        summary["users_per_second"] = round(total / duration, 1) if duration > 0 else 0.0
    return summary


def failed_users(results):  # type: (Iterable[Mapping[str, Any]]) -> List[Dict[str, Any]]
    """``user``, ``failure_class``, ``message`` of every result that is not ``ok``."""
    return [
        {"user": result["user"], "failure_class": result["failure_class"], "message": result["message"]}
        for result in results
        if result["failure_class"] != OK
    ]


def class_counts_text(by_class):  # type: (Mapping[str, int]) -> str
    """``"imap_disabled 2, token_invalid_user 1"``: the failed classes of a summary, for messages."""
    return ", ".join("%s %d" % (name, count) for name, count in sorted(by_class.items()) if count and name != OK)
