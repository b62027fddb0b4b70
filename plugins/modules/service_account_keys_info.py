#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: service_account_keys_info
short_description: List the keys Google holds for the NuPoint service account, with their age
version_added: 0.2.0
description:
  - Lists a service account's keys through the IAM API (C(projects.serviceAccounts.keys.list)) with creation time,
    age in days, expiry, type (user- or system-managed) and whether each is disabled; and how many of Google's 10
    user-managed keys per service account are left.
  - A separate module from M(nupoint.gworkspace.service_account_key_info), which validates a key B(file) without
    calling Google and needs no credential; this one asks Google and needs an admin credential.
  - The key given as O(src), O(content) or O(path) is the B(admin credential) (a service account with
    C(roles/iam.serviceAccountKeyAdmin) or C(roles/iam.serviceAccountKeyViewer) on the NuPoint service account),
    or, when none is set, Application Default Credentials of the controller.
author:
  - nupoint.gworkspace maintainers (@nupoint)
extends_documentation_fragment:
  - nupoint.gworkspace.attributes
  - nupoint.gworkspace.attributes.INFO_MODULE
  - nupoint.gworkspace.google
  - nupoint.gworkspace.google.KEY_SOURCE
options:
  service_account:
    description: E-mail address of the service account.
    type: str
    required: true
  project_id:
    description: The service account's project; defaults to the one in the address.
    type: str
  key_types:
    description: Which keys to list.
    type: list
    elements: str
    choices: [user_managed, system_managed]
    default: [user_managed]
  max_age_days:
    description: Mark keys this many days old or older in RV(too_old).
    type: int
  fingerprints:
    description:
      - Add each key's public-key RV(keys[].fingerprint_sha256), read from its certificate (C(keys.get) with
        C(publicKeyType=TYPE_X509_PEM_FILE), one call per key), to tell which key a JSON or P12 file holds.
    type: bool
    default: false
  p12_pair:
    description:
      - Prove that a JSON key and a P12 file of B(another) key pair (what Google hands out when both are downloaded)
        are both live keys of this account - enabled and not expired - by their fingerprints
        (M(nupoint.gworkspace.service_account_key_info)'s C(public_key_fingerprint_sha256) and
        C(p12_fingerprint_sha256)). Implies O(fingerprints). The answer is RV(p12_pair); the task does not fail.
    type: dict
    suboptions:
      key_fingerprint_sha256:
        description: The JSON key's public-key fingerprint.
        type: str
        required: true
      p12_fingerprint_sha256:
        description: The P12 file's public-key fingerprint.
        type: str
        required: true
seealso:
  - module: nupoint.gworkspace.service_account_key
  - name: projects.serviceAccounts.keys.list
    description: The API method this module calls.
    link: https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts.keys/list
"""

EXAMPLES = r"""
- name: List the NuPoint service account's keys
  nupoint.gworkspace.service_account_keys_info:
    service_account: nupoint-um@nupoint-prod.iam.gserviceaccount.com
    max_age_days: 90
  delegate_to: localhost
  run_once: true
  register: sa_keys

- name: Say which keys are old
  ansible.builtin.debug:
    msg: "{{ sa_keys.too_old | map(attribute='key_id') | list }}"
"""

RETURN = r"""
keys:
  description: The keys, oldest first. Never key material.
  returned: always
  type: list
  elements: dict
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
    valid_before:
      description: Google's C(validBeforeTime) (C(9999-12-31T23:59:59Z) for a key that does not expire).
      type: str
    expires:
      description: Expiry time, or null when the key does not expire.
      type: str
    expired:
      description: Whether the key has expired.
      type: bool
    age_days:
      description: Whole days since creation.
      type: int
    key_type:
      description: V(USER_MANAGED) or V(SYSTEM_MANAGED).
      type: str
    key_origin:
      description: V(GOOGLE_PROVIDED) or V(USER_PROVIDED).
      type: str
    key_algorithm:
      description: E.g. V(KEY_ALG_RSA_2048).
      type: str
    disabled:
      description: Whether the key is disabled.
      type: bool
    fingerprint_sha256:
      description: SHA-256 fingerprint of the key's public key, colon-separated hex (null when Google gave none).
      returned: with O(fingerprints) or O(p12_pair)
      type: str
p12_pair:
  description: Whether both files of O(p12_pair) hold live keys of the account, and which.
  returned: with O(p12_pair)
  type: dict
  contains:
    proven:
      description: Both are keys of the account at Google, enabled and not expired.
      type: bool
    key_key_id:
      description: The key the JSON file holds (null when Google has no such key of the account).
      type: str
    p12_key_id:
      description: The key the P12 file holds (null when Google has no such key of the account).
      type: str
    problems:
      description: What keeps the pair from being proven, one sentence each.
      type: list
      elements: str
user_managed_keys:
  description: How many user-managed keys the account has.
  returned: always
  type: int
quota_remaining:
  description: How many more user-managed keys Google lets the account have (of 10).
  returned: always
  type: int
too_old:
  description: The RV(keys) at least O(max_age_days) old (empty without O(max_age_days)).
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import iam
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import MAX_KEYS_PER_SERVICE_ACCOUNT
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.module import GoogleModule


def listing(module):
    params = module.params
    client = module.admin_api_client()
    types = [name.upper() for name in params["key_types"]]
    keys = iam.list_keys(client, params["service_account"], params["project_id"], types)
    user_managed = sum(1 for key in keys if key["key_type"] == "USER_MANAGED")
    if "USER_MANAGED" not in types:
        user_managed = len(iam.list_keys(client, params["service_account"], params["project_id"]))
    limit = params["max_age_days"]
    pair = params["p12_pair"]
    if params["fingerprints"] or pair:
        keys = iam.with_fingerprints(client, params["service_account"], keys, params["project_id"])
    too_old = [key for key in keys if limit is not None and key["age_days"] is not None and key["age_days"] >= limit]
    result = {
        "keys": keys,
        "user_managed_keys": user_managed,
        "quota_remaining": max(0, MAX_KEYS_PER_SERVICE_ACCOUNT - user_managed),
        "too_old": too_old,
    }
    if pair:
        result["p12_pair"] = iam.p12_pair_proof(keys, pair["key_fingerprint_sha256"], pair["p12_fingerprint_sha256"])
    return result


def main():
    module = GoogleModule(
        argument_spec=dict(
            service_account=dict(type="str", required=True),
            project_id=dict(type="str"),
            key_types=dict(
                type="list", elements="str", default=["user_managed"], choices=["user_managed", "system_managed"]
            ),
            max_age_days=dict(type="int"),
            fingerprints=dict(type="bool", default=False),
            p12_pair=dict(
                type="dict",
                options=dict(
                    key_fingerprint_sha256=dict(type="str", required=True, no_log=False),  # a public-key digest
                    p12_fingerprint_sha256=dict(type="str", required=True),
                ),
            ),
        )
    )
    module.run(lambda: listing(module))


if __name__ == "__main__":
    main()
