# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for service_account_key_info: read ``src`` / ``p12_src`` on the controller, keep ``content`` a string.

``src`` and ``p12_src`` are read through the data loader (ansible-vault files are decrypted) and handed to
the module as ``content`` / ``p12_content``; ``path`` / ``p12_path`` are read by the module on the node. The
key is validated by the module, where it runs, so its result and failures are the same whichever option
carried the key.

``content: "{{ lookup('file', 'key.json') }}"`` makes Ansible's templating parse the JSON into a
dict. Handed to the module as is, the module would turn it into Python's ``str(dict)`` (not JSON),
and Ansible's ``no_log`` would mask each leaf of the dict separately: the private key, whose
newlines differ in ``str()`` form, slips through at ``-vvv`` while the client ID and e-mail in the
results get masked. ``plugin_utils.key_source`` serialises the dict back to JSON here, on the
controller, so the module gets one string that ``no_log`` masks whole.
"""

from typing import Any

from ansible_collections.nupoint.gworkspace.plugins.module_utils.key_source import key_option_names
from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.key_source import (
    KeyActionBase,
    module_args_with_key,
    read_key,
)


class ActionModule(KeyActionBase):
    MODULE_NAME = "nupoint.gworkspace.service_account_key_info"
    KEY_OPTION_NAMES = key_option_names(p12=True, node=True)

    def build_module_args(self, task_args: dict[str, Any]) -> dict[str, Any]:
        return module_args_with_key(task_args, read_key(self, task_args, required=True))
