#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: service_account_key
short_description: Create, disable or delete a key of the NuPoint service account through the IAM API
version_added: 0.2.0
description:
  - Manages the user-managed keys of a Google Cloud service account (the one NuPoint UM signs with) through the IAM API
    C(projects.serviceAccounts.keys).
  - O(state=present) without O(key_id) makes sure the controller's key file O(dest) holds a live key of the account -
    it keeps the key there while Google still has it, enabled and, with O(max_age_days), younger than that; otherwise
    (or with O(force)) it creates a new key and writes it to O(dest). Google hands out a key's private half once, at
    creation, so a key is never created without a place to keep it.
  - O(dest) is written on the controller by the action plugin, B(encrypted with ansible-vault) when a vault secret is
    configured (C(--ask-vault-pass), C(--vault-id)), else mode 0600 with a warning; see O(encrypt). The key is never
    returned, only its ID and public-key fingerprint.
  - O(state=present) with O(key_id) makes sure that key exists and is enabled (enables a disabled key).
    O(state=disabled) disables it (tokens signed with it are refused; reversible). O(state=absent) deletes it
    (irreversible).
  - B(Credential.) The calls act as an administrator of the project, never as a Workspace user. The key given as
    O(src), O(content) or O(path) is the B(admin credential) (a service account with
    C(roles/iam.serviceAccountKeyAdmin) on the NuPoint service account or its project), or, when none of the three
    is set, Application Default Credentials of the controller (C(gcloud auth application-default login) or
    C(GOOGLE_APPLICATION_CREDENTIALS)). The NuPoint key itself works only if its account may manage its own keys,
    which Google advises against.
  - Refusals are classified (RV(refusal)) with what lifts them - V(org_policy) (the organisation policy
    C(iam.disableServiceAccountKeyCreation), on by default for organisations created on or after 3 May 2024),
    V(key_quota) (10 keys per service account), V(service_disabled) (with RV(activation_url)),
    V(permission_denied), V(not_found).
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
    details: O(state=present) creates a key only when O(dest) holds no live key (or O(force)).
options:
  service_account:
    description: E-mail address of the service account whose keys are managed (NuPoint's).
    type: str
    required: true
  project_id:
    description: The service account's project. Defaults to the project in the address (C(NAME@PROJECT.iam.gserviceaccount.com)).
    type: str
  state:
    description: What the key should be; see the description.
    type: str
    choices: [present, absent, disabled]
    default: present
  key_id:
    description:
      - The key (C(private_key_id)) to keep enabled (O(state=present)), disable or delete. Required for V(absent) and
        V(disabled).
    type: str
  dest:
    description:
      - The controller file to keep a created key in (O(state=present) without O(key_id); required there). Its
        directory must exist. Read (vault-aware) to learn which key it holds.
    type: path
  max_age_days:
    description: With O(state=present), replace the key at O(dest) once it is this many days old.
    type: int
  force:
    description: With O(state=present), create a new key even when O(dest) holds a live one.
    type: bool
    default: false
  encrypt:
    description:
      - How O(dest) is written. V(auto) encrypts with ansible-vault when a vault secret is configured, else writes
        plain JSON (0600) with a warning. V(vault) fails without a vault secret. V(none) writes plain JSON (0600).
    type: str
    choices: [auto, vault, none]
    default: auto
  vault_id:
    description: Which vault ID to encrypt O(dest) with when several are configured.
    type: str
  p12_dest:
    description:
      - With O(state=present) and O(dest), also keep a B(P12 file of the same key pair) at this controller path, for
        NuPoint releases that read a P12 besides the JSON key. It is derived on the controller from the key at O(dest)
        (not downloaded - a P12 downloaded from Google is another key pair), laid out as Google's (Google's fixed
        password C(notasecret), friendly name C(privatekey), a certificate naming the client ID), and written like
        O(dest), vault-encrypted when a vault secret is configured, else 0600.
      - Rewritten only when it does not hold the key pair at O(dest) (after a new key, or a P12 of another key).
    type: path
  dest_key_id:
    description: Set by the action plugin from O(dest), not by hand - the key ID the controller's file holds.
    type: str
  key_handover:
    description:
      - Set by the action plugin, not by hand - return a created key to the action plugin on the controller (which
        vault-encrypts it into O(dest)) instead of writing O(dest) here.
    type: bool
    default: false
notes:
  - Runs on the controller (C(delegate_to=localhost)); O(dest) is a controller path.
  - C(async) is refused for O(state=present) with a vault secret, because an async job's result file would hold the
    new key before it is encrypted.
seealso:
  - module: nupoint.gworkspace.service_account_keys_info
  - module: nupoint.gworkspace.service_account
  - name: Create and delete service account keys
    description: Google Cloud IAM documentation.
    link: https://cloud.google.com/iam/docs/keys-create-delete
  - name: Restricting service account key creation
    description: The organisation policy C(iam.disableServiceAccountKeyCreation).
    link: https://cloud.google.com/resource-manager/docs/organization-policy/restricting-service-accounts
"""

EXAMPLES = r"""
- name: The key and a P12 of the same key pair, for NuPoint releases that read both
  nupoint.gworkspace.service_account_key:
    service_account: nupoint-um@nupoint-prod.iam.gserviceaccount.com
    dest: "{{ inventory_dir }}/files/nupoint-um-sa.json"
    p12_dest: "{{ inventory_dir }}/files/nupoint-um-sa.p12"
  delegate_to: localhost
  run_once: true

- name: Make sure the controller holds a key of the NuPoint service account younger than 90 days
  nupoint.gworkspace.service_account_key:
    service_account: nupoint-um@nupoint-prod.iam.gserviceaccount.com
    dest: "{{ inventory_dir }}/files/nupoint-um-sa.json"   # vault-encrypted with --ask-vault-pass
    max_age_days: 90
    src: files/gcp-key-admin.json                           # the admin credential; omit for ADC
  delegate_to: localhost
  run_once: true
  register: new_key

- name: Disable the old key (reversible) once every MSL host uses the new one
  nupoint.gworkspace.service_account_key:
    service_account: nupoint-um@nupoint-prod.iam.gserviceaccount.com
    key_id: "{{ old_key_id }}"
    state: disabled
  delegate_to: localhost
  run_once: true

- name: Delete it
  nupoint.gworkspace.service_account_key:
    service_account: nupoint-um@nupoint-prod.iam.gserviceaccount.com
    key_id: "{{ old_key_id }}"
    state: absent
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
key:
  description: The key acted on, kept or created (null in check mode when one would be created). Never key material.
  returned: when a key exists or was created
  type: dict
  contains:
    key_id:
      description: The key's ID (the key file's C(private_key_id)).
      type: str
    name:
      description: The key's resource name.
      type: str
    valid_after:
      description: Creation time (RFC 3339).
      type: str
    expires:
      description: Expiry time, or null when the key does not expire.
      type: str
    age_days:
      description: Whole days since creation.
      type: int
    disabled:
      description: Whether the key is disabled.
      type: bool
    key_type:
      description: V(USER_MANAGED) or V(SYSTEM_MANAGED).
      type: str
created:
  description: Whether a new key was created (or would be, in check mode).
  returned: always
  type: bool
reason:
  description: Why the key was kept or created, or what was done.
  returned: always
  type: str
  sample: the key at dest (0123abcd) is 97 days old, max_age_days is 90
fingerprint_sha256:
  description: SHA-256 fingerprint of the created key's public key (the pin for msl_oauth_credentials).
  returned: when a key was created
  type: str
client_id:
  description: The service account's client ID, from the created key.
  returned: when a key was created
  type: str
dest:
  description: Where the created key was written.
  returned: when a key was created
  type: str
vault_encrypted:
  description: Whether O(dest) was written encrypted with ansible-vault.
  returned: when a key was created (not in check mode)
  type: bool
p12_dest:
  description: The P12 file kept beside O(dest).
  returned: with O(p12_dest)
  type: str
p12_changed:
  description: Whether O(p12_dest) was (or, in check mode, would be) written.
  returned: with O(p12_dest)
  type: bool
p12_vault_encrypted:
  description: Whether O(p12_dest) was written encrypted with ansible-vault.
  returned: when O(p12_dest) was written (not in check mode)
  type: bool
user_managed_keys:
  description: How many user-managed keys the account has now (Google allows 10).
  returned: always
  type: int
refusal:
  description: Why Google refused, when it did - V(org_policy), V(key_quota), V(service_disabled), V(permission_denied), V(not_found).
  returned: on failure
  type: str
activation_url:
  description: The link that enables the disabled API.
  returned: when RV(refusal=service_disabled)
  type: str
"""

from typing import Any, Dict

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import iam
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.module import GoogleModule
from ansible_collections.nupoint.gworkspace.plugins.module_utils.files import atomic_write


def manage(module):
    params = module.params
    account, project, key_id, state = params["service_account"], params["project_id"], params["key_id"], params["state"]
    if params["p12_dest"] and (key_id is not None or state != "present" or not params["dest"]):
        module.fail_json(
            msg="p12_dest goes with state=present and dest, without key_id: it is derived from the key at dest."
        )
    client = module.admin_api_client()
    keys = iam.list_keys(client, account, project)
    result: Dict[str, Any] = {"changed": False, "created": False}
    if key_id is not None:
        key = iam.find_key(keys, key_id)
        if state == "absent":
            result["reason"] = "key %s does not exist" % key_id
            if key is not None:
                result.update(changed=True, key=key, reason="key %s deleted" % key_id)
                if not module.check_mode:
                    iam.delete_key(client, account, key_id, project)
        elif key is None:
            module.fail_json(
                msg="%s has no key %s; service_account_keys_info lists its keys." % (account, key_id),
                refusal="not_found",
            )
        else:
            wanted_disabled = state == "disabled"
            result.update(key=key, reason="key %s is %s" % (key_id, "disabled" if key["disabled"] else "enabled"))
            if key["disabled"] != wanted_disabled:
                result.update(changed=True, reason="key %s %s" % (key_id, state if wanted_disabled else "enabled"))
                key["disabled"] = wanted_disabled
                if not module.check_mode:
                    iam.set_key_disabled(client, account, key_id, wanted_disabled, project)
        result["user_managed_keys"] = len(keys) - (1 if result["changed"] and state == "absent" else 0)
        return result
    if not params["dest"]:
        module.fail_json(msg="state=present without key_id needs dest: the controller file to keep the new key in.")
    action, key, why = iam.plan_key(keys, params["dest_key_id"], params["max_age_days"], params["force"])
    result.update(reason=why, user_managed_keys=len(keys))
    if action == "keep":
        result["key"] = key
        return result
    result.update(changed=True, created=True, key=None, dest=params["dest"])
    if module.check_mode:
        return result
    created = iam.create_key(client, account, project)
    result.update(
        key=created.summary,
        fingerprint_sha256=created.metadata["fingerprint_sha256"],
        client_id=created.metadata["client_id"],
        user_managed_keys=len(keys) + 1,
    )
    if params["key_handover"]:
        result[iam.HANDOVER_FIELD] = created.key_file
    else:
        atomic_write(params["dest"], created.key_file.encode("utf-8"))
        result["vault_encrypted"] = False
    return result


def main():
    module = GoogleModule(
        argument_spec=dict(
            service_account=dict(type="str", required=True),
            project_id=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent", "disabled"]),
            key_id=dict(type="str", no_log=False),
            dest=dict(type="path"),
            max_age_days=dict(type="int"),
            force=dict(type="bool", default=False),
            encrypt=dict(type="str", default="auto", choices=["auto", "vault", "none"]),
            vault_id=dict(type="str"),
            p12_dest=dict(type="path"),
            dest_key_id=dict(type="str", no_log=False),
            key_handover=dict(type="bool", default=False),
        ),
        required_if=[("state", "absent", ["key_id"]), ("state", "disabled", ["key_id"])],
    )
    module.run(lambda: manage(module))


if __name__ == "__main__":
    main()
