#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: delegation_check
short_description: Prove Google Workspace domain-wide delegation for a service account, scope by scope
version_added: 0.1.0
description:
  - For every subject (a user to impersonate) and every scope, signs a delegated JWT with the service-account key and
    asks Google's token endpoint for an access token, one scope at a time (like GAM's C(check serviceaccount)), so
    each scope is reported as authorised or not on its own.
  - Each failure is classified with the collection's vocabulary, RV(checks[].failure_class) -
    V(token_unauthorized_scope) (the Admin console does not authorise the scope for the client ID),
    V(token_invalid_user) (no such user), V(token_clock_skew) (the JWT's time was refused), V(token_invalid_key)
    (the key, or the service account, was deleted or disabled), V(token_other), and the network classes V(dns),
    V(connect), V(tls), V(timeout).
  - When scopes are missing, returns RV(admin_console_url), a link that opens the Admin console's domain-wide
    delegation page with the client ID and the scopes filled in, and a C(msg) that says exactly what to paste where.
  - Measures this node's clock against the token endpoint's HTTP C(Date) header (GAM's method), warns above
    O(clock_offset_warn_seconds), and names the clock as the cause when Google refuses the JWT's time.
  - Replaces the manual step "authorize the client ID's scopes in the Admin console" with a check that proves it.
  - The key is O(src) or O(content), read and validated on the controller by the action plugin, or O(path), a key
    file on the node that runs the module (for example the key installed on MSL).
  - Access tokens are requested only to prove they can be; they are never returned or logged.
author:
  - nupoint.gworkspace maintainers (@nupoint)
extends_documentation_fragment:
  - nupoint.gworkspace.attributes
  - nupoint.gworkspace.attributes.INFO_MODULE
  - nupoint.gworkspace.google
  - nupoint.gworkspace.google.KEY_SOURCE
options:
  subjects:
    description:
      - Users to impersonate, typically an administrator plus one Advanced UM user. Use primary addresses.
    type: list
    elements: str
    required: true
  scopes:
    description:
      - OAuth scopes to check, each on its own. NuPoint's IMAP integration needs V(https://mail.google.com/).
      - The RV(admin_console_url) authorises exactly these scopes for the client ID (it replaces the client's entry),
        so list every scope the client needs.
    type: list
    elements: str
    default: ["https://mail.google.com/"]
  fail_on_error:
    description:
      - Fail the task when any check fails. With V(false), the task succeeds and the results say what failed.
    type: bool
    default: true
  clock_offset_warn_seconds:
    description:
      - Warn when this node's clock differs from Google's by more than this many seconds.
    type: float
    default: 10
notes:
  - Google may take a few minutes (rarely up to 24 hours) to apply a change made in the Admin console.
  - A scope refused for some subjects but not others usually means the Google service (Gmail) is off for the
    refused users' organisational unit.
  - A disabled service account is reported as V(token_invalid_key), because Google answers it exactly like a deleted one
    (C(invalid_grant) with C(Invalid grant - account not found)), and both are fixed in the Google Cloud console.
seealso:
  - name: Domain-wide delegation
    description: Google Workspace Admin help on controlling API access with domain-wide delegation.
    link: https://support.google.com/a/answer/162106
  - module: nupoint.gworkspace.msl_oauth_credentials
  - module: nupoint.gworkspace.service_account_key_info
"""

EXAMPLES = r"""
- name: Prove that the service account may read mail for an admin and one Advanced UM user
  nupoint.gworkspace.delegation_check:
    src: files/nupoint-um-sa.json
    subjects:
      - admin@example.com
      - voicemail.user@example.com
  delegate_to: localhost
  register: delegation

- name: Check the key installed on MSL, from MSL, and report instead of failing
  nupoint.gworkspace.delegation_check:
    path: /var/lib/nupoint/oauth/service-account.json
    subjects: [admin@example.com]
    scopes:
      - https://mail.google.com/
      - https://www.googleapis.com/auth/gmail.settings.basic
    fail_on_error: false
  register: delegation

- name: Tell the administrator what to authorise
  ansible.builtin.debug:
    msg: "{{ delegation.msg }} {{ delegation.admin_console_url }}"
  when: delegation.missing_scopes | length > 0
"""

RETURN = r"""
authorized:
  description: V(true) when every subject got a token for every scope.
  returned: success or fail_on_error
  type: bool
  sample: false
checks:
  description: One entry per subject and scope.
  returned: always
  type: list
  elements: dict
  contains:
    subject:
      description: The impersonated user.
      type: str
    scope:
      description: The scope asked for.
      type: str
    authorized:
      description: Whether Google issued a token.
      type: bool
    failure_class:
      description: V(ok) or the failure class.
      type: str
    message:
      description: What went wrong and what to do (empty when authorised).
      type: str
    google_error:
      description: Google's OAuth C(error), when Google answered.
      type: str
    google_description:
      description: Google's C(error_description), when Google answered.
      type: str
    http_status:
      description: HTTP status of the last answer.
      type: int
    attempts:
      description: Requests made (more than one when a retryable failure was retried).
      type: int
    elapsed_seconds:
      description: Time the check took.
      type: float
  sample:
    - subject: admin@example.com
      scope: https://mail.google.com/
      authorized: false
      failure_class: token_unauthorized_scope
      google_error: unauthorized_client
      google_description: Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.
      http_status: 401
      attempts: 1
      elapsed_seconds: 0.21
      message: Google refused the token request (unauthorized_client ...).
missing_scopes:
  description: Scopes the Admin console does not authorise for the client ID.
  returned: always
  type: list
  elements: str
  sample: ["https://mail.google.com/"]
admin_console_url:
  description:
    - Admin console link that adds the client ID with every checked scope; V(null) when nothing is missing.
    - Opening it replaces the client ID's scope list with exactly the checked scopes.
  returned: always
  type: str
  sample: >-
    https://admin.google.com/ac/owl/domainwidedelegation?clientScopeToAdd=https://mail.google.com/&clientIdToAdd=110123456789012345678&overwriteClientId=true
client_id:
  description: Client ID of the service account (what the Admin console's domain-wide delegation entry lists).
  returned: always
  type: str
  sample: "110123456789012345678"
client_email:
  description: Service-account e-mail.
  returned: always
  type: str
  sample: nupoint-um@example-project.iam.gserviceaccount.com
private_key_id:
  description: ID of the key used.
  returned: always
  type: str
  sample: 4f1e8b0c9d2a7e6f5b3c1d0e9f8a7b6c5d4e3f2a
token_uri:
  description: Token endpoint used.
  returned: always
  type: str
  sample: https://oauth2.googleapis.com/token
clock_offset_seconds:
  description:
    - Google's clock minus this node's clock, from the token endpoint's C(Date) header (positive - this node is
      behind). About one second of resolution. V(null) when it could not be measured.
  returned: always
  type: float
  sample: -0.4
failure_classes:
  description: How many checks ended in each class.
  returned: always
  type: dict
  sample: {"ok": 1, "token_unauthorized_scope": 1}
"""

import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.nupoint.gworkspace.plugins.module_utils.google_oauth import (
    DEFAULT_SCOPES,
    FAILURE_HINTS,
    KEY_SOURCE_OPTIONS,
    DelegatedTokenSource,
    TokenError,
    admin_console_url,
    google_argument_spec,
    key_source_argument_spec,
    missing_google_library,
    read_key_text,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.service_account import KeyValidationError

MAX_WORKERS = 8
DWD_PAGE = "Security > Access and data control > API controls > Manage domain-wide delegation"


def argument_spec():
    spec = key_source_argument_spec()
    spec.update(
        subjects=dict(type="list", elements="str", required=True),
        scopes=dict(type="list", elements="str", default=list(DEFAULT_SCOPES)),
        fail_on_error=dict(type="bool", default=True),
        clock_offset_warn_seconds=dict(type="float", default=10.0),
    )
    spec.update(google_argument_spec())
    return spec


def run_check(source, subject, scope):
    started = time.monotonic()
    entry = dict(
        subject=subject,
        scope=scope,
        authorized=True,
        failure_class="ok",
        message="",
        google_error=None,
        google_description=None,
        http_status=200,
        attempts=1,
    )
    try:
        minted = source.mint(subject, [scope])
        entry.update(http_status=minted.http_status, attempts=minted.attempts)
    except TokenError as exc:
        details = exc.as_result()
        entry.update(
            authorized=False,
            failure_class=details["failure_class"],
            message=details["message"],
            google_error=details["google_error"],
            google_description=details["google_description"],
            http_status=details["http_status"],
            attempts=details["attempts"],
        )
    entry["elapsed_seconds"] = round(time.monotonic() - started, 3)
    return entry


def describe_offset(offset):
    if offset is None:
        return "could not be measured"
    direction = "behind" if offset > 0 else "ahead of"
    return "%.1f s %s Google's clock" % (abs(offset), direction)


def build_message(source, params, checks, missing_scopes, url, offset):
    failed = [check for check in checks if not check["authorized"]]
    subjects, scopes = params["subjects"], params["scopes"]
    if not failed:
        return "Domain-wide delegation works: client ID %s (%s) got a token for %s as %s." % (
            source.client_id,
            source.client_email,
            ", ".join(scopes),
            ", ".join(subjects),
        )
    parts = ["%d of %d delegation checks failed." % (len(failed), len(checks))]
    if missing_scopes:
        parts.append(
            "The Admin console does not authorise client ID %s (%s) for %s. In the Google Admin console "
            "(admin.google.com) open %s. If client ID %s is listed, click it, choose Edit, and make the OAuth scopes "
            "read exactly: %s . Otherwise click Add new, paste %s into Client ID and %s into OAuth scopes "
            "(comma-delimited), and click Authorize. The admin_console_url link opens that page with both filled in. "
            "Google may take a few minutes to apply it."
            % (
                source.client_id,
                source.client_email,
                ", ".join(missing_scopes),
                DWD_PAGE,
                source.client_id,
                ",".join(scopes),
                source.client_id,
                ",".join(scopes),
            )
        )
    by_class: Dict[str, List[Dict[str, Any]]] = {}
    for check in failed:
        by_class.setdefault(check["failure_class"], []).append(check)
    for failure_class, group in sorted(by_class.items()):
        if failure_class == "token_unauthorized_scope":
            continue
        who = sorted({check["subject"] for check in group})
        if failure_class == "token_invalid_user":
            parts.append("Google does not know %s. %s" % (", ".join(who), FAILURE_HINTS[failure_class]))
        elif failure_class == "token_clock_skew":
            if offset is not None and abs(offset) > params["clock_offset_warn_seconds"]:
                parts.append(
                    "Google refused the JWT's issue/expiry time (token_clock_skew): this node's clock is %s (measured "
                    "against the token endpoint's Date header), and that is the cause. Set the clock right (enable "
                    "network time; on MSL use nupoint.gworkspace.msl_time_sync) and run the check again."
                    % describe_offset(offset)
                )
            else:
                parts.append(
                    "Google refused the JWT's issue/expiry time (token_clock_skew), yet this node's clock is %s. The "
                    "node that signs NuPoint's JWTs (MSL) may have a different clock: check its time. %s"
                    % (describe_offset(offset), FAILURE_HINTS[failure_class])
                )
        else:
            first = group[0]
            parts.append("%s (%s): %s" % (failure_class, ", ".join(who), first["message"]))
    if url:
        parts.append("Link: %s" % url)
    return " ".join(parts)


def run_module():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[KEY_SOURCE_OPTIONS],
        supports_check_mode=True,
    )
    params = module.params
    missing = missing_google_library()
    if missing:
        module.fail_json(msg=missing_required_lib(missing[0]), exception=missing[1])
    subjects = [subject.strip() for subject in params["subjects"] if subject and subject.strip()]
    scopes = list(dict.fromkeys(scope.strip() for scope in params["scopes"] if scope and scope.strip()))
    if not subjects or not scopes:
        module.fail_json(msg="subjects and scopes must each name at least one value.")
    params["subjects"], params["scopes"] = subjects, scopes
    pairs = [(subject, scope) for subject in subjects for scope in scopes]
    workers = max(1, min(MAX_WORKERS, len(pairs)))
    try:
        key_text = read_key_text(params)
        source = DelegatedTokenSource(
            key_text,
            scopes,
            token_uri=params["token_uri"],
            ca_path=params["ca_path"],
            timeout=params["timeout"],
            retries=params["retries"],
            max_connections=workers,
        )
    except (KeyValidationError, TokenError) as exc:
        module.fail_json(msg=exc.msg, **exc.as_result())
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            checks = list(pool.map(lambda pair: run_check(source, pair[0], pair[1]), pairs))
        offset = source.clock_offset()
    except Exception as exc:  # noqa: BLE001 - an unexpected error still reports, with its traceback
        module.fail_json(msg="Delegation check failed unexpectedly: %s" % exc, exception=traceback.format_exc())
    finally:
        source.close()

    missing_scopes = [
        scope
        for scope in scopes
        if any(c["scope"] == scope and c["failure_class"] == "token_unauthorized_scope" for c in checks)
    ]
    url = admin_console_url(source.client_id, scopes) if missing_scopes else None
    if offset is not None and abs(offset) > params["clock_offset_warn_seconds"]:
        module.warn(
            "This node's clock is %s (token endpoint Date header). Google refuses JWTs whose time is off by more than "
            "a few minutes; keep the clock on network time." % describe_offset(offset)
        )
    failure_classes: Dict[str, int] = {}
    for check in checks:
        failure_classes[check["failure_class"]] = failure_classes.get(check["failure_class"], 0) + 1
    authorized = all(check["authorized"] for check in checks)
    result = dict(
        changed=False,
        authorized=authorized,
        checks=checks,
        missing_scopes=missing_scopes,
        admin_console_url=url,
        client_id=source.client_id,
        client_email=source.client_email,
        private_key_id=source.private_key_id,
        token_uri=source.token_uri,
        clock_offset_seconds=offset,
        failure_classes=failure_classes,
        msg=build_message(source, params, checks, missing_scopes, url, offset),
    )
    if not authorized and params["fail_on_error"]:
        module.fail_json(**result)
    module.exit_json(**result)


def main():
    run_module()


if __name__ == "__main__":
    main()
