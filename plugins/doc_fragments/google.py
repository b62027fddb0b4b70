# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Google connection options shared by every module that talks to Google.

``DOCUMENTATION`` matches ``google_argument_spec()`` in ``plugins/module_utils/_google/module.py``. Set them
once for a play with ``module_defaults: {group/nupoint.gworkspace.gworkspace_google: {...}}``.

``KEY_SOURCE`` matches ``key_source_argument_spec()`` in ``plugins/module_utils/key_source.py``: the
service-account key as ``src`` (a controller file, read by the action plugin) or ``content``, or ``path`` (a
file on the node). ``KEY_SOURCE_P12`` adds what ``key_source_argument_spec(p12=True)`` adds: the P12 file of
the same key as ``p12_src``, ``p12_content`` or ``p12_path``, and ``p12_password``.
"""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  token_uri:
    description:
      - OAuth 2.0 token endpoint to trade the signed JWT at.
      - Defaults to the key's C(token_uri) (Google's is V(https://oauth2.googleapis.com/token)). Override it only
        for a test server such as the collection's lab.
    type: str
  ca_path:
    description:
      - CA bundle (PEM) to verify Google's (or the test server's) TLS certificate with.
      - Defaults to the CA store of the Python C(requests) library on the node. Set it when an HTTPS proxy
        re-signs traffic with its own CA.
    type: path
  timeout:
    description:
      - Seconds to wait for each HTTP request (connect and read).
    type: float
    default: 10
  retries:
    description:
      - How many times to retry a request that may succeed on a second try (HTTP 408, 429 and 5xx answers,
        Google's C(internal_failure), timeouts, reset connections), with exponential backoff and jitter.
      - Refusals (wrong scope, unknown user, bad key, wrong clock) are never retried.
    type: int
    default: 3
  api_base_url:
    description:
      - Base URL of the Google REST APIs (Gmail, IAM, Directory, Cloud Identity), for a test server that serves
        them all from one address, such as the collection's lab.
      - Leave unset for Google, where each API has its own host.
      - Modules that only mint tokens ignore it.
    type: str
  presigned:
    description:
      - Set by the module's action plugin, not by hand. When the key is given as O(src) or O(content), the controller
        signs every JWT assertion the task needs with it and hands the module these instead of the key. The node
        (a stock MSL host) then needs neither the key nor google-auth, only the Python standard library to trade the
        assertions for tokens.
      - The assertions are valid for one hour from the moment the controller signed them.
    type: str
requirements:
  - google-auth >= 2.20 and requests >= 2.25 on the controller. On the node that runs the module, nothing beyond the
    Python standard library when the key is given as O(src) or O(content) to a module that signs on the controller
    (M(nupoint.gworkspace.delegation_check), M(nupoint.gworkspace.imap_check)); google-auth and requests when the key
    is O(path) on the node, and for the modules that call Google's REST APIs.
"""

    KEY_SOURCE = r"""
options:
  src:
    description:
      - Path of the service-account JSON key file on the B(controller), looked up like M(ansible.builtin.copy)'s C(src)
        (the role's or playbook's C(files/) directory first). May be encrypted with ansible-vault.
      - The action plugin reads it on the controller and hands the module its content; the key never appears in
        results or logs.
      - Exactly one of O(src), O(content) and O(path) is required.
    type: path
  content:
    description:
      - The JSON key itself, for example from a vault-encrypted variable. Never shown in results or logs.
      - Exactly one of O(src), O(content) and O(path) is required.
    type: str
  path:
    description:
      - Path of the JSON key file on the node that runs the module, for example
        C(/var/lib/nupoint/oauth/service-account.json), where M(nupoint.gworkspace.msl_oauth_credentials) installs it on
        MSL.
      - Exactly one of O(src), O(content) and O(path) is required.
    type: path
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
    details:
      - The key options are checked on the controller before the node is contacted (exactly one key source), and
        O(src) is read there (ansible-vault files are decrypted).
  async:
    description: Supports being used with the C(async) keyword.
    support: full
    details:
      - The job's result file on the node (C(~/.ansible_async)) holds the module's result, never the key; O(content) is
        masked there as in every result.
"""

    KEY_SOURCE_P12 = r"""
options:
  p12_src:
    description:
      - Path of the P12 (PKCS#12) file of the same key on the B(controller), for MSL releases that still ask for it;
        looked up like O(src) and may be encrypted with ansible-vault. The action plugin reads it and hands the module
        its bytes as O(p12_content).
      - At most one of O(p12_src), O(p12_content) and O(p12_path); each needs the JSON key as well.
    type: path
  p12_content:
    description:
      - The P12 file, base64-encoded, for example the RV(ansible.builtin.slurp#module:content) of
        M(ansible.builtin.slurp) or a vault variable holding the base64 text.
      - At most one of O(p12_src), O(p12_content) and O(p12_path).
    type: str
  p12_path:
    description:
      - Path of the P12 file on the node that runs the module.
      - At most one of O(p12_src), O(p12_content) and O(p12_path).
    type: path
  p12_password:
    description:
      - Password of the P12 file. Google issues every P12 key with the same fixed password, which is the default.
    type: str
    default: notasecret
"""
