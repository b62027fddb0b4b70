# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for msl_oauth_credentials: read and validate the key on the controller, hand MSL the content.

MSL has no 'cryptography' and no access to the controller's files or vault: the key is found, decrypted,
validated and compared with the ``expected_*`` values here, and a bad or unexpected key fails the task
before a connection to MSL is used. See plugins/plugin_utils/key_source.py.
"""

from ansible.plugins.action import ActionBase

from ansible_collections.nupoint.gworkspace.plugins.module_utils.msl import expected_mismatches
from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.key_source import (
    ControllerKey,
    KeySourceError,
    module_args_with_key,
    require_key,
    scrub_invocation,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        task_args = dict(self._task.args)
        try:
            key: ControllerKey | None = None
            if task_args.get("state", "present") == "present":
                key = require_key(self, task_args)
                mismatches = expected_mismatches(
                    key.metadata,
                    task_args.get("expected_client_id"),
                    task_args.get("expected_client_email"),
                    task_args.get("expected_fingerprint"),
                )
                if mismatches:
                    result.update(
                        failed=True,
                        changed=False,
                        msg="This is not the expected key: %s. Nothing was changed on MSL." % "; ".join(mismatches),
                        reason="unexpected_key",
                        client_id=key.key.client_id,
                        client_email=key.key.client_email,
                        fingerprint_sha256=key.key.fingerprint_sha256,
                    )
                    return result
            module_args = module_args_with_key(task_args, key)
        except KeySourceError as exc:
            result.update(exc.as_result(), changed=False)
            return result
        result.update(
            self._execute_module(
                module_name="nupoint.gworkspace.msl_oauth_credentials", module_args=module_args, task_vars=task_vars
            )
        )
        scrub_invocation(result, task_args)
        return result
