# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for service_account_keys_info: the admin credential read on the controller, or none (ADC)."""

from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.google_api_action import AdminCredentialActionBase


class ActionModule(AdminCredentialActionBase):
    MODULE_NAME = "nupoint.gworkspace.service_account_keys_info"
