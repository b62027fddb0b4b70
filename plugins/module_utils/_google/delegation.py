# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proving domain-wide delegation: a delegated token per subject and scope, and what to fix when one is refused.

Logic of the ``delegation_check`` module; unit tests drive it with a fake token source::

    result = check_delegation(source, ["user@example.com"], ["https://mail.google.com/"])
    result["authorized"], result["missing_scopes"], result["admin_console_url"], result["msg"]

Scopes are asked one at a time: Google refuses a token request as a whole when any one of its scopes is
not authorised, so only single-scope requests say *which* scope the Admin console lacks. The clock
offset against the token endpoint's ``Date`` header is measured too, because a wrong clock is the one
refusal whose fix is not in the Admin console.

Parses as Python 3.6.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Dict, List, Sequence  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass

from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import monotonic
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import failures
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import (
    ADMIN_CONSOLE_DWD_PAGE,
    MULTI_PARTY_APPROVAL_NOTE,
    PROPAGATION_NOTE,
    TokenError,
    admin_console_url,
    hint,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.pool import run_per_user
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.token import CLOCK_OFFSET_WARN_SECONDS

# Subjects x scopes is small (a sample of users, a few scopes): a few threads are plenty.
MAX_WORKERS = 8


def check_one(source, subject, scope):  # type: (Any, str, str) -> Dict[str, Any]
    """Mint a token for ``subject`` with ``scope`` alone; the check's entry (never raises for Google)."""
    started = monotonic()
    entry = dict(
        subject=subject,
        scope=scope,
        authorized=True,
        failure_class=failures.OK,
        message="",
        google_error=None,
        google_description=None,
        http_status=200,
        attempts=1,
    )  # type: Dict[str, Any]
    try:
        minted = source.mint(subject, [scope])
        entry.update(http_status=minted.http_status, attempts=minted.attempts)
    except TokenError as exc:
        details = exc.as_result()
        entry.update(
            authorized=False,
            failure_class=exc.failure_class,
            message=exc.msg,
            google_error=details["google_error"],
            google_description=details["google_description"],
            http_status=details["http_status"],
            attempts=details["attempts"],
        )
    entry["elapsed_seconds"] = round(monotonic() - started, 3)
    return entry


def describe_offset(offset):  # type: (Any) -> str
    if offset is None:
        return "could not be measured"
    direction = "behind" if offset > 0 else "ahead of"
    return "%.1f s %s Google's clock" % (abs(offset), direction)


def clock_is_off(offset, warn_seconds):  # type: (Any, float) -> bool
    return offset is not None and abs(offset) > warn_seconds


def _missing_scopes_text(source, missing_scopes, scopes):  # type: (Any, Sequence[str], Sequence[str]) -> str
    return (
        "The Admin console does not authorise client ID %s (%s) for %s. In the Google Admin console "
        "(admin.google.com) open %s. If client ID %s is listed, click it, choose Edit, and make the OAuth scopes "
        "read exactly: %s . Otherwise click Add new, paste %s into Client ID and %s into OAuth scopes "
        "(comma-delimited), and click Authorize. The admin_console_url link opens that page with both filled in. "
        "%s, and %s; until then this check reports token_unauthorized_scope: run it again later rather than "
        "changing the entry again."
        % (
            source.client_id,
            source.client_email,
            ", ".join(missing_scopes),
            ADMIN_CONSOLE_DWD_PAGE,
            source.client_id,
            ",".join(scopes),
            source.client_id,
            ",".join(scopes),
            PROPAGATION_NOTE,
            MULTI_PARTY_APPROVAL_NOTE,
        )
    )


def _clock_skew_text(offset, warn_seconds):  # type: (Any, float) -> str
    if clock_is_off(offset, warn_seconds):
        return (
            "Google refused the JWT's issue/expiry time (token_clock_skew): this node's clock is %s (measured "
            "against the token endpoint's Date header), and that is the cause. Set the clock right (enable "
            "network time; on MSL use nupoint.gworkspace.msl_time_sync) and run the check again."
            % describe_offset(offset)
        )
    return (
        "Google refused the JWT's issue/expiry time (token_clock_skew), yet this node's clock is %s. The "
        "node that signs NuPoint's JWTs (MSL) may have a different clock: check its time. %s"
        % (describe_offset(offset), hint("token_clock_skew"))
    )


def build_message(
    source,
    subjects,
    scopes,
    checks,
    missing_scopes,
    url,
    offset,
    warn_seconds=CLOCK_OFFSET_WARN_SECONDS,
):  # type: (Any, Sequence[str], Sequence[str], Sequence[Dict[str, Any]], Sequence[str], Any, Any, float) -> str
    """One message that says what works, or what failed and exactly what to do about each failure."""
    failed = [check for check in checks if not check["authorized"]]
    if not failed:
        return "Domain-wide delegation works: client ID %s (%s) got a token for %s as %s." % (
            source.client_id,
            source.client_email,
            ", ".join(scopes),
            ", ".join(subjects),
        )
    parts = ["%d of %d delegation checks failed." % (len(failed), len(checks))]
    if missing_scopes:
        parts.append(_missing_scopes_text(source, missing_scopes, scopes))
    by_class = {}  # type: Dict[str, List[Dict[str, Any]]]
    for check in failed:
        by_class.setdefault(check["failure_class"], []).append(check)
    for failure_class, group in sorted(by_class.items()):
        who = sorted({check["subject"] for check in group})
        if failure_class == "token_unauthorized_scope":
            continue
        if failure_class == "token_invalid_user":
            parts.append("Google does not know %s. %s" % (", ".join(who), hint(failure_class)))
        elif failure_class == "token_clock_skew":
            parts.append(_clock_skew_text(offset, warn_seconds))
        else:
            parts.append("%s (%s): %s" % (failure_class, ", ".join(who), group[0]["message"]))
    if url:
        parts.append("Link: %s" % url)
    return " ".join(parts)


def check_delegation(
    source,
    subjects,
    scopes,
    warn_seconds=CLOCK_OFFSET_WARN_SECONDS,
):  # type: (Any, Sequence[str], Sequence[str], float) -> Dict[str, Any]
    """Every subject with every scope, one scope per token request; the module's result (without ``changed``).

    ``source``: a ``token.DelegatedTokenSource`` (``mint``, ``clock_offset``, ``client_id``...).
    ``warnings`` in the result lists what the module should warn about.
    """
    pairs = [(subject, scope) for subject in subjects for scope in scopes]
    checks = run_per_user(pairs, lambda pair: check_one(source, pair[0], pair[1]), MAX_WORKERS, name="delegation")
    offset = source.clock_offset()
    missing_scopes = [
        scope
        for scope in scopes
        if any(check["scope"] == scope and check["failure_class"] == "token_unauthorized_scope" for check in checks)
    ]
    url = admin_console_url(source.client_id, scopes) if missing_scopes else None
    warnings = []
    if clock_is_off(offset, warn_seconds):
        warnings.append(
            "This node's clock is %s (token endpoint Date header). Google refuses JWTs whose time is off by more than "
            "a few minutes; keep the clock on network time." % describe_offset(offset)
        )
    return dict(
        authorized=all(check["authorized"] for check in checks),
        checks=checks,
        missing_scopes=missing_scopes,
        admin_console_url=url,
        client_id=source.client_id,
        client_email=source.client_email,
        private_key_id=source.private_key_id,
        token_uri=source.token_uri,
        clock_offset_seconds=offset,
        summary=failures.summarize(checks),
        warnings=warnings,
        msg=build_message(source, subjects, scopes, checks, missing_scopes, url, offset, warn_seconds),
    )
