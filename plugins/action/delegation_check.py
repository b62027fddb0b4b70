# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for delegation_check: a controller key (src/content) is read and validated here.

With ``path`` the key is a file on the node and the module reads it there. See
plugins/plugin_utils/key_source.py and google_api_action.py.
"""

from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.google_api_action import GoogleApiActionBase


class ActionModule(GoogleApiActionBase):
    MODULE_NAME = "nupoint.gworkspace.delegation_check"
