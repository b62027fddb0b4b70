#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gmail_imap_settings
short_description: Enable IMAP (and set its options) in the Gmail settings of many users
version_added: 0.1.0
description:
  - Makes sure Gmail's per-user IMAP settings are what NuPoint Unified Messaging needs, for any number of users
    in one task (up to the 2,500 Advanced UM users and more), several users at a time.
  - Uses the Gmail API C(users.settings.getImap) and C(users.settings.updateImap) as each user, through the
    service account's domain-wide delegation with the scope V(https://www.googleapis.com/auth/gmail.settings.basic).
    Authorise that scope for the service account's client ID in the Admin console first; when it is missing the
    result carries RV(admin_console_url), a link that adds it.
  - Reads each user's settings and writes them only when a setting the task manages differs. The update sends
    Gmail's current settings with the managed ones changed, so settings the task does not mention keep their
    values.
  - Each user gets a result with the settings before and after and, on failure, a failure class from the
    collection's vocabulary (for example V(token_invalid_user) for an address Google does not know) and a message
    saying what to do. The task fails when more users failed than O(fail_threshold) allows.
  - The domain-wide switch (Admin console, Apps > Google Workspace > Gmail > End User Access > POP and IMAP access)
    is separate and overrides these per-user settings; check it with M(nupoint.gworkspace.workspace_imap_policy_info).
author:
  - nupoint.gworkspace maintainers (@nupoint)
extends_documentation_fragment:
  - nupoint.gworkspace.attributes
  - nupoint.gworkspace.google
  - nupoint.gworkspace.google.KEY_SOURCE
  - nupoint.gworkspace.users
attributes:
  check_mode:
    support: full
    details:
      - Reads every user's settings and reports what would change; writes nothing.
  diff_mode:
    support: full
    details:
      - The diff lists, per user that changes, the managed settings before and after.
  idempotent:
    support: full
options:
  users:
    description:
      - The users, as primary e-mail addresses, or as dictionaries with the key C(user) (the address) and any of
        O(enabled), O(auto_expunge), O(expunge_behavior) and O(max_folder_size) to override the task's settings for
        that user.
      - Entries that are not e-mail addresses are skipped with a warning; duplicates (compared case-insensitively)
        are merged, unless they ask for different settings, which fails the task.
      - At least one of O(users) and O(users_file) is required; both may be given.
    type: list
    elements: raw
  enabled:
    description:
      - Whether IMAP access is enabled for the user (Gmail's C(enabled)).
      - NuPoint needs V(true).
    type: bool
    default: true
  auto_expunge:
    description:
      - Whether Gmail expunges a message as soon as an IMAP client marks it deleted (C(autoExpunge)).
      - Not managed when unset.
    type: bool
  expunge_behavior:
    description:
      - What Gmail does with a message deleted and expunged over IMAP (C(expungeBehavior)).
      - Not managed when unset.
    type: str
    choices: [archive, trash, deleteForever]
  max_folder_size:
    description:
      - Largest number of messages an IMAP folder shows (C(maxFolderSize)); V(0) means no limit.
      - Not managed when unset.
    type: int
    choices: [0, 1000, 2000, 5000, 10000]
  concurrency:
    description:
      - How many users are handled at the same time.
      - Gmail allows each user's settings to be changed independently; more than about 32 gains little and may
        meet Google's per-project rate limits (which are retried, see O(retries)).
    type: int
    default: 16
seealso:
  - module: nupoint.gworkspace.workspace_imap_policy_info
  - module: nupoint.gworkspace.imap_check
  - name: Gmail API users.settings.updateImap
    description: The Gmail API method this module calls.
    link: https://developers.google.com/gmail/api/reference/rest/v1/users.settings/updateImap
  - name: Control API access with domain-wide delegation
    description: How to authorise a client ID's scopes in the Admin console.
    link: https://support.google.com/a/answer/162106
notes:
  - "Needs C(google-auth) and C(requests) on the node that runs the module; run it on the controller
    (C(delegate_to: localhost)) when MSL does not have them."
  - When the first user fails for a reason that fails every user the same way (scope not authorised, key refused,
    clock wrong, Google's name or certificate not usable), the other users are not attempted; their results say so.
"""

EXAMPLES = r"""
- name: Enable IMAP for the Advanced UM users
  nupoint.gworkspace.gmail_imap_settings:
    src: files/nupoint-um-sa.json
    users:
      - alice@example.com
      - bob@example.com
  delegate_to: localhost
  run_once: true

- name: Enable IMAP for everyone in a file, and make deleted voice mail go to the bin
  nupoint.gworkspace.gmail_imap_settings:
    content: "{{ vault_nupoint_sa_key }}"
    users_file: /srv/nupoint/um-users.csv
    expunge_behavior: trash
    concurrency: 32
  delegate_to: localhost
  run_once: true
  register: imap_settings

- name: Show who could not be updated
  ansible.builtin.debug:
    msg: "{{ imap_settings.failed_users }}"
  when: imap_settings.failed_users | length > 0

- name: One user keeps IMAP off, the rest get it on; tolerate up to 2% failures
  nupoint.gworkspace.gmail_imap_settings:
    src: files/nupoint-um-sa.json
    users:
      - alice@example.com
      - user: kiosk@example.com
        enabled: false
    users_file: /srv/nupoint/um-users.txt
    fail_threshold: 2%
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
results:
  description: One entry per user, in the order given (after cleaning).
  returned: always
  type: list
  elements: dict
  contains:
    user:
      description: The user's address (lower case).
      type: str
      sample: alice@example.com
    changed:
      description: Whether the settings were updated (in check mode, would be).
      type: bool
    failure_class:
      description:
        - V(ok), or why the user failed, in the collection's vocabulary.
        - Token classes (V(token_unauthorized_scope), V(token_invalid_user), V(token_clock_skew),
          V(token_invalid_key), V(token_other)), network classes (V(dns), V(connect), V(tls), V(timeout)), or
          V(api_error) when Gmail refused or failed (see RV(results[].http_status)).
      type: str
      sample: ok
    message:
      description: What went wrong and how to fix it; empty when V(ok).
      type: str
    changed_settings:
      description: The managed settings that differ(ed).
      type: list
      elements: str
      sample: [enabled]
    before:
      description: The user's IMAP settings as read (V(null) when they could not be read).
      type: dict
      sample: {enabled: false, auto_expunge: true, expunge_behavior: archive, max_folder_size: 0}
    after:
      description: The settings after the update (in check mode, as they would be).
      type: dict
      sample: {enabled: true, auto_expunge: true, expunge_behavior: archive, max_folder_size: 0}
    http_status:
      description: HTTP status of Google's refusal, when there was one.
      type: int
    refusal:
      description:
        - V(service_disabled) when Google refused because the Gmail API is not enabled in the service account's Cloud
          project (the message carries the enable link); the other users are then not attempted.
      type: str
      returned: when the Gmail API is disabled
    skipped:
      description: V(true) when the user was not attempted because an earlier failure holds for every user.
      type: bool
      returned: when skipped
summary:
  description: Counts over all users.
  returned: always
  type: dict
  contains:
    total:
      description: Users handled.
      type: int
    changed:
      description: Users whose settings were (or would be) updated.
      type: int
    unchanged:
      description: Users whose settings already were as wanted.
      type: int
    failed:
      description: Users whose failure class is not V(ok).
      type: int
    skipped:
      description: Failed users that were not attempted.
      type: int
    ok:
      description: Users whose settings are right now (changed or not).
      type: int
    by_class:
      description: Number of users per failure class; every class of the vocabulary, zeros included.
      type: dict
      sample: {ok: 2498, token_invalid_user: 2, dns: 0}
    duration_seconds:
      description: Wall time of the run.
      type: float
    users_per_second:
      description: Throughput.
      type: float
failed_users:
  description: The failed users with their failure class and message (a subset of RV(results)).
  returned: always
  type: list
  elements: dict
  sample: [{user: ghost@example.com, failure_class: token_invalid_user, message: "Google refused ..."}]
client_id:
  description: The service account's client ID (the one to authorise in the Admin console).
  returned: when the key could be loaded
  type: str
  sample: "110123456789012345678"
admin_console_url:
  description:
    - Admin console link that authorises the scopes this module and NuPoint need for the client ID
      (V(https://mail.google.com/) and V(https://www.googleapis.com/auth/gmail.settings.basic)).
    - The link I(replaces) the client's scope list; add any other scopes you authorised for it.
  returned: when a user failed with V(token_unauthorized_scope)
  type: str
"""

from typing import List

from ansible_collections.nupoint.gworkspace.plugins.module_utils import users as users_rules
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import failures, gmail_imap
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.module import GoogleModule
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.pool import DEFAULT_CONCURRENCY


def failure_message(summary, failed_users, console_url):
    first = failed_users[0]
    message = "%d of %d users failed (%s). First: %s: %s" % (
        summary["failed"],
        summary["total"],
        failures.class_counts_text(summary["by_class"]),
        first["user"],
        first["message"],
    )
    if console_url:
        message += (
            " To authorise the Gmail settings scope for the service account, open %s (the link replaces the "
            "client's scope list: add any other scopes it needs)." % console_url
        )
    return message


def main():
    module = GoogleModule(
        argument_spec=dict(
            users=dict(type="list", elements="raw"),
            users_file=dict(type="path"),
            enabled=dict(type="bool", default=True),
            auto_expunge=dict(type="bool"),
            expunge_behavior=dict(type="str", choices=list(gmail_imap.EXPUNGE_BEHAVIORS)),
            max_folder_size=dict(type="int", choices=list(gmail_imap.MAX_FOLDER_SIZES)),
            concurrency=dict(type="int", default=DEFAULT_CONCURRENCY),
            fail_threshold=dict(type="raw", default=0),
            duplicates=dict(type="str", choices=list(users_rules.DUPLICATES_POLICIES), default="fail"),
        ),
        required_one_of=[("users", "users_file")],
    )
    params = module.params
    if params["concurrency"] < 1:
        module.fail_option("concurrency must be at least 1.", "concurrency")

    def body():
        threshold = users_rules.parse_fail_threshold(params["fail_threshold"])
        file_addresses: List[str] = []
        warnings: List[str] = []
        if params["users_file"]:
            text = users_rules.read_users_file(params["users_file"])
            file_addresses, warnings = gmail_imap.users_file_addresses(text)
        targets, more_warnings = gmail_imap.build_targets(
            params["users"], file_addresses, gmail_imap.task_settings(params), params["duplicates"]
        )
        for warning in warnings + more_warnings:
            module.warn(warning)
        client = module.api_client(gmail_imap.SCOPES, params["concurrency"])
        try:
            results, summary = gmail_imap.apply_all(client, targets, module.check_mode, params["concurrency"])
        finally:
            client.close()
        failed_users = failures.failed_users(results)
        result = dict(
            changed=summary["changed"] > 0,
            results=results,
            summary=summary,
            failed_users=failed_users,
            client_id=client.client_id,
        )
        if module._diff:
            result["diff"] = gmail_imap.diff_of(results)
        if any(user["failure_class"] == "token_unauthorized_scope" for user in failed_users):
            result["admin_console_url"] = failures.admin_console_url(client.client_id, gmail_imap.CONSOLE_SCOPES)
        if not targets:
            module.warn("No users to handle: users and users_file gave no valid address.")
        if users_rules.threshold_exceeded(summary["failed"], summary["total"], threshold):
            result.update(failed=True, msg=failure_message(summary, failed_users, result.get("admin_console_url")))
        return result

    module.run(body)


if __name__ == "__main__":
    main()
