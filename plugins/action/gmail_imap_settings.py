# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for gmail_imap_settings: read and validate the key on the controller (src/content)."""

from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.google_api_action import GoogleApiActionBase


class ActionModule(GoogleApiActionBase):
    MODULE_NAME = "nupoint.gworkspace.gmail_imap_settings"
