# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Users lists and failure thresholds: one set of rules for every module that handles many users.

- A users file (:func:`users_file_entries`, :func:`parse_users_file`) is one address per line, or a CSV
  file whose header names an address column (``email``; ``primaryEmail`` as GAM prints it, ``email
  address`` and ``mail`` too), separated by ``,``, ``;`` or a tab. Blank lines are kept as blank entries
  so callers can count them; lines starting with ``#`` are comments. A CSV header with no address column
  is refused rather than read as addresses.
- An entry is stripped and then is blank, not an address (:func:`is_valid_address`), a duplicate
  (compared case-insensitively: Gmail addresses are) or new (:func:`screen_address`);
  :func:`clean_users` applies that to a whole list and says what it dropped.
- ``fail_threshold`` (:func:`parse_fail_threshold`) is a count of failed users, a fraction below 1 or a
  percentage; :func:`threshold_exceeded` and :func:`describe_threshold` use what it returns.

Errors are :class:`UsersError` (a ``ValueError`` with ``msg``). Runs on MSL: standard library only,
Python 3.6 compatible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import re

from ansible.module_utils.six import string_types

from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import isfinite, raise_from

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass

# NuPoint Advanced UM supports at most this many users (Mitel's Google Apps integration guide).
NUPOINT_MAX_USERS = 2500
# Header names of the address column, lower case, in order of preference.
EMAIL_COLUMNS = ("email", "primaryemail", "email address", "mail")
DELIMITERS = (",", ";", "\t")
# Warnings list at most this many entries.
MAX_LISTED = 10

# screen_address() verdicts.
BLANK = "blank"
INVALID = "invalid"
DUPLICATE = "duplicate"
NEW = "new"

_ADDRESS_RE = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]$"
)
_THRESHOLD_FORMS = "a whole count of users (0, 10), a fraction below 1 (0.05) or a percentage (5%)"


#: ``duplicates`` option: a duplicate address fails the task (default) or is dropped with a warning.
DUPLICATES_POLICIES = ("fail", "warn")
#: Why a duplicate is not noise (Mitel, "Enable Advanced UM for User Mailbox", MiCollab 9.2 documentation).
DUPLICATE_DANGER = (
    "Each Advanced UM mailbox needs its own e-mail address: Mitel warns that two NuPoint mailboxes with one "
    "address make NuPoint synchronise both voice mailboxes to one e-mail account, which deletes all their voice "
    "messages"
)


class UsersError(ValueError):
    """The users or the threshold cannot be used (raised before anything is checked or changed).

    ``reason`` is a stable word for the result (``invalid_users_file``, ``users_file_unreadable``,
    ``duplicate_users``, ``invalid_fail_threshold``).
    """

    def __init__(self, msg, reason="invalid_users"):  # type: (str, str) -> None
        super(UsersError, self).__init__(msg)
        self.msg = msg
        self.reason = reason


# --------------------------------------------------------------------------- addresses


def is_valid_address(address):  # type: (str) -> bool
    """A plain ``local@domain`` address (what Google accepts as a user's primary address)."""
    return len(address) <= 254 and bool(_ADDRESS_RE.match(address))


def screen_address(raw, seen):  # type: (Any, Set[str]) -> Tuple[str, str]
    """``(verdict, address)`` for one entry of a users list; ``address`` is ``raw`` stripped.

    The verdict is :data:`BLANK`, :data:`INVALID`, :data:`DUPLICATE` (its lower-cased form is in
    ``seen``) or :data:`NEW` (its lower-cased form is added to ``seen``).
    """
    address = (raw if isinstance(raw, string_types) else str(raw)).strip()
    if not address:
        return BLANK, address
    if not is_valid_address(address):
        return INVALID, address
    key = address.lower()
    if key in seen:
        return DUPLICATE, address
    seen.add(key)
    return NEW, address


def listing(items):  # type: (Sequence[str]) -> str
    """The first :data:`MAX_LISTED` items, comma-separated, and how many more there are."""
    shown = ", ".join(items[:MAX_LISTED])
    if len(items) > MAX_LISTED:
        shown += " and %d more" % (len(items) - MAX_LISTED)
    return shown


# --------------------------------------------------------------------------- users file


def _email_column(header):  # type: (Sequence[str]) -> Optional[int]
    for candidate in EMAIL_COLUMNS:
        if candidate in header:
            return list(header).index(candidate)
    return None


def users_file_entries(text):  # type: (str) -> List[Tuple[int, str, bool]]
    """``(line number, entry, other values)`` for every line of a users file that is not a comment.

    ``entry`` is the address as written (stripped; ``""`` for a blank line or an empty address cell);
    ``other values`` says whether a CSV row has values in other columns (an address missing from a row
    rather than a blank line). Raises :class:`UsersError` for a CSV header without an address column.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if not line.lstrip().startswith("#")]
    header = next(((number, line) for number, line in lines if line.strip()), None)
    if header is None:
        return [(number, "", False) for number, _line in lines]
    header_number, header_line = header
    delimiter = max(DELIMITERS, key=header_line.count)
    names = [name.strip().lower() for name in next(csv.reader([header_line], delimiter=delimiter))]
    column = _email_column(names)
    if column is None:
        if len(names) > 1:
            raise UsersError(
                "users_file looks like CSV but has no 'email' column (header: %s); add one (primaryEmail, as GAM "
                "prints it, works too), or list one address per line." % ", ".join(names),
                "invalid_users_file",
            )
        return [(number, line.strip(), False) for number, line in lines]
    rows = [(number, line) for number, line in lines if number > header_number]
    reader = csv.reader([line for _number, line in rows], delimiter=delimiter)
    entries = []
    for row in reader:
        value = row[column].strip() if len(row) > column else ""
        others = any(cell.strip() for index, cell in enumerate(row) if index != column)
        entries.append((rows[reader.line_num - 1][0], value, others))
    return entries


def parse_users_file(text):  # type: (str) -> List[Tuple[int, str]]
    """``(line number, entry)`` from a users file (see :func:`users_file_entries`), blank entries included."""
    return [(number, entry) for number, entry, _others in users_file_entries(text)]


# --------------------------------------------------------------------------- cleaning


def clean_users(entries, source="users", duplicates="fail"):
    # type: (Iterable[Union[str, Tuple[int, str]]], str, str) -> Tuple[List[str], List[str], Dict[str, Any]]
    """Drop blanks and invalid addresses (:func:`screen_address`) with warnings; refuse duplicates.

    ``entries``: addresses, or ``(line number, address)`` from :func:`parse_users_file`. Returns
    ``(users in first-seen order, as first written; warnings; skipped)`` where ``skipped`` is
    ``{"blank": n, "duplicate": [...], "invalid": [...]}``. A duplicate (compared case-insensitively,
    after trimming) raises :class:`UsersError` ``duplicate_users`` (:func:`duplicates_error`) unless
    ``duplicates`` is ``warn``, which drops it with a warning.
    """
    users = []  # type: List[str]
    seen = set()  # type: Set[str]
    blank = 0
    repeated = []  # type: List[str]
    invalid = []  # type: List[str]
    for entry in entries:
        if isinstance(entry, tuple):
            number, raw = entry
            where = "%s line %d" % (source, number)  # type: Optional[str]
        else:
            raw, where = entry, None
        verdict, address = screen_address(raw, seen)
        if verdict == BLANK:
            blank += 1
        elif verdict == INVALID:
            invalid.append("%r (%s)" % (address, where) if where else repr(address))
        elif verdict == DUPLICATE:
            repeated.append(address)
        else:
            users.append(address)
    if repeated and duplicates != "warn":
        raise duplicates_error(repeated, source)
    warnings = []
    if blank:
        warnings.append("Ignored %d blank %s in %s." % (blank, "entry" if blank == 1 else "entries", source))
    if repeated:
        warnings.append(
            "Ignored %d duplicate address%s in %s (duplicates: warn): %s. %s."
            % (len(repeated), "" if len(repeated) == 1 else "es", source, listing(repeated), DUPLICATE_DANGER)
        )
    if invalid:
        warnings.append(
            "Ignored %d invalid address%s in %s: %s."
            % (len(invalid), "" if len(invalid) == 1 else "es", source, listing(invalid))
        )
    return users, warnings, {"blank": blank, "duplicate": repeated, "invalid": invalid}


def duplicates_error(duplicates, source):  # type: (Sequence[str], str) -> UsersError
    """The refusal of a list that names an address more than once: which addresses, why it matters, the fix."""
    return UsersError(
        "%d address%s listed more than once in %s (compared case-insensitively): %s. %s. Make each NuPoint "
        "mailbox's Advanced UM e-mail address unique (and the list with it); if the list only repeats the same "
        "mailbox, set duplicates: warn."
        % (
            len(duplicates),
            " is" if len(duplicates) == 1 else "es are",
            source,
            listing(sorted({address.lower() for address in duplicates})),
            DUPLICATE_DANGER,
        ),
        "duplicate_users",
    )


def enforce_max_users(count, max_users, enforce=True):  # type: (int, int, bool) -> Optional[str]
    """A refusal message when ``count`` exceeds ``max_users`` and the limit is enforced; a warning text
    (prefixed ``warning:``) when it is not enforced; None when within the limit."""
    if count <= max_users:
        return None
    if enforce:
        return (
            "%d users to check, more than max_users=%d. NuPoint Advanced UM supports at most %s users per system, so "
            "this list cannot all be Advanced UM users of one NuPoint server. Check the list; to check more users "
            "anyway, set enforce_user_limit: false." % (count, max_users, format(NUPOINT_MAX_USERS, ","))
        )
    return "warning: checking %d users, more than max_users=%d (enforce_user_limit is off)." % (count, max_users)


# --------------------------------------------------------------------------- thresholds


def parse_fail_threshold(value):  # type: (Any) -> Tuple[str, float]
    """``("count", n)`` or ``("fraction", f)`` from ``fail_threshold``.

    Whole numbers are counts of failed users (``0``: any failure fails; ``10``); a number with a decimal
    point below 1 is a fraction (``0.05``); a percentage is written ``5%`` (0 to 100). Raises
    :class:`UsersError` naming what is wrong with the value.
    """

    def refused(why):  # type: (str) -> UsersError
        return UsersError(
            "fail_threshold: %r %s. fail_threshold must be %s." % (value, why, _THRESHOLD_FORMS),
            "invalid_fail_threshold",
        )

    if isinstance(value, bool):
        raise refused("is a boolean")
    text = str(value).strip()
    if not text:
        raise refused("is empty")
    percent = text.endswith("%")
    try:
        number = float(text[:-1] if percent else text)
    except ValueError:
        raise_from(refused("is not a number"), None)
    if not isfinite(number):
        raise refused("is not a finite number")
    if percent:
        if not 0 <= number <= 100:
            raise refused("is not between 0% and 100%")
        return "fraction", number / 100.0
    if number < 0:
        raise refused("is negative")
    if isinstance(value, int) or re.match(r"^\d+$", text):
        return "count", number
    if number < 1:
        return "fraction", number
    if number == int(number):
        return "count", number
    raise refused("is neither a whole count nor a fraction below 1")


def threshold_exceeded(failed, total, threshold):  # type: (int, int, Tuple[str, float]) -> bool
    """True when ``failed`` of ``total`` users is more than ``threshold`` (:func:`parse_fail_threshold`) allows."""
    kind, number = threshold
    if kind == "count":
        return failed > number
    return total > 0 and failed / float(total) > number


def describe_threshold(threshold):  # type: (Tuple[str, float]) -> str
    kind, number = threshold
    if kind == "count":
        return "%d failed user%s" % (number, "" if number == 1 else "s")
    return "%g%% of users failing" % round(number * 100.0, 4)


def read_users_file(path):  # type: (str) -> str
    """The text of a users file on this node (UTF-8, a BOM dropped); raises :class:`UsersError` naming the file."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8-sig", "replace")
    except (IOError, OSError) as exc:
        raise_from(
            UsersError("Cannot read users_file %s on this node: %s." % (path, exc.strerror), "users_file_unreadable"),
            None,
        )
