# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin base for modules that call Google with the service-account key (token endpoint, Google APIs).

The key comes as ``src`` (a controller file, vault-aware, found like ``copy``'s ``src``), ``content``
(e.g. a vault variable) or ``path`` (a file on the node, read by the module). ``src``/``content`` are
read and validated on the controller by ``key_source`` and reach the module as one ``no_log``
``content`` string; the task's own arguments are put back into ``invocation.module_args``.

Subclasses set ``MODULE_NAME``.
"""

from typing import Any

from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.key_source import (
    KeyActionBase,
    KeySourceError,
    load_key,
    module_args_with_key,
)

# Google is called with the JSON key; a P12 file has no use here.
_P12_OPTIONS = ("p12_src", "p12_content", "p12_password")


class GoogleApiActionBase(KeyActionBase):
    def build_module_args(self, task_args: dict[str, Any]) -> dict[str, Any]:
        given_p12 = [name for name in _P12_OPTIONS if task_args.get(name) is not None]
        if given_p12:
            raise KeySourceError(
                "%s: Google APIs are called with the JSON key only; remove %s."
                % (self.MODULE_NAME, ", ".join(given_p12)),
                "bad_field",
                given_p12[0],
            )
        controller_key = [name for name in ("src", "content") if task_args.get(name) is not None]
        if task_args.get("path") is not None and controller_key:
            raise KeySourceError(
                "Give the key as one of src, content or path, not %s and path." % " and ".join(controller_key),
                "bad_field",
                "path",
            )
        key = load_key(self, task_args, required=task_args.get("path") is None)
        return module_args_with_key(task_args, key)
