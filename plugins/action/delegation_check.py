# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for delegation_check: a controller key (src/content) is read and validated here.

With ``path`` the key is a file on the node and the module reads it there. See
plugins/plugin_utils/key_source.py.
"""

from ansible.plugins.action import ActionBase

from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.key_source import (
    KeySourceError,
    load_key,
    module_args_with_key,
    scrub_invocation,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        task_args = dict(self._task.args)
        try:
            if task_args.get("path") is not None and (
                task_args.get("src") is not None or task_args.get("content") is not None
            ):
                raise KeySourceError("Give the key as one of src, content or path.", "bad_field", "path")
            key = load_key(self, task_args, required=task_args.get("path") is None)
            module_args = module_args_with_key(task_args, key)
        except KeySourceError as exc:
            result.update(exc.as_result(), changed=False)
            return result
        result.update(
            self._execute_module(
                module_name="nupoint.gworkspace.delegation_check", module_args=module_args, task_vars=task_vars
            )
        )
        scrub_invocation(result, task_args)
        return result
