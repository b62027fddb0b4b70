# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for service_account_key_info: keep a templated key a string.

``content: "{{ lookup('file', 'key.json') }}"`` makes Ansible's templating parse the JSON into a
dict. Handed to the module as is, the module would turn it into Python's ``str(dict)`` (not JSON),
and Ansible's ``no_log`` would mask each leaf of the dict separately: the private key, whose
newlines differ in ``str()`` form, slips through at ``-vvv`` while the client ID and e-mail in the
results get masked. Serialising the dict back to JSON here, on the controller, gives the module one
string that ``no_log`` masks whole.
"""

import json
from collections.abc import Mapping

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        module_args = dict(self._task.args)
        content = module_args.get("content")
        if isinstance(content, Mapping):
            module_args["content"] = json.dumps(dict(content))
        result.update(self._execute_module(module_args=module_args, task_vars=task_vars))
        return result
