# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The domain's IMAP access policy (``settings/gmail.imap_access``) through the Cloud Identity Policy API.

Pure logic for ``workspace_imap_policy_info``; unit tests drive it with a fake API client.

The Admin console's "POP and IMAP access" switch is a Cloud Identity policy of type
``settings/gmail.imap_access`` whose value is ``{"enableImapAccess": bool}``; an administrator can set it
for the top-level organisational unit and override it for child org units or groups, so the domain
may have several such policies. :func:`read_imap_policy` lists them as an administrator
(``policies.list``, scope ``cloud-identity.policies.readonly``) and :func:`summarize_policies` reduces
them to one verdict: ``enabled`` (every policy enables IMAP), ``disabled`` (every policy disables it),
``mixed`` (some org units or groups differ) or ``unknown`` (no policy returned).

Reading the policy is a diagnostic: when it cannot be read, :func:`read_imap_policy` says why
(``reason``: ``unauthorized_scope``, ``service_disabled``, ``not_admin``, ``unknown_subject``, ``error``) and
how to allow it, and leaves failing to the caller. Only a super administrator can use the Cloud Identity Policy
API (Google's "Policy API overview").

What the Policy API cannot show: the same Admin console section's "Restrict which mail clients users can use
(OAuth mail clients only)" option. Google's "Policy API supported settings" lists one field for
``gmail.imap_access``, ``enableImapAccess``, and nothing for the restriction or its allow-list of OAuth client
IDs, which cannot admit a client using domain-wide delegation ("Recommendations for setting up IMAP"). So the
result always says ``client_restriction: unknown`` and, in ``client_restriction_message``, what to check.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Dict, List, Mapping, Optional, Sequence  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.api import SCOPE_POLICIES_READONLY
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import (
    ADMIN_CONSOLE_IMAP_PAGE,
    API_REFUSAL_HINTS,
    IMAP_ANY_CLIENT,
    IMAP_CLIENT_RESTRICTION,
    PROPAGATION_NOTE,
    REFUSAL_SERVICE_DISABLED,
    GoogleApiError,
    TokenError,
    admin_console_url,
    enable_link,
    is_service_disabled,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.token import SCOPE_MAIL

POLICY_TYPE = "settings/gmail.imap_access"
POLICIES_PATH = "/v1/policies"
SCOPES = (SCOPE_POLICIES_READONLY,)
# The Admin console link replaces the client's scope list: NuPoint's own IMAP scope plus this one.
CONSOLE_SCOPES = (SCOPE_MAIL, SCOPE_POLICIES_READONLY)
MAX_PAGES = 50
PAGE_SIZE = 100
ADMIN_ROLES_URL = "https://admin.google.com/ac/roles"
IMAP_SETTING_CONSOLE_PATH = ADMIN_CONSOLE_IMAP_PAGE
SERVICE_NAME = "cloudidentity.googleapis.com"
CLIENT_RESTRICTION_UNKNOWN = "unknown"
CLIENT_RESTRICTION_MESSAGE = (
    "Google's Policy API does not expose the IMAP option '%s' (settings/gmail.imap_access has only "
    "enableImapAccess), so whether it is on cannot be read. When it is on, Gmail refuses NuPoint's IMAP logins even "
    "where IMAP access reads enabled: a mail client that uses domain-wide delegation through a service account cannot "
    "be added to its allow-list of OAuth client IDs. Check in the Admin console (%s), for the top-level "
    "organisational unit and every unit or group with NuPoint users, that '%s' is selected."
    % (IMAP_CLIENT_RESTRICTION, IMAP_SETTING_CONSOLE_PATH, IMAP_ANY_CLIENT)
)


def policy_filter(customer):  # type: (Optional[str]) -> str
    """The ``policies.list`` filter: the IMAP setting type, and the customer when one is named."""
    text = "setting.type.matches('%s')" % POLICY_TYPE
    if customer:
        customer_id = customer if customer.startswith("customers/") else "customers/" + customer
        text = 'customer == "%s" && %s' % (customer_id, text)
    return text


def list_policies(client, subject, customer):  # type: (Any, str, Optional[str]) -> List[Dict[str, Any]]
    """Every IMAP access policy, following ``nextPageToken``. Raises TokenError / GoogleApiError."""
    policies = []  # type: List[Dict[str, Any]]
    params = {"filter": policy_filter(customer), "pageSize": PAGE_SIZE}  # type: Dict[str, Any]
    for _page in range(MAX_PAGES):
        answer = client.request("GET", "cloudidentity", POLICIES_PATH, subject, SCOPES, params=dict(params))
        if not isinstance(answer, Mapping):
            raise GoogleApiError("api_error", "policies.list answered with something that is not an object.")
        for policy in answer.get("policies") or ():
            if isinstance(policy, Mapping) and (policy.get("setting") or {}).get("type") == POLICY_TYPE:
                policies.append(dict(policy))
        token = answer.get("nextPageToken")
        if not token:
            break
        params["pageToken"] = token
    return policies


def _org_unit_id(value):  # type: (Any) -> Optional[str]
    if not value:
        return None
    text = str(value)
    return text[len("orgUnits/") :] if text.startswith("orgUnits/") else text


def policy_info(policy):  # type: (Mapping[str, Any]) -> Dict[str, Any]
    """One policy as the module returns it."""
    query = policy.get("policyQuery") or {}
    value = (policy.get("setting") or {}).get("value") or {}
    enabled = value.get("enableImapAccess")
    return {
        "name": policy.get("name"),
        "org_unit": _org_unit_id(query.get("orgUnit")),
        "group": query.get("group") or None,
        "query": query.get("query"),
        "sort_order": query.get("sortOrder"),
        "type": policy.get("type"),
        "enabled": enabled if isinstance(enabled, bool) else None,
    }


def summarize_policies(policies):  # type: (Sequence[Mapping[str, Any]]) -> Dict[str, Any]
    """``imap_access`` (enabled / disabled / mixed / unknown), ``imap_enabled`` and the per-policy list."""
    infos = [policy_info(policy) for policy in policies]
    values = [info["enabled"] for info in infos if info["enabled"] is not None]
    if not values:
        verdict, enabled = "unknown", None
    elif all(values):
        verdict, enabled = "enabled", True
    elif not any(values):
        verdict, enabled = "disabled", False
    else:
        verdict, enabled = "mixed", None
    return {
        "imap_access": verdict,
        "imap_enabled": enabled,
        "policies": infos,
        "disabled_org_units": [info["org_unit"] for info in infos if info["enabled"] is False and info["org_unit"]],
        "disabled_groups": [info["group"] for info in infos if info["enabled"] is False and info["group"]],
    }


def verdict_message(summary):  # type: (Mapping[str, Any]) -> str
    verdict = summary["imap_access"]
    if verdict == "enabled":
        return (
            "IMAP access is enabled for the domain (%d policy/policies). Whether IMAP is restricted to OAuth mail "
            "clients cannot be read (see client_restriction_message)." % len(summary["policies"])
        )
    if verdict == "disabled":
        return (
            "IMAP access is disabled for the domain: NuPoint cannot log in to any mailbox. Turn it on in the Admin "
            "console (%s); %s." % (IMAP_SETTING_CONSOLE_PATH, PROPAGATION_NOTE)
        )
    if verdict == "mixed":
        parts = []
        if summary["disabled_org_units"]:
            parts.append("org units %s" % ", ".join(summary["disabled_org_units"]))
        if summary["disabled_groups"]:
            parts.append("groups %s" % ", ".join(summary["disabled_groups"]))
        return (
            "IMAP access is enabled for part of the domain only; it is disabled for %s. Users there cannot use "
            "NuPoint's e-mail sync; see the Admin console (%s); %s."
            % (" and ".join(parts) or "some users", IMAP_SETTING_CONSOLE_PATH, PROPAGATION_NOTE)
        )
    return "Google returned no %s policy, so IMAP access could not be verified; check the Admin console (%s)." % (
        POLICY_TYPE,
        IMAP_SETTING_CONSOLE_PATH,
    )


def read_imap_policy(client, subject, customer):  # type: (Any, str, Optional[str]) -> Dict[str, Any]
    """The verdict, or why the policy could not be read; never raises for Google's answers."""
    result = {
        "policy_readable": False,
        "imap_access": "unknown",
        "imap_enabled": None,
        "policies": [],
        "disabled_org_units": [],
        "disabled_groups": [],
        "failure_class": "ok",
        "reason": None,
        "message": "",
        "http_status": None,
        "admin_console_url": None,
        "activation_url": None,
        "client_restriction": CLIENT_RESTRICTION_UNKNOWN,
        "client_restriction_message": CLIENT_RESTRICTION_MESSAGE,
    }  # type: Dict[str, Any]
    try:
        policies = list_policies(client, subject, customer)
    except TokenError as exc:
        result["failure_class"] = exc.failure_class
        result["http_status"] = exc.status
        if exc.failure_class == "token_unauthorized_scope":
            return _scope_missing(result, client, exc.msg)
        if exc.failure_class == "token_invalid_user":
            result["reason"] = "unknown_subject"
            result["message"] = "%s Set subject to an existing super administrator of the domain." % exc.msg
        else:
            result["reason"] = "error"
            result["message"] = exc.msg
        return result
    except GoogleApiError as exc:
        result["failure_class"] = exc.failure_class
        result["http_status"] = exc.status
        if exc.insufficient_scope:
            return _scope_missing(result, client, exc.msg)
        if is_service_disabled(exc):
            # Not the subject's fault: the Cloud Identity API is off in the service account's own project.
            link = enable_link(exc)
            result["reason"] = REFUSAL_SERVICE_DISABLED
            result["activation_url"] = link
            result["message"] = (
                "The domain IMAP policy cannot be read: the Cloud Identity API (%s) is not enabled in the service "
                "account's Google Cloud project. Enable it at %s. %s Google said: %s"
                % (
                    SERVICE_NAME,
                    link or "the link in Google's message",
                    API_REFUSAL_HINTS[REFUSAL_SERVICE_DISABLED],
                    exc.msg,
                )
            )
        elif exc.permission_denied:
            result["reason"] = "not_admin"
            result["message"] = (
                "%s: %s cannot read the domain's policies. Only a super administrator can use the Cloud Identity "
                "Policy API: set subject to a super administrator of the domain (roles: %s)."
                % (exc.msg, subject, ADMIN_ROLES_URL)
            )
        else:
            result["reason"] = "error"
            result["message"] = exc.msg
        return result
    result.update(summarize_policies(policies))
    result["policy_readable"] = True
    result["message"] = verdict_message(result)
    return result


def _scope_missing(result, client, said):  # type: (Dict[str, Any], Any, str) -> Dict[str, Any]
    url = admin_console_url(getattr(client, "client_id", ""), CONSOLE_SCOPES)
    result["failure_class"] = "token_unauthorized_scope"
    result["reason"] = "unauthorized_scope"
    result["admin_console_url"] = url
    result["message"] = (
        "The domain IMAP policy cannot be read: the service account's client ID is not authorised for %s (%s). To "
        "let the collection verify the domain-wide IMAP switch, add that scope to the client ID's domain-wide "
        "delegation: %s (the link replaces the client's scope list: keep any other scopes it needs)."
        % (SCOPE_POLICIES_READONLY, said, url)
    )
    return result
