#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

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
  - Google can take up to 24 hours to apply a change made in the Admin console (Google Workspace Admin Help, "How
    changes propagate to Google services"), and domain-wide delegation is among the settings multi-party approval
    protects - when it is on, a change waits, pending, until a second super administrator approves it ("Multi-party
    approval for sensitive actions"). Until then the check reports V(token_unauthorized_scope).
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
summary:
  description:
    - The checks counted by failure class, in the shape every per-user module of the collection returns.
    - RV(summary.by_class) lists every class of the vocabulary, zeros included.
  returned: always
  type: dict
  contains:
    total:
      description: How many checks ran (subjects times scopes).
      type: int
    ok:
      description: How many got a token.
      type: int
    failed:
      description: How many did not.
      type: int
    by_class:
      description: Checks per failure class.
      type: dict
  sample: {"total": 2, "ok": 1, "failed": 1, "by_class": {"ok": 1, "token_unauthorized_scope": 1, "dns": 0}}
"""

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.delegation import (
    MAX_WORKERS,
    check_delegation,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.module import GoogleModule
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.token import (
    CLOCK_OFFSET_WARN_SECONDS,
    DEFAULT_SCOPES,
)


def main():
    module = GoogleModule(
        argument_spec=dict(
            subjects=dict(type="list", elements="str", required=True),
            scopes=dict(type="list", elements="str", default=list(DEFAULT_SCOPES)),
            fail_on_error=dict(type="bool", default=True),
            clock_offset_warn_seconds=dict(type="float", default=CLOCK_OFFSET_WARN_SECONDS),
        ),
    )
    params = module.params
    subjects = [subject.strip() for subject in params["subjects"] if subject and subject.strip()]
    scopes = list(dict.fromkeys(scope.strip() for scope in params["scopes"] if scope and scope.strip()))
    if not subjects or not scopes:
        module.fail_option(
            "subjects and scopes must each name at least one value: list the users to act as in subjects and the "
            "OAuth scopes to check in scopes.",
            "subjects" if not subjects else "scopes",
        )

    def body():
        source = module.token_source(scopes, max_connections=min(MAX_WORKERS, len(subjects) * len(scopes)), lean=True)
        try:
            result = check_delegation(source, subjects, scopes, params["clock_offset_warn_seconds"])
        finally:
            source.close()
        for warning in result.pop("warnings"):
            module.warn(warning)
        result["failed"] = not result["authorized"] and params["fail_on_error"]
        return result

    module.run(body)


if __name__ == "__main__":
    main()
