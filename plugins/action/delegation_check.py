# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for delegation_check: a controller key (src/content) is read, validated and signed with here.

Each subject with each scope is one token request, so the controller signs those assertions and the node
(MSL, with the standard library only) trades them for tokens. With ``path`` the key is a file on the node
and the module signs there (it needs google-auth). See plugins/plugin_utils/google_api_action.py.
"""

from typing import Any

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.token import DEFAULT_SCOPES
from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.google_api_action import GoogleApiActionBase


class ActionModule(GoogleApiActionBase):
    MODULE_NAME = "nupoint.gworkspace.delegation_check"

    def signing_requests(self, task_args: dict[str, Any]) -> list[tuple[str, list[str]]] | None:
        # The module's own cleaning: stripped, blanks dropped, scopes de-duplicated in order.
        subjects = [str(subject).strip() for subject in task_args.get("subjects") or [] if str(subject).strip()]
        scopes = task_args.get("scopes") or list(DEFAULT_SCOPES)
        scopes = list(dict.fromkeys(str(scope).strip() for scope in scopes if str(scope).strip()))
        return [(subject, [scope]) for subject in subjects for scope in scopes]
