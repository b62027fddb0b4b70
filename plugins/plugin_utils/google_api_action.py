# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin base for modules that call Google APIs with the service-account key.

The key comes as ``src`` (a controller file, vault-aware, found like ``copy``'s ``src``), ``content``
(e.g. a vault variable) or ``path`` (a file on the node, read by the module). ``src``/``content`` are
read and validated on the controller by ``key_source`` and reach the module as one ``no_log``
``content`` string; the task's own arguments are put back into ``invocation.module_args``.

Subclasses set ``MODULE_NAME``.
"""

from ansible.plugins.action import ActionBase

from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.key_source import (
    KeySourceError,
    load_key,
    module_args_with_key,
    scrub_invocation,
)

# The Google APIs sign with the JSON key; a P12 file has no use here.
_P12_OPTIONS = ("p12_src", "p12_content", "p12_password")


class GoogleApiActionBase(ActionBase):
    TRANSFERS_FILES = False
    MODULE_NAME = ""

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        task_args = dict(self._task.args)
        given_p12 = [name for name in _P12_OPTIONS if task_args.get(name) is not None]
        if given_p12:
            result.update(
                failed=True,
                changed=False,
                msg="%s: Google APIs are called with the JSON key only; remove %s."
                % (self.MODULE_NAME, ", ".join(given_p12)),
            )
            return result
        controller_key = [name for name in ("src", "content") if task_args.get(name) is not None]
        if task_args.get("path") is not None and controller_key:
            result.update(
                failed=True,
                changed=False,
                msg="Give the key as one of src, content or path, not %s and path." % " and ".join(controller_key),
                reason="bad_field",
                field="path",
            )
            return result
        try:
            key = load_key(self, task_args, required=task_args.get("path") is None)
        except KeySourceError as exc:
            result.update(exc.as_result(), changed=False)
            return result
        module_args = module_args_with_key(task_args, key)
        result.update(self._execute_module(module_name=self.MODULE_NAME, module_args=module_args, task_vars=task_vars))
        scrub_invocation(result, task_args)
        return result
