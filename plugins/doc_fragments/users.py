# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Users file and failure threshold of modules that handle many users.

Matches the rules of ``plugins/module_utils/users.py``; each module documents its own ``users`` option.
"""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  users_file:
    description:
      - A file on the node that runs the module listing the users, one address per line, or a CSV file whose header
        names an C(email) column (C(primaryEmail), as GAM prints it, C(email address) and C(mail) work too; other
        columns are ignored). CSV columns are separated by C(,), C(;) or a tab.
      - Lines starting with C(#) are comments. Blank lines and CSV rows without an address are skipped. A CSV header
        without an address column fails the task.
      - Cleaned like O(users).
    type: path
  duplicates:
    description:
      - What an address listed more than once does (compared case-insensitively, after trimming, across O(users)
        and O(users_file)).
      - V(fail) (the default) fails the task before anything is checked or changed, naming the addresses, with
        C(reason=duplicate_users). Mitel's documentation (Enable Advanced UM for User Mailbox) warns that two
        NuPoint mailboxes with the same Advanced UM e-mail address make NuPoint synchronise both voice mailboxes to
        one e-mail account, which deletes all their voice messages; a users list that repeats an address is often
        an export of exactly that.
      - V(warn) drops the repeats with a warning, for a list that only repeats the same mailbox.
    type: str
    choices: [fail, warn]
    default: fail
  fail_threshold:
    description:
      - How many failed users fail the task. A whole number is a count (V(0), the default, fails the task on any
        failure; V(10) tolerates ten), a number below 1 with a decimal point is a fraction (V(0.05)), and a string
        ending in C(%) is a percentage (V(5%)).
      - The results are returned either way.
    type: raw
    default: 0
"""
