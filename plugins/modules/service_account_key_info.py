#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: service_account_key_info
short_description: Validate a Google service-account key and return its public facts
version_added: 0.1.0
description:
  - Reads a Google Cloud service-account key file (JSON, and optionally the P12 file of the same key) and
    checks everything NuPoint Unified Messaging relies on before the key is uploaded to MSL.
  - Checks that the file is well-formed JSON of C(type) V(service_account); that C(client_email), C(client_id),
    C(private_key_id), C(project_id) and C(token_uri) are present and of Google's form; that C(private_key) is an
    RSA key of at least 2048 bits; and, when a P12 file is given, that it opens with the password and holds the
    B(same) key pair as the JSON file.
  - Returns the identities to compare with the Google Cloud console and the Admin console (client ID, e-mail,
    key ID, public-key fingerprint). It never returns, logs or prints the private key.
  - On failure the result has a machine-readable RV(reason) and a message naming the field and the fix.
  - The key can come from the controller (O(src), O(p12_src), which may be encrypted with ansible-vault) or from the
    node that runs the module (O(path), O(p12_path)), or be given inline (O(content), O(p12_content)).
  - "The module validates the key where the task runs, which needs C(cryptography) there; use
    C(delegate_to: localhost) to validate on the controller."
author:
  - nupoint.gworkspace maintainers (@nupoint)
requirements:
  - cryptography >= 3.4 on the node that runs the module
extends_documentation_fragment:
  - nupoint.gworkspace.attributes
  - nupoint.gworkspace.attributes.INFO_MODULE
  - nupoint.gworkspace.google.KEY_SOURCE
  - nupoint.gworkspace.google.KEY_SOURCE_P12
seealso:
  - name: Create and delete service account keys
    description: Google Cloud documentation on creating service-account keys.
    link: https://cloud.google.com/iam/docs/keys-create-delete
  - module: nupoint.gworkspace.msl_oauth_credentials
notes:
  - The fingerprint is SHA-256 over the DER-encoded SubjectPublicKeyInfo of the public key; the same value is
    recorded on MSL by M(nupoint.gworkspace.msl_oauth_credentials), so the two can be compared.
"""

EXAMPLES = r"""
- name: Validate the key before anything else
  nupoint.gworkspace.service_account_key_info:
    src: nupoint-um-sa.json  # files/ of the role or playbook; may be vault-encrypted
  delegate_to: localhost
  register: sa_key

- name: Show what to compare with the Google Cloud console
  ansible.builtin.debug:
    msg: >-
      Client ID {{ sa_key.client_id }} ({{ sa_key.client_email }}),
      key {{ sa_key.private_key_id }}, fingerprint {{ sa_key.public_key_fingerprint_sha256 }}

- name: Validate a vault-encrypted key together with its P12 twin
  nupoint.gworkspace.service_account_key_info:
    src: nupoint-um-sa.json.vault
    p12_src: nupoint-um-sa.p12.vault
  delegate_to: localhost

- name: Validate the key installed on MSL, where it is
  nupoint.gworkspace.service_account_key_info:
    path: /var/lib/nupoint/oauth/service-account.json

- name: Fail early when the key is not the one the Admin console authorises
  nupoint.gworkspace.service_account_key_info:
    content: "{{ vault_nupoint_sa_key }}"
  delegate_to: localhost
  register: sa_key
  failed_when: sa_key.client_id != expected_client_id
"""

RETURN = r"""
client_id:
  description: Numeric OAuth client ID of the service account (the "Unique ID"); the Admin console authorises scopes for it.
  returned: success
  type: str
  sample: "110123456789012345678"
client_email:
  description: E-mail address of the service account, the C(iss) of every JWT it signs.
  returned: success
  type: str
  sample: nupoint-um@example-project.iam.gserviceaccount.com
project_id:
  description: Google Cloud project the service account belongs to.
  returned: success
  type: str
  sample: example-project
private_key_id:
  description: ID of the key (the JWT C(kid)); listed under the service account's Keys in the Cloud console.
  returned: success
  type: str
  sample: 4f1e8b0c9d2a7e6f5b3c1d0e9f8a7b6c5d4e3f2a
token_uri:
  description: OAuth 2.0 token endpoint the key is meant for.
  returned: success
  type: str
  sample: https://oauth2.googleapis.com/token
universe_domain:
  description: Google universe the key belongs to.
  returned: success
  type: str
  sample: googleapis.com
public_key_fingerprint_sha256:
  description: SHA-256 fingerprint of the public key (DER SubjectPublicKeyInfo), hex pairs separated by colons.
  returned: success
  type: str
  sample: "3b:0e:7f:...:a1"
key_size:
  description: RSA key size in bits.
  returned: success
  type: int
  sample: 2048
p12_matches:
  description: V(true) when a P12 file was given and holds the same key pair; V(null) when no P12 file was given.
  returned: success
  type: bool
  sample: true
p12_fingerprint_sha256:
  description: SHA-256 fingerprint of the P12 file's public key; V(null) when no P12 file was given.
  returned: success
  type: str
p12_same_account:
  description:
    - What is known of the P12 file's account - V(same_key_pair) (both files hold one key pair), or V(unproven)
      (another key pair, whose certificate names this account's client ID, as Google's P12 downloads do; with a
      warning, since a certificate's name is no proof). M(nupoint.gworkspace.service_account_keys_info) with
      C(p12_pair) proves it at Google. A P12 of another account is refused (V(p12_mismatch)). V(null) without a P12.
  returned: success
  type: str
  sample: unproven
reason:
  description:
    - Machine-readable cause of a failure.
    - One of V(read_error), V(not_json), V(wrong_type), V(missing_field), V(bad_field), V(bad_private_key),
      V(unsupported_key_type), V(weak_private_key), V(p12_invalid), V(p12_password), V(p12_mismatch),
      V(missing_library).
  returned: failure
  type: str
  sample: p12_mismatch
field:
  description: The key field or option the failure is about, when there is one.
  returned: failure
  type: str
  sample: client_email
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.nupoint.gworkspace.plugins.module_utils.key_source import (
    key_source_argument_spec,
    key_source_mutually_exclusive,
    read_key_text,
    read_p12,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.service_account import (
    CRYPTOGRAPHY_IMPORT_ERROR,
    HAS_CRYPTOGRAPHY,
    KeyValidationError,
    inspect_key,
    p12_pair_warning,
)


def run_module():
    module = AnsibleModule(
        argument_spec=key_source_argument_spec(p12=True),
        mutually_exclusive=key_source_mutually_exclusive(p12=True),
        supports_check_mode=True,
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(
            msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_IMPORT_ERROR, reason="missing_library"
        )

    params = module.params
    try:
        key = inspect_key(read_key_text(params), read_p12(params), params["p12_password"])
    except KeyValidationError as exc:
        module.fail_json(msg=exc.msg, **exc.as_result())
    info = key.as_info()
    warning = p12_pair_warning(info)
    if warning:
        module.warn(warning)
    module.exit_json(changed=False, **info)


def main():
    run_module()


if __name__ == "__main__":
    main()
