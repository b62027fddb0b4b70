# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Google Cloud side of the key's life: IAM service accounts and keys, Service Usage.

::

    client = GoogleApiClient(admin_token_source(key_text, token_uri=...), api_base_url=..., ...)
    keys = list_keys(client, "nupoint-um@p.iam.gserviceaccount.com")     # [key_summary(...), ...]
    created = create_key(client, account)                                  # CreatedKey: summary + file text
    delete_key(client, account, key_id)

Why it is built this way:

- These calls act as an **administrator of the Google Cloud project**, not as a Workspace user: the
  token is the admin credential's own (a JWT without ``sub``: ``token.KeySigner`` with no subject), or Application
  Default Credentials (:class:`AdcTokenSource`), with the ``cloud-platform`` scope. The admin
  credential is another service-account key (with ``roles/iam.serviceAccountKeyAdmin``) or a person's
  ADC; the NuPoint key itself works only where its account may manage its own keys.
- Plain functions over ``api.GoogleApiClient`` (retries, error envelopes, one session); every refusal an
  administrator can fix becomes one ``failures.ApiRefusal`` (org policy, the 10-key quota, a disabled
  API, missing permission, not found) with Google's words, the ids and the fix.
- Key material exists only in :class:`CreatedKey` (the JSON key file Google returns once, at creation);
  its ``repr`` shows ids only, and nothing here logs or returns it.

Parses as Python 3.6; runs on the controller (google-auth and requests).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import calendar
import datetime  # noqa: F401 - named in type comments
import time

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass


from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import quote, raise_from
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.api import GoogleApiClient
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import (
    API_FAILURE_CLASS,
    API_REFUSAL_HINTS,
    MAX_KEYS_PER_SERVICE_ACCOUNT,
    REFUSAL_KEY_QUOTA,
    REFUSAL_NOT_FOUND,
    REFUSAL_ORG_POLICY,
    REFUSAL_SERVICE_DISABLED,
    ApiRefusal,
    GoogleApiError,
    TokenError,
    classify_api_refusal,
    enable_link,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.session import new_session
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.token import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    HAS_GOOGLE_AUTH,
    DelegatedTokenSource,
    KeySigner,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.key_format import (
    CredentialKeyError,
    credential_key_metadata,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.service_account import (
    certificate_fingerprint_sha256,
)

# The result field that carries a created key from service_account_key to its action plugin (key_handover),
# which always removes it before anything else sees the result.
HANDOVER_FIELD = "_nupoint_key_file"
SCOPE_CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
ADMIN_SCOPES = (SCOPE_CLOUD_PLATFORM,)
# The admin's own token: no user is impersonated (GoogleApiClient caches tokens per subject).
NO_SUBJECT = ""
KEY_TYPES = ("USER_MANAGED", "SYSTEM_MANAGED")
# Google's validBeforeTime for a key that never expires.
NEVER = "9999-12-31T23:59:59Z"
DEFAULT_KEY_ALGORITHM = "KEY_ALG_RSA_2048"
# The APIs each feature of the collection needs, as Service Usage names them.
SERVICE_IAM = "iam.googleapis.com"
SERVICE_USAGE = "serviceusage.googleapis.com"
FEATURE_SERVICES = {
    "iam": (SERVICE_IAM,),
    "gmail": ("gmail.googleapis.com",),
    "cloudidentity": ("cloudidentity.googleapis.com",),
    "admin": ("admin.googleapis.com",),
    "calendar": ("calendar-json.googleapis.com",),
}
SERVICE_ACCOUNT_DOMAIN = ".iam.gserviceaccount.com"
# Hosts of the APIs this file calls (api.SERVICE_ROOTS has IAM; Service Usage is only called from here).
SERVICE_ROOTS = {"iam": "https://iam.googleapis.com", "serviceusage": "https://serviceusage.googleapis.com"}


# --------------------------------------------------------------------------- the admin credential


def admin_token_source(key_text, token_uri=None, **options):  # type: (str, Optional[str], **Any) -> DelegatedTokenSource
    """A token source for the admin key's own tokens (the exchange, retries and errors are token.py's)."""
    return DelegatedTokenSource(scopes=ADMIN_SCOPES, signer=KeySigner(key_text, token_uri), **options)


class AdcTokenSource:
    """Tokens from Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth
    application-default login``, the metadata server), for ``GoogleApiClient``."""

    def __init__(self, session=None, loader=None):  # type: (Any, Optional[Callable[..., Any]]) -> None
        self._session = session
        self._loader = loader
        self._credentials = None  # type: Any
        self.client_id = ""
        self.client_email = ""

    def token(self, subject, scopes):  # type: (str, Sequence[str]) -> Tuple[str, Optional[datetime.datetime]]
        if self._loader is None and not HAS_GOOGLE_AUTH:
            raise TokenError("token_other", "google-auth is needed for Application Default Credentials.")
        try:
            # Only this path needs more of google-auth than token.py imports: loaded when it is taken.
            import google.auth
            import google.auth.transport.requests

            if self._credentials is None:
                loader = self._loader or google.auth.default
                self._credentials, _project = loader(scopes=list(scopes))
                self.client_email = str(getattr(self._credentials, "service_account_email", "") or "")
            self._credentials.refresh(google.auth.transport.requests.Request(session=self._session))
        except TokenError:
            raise
        except Exception as exc:  # noqa: BLE001 - google-auth raises DefaultCredentialsError, RefreshError, ...
            raise_from(
                TokenError(
                    "token_other",
                    "No usable Application Default Credentials (%s: %s). Give the admin key as src or content, or set "
                    "GOOGLE_APPLICATION_CREDENTIALS / run 'gcloud auth application-default login' on the controller."
                    % (type(exc).__name__, str(exc)[:300]),
                ),
                None,
            )
        return str(self._credentials.token), getattr(self._credentials, "expiry", None)

    def close(self):  # type: () -> None
        return None


# --------------------------------------------------------------------------- names and times


def project_of(account, project_id=None):  # type: (str, Optional[str]) -> str
    """The project of ``account``: ``project_id`` when given, else the one in the address, else ``-`` (any)."""
    if project_id:
        return project_id
    if account.lower().endswith(SERVICE_ACCOUNT_DOMAIN):
        return account.lower().split("@", 1)[1][: -len(SERVICE_ACCOUNT_DOMAIN)]
    return "-"


def account_path(account, project_id=None):  # type: (str, Optional[str]) -> str
    return "/v1/projects/%s/serviceAccounts/%s" % (
        quote(project_of(account, project_id), safe=""),
        quote(account, safe="@"),
    )


def key_path(account, key_id, project_id=None):  # type: (str, str, Optional[str]) -> str
    return "%s/keys/%s" % (account_path(account, project_id), quote(key_id, safe=""))


def parse_time(value):  # type: (Optional[str]) -> Optional[float]
    """Seconds since the epoch of Google's RFC 3339 timestamps (``2024-05-03T10:00:00Z``, fractions allowed)."""
    if not value:
        return None
    text = value.strip().rstrip("Z")
    text = text.split(".", 1)[0]
    try:
        parsed = time.strptime(text, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    return float(calendar.timegm(parsed))


def key_summary(resource, now):  # type: (Mapping[str, Any], float) -> Dict[str, Any]
    """What a module returns about one key: ids, times, age, expiry, type, whether disabled; never key material."""
    name = str(resource.get("name") or "")
    created = parse_time(resource.get("validAfterTime"))
    valid_before = resource.get("validBeforeTime")
    expires = None if not valid_before or valid_before == NEVER else valid_before
    expires_at = parse_time(expires) if expires else None
    age_days = None if created is None else max(0, int((now - created) // 86400))
    return {
        "key_id": name.rsplit("/", 1)[-1],
        "name": name,
        "valid_after": resource.get("validAfterTime"),
        "valid_before": valid_before,
        "expires": expires,
        "expired": bool(expires_at is not None and expires_at <= now),
        "age_days": age_days,
        "key_type": resource.get("keyType") or "USER_MANAGED",
        "key_origin": resource.get("keyOrigin"),
        "key_algorithm": resource.get("keyAlgorithm"),
        "disabled": bool(resource.get("disabled", False)),
    }


# --------------------------------------------------------------------------- errors


def refused(exc, what, creating_key=False):  # type: (GoogleApiError, str, bool) -> GoogleApiError
    """``exc`` as an :class:`ApiRefusal` with the fix when an administrator can fix it, else ``exc`` itself."""
    if isinstance(exc, ApiRefusal) or exc.failure_class != API_FAILURE_CLASS:
        return exc
    refusal = classify_api_refusal(exc.status, exc.api_status, exc.reason, exc.google_message, creating_key)
    if refusal is None:
        return exc
    link = enable_link(exc) if refusal == REFUSAL_SERVICE_DISABLED else None
    said = exc.google_message or exc.msg
    if refusal == REFUSAL_KEY_QUOTA:
        said = "%s (Google's answer to the %d-key limit)" % (said, MAX_KEYS_PER_SERVICE_ACCOUNT)
    message = "Google refused to %s: %s. %s" % (what, said.rstrip("."), API_REFUSAL_HINTS[refusal])
    if refusal == REFUSAL_ORG_POLICY:
        message = message.replace("--project=PROJECT", "--project=%s" % what.rsplit(" in project ", 1)[-1])
    return ApiRefusal(refusal, message, exc, link)


def _call(client, method, service, path, what, creating_key=False, **kwargs):  # type: (Any, str, str, str, str, bool, **Any) -> Any
    try:
        return client.request(method, service, path, NO_SUBJECT, ADMIN_SCOPES, **kwargs)
    except GoogleApiError as exc:
        raise_from(refused(exc, what, creating_key), None)


# --------------------------------------------------------------------------- keys


class CreatedKey:
    """A key Google just created: its summary and the JSON key file (``key_file``, the only copy). No key in repr."""

    def __init__(self, summary, key_file, metadata):  # type: (Dict[str, Any], str, Dict[str, str]) -> None
        self.summary = summary
        self.key_file = key_file
        self.metadata = metadata

    def __repr__(self):  # type: () -> str
        return "CreatedKey(key_id=%r, fingerprint_sha256=%r)" % (
            self.summary["key_id"],
            self.metadata.get("fingerprint_sha256"),
        )


def list_keys(
    client,
    account,
    project_id=None,
    key_types=("USER_MANAGED",),
    now=None,
):  # type: (Any, str, Optional[str], Sequence[str], Optional[float]) -> List[Dict[str, Any]]
    """The account's keys (of ``key_types``), oldest first, as :func:`key_summary` dicts."""
    # Without keyTypes Google lists every type; with it, only those (repeated parameter).
    params = {"keyTypes": list(key_types)} if key_types else None
    body = _call(
        client,
        "GET",
        "iam",
        account_path(account, project_id) + "/keys",
        "list the keys of %s" % account,
        params=params,
    )
    moment = time.time() if now is None else now
    keys = [key_summary(resource, moment) for resource in (body.get("keys") or []) if isinstance(resource, Mapping)]
    return sorted(keys, key=lambda key: (key["valid_after"] or "", key["key_id"]))


def find_key(keys, key_id):  # type: (Sequence[Mapping[str, Any]], str) -> Optional[Dict[str, Any]]
    for key in keys:
        if key["key_id"] == key_id:
            return dict(key)
    return None


def create_key(
    client,
    account,
    project_id=None,
    algorithm=DEFAULT_KEY_ALGORITHM,
    now=None,
):  # type: (Any, str, Optional[str], str, Optional[float]) -> CreatedKey
    """Create a key (JSON key file type); Google hands out its private half this once."""
    body = _call(
        client,
        "POST",
        "iam",
        account_path(account, project_id) + "/keys",
        "create a key for %s in project %s" % (account, project_of(account, project_id)),
        creating_key=True,
        body={"privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE", "keyAlgorithm": algorithm},
    )
    try:
        key_file = base64.b64decode(str(body.get("privateKeyData") or ""), validate=True).decode("utf-8")
        metadata = credential_key_metadata(key_file)
    except (binascii.Error, ValueError, CredentialKeyError):
        raise_from(
            GoogleApiError(
                API_FAILURE_CLASS,
                "Google created a key for %s but its privateKeyData is not a JSON key file (key %s); delete that key."
                % (account, str(body.get("name") or "?").rsplit("/", 1)[-1]),
            ),
            None,
        )
    summary = key_summary(body, time.time() if now is None else now)
    return CreatedKey(summary, key_file, metadata)


def delete_key(client, account, key_id, project_id=None):  # type: (Any, str, str, Optional[str]) -> bool
    """Delete a key; False when Google does not know it (already gone)."""
    try:
        _call(client, "DELETE", "iam", key_path(account, key_id, project_id), "delete key %s of %s" % (key_id, account))
    except ApiRefusal as exc:
        if exc.refusal == REFUSAL_NOT_FOUND:
            return False
        raise
    return True


def set_key_disabled(client, account, key_id, disabled, project_id=None):  # type: (Any, str, str, bool, Optional[str]) -> None
    verb = "disable" if disabled else "enable"
    _call(
        client,
        "POST",
        "iam",
        "%s:%s" % (key_path(account, key_id, project_id), verb),
        "%s key %s of %s" % (verb, key_id, account),
        body={},
    )


def key_fingerprint(client, account, key_id, project_id=None):  # type: (Any, str, str, Optional[str]) -> Optional[str]
    """SHA-256 fingerprint of a key's public key, from its certificate (``keys.get`` with ``TYPE_X509_PEM_FILE``).

    None when Google returns no certificate. Only the public half exists at Google after creation, which is all a
    fingerprint needs: it tells which of the account's keys a JSON or P12 file holds.
    """
    body = _call(
        client,
        "GET",
        "iam",
        key_path(account, key_id, project_id),
        "read the public key of key %s of %s" % (key_id, account),
        params={"publicKeyType": "TYPE_X509_PEM_FILE"},
    )
    data = str(body.get("publicKeyData") or "")
    if not data:
        return None
    try:
        return certificate_fingerprint_sha256(base64.b64decode(data))
    except (binascii.Error, ValueError):
        return None


def with_fingerprints(client, account, keys, project_id=None):  # type: (Any, str, Sequence[Mapping[str, Any]], Optional[str]) -> List[Dict[str, Any]]
    """``keys`` (:func:`list_keys`) each with its ``fingerprint_sha256`` (one ``keys.get`` per key; at most 10)."""
    return [dict(key, fingerprint_sha256=key_fingerprint(client, account, key["key_id"], project_id)) for key in keys]


def p12_pair_proof(keys, key_fingerprint_sha256, p12_fingerprint_sha256):  # type: (Sequence[Mapping[str, Any]], str, str) -> Dict[str, Any]
    """Whether a JSON key and a P12 file of another key pair are both live keys of one account.

    ``keys`` are the account's keys with their fingerprints (:func:`with_fingerprints`); the fingerprints are the
    files' (``service_account_key_info``'s ``public_key_fingerprint_sha256`` and ``p12_fingerprint_sha256``).
    Returns ``proven`` and, for each file, the key it holds at Google (or None) and what is wrong with it.
    """

    def normal(value):  # type: (Optional[str]) -> str
        return str(value or "").replace(":", "").lower()

    result = {"proven": True, "problems": []}  # type: Dict[str, Any]
    for name, fingerprint in (("key", key_fingerprint_sha256), ("p12", p12_fingerprint_sha256)):
        found = next((dict(key) for key in keys if normal(key.get("fingerprint_sha256")) == normal(fingerprint)), None)
        result["%s_key_id" % name] = found["key_id"] if found else None
        what = "the JSON key" if name == "key" else "the P12 file"
        problem = None
        if found is None:
            problem = "%s (fingerprint %s) is not a key of this service account at Google" % (what, fingerprint)
        elif found.get("disabled"):
            problem = "%s is key %s, which is disabled" % (what, found["key_id"])
        elif found.get("expired"):
            problem = "%s is key %s, which has expired" % (what, found["key_id"])
        if problem:
            result["proven"] = False
            result["problems"].append(problem)
    return result


def plan_key(keys, held_key_id, max_age_days, force):
    # type: (Sequence[Mapping[str, Any]], Optional[str], Optional[int], bool) -> Tuple[str, Optional[Dict[str, Any]], str]
    """``state: present`` without a key ID: ``("keep", key, why)`` or ``("create", None, why)``.

    The key held at ``dest`` (``held_key_id``) is kept while Google still has it enabled and, with
    ``max_age_days``, while it is younger; ``force`` always creates. A key is never created without a
    place to keep it, so there is nothing else to be idempotent on: Google shows a key's private half once.
    """
    if force:
        return "create", None, "force is set"
    if not held_key_id:
        return "create", None, "dest holds no key of this service account"
    held = find_key(keys, held_key_id)
    if held is None:
        return "create", None, "the key at dest (%s) no longer exists at Google" % held_key_id
    if held["disabled"]:
        return "create", None, "the key at dest (%s) is disabled" % held_key_id
    if held["expired"]:
        return "create", None, "the key at dest (%s) has expired" % held_key_id
    if max_age_days is not None and held["age_days"] is not None and held["age_days"] >= max_age_days:
        return (
            "create",
            None,
            "the key at dest (%s) is %d days old, max_age_days is %d"
            % (
                held_key_id,
                held["age_days"],
                max_age_days,
            ),
        )
    return (
        "keep",
        held,
        "the key at dest (%s) is live%s"
        % (
            held_key_id,
            "" if max_age_days is None else " and %s days old (< %d)" % (held["age_days"], max_age_days),
        ),
    )


# --------------------------------------------------------------------------- service accounts and APIs


def get_service_account(client, account, project_id=None):  # type: (Any, str, Optional[str]) -> Optional[Dict[str, Any]]
    """The service account resource, or None when it does not exist."""
    try:
        return dict(_call(client, "GET", "iam", account_path(account, project_id), "read service account %s" % account))
    except ApiRefusal as exc:
        if exc.refusal == REFUSAL_NOT_FOUND:
            return None
        raise


def create_service_account(client, project_id, account_id, display_name="", description=""):  # type: (Any, str, str, str, str) -> Dict[str, Any]
    body = {"accountId": account_id, "serviceAccount": {}}  # type: Dict[str, Any]
    if display_name:
        body["serviceAccount"]["displayName"] = display_name
    if description:
        body["serviceAccount"]["description"] = description
    return dict(
        _call(
            client,
            "POST",
            "iam",
            "/v1/projects/%s/serviceAccounts" % quote(project_id, safe=""),
            "create service account %s in project %s" % (account_id, project_id),
            body=body,
        )
    )


def account_summary(resource):  # type: (Mapping[str, Any]) -> Dict[str, Any]
    return {
        "email": resource.get("email"),
        "client_id": str(resource.get("oauth2ClientId") or resource.get("uniqueId") or ""),
        "unique_id": resource.get("uniqueId"),
        "project_id": resource.get("projectId"),
        "display_name": resource.get("displayName"),
        "disabled": bool(resource.get("disabled", False)),
    }


def service_state(client, project_id, service):  # type: (Any, str, str) -> str
    """``ENABLED`` or ``DISABLED`` (Service Usage ``services.get``)."""
    body = _call(
        client,
        "GET",
        "serviceusage",
        "/v1/projects/%s/services/%s" % (quote(project_id, safe=""), quote(service, safe="")),
        "read whether %s is enabled in project %s" % (service, project_id),
    )
    return str(body.get("state") or "STATE_UNSPECIFIED")


def enable_service(client, project_id, service):  # type: (Any, str, str) -> Dict[str, Any]
    """Enable ``service`` (Service Usage ``services.enable``); returns the long-running operation."""
    return dict(
        _call(
            client,
            "POST",
            "serviceusage",
            "/v1/projects/%s/services/%s:enable" % (quote(project_id, safe=""), quote(service, safe="")),
            "enable %s in project %s" % (service, project_id),
            body={},
        )
    )


def services_for(features, extra=()):  # type: (Sequence[str], Sequence[str]) -> List[str]
    """The Service Usage names for ``features`` (keys of :data:`FEATURE_SERVICES`) plus ``extra``, in order."""
    names = []  # type: List[str]
    for feature in features:
        names.extend(FEATURE_SERVICES[feature])
    names.extend(extra)
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------- the client


def admin_api_client(
    key_text,
    token_uri=None,
    api_base_url=None,
    ca_path=None,
    timeout=DEFAULT_TIMEOUT,
    retries=DEFAULT_RETRIES,
    adc_loader=None,
):  # type: (Optional[str], Optional[str], Optional[str], Optional[str], float, int, Optional[Callable[..., Any]]) -> GoogleApiClient
    """A REST client acting as the admin credential: ``key_text`` (a service-account key), or ADC when None."""
    session = new_session(ca_path, 4)
    options = {"ca_path": ca_path, "timeout": timeout, "retries": retries}  # type: Dict[str, Any]
    if key_text is not None:
        source = admin_token_source(key_text, token_uri, session=session, **options)  # type: Any
    else:
        source = AdcTokenSource(session, adc_loader)
    return GoogleApiClient(source, api_base_url=api_base_url, base_urls=SERVICE_ROOTS, session=session, **options)
