#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: workspace_imap_policy_info
short_description: Read whether IMAP access is enabled for the Google Workspace domain
version_added: 0.1.0
description:
  - Reads the domain's C(settings/gmail.imap_access) policies (the Admin console's Apps > Google Workspace > Gmail >
    End User Access > POP and IMAP access switch) through the Cloud Identity Policy API, so that "IMAP access is
    enabled for the domain" is verified rather than assumed. When it is off, no user's IMAP setting helps, Gmail
    refuses every NuPoint login with C([ALERT] IMAP access is disabled for your domain.).
  - Acts as the administrator O(subject) through the service account's domain-wide delegation with the scope
    V(https://www.googleapis.com/auth/cloud-identity.policies.readonly).
  - Returns RV(imap_access) V(enabled), V(disabled), V(mixed) (some org units or groups differ; see RV(policies))
    or V(unknown), and every IMAP access policy with its org unit or group.
  - Google's Policy API does not expose the same section's option C(Restrict which mail clients users can use (OAuth
    mail clients only)), which locks NuPoint out even where RV(imap_access) reads V(enabled) (a client using
    domain-wide delegation cannot be put on its allow-list). RV(client_restriction) is therefore always V(unknown) and
    RV(client_restriction_message) says what to check in the Admin console.
  - B(A diagnostic that does not fail by default.) When the policy cannot be read (the scope is not authorised for
    the client ID, the Cloud Identity API is not enabled in the service account's project, O(subject) is not a super
    administrator, Google cannot be reached), the module succeeds with
    RV(policy_readable=false), a warning, RV(reason) and a message saying how to allow it, including
    RV(admin_console_url) when the scope is missing. Set O(fail_on_error) to fail instead, and O(require_enabled) to
    fail unless IMAP access is verified to be enabled everywhere.
author:
  - nupoint.gworkspace maintainers (@nupoint)
extends_documentation_fragment:
  - nupoint.gworkspace.attributes
  - nupoint.gworkspace.attributes.INFO_MODULE
  - nupoint.gworkspace.google
  - nupoint.gworkspace.google.KEY_SOURCE
options:
  subject:
    description:
      - A super administrator of the domain to act as. Only a super administrator can use the Cloud Identity Policy
        API (Google's "Policy API overview").
    type: str
    required: true
  customer:
    description:
      - The Google Workspace customer ID (C(C0xxxxxxx)), or V(my_customer) for the subject's own organisation.
    type: str
    default: my_customer
  fail_on_error:
    description:
      - Fail when the policy cannot be read. By default the module only warns, because reading the policy needs a
        scope NuPoint itself does not.
    type: bool
    default: false
  require_enabled:
    description:
      - Fail unless IMAP access is verified to be enabled for the whole domain (RV(imap_access=enabled)), that is, also
        when it is disabled, differs between org units or groups, or cannot be read.
    type: bool
    default: false
seealso:
  - module: nupoint.gworkspace.gmail_imap_settings
  - name: Cloud Identity policies.list
    description: The API method this module calls.
    link: https://cloud.google.com/identity/docs/reference/rest/v1/policies/list
  - name: Turn POP and IMAP on and off for users
    description: Google Workspace Admin Help on the domain's IMAP switch.
    link: https://support.google.com/a/answer/105694
  - name: Recommendations for setting up IMAP
    description: >-
      Google Workspace Admin Help: the OAuth mail client restriction cannot admit a client using domain-wide delegation;
      IMAP changes can take up to 24 hours.
    link: https://support.google.com/a/answer/10547014
  - name: Policy API overview
    description: Only a super administrator can use the Cloud Identity Policy API.
    link: https://cloud.google.com/identity/docs/concepts/overview-policies
"""

EXAMPLES = r"""
- name: Verify that IMAP access is on for the domain (warns when it cannot tell)
  nupoint.gworkspace.workspace_imap_policy_info:
    src: files/nupoint-um-sa.json
    subject: admin@example.com
  delegate_to: localhost
  run_once: true
  register: imap_policy

- name: Say what is wrong
  ansible.builtin.debug:
    msg: "{{ imap_policy.message }}"
  when: imap_policy.imap_access != 'enabled'

- name: Stop the play unless IMAP access is verified to be on everywhere
  nupoint.gworkspace.workspace_imap_policy_info:
    content: "{{ vault_nupoint_sa_key }}"
    subject: admin@example.com
    require_enabled: true
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
imap_access:
  description:
    - V(enabled) when every IMAP access policy enables IMAP, V(disabled) when every one disables it, V(mixed) when
      they differ between org units or groups, V(unknown) when the policy could not be read or Google returned none.
  returned: always
  type: str
  sample: enabled
imap_enabled:
  description: V(true) or V(false) when the whole domain agrees; V(null) when mixed or unknown.
  returned: always
  type: bool
  sample: true
policies:
  description: Every C(settings/gmail.imap_access) policy Google returned.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The policy's resource name.
      type: str
      sample: policies/ahv4pz5pdq5y5nbsfqffq5nvei
    org_unit:
      description: ID of the org unit the policy applies to, if it targets one.
      type: str
      sample: 03ph8a2z1k7ws3v
    group:
      description: The group the policy applies to, if it targets one.
      type: str
    query:
      description: The policy's CEL query.
      type: str
    sort_order:
      description: Precedence among policies (higher wins).
      type: float
    type:
      description: V(ADMIN) when an administrator set it, V(SYSTEM) for Google's default.
      type: str
      sample: ADMIN
    enabled:
      description: The policy's C(enableImapAccess).
      type: bool
      sample: true
disabled_org_units:
  description: IDs of the org units whose policy disables IMAP.
  returned: always
  type: list
  elements: str
disabled_groups:
  description: Groups whose policy disables IMAP.
  returned: always
  type: list
  elements: str
policy_readable:
  description: Whether the policy could be read.
  returned: always
  type: bool
  sample: true
failure_class:
  description:
    - V(ok) when the policy was read; otherwise why not, in the collection's vocabulary (V(token_unauthorized_scope),
      V(token_invalid_user), the other token and network classes, or V(api_error)).
  returned: always
  type: str
  sample: ok
reason:
  description:
    - Why the policy could not be read, V(null) when it was read.
    - V(unauthorized_scope) (authorise the scope with RV(admin_console_url)), V(service_disabled) (the Cloud Identity
      API is not enabled in the service account's Google Cloud project; enable it with RV(activation_url)),
      V(not_admin) (O(subject) is not a super administrator), V(unknown_subject) (Google does not know O(subject)) or
      V(error).
  returned: always
  type: str
  sample: unauthorized_scope
message:
  description: The verdict, or what went wrong and how to fix it.
  returned: always
  type: str
  sample: IMAP access is enabled for the domain (1 policy/policies).
http_status:
  description: HTTP status of Google's refusal, when there was one.
  returned: always
  type: int
admin_console_url:
  description:
    - Admin console link that authorises V(https://mail.google.com/) and
      V(https://www.googleapis.com/auth/cloud-identity.policies.readonly) for the client ID. The link I(replaces) the
      client's scope list; add any other scopes you authorised for it.
  returned: when RV(reason=unauthorized_scope)
  type: str
activation_url:
  description:
    - Google's link that enables the Cloud Identity API in the service account's project (the C(activationUrl) of
      its C(SERVICE_DISABLED) answer).
  returned: when RV(reason=service_disabled)
  type: str
  sample: https://console.developers.google.com/apis/api/cloudidentity.googleapis.com/overview?project=123456789012
client_restriction:
  description:
    - Whether IMAP is restricted to an allow-list of OAuth mail clients. Always V(unknown) - Google's Policy API
      exposes only C(enableImapAccess) for C(settings/gmail.imap_access).
  returned: always
  type: str
  sample: unknown
client_restriction_message:
  description: Why RV(client_restriction) cannot be read, and what to check in the Admin console instead.
  returned: always
  type: str
client_id:
  description: The service account's client ID.
  returned: when the key could be loaded
  type: str
"""

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import imap_policy
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.module import GoogleModule


def main():
    module = GoogleModule(
        argument_spec=dict(
            subject=dict(type="str", required=True),
            customer=dict(type="str", default="my_customer"),
            fail_on_error=dict(type="bool", default=False),
            require_enabled=dict(type="bool", default=False),
        ),
    )
    params = module.params
    subject = params["subject"].strip().lower()
    if "@" not in subject:
        module.fail_option(
            "subject must be an administrator's e-mail address (a super administrator's), got %r." % params["subject"],
            "subject",
        )

    def body():
        client = module.api_client(imap_policy.SCOPES, 2)
        try:
            result = imap_policy.read_imap_policy(client, subject, params["customer"])
        finally:
            client.close()
        result["client_id"] = client.client_id
        for optional in ("admin_console_url", "activation_url"):
            if result[optional] is None:
                del result[optional]
        if not result["policy_readable"]:
            must = params["fail_on_error"] or params["require_enabled"]
        else:
            must = result["imap_access"] != "enabled" and params["require_enabled"]
        if must:
            result.update(failed=True, msg=result["message"])
        elif not result["policy_readable"] or result["imap_access"] != "enabled":
            module.warn(result["message"])
        return result

    module.run(body)


if __name__ == "__main__":
    main()
