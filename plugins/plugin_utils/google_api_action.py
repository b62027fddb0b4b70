# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin base for modules that call Google with the service-account key (token endpoint, Google APIs).

The key comes as ``src`` (a controller file, vault-aware, found like ``copy``'s ``src``), ``content``
(e.g. a vault variable) or ``path`` (a file on the node, read by the module). ``src``/``content`` are
read and validated on the controller by ``key_source`` and reach the module as one ``no_log``
``content`` string; the task's own arguments are put back into ``invocation.module_args``. Google is
called with the JSON key: the P12 options are refused here, before the node is contacted.

Subclasses set ``MODULE_NAME``.
"""

from typing import Any

from ansible_collections.nupoint.gworkspace.plugins.module_utils.key_source import key_option_names
from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.key_source import (
    KeyActionBase,
    load_key,
    module_args_with_key,
)


class GoogleApiActionBase(KeyActionBase):
    KEY_OPTION_NAMES = key_option_names(p12=False, node=True)

    def build_module_args(self, task_args: dict[str, Any]) -> dict[str, Any]:
        return module_args_with_key(task_args, load_key(self, task_args, required=True))
