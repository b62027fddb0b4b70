#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: service_account
short_description: Bootstrap the Google Cloud side - enable the APIs and create the NuPoint service account
version_added: 0.2.0
description:
  - The first steps of Mitel's procedure done through Google's APIs - enable the APIs of a Google Cloud project
    (Service Usage C(services.enable)) and create the service account NuPoint UM signs with, if it does not exist
    (IAM C(projects.serviceAccounts.create)).
  - Returns the service account's client ID and the pre-filled Admin console link for the domain-wide delegation
    step, which has no public API and stays manual (prove it with M(nupoint.gworkspace.delegation_check)).
  - Creates no key; M(nupoint.gworkspace.service_account_key) does that. docs/key-lifecycle.md shows the first set-up
    step by step (account, first key, delegation, proof).
  - The key given as O(src), O(content) or O(path) is the B(admin credential) (needs
    C(roles/serviceusage.serviceUsageAdmin) and C(roles/iam.serviceAccountAdmin) or C(roles/iam.serviceAccountCreator)
    on the project), or, when none is set, Application Default Credentials of the controller. The Service Usage API
    must be enabled in the admin credential's own project.
author:
  - nupoint.gworkspace maintainers (@nupoint)
extends_documentation_fragment:
  - nupoint.gworkspace.attributes
  - nupoint.gworkspace.google
  - nupoint.gworkspace.google.KEY_SOURCE
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  project_id:
    description: The Google Cloud project (its ID, not its number). It must exist.
    type: str
    required: true
  account_id:
    description: The service account's ID, the part of its address before C(@) (6 to 30 characters).
    type: str
    required: true
  display_name:
    description: Display name for a service account this module creates.
    type: str
    default: NuPoint Unified Messaging
  description:
    description: Description for a service account this module creates.
    type: str
    default: Advanced UM IMAP access to Google Workspace (domain-wide delegation)
  features:
    description:
      - The collection's features whose APIs to enable - V(iam) (keys, this module),
        V(gmail) (M(nupoint.gworkspace.gmail_imap_settings)), V(cloudidentity)
        (M(nupoint.gworkspace.workspace_imap_policy_info)), V(admin) (Directory), V(calendar) (the procedure's
        "Calendar API"). NuPoint's IMAP login itself needs no API.
    type: list
    elements: str
    choices: [iam, gmail, cloudidentity, admin, calendar]
    default: [iam, gmail]
  services:
    description: More APIs to enable, by their Service Usage name (V(drive.googleapis.com)).
    type: list
    elements: str
    default: []
  scopes:
    description: The scopes the Admin console link RV(admin_console_url) pre-fills for domain-wide delegation.
    type: list
    elements: str
    default: ['https://mail.google.com/']
seealso:
  - module: nupoint.gworkspace.service_account_key
  - module: nupoint.gworkspace.delegation_check
  - name: Service Usage services.enable
    description: The API method that enables an API.
    link: https://cloud.google.com/service-usage/docs/reference/rest/v1/services/enable
"""

EXAMPLES = r"""
- name: Enable the APIs and create the NuPoint service account
  nupoint.gworkspace.service_account:
    project_id: nupoint-prod
    account_id: nupoint-um
    features: [iam, gmail, cloudidentity]
  delegate_to: localhost
  run_once: true
  register: bootstrap

- name: The manual step
  ansible.builtin.debug:
    msg: "Authorise client ID {{ bootstrap.service_account.client_id }}: {{ bootstrap.admin_console_url }}"
"""

RETURN = r"""
service_account:
  description: The service account (null in check mode when it would be created).
  returned: always
  type: dict
  contains:
    email:
      description: Its address.
      type: str
    client_id:
      description: Its OAuth 2.0 client ID, which the Admin console's domain-wide delegation entry names.
      type: str
    unique_id:
      description: Its numeric unique ID.
      type: str
    project_id:
      description: Its project.
      type: str
    display_name:
      description: Its display name.
      type: str
    disabled:
      description: Whether it is disabled.
      type: bool
created:
  description: Whether the service account was created (or would be, in check mode).
  returned: always
  type: bool
services:
  description: Each API's state after the run, V(ENABLED) or V(DISABLED) (the latter only in check mode).
  returned: always
  type: dict
  sample: {"iam.googleapis.com": "ENABLED"}
enabled:
  description: The APIs this run enabled (or would enable).
  returned: always
  type: list
  elements: str
admin_console_url:
  description: The Admin console link that pre-fills the client ID and O(scopes) for domain-wide delegation.
  returned: when the client ID is known
  type: str
refusal:
  description: Why Google refused, when it did (V(service_disabled), V(permission_denied), ...).
  returned: on failure
  type: str
"""

from typing import Any, Dict

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import iam
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import admin_console_url
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.module import GoogleModule


def bootstrap(module):
    params = module.params
    client = module.admin_api_client()
    project = params["project_id"]
    result: Dict[str, Any] = {"changed": False, "created": False, "services": {}, "enabled": []}
    for service in iam.services_for(params["features"], params["services"]):
        state = iam.service_state(client, project, service)
        if state != "ENABLED":
            result["enabled"].append(service)
            result["changed"] = True
            if not module.check_mode:
                iam.enable_service(client, project, service)
                state = "ENABLED"
        result["services"][service] = state
    email = "%s@%s%s" % (params["account_id"], project, iam.SERVICE_ACCOUNT_DOMAIN)
    resource = iam.get_service_account(client, email, project)
    if resource is None:
        result.update(changed=True, created=True)
        if not module.check_mode:
            resource = iam.create_service_account(
                client, project, params["account_id"], params["display_name"], params["description"]
            )
    result["service_account"] = iam.account_summary(resource) if resource is not None else None
    if resource is not None:
        result["admin_console_url"] = admin_console_url(result["service_account"]["client_id"], params["scopes"])
    return result


def main():
    module = GoogleModule(
        argument_spec=dict(
            project_id=dict(type="str", required=True),
            account_id=dict(type="str", required=True),
            display_name=dict(type="str", default="NuPoint Unified Messaging"),
            description=dict(
                type="str", default="Advanced UM IMAP access to Google Workspace (domain-wide delegation)"
            ),
            features=dict(
                type="list",
                elements="str",
                default=["iam", "gmail"],
                choices=["iam", "gmail", "cloudidentity", "admin", "calendar"],
            ),
            services=dict(type="list", elements="str", default=[]),
            scopes=dict(type="list", elements="str", default=["https://mail.google.com/"]),
        )
    )
    module.run(lambda: bootstrap(module))


if __name__ == "__main__":
    main()
