#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: msl_oauth_credentials_info
short_description: Show which Google service-account key NuPoint has on MSL
version_added: 0.1.0
description:
  - Reads what M(nupoint.gworkspace.msl_oauth_credentials) installs on MSL and says whether it is there, which key it
    is (client ID, e-mail, key ID, public-key fingerprint, install time), whether the key file and the config db record
    agree (RV(consistent)), and whether the files are exposed (RV(permission_problems), also given as warnings).
  - Replaces "confirm that the Client ID, Email address, and Private Key are correct" in the Server Manager.
  - After an MSL restore it reports RV(present=false), because the OAuth data is not part of MSL backups.
  - Uses only the Python standard library on MSL (Python 3.6 or later). Never returns key material.
author:
  - nupoint.gworkspace maintainers (@nupoint)
extends_documentation_fragment:
  - nupoint.gworkspace.attributes
  - nupoint.gworkspace.attributes.INFO_MODULE
  - nupoint.gworkspace.msl
  - nupoint.gworkspace.msl.CREDENTIALS
options: {}
seealso:
  - module: nupoint.gworkspace.msl_oauth_credentials
"""

EXAMPLES = r"""
- name: What does MSL hold?
  nupoint.gworkspace.msl_oauth_credentials_info:
  register: oauth_info

- name: Re-install the key when an MSL restore dropped it or it is not the expected one
  nupoint.gworkspace.msl_oauth_credentials:
    src: files/nupoint-um-sa.json
  when: not oauth_info.present or oauth_info.client_id != expected_client_id

- name: Fail when the files and the record disagree
  ansible.builtin.assert:
    that: oauth_info.consistent
    fail_msg: "{{ oauth_info.problems | join('; ') }}"
"""

RETURN = r"""
present:
  description: V(true) when a key file or the credential record exists.
  returned: always
  type: bool
  sample: true
client_id:
  description: Client ID of the installed key (from the record, else from the key file).
  returned: always
  type: str
  sample: "110123456789012345678"
client_email:
  description: Service-account e-mail of the installed key.
  returned: always
  type: str
  sample: nupoint-um@example-project.iam.gserviceaccount.com
private_key_id:
  description: Key ID of the installed key.
  returned: always
  type: str
  sample: 4f1e8b0c9d2a7e6f5b3c1d0e9f8a7b6c5d4e3f2a
fingerprint_sha256:
  description: Public-key SHA-256 fingerprint recorded for the installed key.
  returned: always
  type: str
  sample: "3b:0e:7f:...:a1"
installed_at:
  description: When the key was installed (UTC, ISO 8601).
  returned: always
  type: str
  sample: "2024-05-01T09:30:00Z"
path:
  description: Path of the JSON key file, V(null) when it does not exist.
  returned: always
  type: str
  sample: /var/lib/nupoint/oauth/service-account.json
p12_path:
  description: Path of the P12 file, V(null) when it does not exist.
  returned: always
  type: str
  sample: /var/lib/nupoint/oauth/service-account.p12
consistent:
  description:
    - V(true) when the record and the files agree; the fingerprint is recomputed from the key file with the standard
      library and compared with the record, as are client ID, e-mail, key ID and paths.
  returned: always
  type: bool
  sample: true
apply_pending:
  description:
    - V(true) when a run of M(nupoint.gworkspace.msl_oauth_credentials) changed the key and ended (a dropped SSH
      session) before it signalled the apply event; NuPoint may still use the previous key. Also a RV(problems) entry,
      so RV(consistent) is V(false). The next run of M(nupoint.gworkspace.msl_oauth_credentials) signals the event.
  returned: always
  type: bool
  sample: false
problems:
  description: What disagrees, one sentence each (empty when RV(consistent)).
  returned: always
  type: list
  elements: str
  sample: ["the record's Fingerprint is '3b:0e:...', the key file's 9a:41:..."]
permission_problems:
  description: Modes or owners that expose the key (also issued as warnings).
  returned: always
  type: list
  elements: str
  sample: ["The key file /var/lib/nupoint/oauth/service-account.json has mode 0644: group or others can read it (expected 0600)."]
record:
  description: The credential record of the config db as C(key), C(type) and C(props), V(null) when absent.
  returned: always
  type: dict
  sample: {"key": "nupoint-oauth", "type": "service", "props": {"ClientId": "110123456789012345678"}}
reason:
  description: Machine-readable cause of a failure, V(invalid_option) (a file name option with a path) or V(msl_db).
  returned: failure
  type: str
  sample: msl_db
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nupoint.gworkspace.plugins.module_utils.msl import (
    CredentialInputError,
    MslError,
    credential_store_from_params,
    module_run_command,
    msl_credentials_argument_spec,
)


def run_module():
    module = AnsibleModule(argument_spec=msl_credentials_argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        store = credential_store_from_params(module_run_command(module), params)
        state = store.inspect()
    except CredentialInputError as exc:
        module.fail_json(msg=exc.msg, **exc.as_result())
    except MslError as exc:
        module.fail_json(msg=exc.msg, reason="msl_db", **exc.as_result())
    for problem in state["permission_problems"]:
        module.warn(problem)
    if not state["consistent"]:
        module.warn(
            "The credentials on MSL are inconsistent: %s. Install the key again with "
            "nupoint.gworkspace.msl_oauth_credentials." % "; ".join(state["problems"])
        )
    module.exit_json(changed=False, **state)


def main():
    run_module()


if __name__ == "__main__":
    main()
