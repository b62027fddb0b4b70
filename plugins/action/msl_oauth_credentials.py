# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for msl_oauth_credentials: read and validate the key on the controller, hand MSL the content.

MSL has no 'cryptography' and no access to the controller's files or vault: the key is found, decrypted,
validated and compared with the ``expected_*`` values here, and a bad or unexpected key fails the task
before a connection to MSL is used. See plugins/plugin_utils/key_source.py.
"""

from typing import Any

from ansible_collections.nupoint.gworkspace.plugins.module_utils.key_format import expected_mismatches
from ansible_collections.nupoint.gworkspace.plugins.module_utils.service_account import p12_pair_warning
from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.key_source import (
    ControllerKey,
    KeyActionBase,
    KeySourceError,
    module_args_with_key,
    require_key,
)


class ActionModule(KeyActionBase):
    MODULE_NAME = "nupoint.gworkspace.msl_oauth_credentials"
    # The key's public facts when a P12 twin is installed (the result gets p12_same_account, p12_fingerprint_sha256).
    _p12_info: dict[str, Any] | None = None

    def build_module_args(self, task_args: dict[str, Any]) -> dict[str, Any]:
        key: ControllerKey | None = None
        self._p12_info = None
        if task_args.get("state", "present") == "present":
            key = require_key(self, task_args)
            if key.p12 is not None:
                self._p12_info = key.key.as_info()
            mismatches = expected_mismatches(
                key.metadata,
                task_args.get("expected_client_id"),
                task_args.get("expected_client_email"),
                task_args.get("expected_fingerprint"),
            )
            if mismatches:
                raise KeySourceError(
                    "This is not the expected key: %s. Nothing was changed on MSL." % "; ".join(mismatches),
                    "unexpected_key",
                    client_id=key.key.client_id,
                    client_email=key.key.client_email,
                    fingerprint_sha256=key.key.fingerprint_sha256,
                )
        return module_args_with_key(task_args, key)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        info = self._p12_info
        if info and not result.get("failed"):
            # A P12 of another key pair is installed on the strength of its certificate's name; say so every time.
            result.update({name: info[name] for name in ("p12_same_account", "p12_fingerprint_sha256")})
            warning = p12_pair_warning(info)
            if warning:
                result.setdefault("warnings", []).append(warning)
        return result
