#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: msl_oauth_credentials
short_description: Install or remove NuPoint's Google service-account key on MSL
version_added: 0.1.0
description:
  - Replaces the manual step "upload your OAuth 2.0 credentials to MSL" (Server Manager, Configuration,
    Google Apps, Service Account) for NuPoint Unified Messaging's Advanced UM IMAP integration.
  - The key is read on the B(controller) (O(src), which may be ansible-vault encrypted, or O(content)), and
    validated there exactly like M(nupoint.gworkspace.service_account_key_info) does. A bad key, or one that does
    not match O(expected_client_id), O(expected_client_email) or O(expected_fingerprint), fails the task before
    anything on MSL is touched; the message shows both values (IDs and fingerprints, never key material).
  - On MSL the key is written atomically (a temp file in the same directory, fsync, rename, fsync of the directory)
    with mode C(0600) in a C(0700) directory, owned by root:root when the module runs as root. The client ID,
    e-mail, key ID, public-key fingerprint and install time are recorded in the MSL config db, and the apply event
    is signalled, only when something changed.
  - Idempotent by content and metadata; a different key replaces the old one (kept as a backup with O(backup)).
  - The MSL side uses only the Python standard library (Python 3.6 or later), so nothing needs installing on MSL.
author:
  - nupoint.gworkspace maintainers (@nupoint)
extends_documentation_fragment:
  - nupoint.gworkspace.attributes
  - nupoint.gworkspace.msl
  - nupoint.gworkspace.msl.CREDENTIALS
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Before and after are shown as metadata (client ID, e-mail, key ID, fingerprint, paths), never key bytes.
  idempotent:
    support: full
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
    details:
      - The action plugin reads and validates the key on the controller and hands only the content to MSL.
options:
  src:
    description:
      - Path of the service-account JSON key file on the controller, looked up like M(ansible.builtin.copy)'s
        C(src) (the role's or playbook's C(files/) directory first). May be encrypted with ansible-vault.
      - Required with O(state=present) unless O(content) is given.
    type: path
  content:
    description:
      - The JSON key itself, for example from a vault-encrypted variable. Mutually exclusive with O(src).
    type: str
  p12_src:
    description:
      - Path of the P12 file of the same key on the controller, for NuPoint releases that still ask for it. May be
        encrypted with ansible-vault. It must hold the same key pair as the JSON key.
      - Without O(p12_src) and O(p12_content), a P12 file left on MSL by an earlier install is removed, so MSL never
        keeps a P12 of another key.
    type: path
  p12_content:
    description:
      - The P12 file, base64-encoded. Mutually exclusive with O(p12_src).
    type: str
  p12_password:
    description:
      - Password of the P12 file, used on the controller to check that it holds the same key. Google issues every
        P12 key with the same fixed password, which is the default.
    type: str
    default: notasecret
  state:
    description:
      - V(present) installs the key; V(absent) removes the key files and the db record.
    type: str
    choices: [present, absent]
    default: present
  expected_client_id:
    description:
      - Fail, changing nothing, unless the key's client ID (the service account's Unique ID) is this one, for example
        the client ID the Admin console's domain-wide delegation entry authorises.
    type: str
  expected_client_email:
    description:
      - Fail, changing nothing, unless the key belongs to this service-account e-mail address.
    type: str
  expected_fingerprint:
    description:
      - Fail, changing nothing, unless the key's public-key SHA-256 fingerprint is this one (case and colons do not
        matter), as returned by M(nupoint.gworkspace.service_account_key_info).
    type: str
  backup:
    description:
      - Keep the files being replaced or removed next to them (mode C(0600)) as
        C(service-account.json.<pid>.<UTC time>~). Old keys stay usable until deleted in the Google Cloud console.
    type: bool
    default: false
notes:
  - The MSL locations and names are options with documented defaults; which of them are known facts of MSL and which
    are assumptions to confirm on your NuPoint release is listed in C(docs/msl-assumptions.md) of the collection.
  - MSL backups do not contain the OAuth data; run this module again after every MSL restore.
seealso:
  - module: nupoint.gworkspace.service_account_key_info
  - module: nupoint.gworkspace.msl_oauth_credentials_info
  - module: nupoint.gworkspace.delegation_check
"""

EXAMPLES = r"""
- name: Install the service-account key on MSL (the key is vault-encrypted on the controller)
  nupoint.gworkspace.msl_oauth_credentials:
    src: files/nupoint-um-sa.json
    expected_client_id: "110123456789012345678"
  register: oauth

- name: Install the key together with its P12 twin, keeping the replaced key as a backup
  nupoint.gworkspace.msl_oauth_credentials:
    src: files/nupoint-um-sa.json
    p12_src: files/nupoint-um-sa.p12
    backup: true

- name: Install a key held in a vault variable, and only if it is the key we expect
  nupoint.gworkspace.msl_oauth_credentials:
    content: "{{ vault_nupoint_sa_key }}"
    expected_client_email: nupoint-um@example-project.iam.gserviceaccount.com
    expected_fingerprint: "{{ expected_key_fingerprint }}"

- name: Remove the credentials from MSL
  nupoint.gworkspace.msl_oauth_credentials:
    state: absent
"""

RETURN = r"""
client_id:
  description: Client ID of the installed key.
  returned: state=present
  type: str
  sample: "110123456789012345678"
client_email:
  description: Service-account e-mail of the installed key.
  returned: state=present
  type: str
  sample: nupoint-um@example-project.iam.gserviceaccount.com
private_key_id:
  description: Key ID of the installed key (listed under the service account's Keys in the Cloud console).
  returned: state=present
  type: str
  sample: 4f1e8b0c9d2a7e6f5b3c1d0e9f8a7b6c5d4e3f2a
fingerprint_sha256:
  description: SHA-256 fingerprint of the installed key's public key, hex pairs separated by colons.
  returned: state=present
  type: str
  sample: "3b:0e:7f:...:a1"
path:
  description: Path of the JSON key file on MSL.
  returned: state=present
  type: str
  sample: /var/lib/nupoint/oauth/service-account.json
p12_path:
  description: Path of the P12 file on MSL, V(null) when no P12 file is installed.
  returned: state=present
  type: str
  sample: /var/lib/nupoint/oauth/service-account.p12
p12_same_account:
  description:
    - With a P12 file, what the controller knows of its key pair - V(same_key_pair), or V(unproven) (another key of
      the same account by its certificate's name, as Google's P12 downloads are; installed, with a warning). A P12 of
      another account is refused (V(p12_mismatch)). M(nupoint.gworkspace.service_account_keys_info) with C(p12_pair)
      proves an V(unproven) pair at Google.
  returned: state=present with a P12 file
  type: str
  sample: unproven
p12_fingerprint_sha256:
  description: SHA-256 fingerprint of the P12 file's public key.
  returned: state=present with a P12 file
  type: str
installed_at:
  description: When the installed key was written (UTC, ISO 8601), as recorded in the config db.
  returned: state=present
  type: str
  sample: "2024-05-01T09:30:00Z"
backup_file:
  description: Backup of the replaced or removed JSON key file, V(null) when none was made.
  returned: always
  type: str
  sample: /var/lib/nupoint/oauth/service-account.json.4242.2024-05-01@09:30:00~
p12_backup_file:
  description: Backup of the replaced or removed P12 file, V(null) when none was made.
  returned: always
  type: str
  sample: /var/lib/nupoint/oauth/service-account.p12.4242.2024-05-01@09:30:00~
changes:
  description:
    - What was (or, in check mode, would be) changed. V(key_file), V(p12_file), V(record), V(directory_mode),
      V(file_mode), and V(apply_event) when an earlier run installed this key but ended (a dropped connection)
      before it signalled the apply event, which this run then signals.
  returned: always
  type: list
  elements: str
  sample: [key_file, record]
reason:
  description:
    - Machine-readable cause of a failure. When the key itself is refused, as M(nupoint.gworkspace.service_account_key_info)
      says it (for example V(p12_mismatch)); V(unexpected_key) (not the O(expected_client_id), O(expected_client_email)
      or O(expected_fingerprint)); V(unsafe_path) (O(credential_dir) is a symbolic link, not a directory, or a
      directory others may write to, or inside one); V(invalid_option); V(locked) (another run holds the lock);
      V(msl_db) (the db or event command failed); V(write_error) (the files could not be written).
  returned: failure
  type: str
  sample: p12_mismatch
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nupoint.gworkspace.plugins.module_utils.files import LockTimeout
from ansible_collections.nupoint.gworkspace.plugins.module_utils.key_format import CredentialKeyError
from ansible_collections.nupoint.gworkspace.plugins.module_utils.key_source import (
    key_source_argument_spec,
    key_source_mutually_exclusive,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.msl import (
    CredentialInputError,
    MslError,
    credential_store_from_params,
    install_credentials,
    module_run_command,
    msl_credentials_argument_spec,
    remove_credentials,
)


def argument_spec():
    # The key always comes from the controller (the action plugin): no path/p12_path on MSL.
    spec = key_source_argument_spec(p12=True, node=False)
    spec.update(
        state=dict(type="str", choices=["present", "absent"], default="present"),
        expected_client_id=dict(type="str"),
        expected_client_email=dict(type="str"),
        expected_fingerprint=dict(type="str"),
        backup=dict(type="bool", default=False),
    )
    spec.update(msl_credentials_argument_spec())
    return spec


def run_module():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=key_source_mutually_exclusive(p12=True, node=False),
        supports_check_mode=True,
    )
    params = module.params
    run_command = module_run_command(module)
    run = install_credentials if params["state"] == "present" else remove_credentials
    try:
        store = credential_store_from_params(run_command, params)
        result = run(store, params, run_command, module.check_mode, module._diff)
    except CredentialInputError as exc:
        module.fail_json(msg=exc.msg, **exc.as_result())
    except LockTimeout as exc:
        module.fail_json(msg=exc.msg, reason="locked")
    except CredentialKeyError as exc:
        module.fail_json(msg=exc.msg, reason="bad_private_key")
    except MslError as exc:
        module.fail_json(msg=exc.msg, reason="msl_db", **exc.as_result())
    except (IOError, OSError) as exc:
        module.fail_json(
            msg="Cannot update the credential files in %s: %s. The previous key, if any, is still in place."
            % (params["credential_dir"], exc),
            reason="write_error",
        )
    module.exit_json(**result)


def main():
    run_module()


if __name__ == "__main__":
    main()
