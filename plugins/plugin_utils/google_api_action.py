# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin base for modules that call Google with the service-account key (token endpoint, Google APIs).

The key comes as ``src`` (a controller file, vault-aware, found like ``copy``'s ``src``), ``content``
(e.g. a vault variable) or ``path`` (a file on the node, read by the module). ``src``/``content`` are
read and validated on the controller by ``key_source``; the task's own arguments are put back into
``invocation.module_args``. Google is called with the JSON key: the P12 options are refused here,
before the node is contacted.

Signed on the controller: a module whose tokens are all known in advance (``delegation_check``: each
subject with each scope; ``imap_check``: each user with the scope) says so in :meth:`signing_requests`,
and then the controller signs every JWT assertion (google-auth, ``token.sign_assertions``) and hands the
module ``presigned`` instead of the key. The node only trades the assertions for tokens and logs in, with
the standard library: a stock MSL host has no google-auth or cryptography, and the key never travels to
it. Modules that call APIs as users (``gmail_imap_settings``, ``workspace_imap_policy_info``) run on the
controller and get the key as ``content``.

Subclasses set ``MODULE_NAME`` and, to sign on the controller, :meth:`signing_requests`.
:class:`AdminCredentialActionBase` is the base of the IAM / Service Usage modules' action plugins.
"""

import base64
import json
from typing import Any

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import TokenError
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.token import KeySigner, sign_assertions
from ansible_collections.nupoint.gworkspace.plugins.module_utils.key_source import key_option_names
from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.key_source import (
    ControllerKey,
    KeyActionBase,
    KeySourceError,
    load_key,
    module_args_with_key,
)


class GoogleApiActionBase(KeyActionBase):
    KEY_OPTION_NAMES = key_option_names(p12=False, node=True)

    def signing_requests(self, task_args: dict[str, Any]) -> list[tuple[str, list[str]]] | None:
        """The ``(subject, scopes)`` of every token the module will ask for, or None to hand over the key."""
        return None

    def build_module_args(self, task_args: dict[str, Any]) -> dict[str, Any]:
        key = load_key(self, task_args, required=True)
        module_args = module_args_with_key(task_args, key)
        if not isinstance(key, ControllerKey):
            return module_args
        requests = self.signing_requests(task_args)
        if requests is None:
            return module_args
        try:
            signer = KeySigner(key.content, token_uri=task_args.get("token_uri"))
            # A string: see "presigned" in module_utils/_google/module.py for why not a dict.
            module_args["presigned"] = json.dumps(sign_assertions(signer, requests), separators=(",", ":"))
        except TokenError as exc:
            reason = "missing_library" if exc.failure_class == "token_other" else "bad_private_key"
            raise KeySourceError(exc.msg, reason, "src", failure_class=exc.failure_class) from None
        del module_args["content"]
        return module_args

    def read_node_text(self, path: str, option: str) -> str:
        """A text file on the node (for example a users file), read with ``ansible.builtin.slurp``."""
        result = self._execute_module(
            module_name="ansible.builtin.slurp", module_args={"src": path}, task_vars=self._task_vars
        )
        if result.get("failed"):
            raise KeySourceError(
                "Cannot read %s %s on the node: %s" % (option, path, result.get("msg", "slurp failed")),
                "read_error",
                option,
            )
        return base64.b64decode(result["content"]).decode("utf-8-sig", "replace")


class AdminCredentialActionBase(KeyActionBase):
    """The IAM / Service Usage modules: the key options are the admin credential, optional (ADC without one)."""

    KEY_OPTION_NAMES = key_option_names(p12=False, node=True)

    def build_module_args(self, task_args: dict[str, Any]) -> dict[str, Any]:
        return module_args_with_key(task_args, load_key(self, task_args, required=False))
