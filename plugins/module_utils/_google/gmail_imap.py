# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-user Gmail IMAP settings (``users.settings.getImap`` / ``updateImap``) for many users at once.

Pure logic for the ``gmail_imap_settings`` module; unit tests drive it with a fake API client.

- :func:`build_targets` turns the task's ``users`` (addresses, or dicts with per-user settings) and the
  addresses of a ``users_file`` (:func:`users_file_addresses`) into one clean, de-duplicated list of
  ``(user, wanted settings)``, with warnings for what was dropped. The file format, what counts as an
  address and as a duplicate, and ``fail_threshold`` are module_utils.users' rules, shared with imap_check.
- :func:`apply_user` reads one user's ``ImapSettings``, compares only the fields the task sets, and
  PUTs the *merged* resource (what Gmail has, overlaid with what the task wants) only when something
  differs, so fields the task does not mention keep their values. In check mode it only reads.
- :func:`apply_all` runs :func:`apply_user` for every user through ``pool.run_per_user``, the first user
  alone. When a user fails for a reason that fails every user the same way
  (``failures.CLIENT_WIDE_CLASSES``: the client is not authorised for the scope, the key is refused, the
  clock is wrong, Google cannot be reached), the others are not attempted: 2,500 identical refusals
  would only take time.

Results use the collection's failure vocabulary (``failures``) and never carry a token.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass


from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import monotonic, raise_from
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import failures
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.api import SCOPE_GMAIL_SETTINGS_BASIC
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import (
    ADMIN_CONSOLE_IMAP_PAGE,
    API_FAILURE_CLASS,
    API_REFUSAL_HINTS,
    CLIENT_WIDE_CLASSES,
    REFUSAL_SERVICE_DISABLED,
    GoogleApiError,
    TokenError,
    enable_link,
    is_service_disabled,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.pool import (
    DEFAULT_CONCURRENCY,
    Breaker,
    run_per_user,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.token import SCOPE_MAIL
from ansible_collections.nupoint.gworkspace.plugins.module_utils.users import (
    BLANK,
    DUPLICATE,
    INVALID,
    UsersError,
    duplicates_error,
    listing,
    screen_address,
    users_file_entries,
)

IMAP_PATH = "/gmail/v1/users/me/settings/imap"
SCOPES = (SCOPE_GMAIL_SETTINGS_BASIC,)
# The Admin console link must list every scope the client needs (it replaces the client's list):
# NuPoint's own IMAP scope plus the one this module needs.
CONSOLE_SCOPES = (SCOPE_MAIL, SCOPE_GMAIL_SETTINGS_BASIC)

# Module option -> Gmail ImapSettings field.
FIELDS = (
    ("enabled", "enabled"),
    ("auto_expunge", "autoExpunge"),
    ("expunge_behavior", "expungeBehavior"),
    ("max_folder_size", "maxFolderSize"),
)
OPTION_NAMES = tuple(option for option, _field in FIELDS)
EXPUNGE_BEHAVIORS = ("archive", "trash", "deleteForever")
MAX_FOLDER_SIZES = (0, 1000, 2000, 5000, 10000)

# Gmail may not keep a user's own IMAP switch: Google has been removing it (IMAP always on for the user, the
# administrator decides). Gmail's API reference still documents ``enabled`` unchanged, so the module still sets
# it, and says so when Gmail does not keep it, without calling the user imap_disabled (only Gmail's IMAP refusal
# does that, in imap_check).
NOT_KEPT_ENABLED = (
    " Google has been removing the users' own IMAP switch: whether this user may use IMAP is the administrator's "
    "setting for the user's organisational unit (Admin console > %s; nupoint.gworkspace.workspace_imap_policy_info "
    "reads it). nupoint.gworkspace.imap_check reports imap_disabled only when Gmail's IMAP server refuses the "
    "login." % ADMIN_CONSOLE_IMAP_PAGE
)

_BOOL_TEXT = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


class SettingsInputError(UsersError):
    """The task's users or settings are unusable (raised before any call to Google)."""


# --------------------------------------------------------------------------- input


def users_file_addresses(text):  # type: (str) -> Tuple[List[str], List[str]]
    """Addresses from a users file (format: users.users_file_entries), as written, and warnings.

    Blank lines and comments are skipped silently; a CSV row that has values but no address is skipped
    with a warning. Cleaning happens in :func:`build_targets`. Raises :class:`SettingsInputError`.
    """
    try:
        entries = users_file_entries(text)
    except UsersError as exc:
        raise_from(SettingsInputError(exc.msg), None)
    addresses = [entry for _number, entry, _others in entries if entry]
    warnings = [
        "users_file row %d has no email value; skipped." % number
        for number, entry, others in entries
        if others and not entry
    ]
    return addresses, warnings


def _setting(option, value, where):  # type: (str, Any, str) -> Any
    """Validate one setting value; ``where`` names the user or 'task' for the message."""
    if option in ("enabled", "auto_expunge"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
            return _BOOL_TEXT[value.strip().lower()]
        raise SettingsInputError("%s: %s must be a boolean, got %r." % (where, option, value))
    if option == "expunge_behavior":
        if value in EXPUNGE_BEHAVIORS:
            return value
        raise SettingsInputError(
            "%s: expunge_behavior must be one of %s, got %r." % (where, ", ".join(EXPUNGE_BEHAVIORS), value)
        )
    if option == "max_folder_size":
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = -1
        if isinstance(value, bool) or number not in MAX_FOLDER_SIZES or str(number) != str(value).strip():
            raise SettingsInputError(
                "%s: max_folder_size must be one of %s (0 = no limit), got %r."
                % (where, ", ".join(str(size) for size in MAX_FOLDER_SIZES), value)
            )
        return number
    raise SettingsInputError("%s: unknown setting %r." % (where, option))


def task_settings(params):  # type: (Mapping[str, Any]) -> Dict[str, Any]
    """The settings the task sets for every user (options left unset are not managed)."""
    return {
        option: _setting(option, params[option], "task") for option in OPTION_NAMES if params.get(option) is not None
    }


def build_targets(users, file_addresses, defaults, duplicates="fail"):
    # type: (Optional[Sequence[Any]], Sequence[str], Mapping[str, Any], str) -> Tuple[List[Tuple[str, Dict[str, Any]]], List[str]]
    """``([(user, wanted), ...], warnings)`` in first-seen order, addresses lower-cased.

    ``users`` items are addresses or dicts ``{user: ..., enabled: ..., ...}`` whose settings override
    ``defaults`` for that user. Invalid addresses are dropped with a warning. A user listed twice is
    refused (``users.duplicates_error``) unless ``duplicates`` is ``warn``, which merges the entries; with
    different settings it is an error either way (which one was meant?).
    """
    warnings = []  # type: List[str]
    wanted_by_user = {}  # type: Dict[str, Dict[str, Any]]
    order = []  # type: List[str]
    seen = set()  # type: Set[str]
    invalid = []  # type: List[str]
    repeated = []  # type: List[str]
    entries = [(item, "users") for item in users or ()]  # type: List[Tuple[Any, str]]
    entries.extend((address, "users_file") for address in file_addresses)
    for item, source in entries:
        if isinstance(item, Mapping):
            extra = sorted(set(item) - set(OPTION_NAMES) - {"user"})
            address = item.get("user")
            if extra:
                raise SettingsInputError(
                    "users entry %r has unknown keys %s; allowed: user, %s."
                    % (address, ", ".join(extra), ", ".join(OPTION_NAMES))
                )
            if not isinstance(address, str) or not address.strip():
                raise SettingsInputError("users entry %r has no 'user' address." % (dict(item),))
            overrides = {
                option: _setting(option, item[option], address.strip())
                for option in OPTION_NAMES
                if item.get(option) is not None
            }
        elif isinstance(item, str):
            address, overrides = item, {}
        else:
            raise SettingsInputError(
                "users entries must be addresses or dicts with a 'user' key, got %s." % type(item).__name__
            )
        verdict, address = screen_address(address, seen)
        if verdict == BLANK:
            continue
        if verdict == INVALID:
            invalid.append("%s (%s)" % (address, source))
            continue
        user = address.lower()
        wanted = dict(defaults)
        wanted.update(overrides)
        if verdict == DUPLICATE:
            repeated.append(user)
            if wanted_by_user[user] != wanted:
                raise SettingsInputError(
                    "%s is listed more than once with different settings (%s and %s); list it once."
                    % (user, _describe(wanted_by_user[user]), _describe(wanted))
                )
            continue
        wanted_by_user[user] = wanted
        order.append(user)
    if repeated and duplicates != "warn":
        raise duplicates_error(repeated, "users and users_file" if file_addresses and users else entries[0][1])
    if invalid:
        warnings.append("Skipped %d entries that are not e-mail addresses: %s." % (len(invalid), listing(invalid)))
    if repeated:
        warnings.append(
            "Merged %d duplicate entries (addresses compare case-insensitively; duplicates: warn): %s."
            % (len(repeated), listing(repeated))
        )
    return [(user, wanted_by_user[user]) for user in order], warnings


def _describe(settings):  # type: (Mapping[str, Any]) -> str
    return "{%s}" % ", ".join("%s: %s" % (name, settings[name]) for name in OPTION_NAMES if name in settings) or "{}"


# --------------------------------------------------------------------------- one user


def to_info(resource):  # type: (Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]
    """Gmail's ImapSettings as the module's option names (fields Gmail did not send are left out)."""
    if resource is None:
        return None
    return {option: resource[field] for option, field in FIELDS if field in resource}


def merge(current, wanted):  # type: (Mapping[str, Any], Mapping[str, Any]) -> Tuple[Dict[str, Any], List[str]]
    """``(resource to PUT, changed option names)``: Gmail's resource with the wanted fields overlaid."""
    merged = dict(current)
    differing = []
    for option, field in FIELDS:
        if option in wanted and current.get(field) != wanted[option]:
            merged[field] = wanted[option]
            differing.append(option)
    return merged, differing


def new_result(user):  # type: (str) -> Dict[str, Any]
    return {
        "user": user,
        "changed": False,
        "failure_class": "ok",
        "message": "",
        "changed_settings": [],
        "before": None,
        "after": None,
        "http_status": None,
    }


def apply_user(client, user, wanted, check_mode):  # type: (Any, str, Mapping[str, Any], bool) -> Dict[str, Any]
    """Read, compare and (unless ``check_mode``) update one user's IMAP settings; never raises for Google."""
    result = new_result(user)
    try:
        current = client.request("GET", "gmail", IMAP_PATH, user, SCOPES)
        if not isinstance(current, Mapping):
            raise GoogleApiError(API_FAILURE_CLASS, "Gmail answered getImap with something that is not an object.")
        merged, differing = merge(current, wanted)
        result["before"] = to_info(current)
        result["changed_settings"] = differing
        if not differing:
            result["after"] = result["before"]
            return result
        if check_mode:
            result["changed"] = True
            result["after"] = to_info(merged)
            return result
        answer = client.request("PUT", "gmail", IMAP_PATH, user, SCOPES, body=merged)
        result["changed"] = True
        after = answer if isinstance(answer, Mapping) and answer else merged
        result["after"] = to_info(after)
        _unused, still_differing = merge(after, wanted)
        if still_differing:
            result["failure_class"] = API_FAILURE_CLASS
            result["message"] = "Gmail accepted the update but still reports %s." % ", ".join(
                "%s=%s" % (option, result["after"].get(option)) for option in still_differing
            )
            if "enabled" in still_differing:
                result["message"] += NOT_KEPT_ENABLED
    except TokenError as exc:
        result["failure_class"] = exc.failure_class
        result["message"] = exc.msg
        result["http_status"] = exc.status
    except GoogleApiError as exc:
        result["failure_class"] = exc.failure_class
        result["message"] = _api_message(exc, user)
        result["http_status"] = exc.status
        if is_service_disabled(exc):
            result["refusal"] = REFUSAL_SERVICE_DISABLED
    except Exception as exc:  # noqa: BLE001 - one user's surprise must not abort the other 2,499
        result["failure_class"] = API_FAILURE_CLASS
        result["message"] = "Unexpected error for %s (%s: %s); please report it." % (user, type(exc).__name__, exc)
    return result


def _api_message(exc, user):  # type: (GoogleApiError, str) -> str
    if is_service_disabled(exc):
        return (
            "%s The Gmail API (gmail.googleapis.com) is not enabled in the service account's project: enable it at %s. %s"
            % (
                exc.msg,
                enable_link(exc) or "the link in Google's message",
                API_REFUSAL_HINTS[REFUSAL_SERVICE_DISABLED],
            )
        )
    if exc.insufficient_scope:
        return (
            "%s The access token for %s lacks %s: authorise that scope for the client ID in the Admin console "
            "(domain-wide delegation)." % (exc.msg, user, SCOPE_GMAIL_SETTINGS_BASIC)
        )
    if exc.status == 400 and exc.reason == "failedPrecondition":
        return "%s Gmail may not be enabled for %s (check the user's licence and the Gmail service status)." % (
            exc.msg,
            user,
        )
    return exc.msg


# --------------------------------------------------------------------------- many users


def apply_all(
    client,
    targets,
    check_mode,
    concurrency=DEFAULT_CONCURRENCY,
    clock=monotonic,
):  # type: (Any, Sequence[Tuple[str, Mapping[str, Any]]], bool, int, Callable[[], float]) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]
    """``(results in input order, summary)`` for every target, ``concurrency`` users at a time."""
    started = clock()
    breaker = Breaker(1, _fails_everyone)
    results = run_per_user(
        targets,
        lambda target: apply_user(client, target[0], target[1], check_mode),
        concurrency,
        breaker,
        _skipped,
        probe_first=True,
        name="gmail_imap",
    )
    return results, summarize(results, clock() - started)


def _fails_everyone(result):  # type: (Mapping[str, Any]) -> Optional[str]
    if result.get("refusal") == REFUSAL_SERVICE_DISABLED:
        return REFUSAL_SERVICE_DISABLED  # the Gmail API is off in the project: every user gets the same 403
    return str(result["failure_class"]) if result["failure_class"] in CLIENT_WIDE_CLASSES else None


def _skipped(target, first):  # type: (Tuple[str, Mapping[str, Any]], Mapping[str, Any]) -> Dict[str, Any]
    result = new_result(target[0])
    result["failure_class"] = first["failure_class"]
    result["skipped"] = True
    result["message"] = "Not attempted: %s failed with %s, which fails every user the same way (see that user)." % (
        first["user"],
        first["failure_class"],
    )
    return result


def summarize(results, duration):  # type: (Sequence[Mapping[str, Any]], float) -> Dict[str, Any]
    """``failures.summarize`` plus how many users changed, were unchanged or were skipped."""
    summary = failures.summarize(results, duration)
    summary.update(
        changed=sum(1 for result in results if result["changed"]),
        unchanged=sum(1 for result in results if result["failure_class"] == "ok" and not result["changed"]),
        skipped=sum(1 for result in results if result.get("skipped")),
    )
    return summary


def diff_of(results):  # type: (Iterable[Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]
    """Ansible's diff: before/after settings of the users that change (or would in check mode)."""
    before = {}  # type: Dict[str, Any]
    after = {}  # type: Dict[str, Any]
    for result in results:
        if result["changed"]:
            before[result["user"]] = result["before"]
            after[result["user"]] = result["after"]
    return {"before": before, "after": after}
