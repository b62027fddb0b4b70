# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backend of ``msl_time_sync``: the ``ntpd`` record plan, the offset verdict and the step command.

Kept apart from the module so unit tests drive it with a fake command runner. Runs on MSL:
standard library only, Python 3.6 compatible.
"""

import shlex
from typing import Any, Dict, List, Optional, Union

from ansible_collections.nupoint.gworkspace.plugins.module_utils.msl import (
    DEFAULTS,
    ConfigDb,
    Record,
    RunCommand,
    signal_event,
)

# The record type MSL gives the ntpd record (it is a service).
NTP_RECORD_TYPE = "service"

# ntpdate is what MSL's ntpd-based releases (CentOS 6/7 based MSL 10/11) ship for one-off steps:
# -u uses an unprivileged source port, so it works while ntpd holds port 123; -b steps with
# settimeofday() instead of slewing (a slew of minutes would take days).
DEFAULT_STEP_COMMAND = ["ntpdate", "-u", "-b", "{server}"]

ON_EXCESS_OFFSET = ("fail", "step", "warn")


class TimeSyncError(Exception):
    """A failure ``msl_time_sync`` reports with ``msg`` and a machine-readable ``reason``."""

    def __init__(self, msg: str, reason: str, **details: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.reason = reason
        self.details = details


class NtpRecordNames:
    """Where the MSL config db keeps network time (options of the ``msl.TIME`` doc fragment)."""

    def __init__(
        self,
        record: str = DEFAULTS["ntp_record"],
        status_property: str = DEFAULTS["ntp_status_property"],
        server_property: str = DEFAULTS["ntp_server_property"],
        event: str = DEFAULTS["ntp_event"],
    ) -> None:
        self.record = record
        self.status_property = status_property
        self.server_property = server_property
        self.event = event


def desired_properties(names: NtpRecordNames, state: str, servers: List[str]) -> Dict[str, str]:
    """The properties ``state`` asks for.

    MSL's panel keeps one server: the first of ``servers`` goes to the record, the others are only
    measured (and used to step when the first does not answer). ``disabled`` leaves the server alone,
    so enabling again later restores the same one, as the panel does.
    """
    props = {names.status_property: state}
    if state == "enabled":
        props[names.server_property] = servers[0]
    return props


def plan_record(names: NtpRecordNames, current: Optional[Record], desired: Dict[str, str]) -> Optional[Record]:
    """The record as it must be afterwards, or None when ``current`` already matches."""
    if current is None:
        return Record(names.record, NTP_RECORD_TYPE, desired)
    if all(current.props.get(prop) == value for prop, value in desired.items()):
        return None
    after = Record(current.key, current.type, current.props)
    after.props.update(desired)
    return after


def apply_record(
    db: ConfigDb,
    run_command: RunCommand,
    names: NtpRecordNames,
    current: Optional[Record],
    after: Record,
    signal_event_command: str,
) -> None:
    """Write ``after`` (create the record or set only what differs), verify, then signal the event once."""
    if current is None:
        db.set_record(after.key, after.type, after.props)
    else:
        db.setprop(after.key, {prop: value for prop, value in after.props.items() if current.props.get(prop) != value})
    signal_event(run_command, names.event, signal_event_command)


def record_info(record: Optional[Record]) -> Optional[Dict[str, Any]]:
    return None if record is None else record.as_dict()


def step_argv(template: Union[str, List[str], None], server: str, port: int) -> List[str]:
    """The step command for ``server``: ``{server}`` and ``{port}`` replaced in each argument.

    A string is split like a shell would (quotes respected) but never run through a shell; plain
    replacement rather than ``str.format`` leaves other braces alone.
    """
    if template is None:
        template = DEFAULT_STEP_COMMAND
    if isinstance(template, str):
        try:
            template = shlex.split(template)
        except ValueError as exc:
            raise TimeSyncError("Cannot parse step_command %r: %s." % (template, exc), "invalid_step_command") from None
    if not template or not all(isinstance(arg, str) for arg in template):
        raise TimeSyncError("step_command must be a non-empty string or list of strings.", "invalid_step_command")
    return [arg.replace("{server}", server).replace("{port}", str(port)) for arg in template]


def run_step(run_command: RunCommand, argv: List[str]) -> Dict[str, Any]:
    """Run the step command; TimeSyncError ``step_failed`` when it cannot run or exits non-zero."""
    try:
        rc, out, err = run_command(argv)
    except OSError as exc:
        raise TimeSyncError(
            "Cannot run the step command %s: %s. Install it or set step_command." % (argv[0], exc.strerror or exc),
            "step_failed",
            step_command=argv,
        ) from None
    if rc != 0:
        raise TimeSyncError(
            "The step command '%s' failed (exit %d): %s" % (" ".join(argv), rc, (err or out).strip()),
            "step_failed",
            step_command=argv,
            rc=rc,
            stdout=out,
            stderr=err,
        )
    return {"step_command": argv, "rc": rc, "stdout": out, "stderr": err}


def offset_verdict(
    ntp: Dict[str, Any], http_date: Optional[Dict[str, Any]], max_offset: float
) -> Optional[Dict[str, Any]]:
    """None when the clock is within ``max_offset``; else what is wrong, for the message.

    The HTTP ``Date`` second opinion only counts beyond its own uncertainty (about a second): it is
    coarse, but it is the clock of the service that judges the JWT.
    """
    offset = ntp["offset_seconds"]
    if abs(offset) > max_offset:
        return {"source": "ntp", "offset_seconds": offset, "server": ntp["selected_server"]}
    if http_date and http_date.get("status") == "ok":
        http_offset = http_date["offset_seconds"]
        if abs(http_offset) > max_offset + http_date["uncertainty_seconds"]:
            return {"source": "http_date", "offset_seconds": http_offset, "server": http_date["url"]}
    return None


def describe_offset(offset: float) -> str:
    direction = "behind" if offset > 0 else "ahead of"
    return "%.3f s %s" % (abs(offset), direction)


def excess_message(verdict: Dict[str, Any], max_offset: float) -> str:
    """Why the clock is not good enough, and why that breaks NuPoint."""
    if verdict["source"] == "ntp":
        where = "network time (NTP server %s)" % verdict["server"]
    else:
        where = "the Date header of %s (NTP agreed within the limit)" % verdict["server"]
    return (
        "This host's clock is %s %s, more than max_offset %g s (offset %+.3f s). NuPoint signs each OAuth "
        "JWT with this clock (iat/exp); with a wrong clock Google refuses the tokens ('Invalid JWT: Token "
        "must be a short-lived token (60 minutes) and in a reasonable timeframe') and no mailbox syncs."
        % (describe_offset(verdict["offset_seconds"]), where, max_offset, verdict["offset_seconds"])
    )


def step_servers(ntp: Dict[str, Any]) -> List[str]:
    """Servers to step against, best first: the selected one, then the other usable ones in list order."""
    usable = [result["server"] for result in ntp["servers"] if result["status"] == "ok"]
    selected = ntp["selected_server"]
    return [selected] + [server for server in usable if server != selected]
