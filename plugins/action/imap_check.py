# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for imap_check: a controller key (src/content) is read, validated and signed with here.

Every user is one token request, so the controller signs one assertion per user (about 0.8 ms each,
2 s for 2,500 users) and the node (MSL, with the standard library only) trades them for tokens and
logs in. The users are cleaned here as the module cleans them; a ``users_file`` on the node is read
from the node first (``slurp``). With ``path`` the key is a file on the node and the module signs there
(it needs google-auth). See plugins/plugin_utils/google_api_action.py.
"""

from typing import Any

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.nupoint.gworkspace.plugins.module_utils import users as users_rules
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.token import SCOPE_MAIL
from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.google_api_action import GoogleApiActionBase


class ActionModule(GoogleApiActionBase):
    MODULE_NAME = "nupoint.gworkspace.imap_check"

    def signing_requests(self, task_args: dict[str, Any]) -> list[tuple[str, list[str]]] | None:
        if task_args.get("users_file") is not None:
            text = self.read_node_text(to_text(task_args["users_file"]), "users_file")
            try:
                entries: list[Any] = list(users_rules.parse_users_file(text))
            except users_rules.UsersError:
                return []  # the module reads the file again and says what is wrong with it
        else:
            entries = [to_text(user) for user in task_args.get("users") or []]
        try:
            users = users_rules.clean_users(entries, duplicates=to_text(task_args.get("duplicates") or "fail"))[0]
        except users_rules.UsersError:
            return []  # a duplicate: the module refuses the list and says why
        max_users = int(task_args.get("max_users") or users_rules.NUPOINT_MAX_USERS)
        if len(users) > max_users and task_args.get("enforce_user_limit", True) not in (False, "false", "no"):
            return []  # the module refuses the list before it asks for a single token
        scope = to_text(task_args.get("scope") or SCOPE_MAIL)
        return [(user, [scope]) for user in users]
