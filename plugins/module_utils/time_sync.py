# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backend of ``msl_time_sync`` and ``clock_offset_info``: measure the clock, judge the offset, keep MSL on network time.

:func:`measure_clock` is the one measurement both modules make (SNTP against every server, the
optional HTTP ``Date`` second opinion, the verdict against ``max_offset``). :class:`TimeSync` is one
run of ``msl_time_sync``: plan and write the ``ntpd`` record, measure, then fail, warn or step.
Kept apart from the modules so unit tests drive them with a fake command runner and scripted
servers. Runs on MSL (and any Linux host): standard library only, Python 3.6 compatible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shlex

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union  # noqa: F401  # novermin

    from ansible_collections.nupoint.gworkspace.plugins.module_utils.msl import RunCommand  # noqa: F401
except ImportError:  # pragma: no cover
    pass


from ansible.module_utils.six import string_types

from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import raise_from
from ansible_collections.nupoint.gworkspace.plugins.module_utils.clock import (
    MAX_ROOT_DISTANCE,
    NTP_PORT,
    ClockError,
    check_server_name,
    http_date_offset,
    measure_ntp,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.msl import (
    DEFAULTS,
    ConfigDb,
    MslError,
    Record,
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
    """A failure the time modules report with ``msg`` and a machine-readable ``reason``."""

    def __init__(self, msg, reason, **details):  # type: (str, str, **Any) -> None
        super(TimeSyncError, self).__init__(msg)
        self.msg = msg
        self.reason = reason
        self.details = details


class NtpRecordNames:
    """Where the MSL config db keeps network time (options of the ``msl.TIME`` doc fragment)."""

    def __init__(
        self,
        record=DEFAULTS["ntp_record"],
        status_property=DEFAULTS["ntp_status_property"],
        server_property=DEFAULTS["ntp_server_property"],
        event=DEFAULTS["ntp_event"],
    ):  # type: (str, str, str, str) -> None
        self.record = record
        self.status_property = status_property
        self.server_property = server_property
        self.event = event

    @classmethod
    def from_params(cls, params):  # type: (Mapping[str, Any]) -> "NtpRecordNames"
        return cls(
            params["ntp_record"], params["ntp_status_property"], params["ntp_server_property"], params["ntp_event"]
        )


#: Property of the ``ntpd`` record the panel reads when it turns network time off (absent means ``yes``).
SYNC_TO_HW_CLOCK_PROPERTY = "SyncToHWClockSupported"

#: Google Public NTP's servers. They smear leap seconds (Google, "Leap Smear"); other servers step them.
GOOGLE_SMEARING_SERVERS = (
    "time.google.com",
    "time1.google.com",
    "time2.google.com",
    "time3.google.com",
    "time4.google.com",
)


def desired_properties(names, state, servers, current=None):
    # type: (NtpRecordNames, str, List[str], Optional[Record]) -> Dict[str, str]
    """The properties ``state`` asks for, written the way the Server Manager's Date and Time panel writes them.

    MSL's panel keeps one server: the first of ``servers`` goes to the record, the others are only
    measured (and used to step when the first does not answer). The panel code MSL descends from (SME
    Server's Date and Time panel, ``update_ntpserver`` / ``disable_ntp``) turns network time *off* by
    clearing the server and leaves ``status`` at ``enabled`` unless the record's
    ``SyncToHWClockSupported`` is ``no``: so ``disabled`` does the same, and ``status=enabled`` alone does
    not mean network time is on (:func:`network_time_on`).
    """
    if state == "enabled":
        return {names.status_property: "enabled", names.server_property: servers[0]}
    hw_clock = (current.props.get(SYNC_TO_HW_CLOCK_PROPERTY) if current is not None else None) or "yes"
    return {names.status_property: "enabled" if hw_clock == "yes" else "disabled", names.server_property: ""}


def network_time_on(names, record):  # type: (NtpRecordNames, Optional[Record]) -> bool
    """Network time is on when the record says ``enabled`` *and* names a server (what the panel shows)."""
    if record is None:
        return False
    server = (record.props.get(names.server_property) or "").strip()
    return record.props.get(names.status_property) == "enabled" and bool(server)


def smearing_warning(servers):  # type: (Sequence[str]) -> Optional[str]
    """A warning when Google's leap-smearing servers are mixed with others, else None."""
    google = [server for server in servers if server.lower().rstrip(".") in GOOGLE_SMEARING_SERVERS]
    others = [server for server in servers if server.lower().rstrip(".") not in GOOGLE_SMEARING_SERVERS]
    if not google or not others:
        return None
    return (
        "servers mixes Google's NTP servers (%s), which smear leap seconds over the 24 hours around one, with servers "
        "that step them (%s): around a leap second they disagree by up to half a second and the clock is measured "
        'against both. Google advises against mixing smeared and non-smeared servers (Google Public NTP, "Leap '
        "Smear\"); use only Google's servers or none of them." % (", ".join(google), ", ".join(others))
    )


def plan_record(names, current, desired):  # type: (NtpRecordNames, Optional[Record], Dict[str, str]) -> Optional[Record]
    """The record as it must be afterwards, or None when ``current`` already matches."""
    if current is None:
        return Record(names.record, NTP_RECORD_TYPE, desired)
    if all(current.props.get(prop) == value for prop, value in desired.items()):
        return None
    after = Record(current.key, current.type, current.props)
    after.props.update(desired)
    return after


def apply_record(
    db,
    run_command,
    names,
    current,
    after,
    signal_event_command,
):  # type: (ConfigDb, RunCommand, NtpRecordNames, Optional[Record], Record, str) -> None
    """Write ``after`` (create the record or set only what differs), verify, then signal the event once."""
    if current is None:
        db.set_record(after.key, after.type, after.props)
    else:
        db.setprop(after.key, {prop: value for prop, value in after.props.items() if current.props.get(prop) != value})
    signal_event(run_command, names.event, signal_event_command)


def record_info(record):  # type: (Optional[Record]) -> Optional[Dict[str, Any]]
    return None if record is None else record.as_dict()


def step_argv(template, server, port):  # type: (Union[str, List[str], None], str, int) -> List[str]
    """The step command for ``server``: ``{server}`` and ``{port}`` replaced in each argument.

    A string is split like a shell would (quotes respected) but never run through a shell; plain
    replacement rather than ``str.format`` leaves other braces alone.
    """
    if template is None:
        template = DEFAULT_STEP_COMMAND
    if isinstance(template, string_types):
        try:
            template = shlex.split(template)
        except ValueError as exc:
            raise_from(
                TimeSyncError("Cannot parse step_command %r: %s." % (template, exc), "invalid_step_command"), None
            )
    if not template or not all(isinstance(arg, string_types) for arg in template):
        raise TimeSyncError("step_command must be a non-empty string or list of strings.", "invalid_step_command")
    return [arg.replace("{server}", server).replace("{port}", str(port)) for arg in template]


def run_step(run_command, argv):  # type: (RunCommand, List[str]) -> Dict[str, Any]
    """Run the step command; TimeSyncError ``step_failed`` when it cannot run or exits non-zero."""
    try:
        rc, out, err = run_command(argv)
    except (IOError, OSError) as exc:
        raise_from(
            TimeSyncError(
                "Cannot run the step command %s: %s. Install it or set step_command." % (argv[0], exc.strerror or exc),
                "step_failed",
                step_command=argv,
            ),
            None,
        )
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


def offset_verdict(ntp, http_date, max_offset):  # type: (Dict[str, Any], Optional[Dict[str, Any]], float) -> Optional[Dict[str, Any]]
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


def describe_offset(offset):  # type: (float) -> str
    direction = "behind" if offset > 0 else "ahead of"
    return "%.3f s %s" % (abs(offset), direction)


def excess_message(verdict, max_offset):  # type: (Dict[str, Any], float) -> str
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


def step_servers(ntp):  # type: (Dict[str, Any]) -> List[str]
    """Servers to step against, best first: the selected one, then the other usable ones in list order."""
    usable = [result["server"] for result in ntp["servers"] if result["status"] == "ok"]
    selected = ntp["selected_server"]
    return [selected] + [server for server in usable if server != selected]


# --------------------------------------------------------------------------- the measurement

# What a module that measures the clock may raise; each carries ``msg`` (MslError: no ``reason``).
TIME_ERRORS = (ClockError, MslError, TimeSyncError)


def measurement_argument_spec():  # type: () -> Dict[str, Dict[str, object]]
    """Options of every module that measures the clock offset (doc fragment ``clock``); ``servers`` is the module's."""
    return dict(
        max_offset=dict(type="float", default=5.0),
        ntp_port=dict(type="int", default=NTP_PORT),
        samples=dict(type="int", default=4),
        sample_interval=dict(type="float", default=2.0),
        timeout=dict(type="float", default=2.0),
        http_date_url=dict(type="str"),
        ca_path=dict(type="path"),
    )


def check_measurement_params(params):  # type: (Mapping[str, Any]) -> None
    """TimeSyncError ``invalid_option`` (ClockError ``invalid_server``) for options no measurement can use."""
    for server in params["servers"]:
        check_server_name(server)
    for name in ("samples", "ntp_port"):
        if params[name] < 1:
            raise TimeSyncError("%s must be at least 1." % name, "invalid_option")
    for name in ("timeout", "max_offset"):
        if params[name] <= 0:
            raise TimeSyncError("%s must be more than 0." % name, "invalid_option")
    if params["sample_interval"] < 0:
        raise TimeSyncError("sample_interval must not be negative.", "invalid_option")


def measure_offsets(params, warn):  # type: (Mapping[str, Any], Callable[[str], None]) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]
    """(NTP measurement, HTTP Date second opinion or None); ClockError ``no_server`` when no server gives usable time.

    An unreachable HTTP Date URL is only a warning: NTP alone decides then, as is a mix of Google's
    leap-smearing servers with others (:func:`smearing_warning`).
    """
    mixed = smearing_warning(params["servers"])
    if mixed is not None:
        warn(mixed)
    ntp = measure_ntp(
        params["servers"],
        params["ntp_port"],
        params["samples"],
        params["timeout"],
        params["sample_interval"],
        MAX_ROOT_DISTANCE,
    )
    http_date = None
    if params["http_date_url"]:
        http_date = http_date_offset(params["http_date_url"], params["ca_path"], params["timeout"])
        if http_date["status"] != "ok":
            warn("The HTTP Date second opinion is unavailable (%s); NTP alone decides." % http_date["msg"])
    return ntp, http_date


def server_warnings(ntp, max_offset):  # type: (Dict[str, Any], float) -> List[str]
    """Servers that gave no usable time, and servers that disagree by more than ``max_offset``."""
    warnings = [
        "NTP server %s gave no usable time: %s" % (server["server"], server["msg"])
        for server in ntp["servers"]
        if server["status"] != "ok"
    ]
    if ntp["spread_seconds"] > max_offset:
        warnings.append(
            "The NTP servers disagree by %.3f s; the median (%+.3f s) was used. Check the servers."
            % (ntp["spread_seconds"], ntp["offset_seconds"])
        )
    return warnings


def measurement_result(ntp, http_date):  # type: (Dict[str, Any], Optional[Dict[str, Any]]) -> Dict[str, Any]
    """The result fields every measuring module returns."""
    return {
        "offset_seconds": ntp["offset_seconds"],
        "spread_seconds": ntp["spread_seconds"],
        "selected_server": ntp["selected_server"],
        "server_results": ntp["servers"],
        "http_date": http_date,
    }


def measure_clock(params, warn):  # type: (Mapping[str, Any], Callable[[str], None]) -> Dict[str, Any]
    """Measure once and judge the offset against ``max_offset``, changing nothing (``clock_offset_info``).

    Returns :func:`measurement_result`'s fields plus ``synchronized`` and ``excess_offset`` (None
    within the limit, else the verdict's source, offset and server and a ``msg`` that says why OAuth
    breaks; the same message is warned). Raises ClockError ``no_server`` with every server's result,
    or ``invalid_server`` / TimeSyncError ``invalid_option`` before measuring anything.
    """
    check_measurement_params(params)
    if not params["servers"]:
        raise TimeSyncError("servers must name at least one NTP server to measure against.", "invalid_option")
    ntp, http_date = measure_offsets(params, warn)
    for warning in server_warnings(ntp, params["max_offset"]):
        warn(warning)
    verdict = offset_verdict(ntp, http_date, params["max_offset"])
    if verdict is not None:
        verdict["msg"] = excess_message(verdict, params["max_offset"])
        warn(verdict["msg"])
    result = measurement_result(ntp, http_date)
    result.update(synchronized=verdict is None, excess_offset=verdict)
    return result


def failure_details(exc):  # type: (Exception) -> Dict[str, Any]
    """``reason`` and the extra result fields of a TIME_ERRORS failure (a db failure is ``msl_db``)."""
    if isinstance(exc, MslError):
        return dict(exc.as_result(), reason="msl_db")
    details = dict(getattr(exc, "details", {}))  # type: Dict[str, Any]
    details["reason"] = getattr(exc, "reason", "other")
    if isinstance(exc, ClockError) and exc.servers:
        details["server_results"] = exc.servers
    return details


# --------------------------------------------------------------------------- msl_time_sync


class TimeSync:
    """One run of ``msl_time_sync``: configure the ``ntpd`` record, measure, act on the verdict.

    ``params`` are the module's options. ``result`` grows as the run goes, so a failure still reports
    what was done before it (a record written, servers measured); ``warnings`` are for the caller to
    emit. In check mode nothing is written, signalled or stepped.
    """

    def __init__(self, params, run_command, check_mode=False):  # type: (Mapping[str, Any], RunCommand, bool) -> None
        self.params = params
        self.run_command = run_command
        self.check_mode = check_mode
        self.warnings = []  # type: List[str]
        self.result = dict(
            changed=False,
            record_before=None,
            record_after=None,
            network_time_before=None,
            network_time=None,
            offset_seconds=None,
            server_results=[],
            http_date=None,
            synchronized=None,
            stepped=False,
        )  # type: Dict[str, Any]

    def check_params(self):  # type: () -> None
        params = self.params
        check_measurement_params(params)
        if (params["state"] == "enabled" or not params["manage"]) and not params["servers"]:
            raise TimeSyncError(
                "servers is required to enable network time (or to measure with manage=false).", "invalid_option"
            )
        # Fail on a malformed step command before anything is changed.
        step_argv(params["step_command"], "server", params["ntp_port"])

    def configure(self):  # type: () -> None
        params = self.params
        names = NtpRecordNames.from_params(params)
        db = ConfigDb(self.run_command, params["db_command"], params["db_name"])
        current = db.get(names.record)
        after = plan_record(names, current, desired_properties(names, params["state"], params["servers"], current))
        self.result["record_before"] = record_info(current)
        self.result["record_after"] = record_info(after if after is not None else current)
        self.result["network_time_before"] = network_time_on(names, current)
        self.result["network_time"] = network_time_on(names, after if after is not None else current)
        if after is None:
            return
        self.result["changed"] = True
        if not self.check_mode:
            apply_record(db, self.run_command, names, current, after, params["signal_event_command"])

    def measure(self):  # type: () -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]
        try:
            return measure_offsets(self.params, self.warnings.append)
        except ClockError as exc:
            self.result["server_results"] = exc.servers
            raise

    def step(self, ntp):  # type: (Dict[str, Any]) -> None
        """Run the step command against the best server, falling back to the next answering one."""
        params = self.params
        self.result["changed"] = True
        servers = step_servers(ntp)
        if self.check_mode:
            self.result["step_command"] = step_argv(params["step_command"], servers[0], params["ntp_port"])
            return
        failure = None
        for server in servers:
            argv = step_argv(params["step_command"], server, params["ntp_port"])
            self.result["step_command"] = argv
            try:
                run_step(self.run_command, argv)
            except TimeSyncError as exc:
                failure = exc
                continue
            self.result["stepped"] = True
            return
        if failure is not None:
            raise failure

    def run(self):  # type: () -> Dict[str, Any]
        """The result; raises one of TIME_ERRORS (``result`` then holds what was done before)."""
        params = self.params
        self.check_params()
        if params["manage"]:
            self.configure()
        if not params["servers"]:
            return self.result
        ntp, http_date = self.measure()
        self.result.update(measurement_result(ntp, http_date))
        self.warnings.extend(server_warnings(ntp, params["max_offset"]))
        verdict = offset_verdict(ntp, http_date, params["max_offset"])
        self.result["synchronized"] = verdict is None
        if verdict is None:
            return self.result
        message = excess_message(verdict, params["max_offset"])
        action = params["on_excess_offset"]
        if action == "fail":
            raise TimeSyncError(message, "offset_exceeded")
        if action == "warn":
            self.warnings.append(message)
            return self.result
        self.step(ntp)
        if not self.result["stepped"]:
            self.warnings.append("Check mode: would step the clock. %s" % message)
            return self.result
        ntp_after, http_after = self.measure()
        self.result["offset_after_step_seconds"] = ntp_after["offset_seconds"]
        verdict_after = offset_verdict(ntp_after, http_after, params["max_offset"])
        self.result["synchronized"] = verdict_after is None
        if verdict_after is not None:
            raise TimeSyncError(
                "The step command '%s' ran, but the clock is still off. %s"
                % (" ".join(self.result["step_command"]), excess_message(verdict_after, params["max_offset"])),
                "offset_after_step",
            )
        return self.result

    def diff(self):  # type: () -> Dict[str, Any]
        """The ``ntpd`` record before and after, for ``--diff``."""
        header = "%s record" % self.params["ntp_record"]
        return {
            "before_header": header,
            "after_header": header,
            "before": self.result["record_before"] or {},
            "after": self.result["record_after"] or {},
        }
