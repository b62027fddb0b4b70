#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: imap_check
short_description: Log in over IMAP (XOAUTH2) as every Advanced UM user and classify each failure
version_added: 0.1.0
description:
  - Does, for every user, what NuPoint Advanced UM does to sync voice mail with Gmail, and says who would fail and
    why - before the users notice.
  - Per user it mints a delegated access token with the service-account key (domain-wide delegation), opens a TLS
    connection to the IMAP server that verifies its certificate, logs in with C(AUTHENTICATE XOAUTH2), optionally opens
    a mailbox read-only (C(EXAMINE)), and logs out. Each phase is timed.
  - Every user gets one failure class, RV(results[].failure_class) - V(ok), the network classes V(dns), V(connect),
    V(tls), V(timeout), the token classes V(token_unauthorized_scope), V(token_invalid_user), V(token_clock_skew),
    V(token_invalid_key), V(token_other), and the IMAP classes V(imap_disabled) (Gmail's C([ALERT] Your account is not
    enabled for IMAP use) or C(IMAP access is disabled for your domain)), V(imap_auth_failed) and V(imap_other).
    C(docs/imap-check.md) says what each means and what fixes it.
  - Checks several users at a time from one thread pool (O(concurrency)); each user has a time limit (O(user_timeout)),
    so a slow user cannot stall the run. Only failures that can succeed on a second try (Gmail's C(Too many simultaneous
    connections), C([UNAVAILABLE]), dropped connections, timeouts, HTTP 5xx from the token endpoint) are retried, with
    exponential backoff.
  - Run it on the MSL host (that is where NuPoint connects from, through its firewall, DNS and clock) or on the
    controller.
  - The key is O(src) or O(content), read and validated on the controller by the action plugin, or O(path), a key
    file on the node (for example the key installed on MSL).
  - Access tokens are never returned, logged or written to the report.
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
      - The logins change nothing and run in check mode too; the O(report_path) files are not written in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - The module changes nothing; C(changed) is always V(false).
options:
  users:
    description:
      - Addresses of the users to check (primary addresses).
      - Exactly one of O(users) and O(users_file) is required.
      - Blank entries, duplicates (compared case-insensitively) and invalid addresses are dropped with a warning.
    type: list
    elements: str
  imap_host:
    description:
      - The IMAP server NuPoint syncs with.
    type: str
    default: imap.gmail.com
  imap_port:
    description:
      - Its port, implicit TLS (IMAPS).
    type: int
    default: 993
  scope:
    description:
      - The scope of the delegated token used for the login. Gmail's IMAP needs V(https://mail.google.com/).
    type: str
    default: https://mail.google.com/
  select_mailbox:
    description:
      - Mailbox to open read-only (C(EXAMINE)) after the login, proving the mailbox is usable and not only the login.
      - Empty to log in and out only.
    type: str
    default: INBOX
  concurrency:
    description:
      - How many users are checked at the same time (threads, and keep-alive connections to the token endpoint), from
        1 to 256.
      - Not set (the default), the run finds its own number. It starts at 16 users at a time and, after each
        measurement (about 3 x the current number of users), raises it by half as long as that raised the number of
        users checked per second by 15 % or more, up to 64; when a step brings less, it goes back to the best number
        and stays there. A check that had to be retried (for example Gmail's C(Too many simultaneous connections)) or
        that timed out halves it (not below 4), and it grows no more. Where the CPU or the servers are the limit (a
        LAN, a busy host) that stays near 16; where every check mostly waits on round trips (40 ms away from Google)
        it grows towards 64. RV(summary.concurrency_levels) shows the numbers a run went through.
      - A number fixes it, for example a low one to spare a busy MSL host's CPU. Gmail limits simultaneous IMAP
        connections per user, not per client, and each check holds one connection per user.
    type: int
  user_timeout:
    description:
      - Most seconds spent on one user, retries included. A user over it is classified V(timeout).
      - O(timeout) limits each network operation.
    type: float
    default: 60
  max_users:
    description:
      - Refuse to check more users than this. NuPoint Advanced UM supports at most 2,500 users.
    type: int
    default: 2500
  enforce_user_limit:
    description:
      - With V(false), more than O(max_users) users are checked anyway, with a warning.
    type: bool
    default: true
  report_path:
    description:
      - Write a JSON report (summary and every user's result) to this path on the node, a CSV report (one row per
        user) next to it, with a C(.csv) suffix in place of C(.json), and an HTML report with an C(.html) suffix.
      - The HTML report is one self-contained page for people (no external assets, readable offline and without
        JavaScript) - the header (domain, host, time, client ID, key ID and, when known, fingerprint and clock
        offset, collection version), a chart of users per failure class, latency percentiles, and a sortable,
        filterable table of the failed users with the server's message and what fixes it. A URL fragment such as
        C(#class=imap_disabled) filters it.
      - Written atomically with mode C(0600), because they list users. Not written in check mode.
      - While the users are checked, one progress line (C(1200 / 2500 checked, 3 failed, 41 s left)) is appended about
        every second to O(report_path) with a C(.progress) suffix added (mode C(0600), counts only), so
        C(tail -f) shows how far a long run is; the last line says C(done). Not written in check mode.
    type: path
  report_meta:
    description:
      - Facts the module cannot know, shown in the HTML report's header and kept in the JSON report's C(meta) -
        C(host) (the inventory name), C(domain), C(fingerprint_sha256) (of the key) and C(clock_offset_seconds) (as
        measured by M(nupoint.gworkspace.msl_time_sync)). Other keys and empty values are ignored.
    type: dict
  return_results:
    description:
      - Return RV(results), one entry per user. With V(false), only RV(summary) and RV(failed_users) are returned, which
        keeps the task result small for thousands of users (use O(report_path) for the rest).
    type: bool
    default: true
notes:
  - The token endpoint and the IMAP server are both verified against O(ca_path) when it is set, else against the
    node's CA store.
  - NuPoint does not use the O(select_mailbox) check; it is there to tell a user who can log in but whose mailbox
    cannot be opened from one who cannot log in.
  - The IMAP side needs only the Python standard library (a minimal client for the four commands a check sends;
    C(docs/imap-check.md) says why it is not imapclient); the token side needs C(google-auth) and C(requests).
seealso:
  - module: nupoint.gworkspace.delegation_check
  - module: nupoint.gworkspace.gmail_imap_settings
  - name: IMAP and XOAUTH2 (Google)
    description: Google's description of the XOAUTH2 SASL mechanism for IMAP.
    link: https://developers.google.com/gmail/imap/xoauth2-protocol
"""

EXAMPLES = r"""
- name: Check every Advanced UM user from MSL with the key NuPoint uses
  nupoint.gworkspace.imap_check:
    path: /var/lib/nupoint/oauth/service-account.json
    users_file: /root/um-users.csv
    report_path: /var/tmp/imap-check.json
    fail_threshold: 0
  register: imap

- name: Check two users from the controller with a vaulted key, tolerating 5 % failures
  nupoint.gworkspace.imap_check:
    src: files/nupoint-um-sa.json
    users:
      - alice@example.com
      - bob@example.com
    fail_threshold: 5%
  delegate_to: localhost
  register: imap

- name: On a busy MSL host, check at most 8 users at a time and keep the task result small
  nupoint.gworkspace.imap_check:
    path: /var/lib/nupoint/oauth/service-account.json
    users_file: /root/um-users.txt
    concurrency: 8
    return_results: false
    report_path: /var/tmp/imap-check.json
  register: imap

- name: Show who cannot sync and why
  ansible.builtin.debug:
    msg: "{{ imap.failed_users | map(attribute='user') | zip(imap.failed_users | map(attribute='failure_class')) | list }}"
  when: imap.summary.failed > 0
"""

RETURN = r"""
summary:
  description: Totals for the run.
  returned: always, unless the users could not be read
  type: dict
  contains:
    total:
      description: Users checked (after cleaning).
      type: int
      sample: 2500
    ok:
      description: Users whose login succeeded.
      type: int
      sample: 2497
    failed:
      description: Users whose check failed.
      type: int
      sample: 3
    by_class:
      description: Number of users per failure class; every class is present, with V(0) when none.
      type: dict
      sample: {"ok": 2497, "imap_disabled": 2, "token_invalid_user": 1, "connect": 0}
    duration_seconds:
      description: Wall time of the checks.
      type: float
      sample: 21.4
    users_per_second:
      description: Users checked per second.
      type: float
      sample: 116.8
    concurrency:
      description: The most users checked at a time (with O(concurrency) not set, the highest level the run reached).
      type: int
      sample: 16
    concurrency_levels:
      description: With O(concurrency) not set, the levels the run went through, in order.
      returned: when O(concurrency) is not set
      type: list
      elements: int
      sample: [16, 24, 36, 54, 64]
    latency_ms:
      description: Per phase (C(token), C(connect), C(auth), C(select), C(total)), the median (C(p50)), 95th
        percentile (C(p95)) and maximum (C(max)) in milliseconds, over the users that reached the phase.
      type: dict
      sample: {"auth": {"max": 80.2, "p50": 9.1, "p95": 20.3}}
failed_users:
  description: The users that failed, with their class and the server's or Google's words.
  returned: always, unless the users could not be read
  type: list
  elements: dict
  sample: [{"user": "bob@example.com", "failure_class": "imap_disabled",
            "message": "The IMAP server refused the XOAUTH2 login: [ALERT] Your account is not enabled for IMAP use..."}]
results:
  description: One entry per user, in the order given.
  returned: when O(return_results) is V(true)
  type: list
  elements: dict
  contains:
    user:
      description: The address checked.
      type: str
    failure_class:
      description: V(ok) or the failure class.
      type: str
    phase:
      description: Where it failed - V(token), V(connect) (TCP, TLS and greeting), V(auth), V(select); V(null) when ok.
      type: str
    message:
      description: What failed and what to do; empty when ok.
      type: str
    attempts:
      description: Attempts made (retries of retryable failures included).
      type: int
    latency_ms:
      description: Milliseconds per phase that ran (C(token), C(connect), C(auth), C(select)) and C(total).
      type: dict
      sample: {"token": 12.1, "connect": 8.3, "auth": 9.0, "select": 1.2, "total": 31.0}
    google_error:
      description: Google's OAuth error code when the token was refused.
      type: str
      returned: when Google refused the token
users_count:
  description: Users checked, after cleaning.
  returned: always
  type: int
  sample: 2500
skipped_users:
  description: What was dropped from the user list - C(blank) (a count), C(duplicate) and C(invalid) (lists).
  returned: always
  type: dict
  sample: {"blank": 2, "duplicate": ["alice@example.com"], "invalid": ["'bob@' (users_file line 7)"]}
report:
  description: Paths of the written reports (the progress file is O(report_path) with C(.progress) added).
  returned: when O(report_path) is set and not in check mode
  type: dict
  sample: {"json": "/var/tmp/imap-check.json", "csv": "/var/tmp/imap-check.csv", "html": "/var/tmp/imap-check.html"}
client_id:
  description: The service account's client ID (the one authorised in the Admin console).
  returned: when the key could be loaded
  type: str
client_email:
  description: The service account's e-mail.
  returned: when the key could be loaded
  type: str
"""

from ansible_collections.nupoint.gworkspace.plugins.module_utils import users as users_rules
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.imap_login import (
    DEFAULT_IMAP_HOST,
    DEFAULT_IMAP_PORT,
    DEFAULT_MAILBOX,
    DEFAULT_USER_TIMEOUT,
    RUN_SOURCE_OPTIONS,
    most_workers,
    run_check,
    summary_message,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.module import GoogleModule
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.pool import MAX_CONCURRENCY
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.token import SCOPE_MAIL


def load_users(module):
    params = module.params
    if params["users_file"] is not None:
        entries = users_rules.parse_users_file(users_rules.read_users_file(params["users_file"]))
        return users_rules.clean_users(entries, "users_file", params["duplicates"])
    return users_rules.clean_users(params["users"] or [], "users", params["duplicates"])


def check_options(module):
    params = module.params
    if params["concurrency"] is not None and not 1 <= params["concurrency"] <= MAX_CONCURRENCY:
        module.fail_option(
            "concurrency must be between 1 and %d, not %d." % (MAX_CONCURRENCY, params["concurrency"]), "concurrency"
        )
    if params["user_timeout"] <= 0:
        module.fail_option("user_timeout must be more than 0 seconds.", "user_timeout")
    if params["max_users"] < 1:
        module.fail_option("max_users must be at least 1.", "max_users")
    if not 0 < params["imap_port"] < 65536:
        module.fail_option(
            "imap_port %d is not a TCP port (1 to 65535; Gmail's IMAPS port is 993)." % params["imap_port"], "imap_port"
        )


def main():
    module = GoogleModule(
        argument_spec=dict(
            users=dict(type="list", elements="str"),
            users_file=dict(type="path"),
            imap_host=dict(type="str", default=DEFAULT_IMAP_HOST),
            imap_port=dict(type="int", default=DEFAULT_IMAP_PORT),
            scope=dict(type="str", default=SCOPE_MAIL),
            select_mailbox=dict(type="str", default=DEFAULT_MAILBOX),
            concurrency=dict(type="int"),
            user_timeout=dict(type="float", default=DEFAULT_USER_TIMEOUT),
            max_users=dict(type="int", default=users_rules.NUPOINT_MAX_USERS),
            enforce_user_limit=dict(type="bool", default=True),
            fail_threshold=dict(type="raw", default=0),
            duplicates=dict(type="str", choices=list(users_rules.DUPLICATES_POLICIES), default="fail"),
            report_path=dict(type="path"),
            report_meta=dict(type="dict"),
            return_results=dict(type="bool", default=True),
        ),
        mutually_exclusive=[("users", "users_file")],
        required_one_of=[("users", "users_file")],
    )
    params = module.params
    check_options(module)

    def body():
        threshold = users_rules.parse_fail_threshold(params["fail_threshold"])
        users, warnings, skipped = load_users(module)
        for warning in warnings:
            module.warn(warning)
        if not users:
            return dict(
                failed=True,
                msg="No valid user address to check: every entry of %s was blank or not an e-mail address (the warning "
                "lists them). Give the Advanced UM users' primary addresses, one per line or in an 'email' CSV column."
                % ("users_file" if params["users_file"] is not None else "users"),
                reason="no_users",
                users_count=0,
                skipped_users=skipped,
            )
        limit = users_rules.enforce_max_users(len(users), params["max_users"], params["enforce_user_limit"])
        if limit is not None and not limit.startswith("warning:"):
            return dict(failed=True, msg=limit, reason="too_many_users", users_count=len(users), skipped_users=skipped)
        if limit is not None:
            module.warn(limit[len("warning: ") :])
        source = module.token_source(
            [params["scope"]], most_workers(params["concurrency"], len(users)), **RUN_SOURCE_OPTIONS
        )
        result = run_check(source, users, params, write_report=not module.check_mode)
        result.update(users_count=len(users), skipped_users=skipped)
        exceeded = users_rules.threshold_exceeded(result["summary"]["failed"], result["summary"]["total"], threshold)
        report_error = result.pop("report_error", "")
        threshold_text = users_rules.describe_threshold(threshold)
        result.update(
            failed=exceeded or bool(report_error), msg=summary_message(result["summary"], threshold_text, exceeded)
        )
        result["msg"] += report_error
        return result

    module.run(body)


if __name__ == "__main__":
    main()
