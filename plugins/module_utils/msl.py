# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MSL host adapter: the e-smith configuration db and signal-event.

Mitel Standard Linux descends from SME Server (e-smith). Settings live in flat-file databases
managed by ``/sbin/e-smith/db DBNAME VERB ...``; changes are applied by
``/sbin/e-smith/signal-event EVENT``, which re-renders templates and restarts services.

Nothing public documents where MSL keeps NuPoint's Google credentials, so every command, db, record,
property and event name used by the collection is a default in :data:`DEFAULTS`, overridable by
module options (doc fragment ``nupoint.gworkspace.msl``). docs/msl-assumptions.md says which
defaults are known facts and which are assumptions.

Runs on MSL: standard library only, Python 3.6 compatible. Commands are run through a callable
``run_command(argv) -> (rc, stdout, stderr)`` (``AnsibleModule.run_command`` in modules, a fake in
unit tests); no shell is involved.
"""

from typing import Callable, Dict, List, Optional, Tuple

RunCommand = Callable[[List[str]], Tuple[int, str, str]]

DEFAULTS = {
    # Known facts (SME Server / MSL): the db tool, the configuration db, signal-event, the ntpd record.
    "db_command": "/sbin/e-smith/db",
    "db_name": "configuration",
    "signal_event_command": "/sbin/e-smith/signal-event",
    "ntp_record": "ntpd",
    "ntp_status_property": "status",
    "ntp_server_property": "NTPServer",
    "ntp_event": "timeserver-update",
    # Assumptions (to be confirmed on a real NuPoint server): where the OAuth credentials live.
    "credential_dir": "/var/lib/nupoint/oauth",
    "credential_record": "nupoint-oauth",
    "credential_record_type": "service",
    "credential_event": "nupoint-oauth-update",
}


def msl_argument_spec() -> Dict[str, Dict[str, object]]:
    """Options of every module that talks to the MSL config db (doc fragment ``msl``)."""
    return dict(
        db_command=dict(type="path", default=DEFAULTS["db_command"]),
        db_name=dict(type="str", default=DEFAULTS["db_name"]),
        signal_event_command=dict(type="path", default=DEFAULTS["signal_event_command"]),
    )


def msl_credentials_argument_spec() -> Dict[str, Dict[str, object]]:
    """Where MSL keeps the OAuth credentials (doc fragment ``msl.CREDENTIALS``)."""
    spec = msl_argument_spec()
    spec.update(
        credential_dir=dict(type="path", default=DEFAULTS["credential_dir"]),
        credential_record=dict(type="str", default=DEFAULTS["credential_record"]),
        credential_event=dict(type="str", default=DEFAULTS["credential_event"]),
    )
    return spec


def msl_time_argument_spec() -> Dict[str, Dict[str, object]]:
    """The network-time record and event (doc fragment ``msl.TIME``)."""
    spec = msl_argument_spec()
    spec.update(
        ntp_record=dict(type="str", default=DEFAULTS["ntp_record"]),
        ntp_status_property=dict(type="str", default=DEFAULTS["ntp_status_property"]),
        ntp_server_property=dict(type="str", default=DEFAULTS["ntp_server_property"]),
        ntp_event=dict(type="str", default=DEFAULTS["ntp_event"]),
    )
    return spec


class MslError(Exception):
    """A db or event command failed; ``msg`` says what and how to look further."""

    def __init__(
        self, msg: str, command: Optional[List[str]] = None, rc: Optional[int] = None, stderr: Optional[str] = None
    ) -> None:
        super().__init__(msg)
        self.msg = msg
        self.command = command
        self.rc = rc
        self.stderr = stderr

    def as_result(self) -> Dict[str, object]:
        return {"cmd": self.command, "rc": self.rc, "stderr": self.stderr}


class Record:
    """One db record: ``key=type`` and its properties."""

    def __init__(self, key: str, record_type: str, props: Optional[Dict[str, str]] = None) -> None:
        self.key = key
        self.type = record_type
        self.props: Dict[str, str] = dict(props or {})

    def as_dict(self) -> Dict[str, object]:
        return {"key": self.key, "type": self.type, "props": dict(self.props)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable: records are compared, never hashed

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __repr__(self) -> str:
        return "Record(%r, %r, %r)" % (self.key, self.type, self.props)


def parse_show(output: str) -> Dict[str, Record]:
    """Parse ``db NAME show [KEY]``: ``key=type`` lines, each followed by indented ``prop=value`` lines."""
    records: Dict[str, Record] = {}
    current: Optional[Record] = None
    for line in output.splitlines():
        if not line.strip():
            continue
        if line[:1] in (" ", "\t"):
            if current is None:
                raise ValueError("property line before any record: %r" % line.strip())
            prop, sep, value = line.strip().partition("=")
            if not sep:
                raise ValueError("property line without '=': %r" % line.strip())
            current.props[prop] = value
        else:
            key, sep, record_type = line.partition("=")
            if not sep or not key:
                raise ValueError("record line without '=': %r" % line)
            current = Record(key, record_type)
            records[key] = current
    return records


def _check_value(name: str, value: str) -> None:
    # The flat-file format is one record per line with '|' between fields.
    if "\n" in value or "\r" in value:
        raise MslError("%s must be a single line, got a value with a line break." % name)


class ConfigDb:
    """``/sbin/e-smith/db DBNAME ...`` with the real tool's quirks handled."""

    def __init__(
        self, run_command: RunCommand, db_command: str = DEFAULTS["db_command"], db_name: str = DEFAULTS["db_name"]
    ) -> None:
        self._run_command = run_command
        self.db_command = db_command
        self.db_name = db_name

    def _run(self, *args: str) -> Tuple[int, str, str]:
        argv = [self.db_command, self.db_name, *args]
        try:
            return self._run_command(argv)
        except OSError as exc:
            raise MslError(
                "Cannot run %s: %s. Is this an MSL server? Set the db_command option if the tool lives elsewhere."
                % (self.db_command, exc),
                argv,
            ) from exc

    def _checked(self, *args: str) -> str:
        rc, out, err = self._run(*args)
        if rc != 0:
            raise MslError(
                "'%s %s %s' failed (exit %d): %s"
                % (self.db_command, self.db_name, " ".join(args), rc, (err or out).strip()),
                [self.db_command, self.db_name, *args],
                rc,
                err,
            )
        return out

    def get(self, key: str) -> Optional[Record]:
        """The record, or None when it does not exist."""
        rc, out, err = self._run("show", key)
        if rc != 0 and not out.strip():
            # The real tool prints nothing for a missing key; some builds also exit non-zero.
            if err.strip() and "no such" not in err.lower() and "not found" not in err.lower():
                raise MslError(
                    "'%s %s show %s' failed (exit %d): %s" % (self.db_command, self.db_name, key, rc, err.strip()),
                    [self.db_command, self.db_name, "show", key],
                    rc,
                    err,
                )
            return None
        try:
            records = parse_show(out)
        except ValueError as exc:
            raise MslError(
                "Unexpected output from '%s %s show %s': %s" % (self.db_command, self.db_name, key, exc)
            ) from exc
        return records.get(key)

    def getprop(self, key: str, prop: str) -> Optional[str]:
        """A property value, or None when the record or property is missing."""
        rc, out, _err = self._run("getprop", key, prop)
        if rc != 0:
            return None
        return out.rstrip("\n")

    def set_record(self, key: str, record_type: str, props: Dict[str, str]) -> None:
        """Create (or replace the type of) a record with ``props``, then verify."""
        args = ["set", key, record_type]
        for prop in sorted(props):
            _check_value(prop, props[prop])
            args += [prop, props[prop]]
        self._checked(*args)
        self._verify(key, props)

    def setprop(self, key: str, props: Dict[str, str]) -> None:
        """Set properties of an existing record, then verify each with getprop.

        The real ``setprop`` exits 0 even when it wrote nothing (for example when the record does
        not exist), so its exit code proves nothing.
        """
        if not props:
            return
        args = ["setprop", key]
        for prop in sorted(props):
            _check_value(prop, props[prop])
            args += [prop, props[prop]]
        self._checked(*args)
        self._verify(key, props)

    def _verify(self, key: str, props: Dict[str, str]) -> None:
        for prop in sorted(props):
            actual = self.getprop(key, prop)
            if actual != props[prop]:
                raise MslError(
                    "The MSL config db did not take %s.%s=%r (it reads back %r). Check that record %r exists "
                    "in the '%s' db and that the db is writable." % (key, prop, props[prop], actual, key, self.db_name),
                    [self.db_command, self.db_name, "getprop", key, prop],
                )

    def delprop(self, key: str, prop: str) -> None:
        self._checked("delprop", key, prop)

    def delete(self, key: str) -> None:
        self._checked("delete", key)
        if self.get(key) is not None:
            raise MslError("The MSL config db still has record %r after 'delete'." % key)


def signal_event(run_command: RunCommand, event: str, command: str = DEFAULTS["signal_event_command"]) -> None:
    """Run ``signal-event EVENT``: MSL re-renders the configuration and restarts what depends on it."""
    argv = [command, event]
    try:
        rc, out, err = run_command(argv)
    except OSError as exc:
        raise MslError("Cannot run %s: %s. Set the signal_event_command option." % (command, exc), argv) from exc
    if rc != 0:
        raise MslError(
            "'%s %s' failed (exit %d): %s. The db was updated but the change is not applied; see "
            "/var/log/messages on the MSL server." % (command, event, rc, (err or out).strip()),
            argv,
            rc,
            err,
        )
