# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MSL host adapter: the e-smith configuration db, signal-event and the OAuth credential store.

Mitel Standard Linux descends from SME Server (e-smith). Settings live in flat-file databases
managed by ``/sbin/e-smith/db DBNAME VERB ...``; changes are applied by
``/sbin/e-smith/signal-event EVENT``, which re-renders templates and restarts services.

Nothing public documents where MSL keeps NuPoint's Google credentials, so every command, db, record,
property and event name used by the collection is a default in :data:`DEFAULTS`, overridable by
module options (doc fragment ``nupoint.gworkspace.msl``). docs/msl-assumptions.md says which
defaults are known facts and which are assumptions.

What a key file says about itself (ids, fingerprint) is read by ``key_format``; this module only
stores and describes it.

Runs on MSL: standard library only, Python 3.6 compatible. Commands are run through a callable
``run_command(argv) -> (rc, stdout, stderr)`` (``AnsibleModule.run_command`` in modules, a fake in
unit tests); no shell is involved.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import os
import stat
import time
from contextlib import contextmanager

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple  # noqa: F401  # novermin

    RunCommand = Callable[[List[str]], Tuple[int, str, str]]  # a type alias for the type comments
except ImportError:  # pragma: no cover
    pass


from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import raise_from, replace
from ansible_collections.nupoint.gworkspace.plugins.module_utils.files import (
    atomic_write,
    exclusive_lock,
    fsync_directory,
    is_root,
    stage_file,
    unlink_quietly,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.key_format import (
    CredentialKeyError,
    credential_key_metadata,
    expected_mismatches,
    normalize_fingerprint,
)

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
    "credential_key_file": "service-account.json",
    "credential_p12_file": "service-account.p12",
    "credential_record": "nupoint-oauth",
    "credential_record_type": "service",
    "credential_event": "nupoint-oauth-update",
}


def msl_argument_spec():  # type: () -> Dict[str, Dict[str, object]]
    """Options of every module that talks to the MSL config db (doc fragment ``msl``)."""
    return dict(
        db_command=dict(type="path", default=DEFAULTS["db_command"]),
        db_name=dict(type="str", default=DEFAULTS["db_name"]),
        signal_event_command=dict(type="path", default=DEFAULTS["signal_event_command"]),
    )


def msl_credentials_argument_spec():  # type: () -> Dict[str, Dict[str, object]]
    """Where MSL keeps the OAuth credentials (doc fragment ``msl.CREDENTIALS``)."""
    spec = msl_argument_spec()
    spec.update(
        credential_dir=dict(type="path", default=DEFAULTS["credential_dir"]),
        credential_key_file=dict(type="str", default=DEFAULTS["credential_key_file"]),
        credential_p12_file=dict(type="str", default=DEFAULTS["credential_p12_file"]),
        credential_record=dict(type="str", default=DEFAULTS["credential_record"]),
        credential_event=dict(type="str", default=DEFAULTS["credential_event"]),
    )
    return spec


def msl_time_argument_spec():  # type: () -> Dict[str, Dict[str, object]]
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

    def __init__(self, msg, command=None, rc=None, stderr=None):  # type: (str, Optional[List[str]], Optional[int], Optional[str]) -> None
        super(MslError, self).__init__(msg)
        self.msg = msg
        self.command = command
        self.rc = rc
        self.stderr = stderr

    def as_result(self):  # type: () -> Dict[str, object]
        return {"cmd": self.command, "rc": self.rc, "stderr": self.stderr}


class Record:
    """One db record: ``key=type`` and its properties."""

    def __init__(self, key, record_type, props=None):  # type: (str, str, Optional[Dict[str, str]]) -> None
        self.key = key
        self.type = record_type
        self.props = dict(props or {})  # type: Dict[str, str]

    def as_dict(self):  # type: () -> Dict[str, object]
        return {"key": self.key, "type": self.type, "props": dict(self.props)}

    def __eq__(self, other):  # type: (object) -> bool
        return isinstance(other, Record) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable: records are compared, never hashed

    def __ne__(self, other):  # type: (object) -> bool
        return not self == other

    def __repr__(self):  # type: () -> str
        return "Record(%r, %r, %r)" % (self.key, self.type, self.props)


def parse_show(output):  # type: (str) -> Dict[str, Record]
    """Parse ``db NAME show [KEY]``: ``key=type`` lines, each followed by indented ``prop=value`` lines."""
    records = {}  # type: Dict[str, Record]
    current = None  # type: Optional[Record]
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


def _check_value(name, value):  # type: (str, str) -> None
    # The flat-file format is one record per line with '|' between fields.
    if "\n" in value or "\r" in value:
        raise MslError("%s must be a single line, got a value with a line break." % name)


class ConfigDb:
    """``/sbin/e-smith/db DBNAME ...`` with the real tool's quirks handled."""

    def __init__(self, run_command, db_command=DEFAULTS["db_command"], db_name=DEFAULTS["db_name"]):  # type: (RunCommand, str, str) -> None
        self._run_command = run_command
        self.db_command = db_command
        self.db_name = db_name

    def _run(self, *args):  # type: (*str) -> Tuple[int, str, str]
        argv = [self.db_command, self.db_name] + list(args)
        try:
            return self._run_command(argv)
        except (IOError, OSError) as exc:
            raise_from(
                MslError(
                    "Cannot run %s: %s. Is this an MSL server? Set the db_command option if the tool lives elsewhere."
                    % (self.db_command, exc),
                    argv,
                ),
                exc,
            )

    def _checked(self, *args):  # type: (*str) -> str
        rc, out, err = self._run(*args)
        if rc != 0:
            raise MslError(
                "'%s %s %s' failed (exit %d): %s"
                % (self.db_command, self.db_name, " ".join(args), rc, (err or out).strip()),
                [self.db_command, self.db_name] + list(args),
                rc,
                err,
            )
        return out

    def get(self, key):  # type: (str) -> Optional[Record]
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
            raise_from(
                MslError("Unexpected output from '%s %s show %s': %s" % (self.db_command, self.db_name, key, exc)), exc
            )
        return records.get(key)

    def records(self):  # type: () -> Dict[str, Record]
        """Every record of the db (``db NAME show``), by key."""
        output = self._checked("show")
        records = {}  # type: Dict[str, Record]
        try:
            records = parse_show(output)
        except ValueError as exc:
            raise_from(MslError("Unexpected output from '%s %s show': %s" % (self.db_command, self.db_name, exc)), exc)
        return records

    def getprop(self, key, prop):  # type: (str, str) -> Optional[str]
        """A property value, or None when the record or property is missing."""
        rc, out, _err = self._run("getprop", key, prop)
        if rc != 0:
            return None
        return out.rstrip("\n")

    def set_record(self, key, record_type, props):  # type: (str, str, Dict[str, str]) -> None
        """Create (or replace the type of) a record with ``props``, then verify."""
        args = ["set", key, record_type]
        for prop in sorted(props):
            _check_value(prop, props[prop])
            args += [prop, props[prop]]
        self._checked(*args)
        self._verify(key, props)

    def setprop(self, key, props):  # type: (str, Dict[str, str]) -> None
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

    def _verify(self, key, props):  # type: (str, Dict[str, str]) -> None
        for prop in sorted(props):
            actual = self.getprop(key, prop)
            if actual != props[prop]:
                raise MslError(
                    "The MSL config db did not take %s.%s=%r (it reads back %r). Check that record %r exists "
                    "in the '%s' db and that the db is writable." % (key, prop, props[prop], actual, key, self.db_name),
                    [self.db_command, self.db_name, "getprop", key, prop],
                )

    def delprop(self, key, prop):  # type: (str, str) -> None
        self._checked("delprop", key, prop)

    def delete(self, key):  # type: (str) -> None
        self._checked("delete", key)
        if self.get(key) is not None:
            raise MslError("The MSL config db still has record %r after 'delete'." % key)


def signal_event(run_command, event, command=DEFAULTS["signal_event_command"]):  # type: (RunCommand, str, str) -> None
    """Run ``signal-event EVENT``: MSL re-renders the configuration and restarts what depends on it."""
    argv = [command, event]
    try:
        rc, out, err = run_command(argv)
    except (IOError, OSError) as exc:
        raise_from(MslError("Cannot run %s: %s. Set the signal_event_command option." % (command, exc), argv), exc)
    if rc != 0:
        raise MslError(
            "'%s %s' failed (exit %d): %s. The db was updated but the change is not applied; see "
            "/var/log/messages on the MSL server." % (command, event, rc, (err or out).strip()),
            argv,
            rc,
            err,
        )


# --------------------------------------------------------------------------- OAuth credential store
#
# Where NuPoint's service-account key lives on MSL: two files in ``credential_dir`` (0700) written
# atomically (0600, root:root when running as root) and a config-db record describing them. The
# paths, record and event are assumptions (docs/msl-assumptions.md); the defaults are in DEFAULTS.

CREDENTIAL_JSON_NAME = DEFAULTS["credential_key_file"]
CREDENTIAL_P12_NAME = DEFAULTS["credential_p12_file"]
CREDENTIAL_FILE_MODE = 0o600
CREDENTIAL_DIR_MODE = 0o700
# Record properties; ClientId, ClientEmail, Fingerprint, InstalledAt, KeyFile, P12File per docs/lab-contract.md,
# PrivateKeyId added so the record names the key as the Cloud console lists it.
# How long a run waits for another run on the same host to finish changing the credentials.
LOCK_TIMEOUT_SECONDS = 120.0
CREDENTIAL_PROPS = ("ClientEmail", "ClientId", "Fingerprint", "InstalledAt", "KeyFile", "P12File", "PrivateKeyId")


def backup_path_for(path):  # type: (str) -> str
    """``<path>.<pid>.<UTC time>~`` next to the file (Ansible's backup naming)."""
    return "%s.%d.%s~" % (path, os.getpid(), time.strftime("%Y-%m-%d@%H:%M:%S", time.gmtime()))


def _file_facts(path):  # type: (str) -> Optional[Dict[str, object]]
    try:
        stat = os.lstat(path)
    except (IOError, OSError):
        return None
    return {
        "path": path,
        "mode": "%04o" % (stat.st_mode & 0o7777),
        "uid": stat.st_uid,
        "gid": stat.st_gid,
        "is_file": os.path.isfile(path) and not os.path.islink(path),
        "is_dir": os.path.isdir(path) and not os.path.islink(path),
    }


def _read_bytes(path):  # type: (str) -> Optional[bytes]
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (IOError, OSError):
        return None


class CredentialStore:
    """The service-account key on MSL: files in ``directory`` plus the ``record`` in the config db.

    ``inspect()`` says what is there; ``plan_install()`` / ``plan_remove()`` say what would change
    (check mode stops there); ``install()`` / ``remove()`` do it. Writes are staged to temp files and
    renamed only once every file is staged, so a failure leaves the previous key in place; the db record
    is written after the files, and the apply event signalled last.
    """

    def __init__(
        self,
        db,
        directory=DEFAULTS["credential_dir"],
        record=DEFAULTS["credential_record"],
        record_type=DEFAULTS["credential_record_type"],
        key_file=CREDENTIAL_JSON_NAME,
        p12_file=CREDENTIAL_P12_NAME,
    ):  # type: (ConfigDb, str, str, str, str, str) -> None
        for option, name in (("credential_key_file", key_file), ("credential_p12_file", p12_file)):
            if not name or os.path.basename(name) != name or name.startswith("."):
                raise CredentialInputError(
                    "%s %r is not a plain file name: the files live directly in credential_dir, so give a name "
                    "without '/' that does not start with '.'." % (option, name),
                    "invalid_option",
                    option,
                )
        if key_file == p12_file:
            raise CredentialInputError(
                "credential_key_file and credential_p12_file must differ.", "invalid_option", "credential_p12_file"
            )
        self.db = db
        self.directory = directory
        self.record = record
        self.record_type = record_type
        self.key_file = key_file
        self.p12_file = p12_file
        self.json_path = os.path.join(directory, key_file)
        self.p12_path = os.path.join(directory, p12_file)
        parent, name = os.path.split(os.path.normpath(directory))
        # Beside the directory, not in it: the directory may not exist yet, and may be replaced.
        self.lock_path = os.path.join(parent, "." + name + ".lock")
        # Also beside it: present from just before the record names a new key until the apply event was signalled,
        # so a run cut off in between (a dropped SSH session) leaves a trace the next run acts on.
        self.apply_pending_path = os.path.join(parent, "." + name + ".apply-pending")

    def apply_pending(self):  # type: () -> bool
        """An earlier run changed the key and ended before it signalled the apply event."""
        return os.path.lexists(self.apply_pending_path)

    def set_apply_pending(self, pending):  # type: (bool) -> None
        if pending:
            atomic_write(self.apply_pending_path, b"")
        else:
            unlink_quietly(self.apply_pending_path)

    @contextmanager
    def locked(self, enabled=True, timeout=LOCK_TIMEOUT_SECONDS):  # type: (bool, float) -> Iterator[None]
        """Hold the store's lock for the block (files.exclusive_lock); a no-op when not ``enabled`` (check mode)."""
        if not enabled:
            yield
            return
        parent = os.path.dirname(self.lock_path)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        with exclusive_lock(self.lock_path, timeout):
            yield

    # -- reading
    def inspect(self):  # type: () -> Dict[str, Any]
        """What MSL holds now: metadata from the record, facts about the files, consistency, permission problems."""
        record = self.db.get(self.record)
        props = record.props if record is not None else {}
        json_bytes = _read_bytes(self.json_path)
        p12_facts = _file_facts(self.p12_path)
        file_meta = None  # type: Optional[Dict[str, str]]
        problems = []  # type: List[str]
        if json_bytes is not None:
            try:
                file_meta = credential_key_metadata(json_bytes)
            except CredentialKeyError as exc:
                problems.append("%s holds no usable key: %s" % (self.json_path, exc.msg))
        present = record is not None or json_bytes is not None
        if record is not None and json_bytes is None:
            problems.append("the db record %s exists but %s is missing" % (self.record, self.json_path))
        if record is None and json_bytes is not None:
            problems.append("%s exists but the db record %s is missing" % (self.json_path, self.record))
        if record is not None and file_meta is not None:
            for prop, field in (
                ("ClientId", "client_id"),
                ("ClientEmail", "client_email"),
                ("PrivateKeyId", "private_key_id"),
            ):
                if props.get(prop, "") != file_meta[field]:
                    problems.append(
                        "the record's %s is %r, the key file's %s" % (prop, props.get(prop, ""), file_meta[field])
                    )
            if normalize_fingerprint(props.get("Fingerprint", "")) != normalize_fingerprint(
                file_meta["fingerprint_sha256"]
            ):
                problems.append(
                    "the record's Fingerprint is %r, the key file's %s"
                    % (props.get("Fingerprint", ""), file_meta["fingerprint_sha256"])
                )
            if props.get("KeyFile", "") != self.json_path:
                problems.append("the record's KeyFile is %r, not %s" % (props.get("KeyFile", ""), self.json_path))
        if record is not None:
            if props.get("P12File") and p12_facts is None:
                problems.append("the record names P12File %s but it is missing" % props["P12File"])
            if not props.get("P12File") and p12_facts is not None:
                problems.append("%s exists but the record names no P12File" % self.p12_path)
        pending = self.apply_pending()
        if pending:
            problems.append(
                "an earlier run installed this key but ended before it signalled the apply event, so NuPoint may still "
                "use the previous key; run msl_oauth_credentials again (it signals the event)"
            )
        source = file_meta or {}
        return {
            "present": present,
            "apply_pending": pending,
            "client_id": props.get("ClientId") or source.get("client_id"),
            "client_email": props.get("ClientEmail") or source.get("client_email"),
            "private_key_id": props.get("PrivateKeyId") or source.get("private_key_id"),
            "fingerprint_sha256": props.get("Fingerprint") or source.get("fingerprint_sha256"),
            "installed_at": props.get("InstalledAt") or None,
            "path": self.json_path if json_bytes is not None else None,
            "p12_path": self.p12_path if p12_facts is not None else None,
            "record": record.as_dict() if record is not None else None,
            "consistent": not problems,
            "problems": problems,
            "permission_problems": self.permission_problems() if present else [],
        }

    def permission_problems(self):  # type: () -> List[str]
        """Sentences about modes and owners that expose the key (empty when all is right)."""
        problems = []
        for facts, wanted, what in (
            (_file_facts(self.directory), CREDENTIAL_DIR_MODE, "directory"),
            (_file_facts(self.json_path), CREDENTIAL_FILE_MODE, "key file"),
            (_file_facts(self.p12_path), CREDENTIAL_FILE_MODE, "P12 file"),
        ):
            if facts is None:
                continue
            mode = int(str(facts["mode"]), 8)
            if mode & 0o077:
                problems.append(
                    "The %s %s has mode %s: group or others can read it (expected %04o)."
                    % (what, facts["path"], facts["mode"], wanted)
                )
            if facts["uid"] != 0 or facts["gid"] != 0:
                problems.append(
                    "The %s %s is owned by %s:%s, not root:root." % (what, facts["path"], facts["uid"], facts["gid"])
                )
        return problems

    def info(self):  # type: () -> Dict[str, Any]
        """Before/after view for diffs: ids, fingerprint and paths, never key bytes."""
        state = self.inspect()
        return _diff_view(state)

    # -- planning
    def unsafe_location(self):  # type: () -> Optional[str]
        """Why the key must not be written where ``credential_dir`` points, or None when the place is safe.

        A symlink could send the key anywhere; a file there is not ours to replace; a directory above it
        that others may write to lets them swap the directory for their own between two of our calls.
        """
        directory = os.path.normpath(self.directory)
        if os.path.islink(directory):
            return "credential_dir %s is a symbolic link; point credential_dir at the real directory" % directory
        if os.path.lexists(directory) and not os.path.isdir(directory):
            return "credential_dir %s exists and is not a directory" % directory
        if os.path.isdir(directory):
            mode = os.stat(directory).st_mode
            if mode & (stat.S_IWGRP | stat.S_IWOTH):
                # Others may have put files (or links) in it already: it is not made safe by a chmod now.
                return (
                    "credential_dir %s may be written by other users (mode %04o); remove it (the module creates it "
                    "0700) or make it root's alone (chmod 0700) after checking what is in it"
                    % (directory, stat.S_IMODE(mode))
                )
        parent = os.path.dirname(directory)
        while parent and not os.path.isdir(parent):
            parent = os.path.dirname(parent)
        if parent:
            mode = os.stat(parent).st_mode
            if mode & (stat.S_IWGRP | stat.S_IWOTH):
                return (
                    "%s, the directory that holds credential_dir, may be written by other users (mode %04o); choose a "
                    "credential_dir under a directory only root can write to" % (parent, stat.S_IMODE(mode))
                )
        return None

    def refuse_unsafe_location(self):  # type: () -> None
        """CredentialInputError ``unsafe_path`` when :meth:`unsafe_location` finds a reason."""
        unsafe = self.unsafe_location()
        if unsafe is not None:
            raise CredentialInputError("Refusing to install the key: %s. Nothing was changed." % unsafe, "unsafe_path")

    def plan_install(self, content, p12, meta):  # type: (bytes, Optional[bytes], Dict[str, str]) -> Dict[str, Any]
        """What installing would change: ``changes`` (list of names), ``key_changed`` and before/after views."""
        self.refuse_unsafe_location()
        state = self.inspect()
        record = self.db.get(self.record)
        props = record.props if record is not None else {}
        changes = []
        if _read_bytes(self.json_path) != content:
            changes.append("key_file")
        current_p12 = _read_bytes(self.p12_path)
        if (p12 is None and current_p12 is not None) or (p12 is not None and current_p12 != p12):
            changes.append("p12_file")
        wanted = self._record_props(meta, p12 is not None, props.get("InstalledAt", ""))
        if (
            record is None
            or record.type != self.record_type
            or any(props.get(prop, "") != wanted[prop] for prop in CREDENTIAL_PROPS if prop != "InstalledAt")
        ):
            changes.append("record")
        key_changed = bool(changes)
        changes.extend(self._permission_changes(p12 is not None, key_changed))
        after = {
            "present": True,
            "client_id": meta["client_id"],
            "client_email": meta["client_email"],
            "private_key_id": meta["private_key_id"],
            "fingerprint_sha256": meta["fingerprint_sha256"],
            "path": self.json_path,
            "p12_path": self.p12_path if p12 is not None else None,
        }
        return {"changes": changes, "key_changed": key_changed, "before": _diff_view(state), "after": after}

    def _permission_changes(self, with_p12, rewriting):  # type: (bool, bool) -> List[str]
        changes = []
        directory = _file_facts(self.directory)
        if directory is None or not _mode_and_owner_ok(directory, CREDENTIAL_DIR_MODE):
            changes.append("directory_mode")
        if not rewriting:
            for path in (self.json_path, self.p12_path) if with_p12 else (self.json_path,):
                facts = _file_facts(path)
                if facts is not None and not _mode_and_owner_ok(facts, CREDENTIAL_FILE_MODE):
                    changes.append("file_mode")
                    break
        return changes

    def plan_remove(self):  # type: () -> Dict[str, Any]
        state = self.inspect()
        changes = []
        if os.path.lexists(self.json_path):
            changes.append("key_file")
        if os.path.lexists(self.p12_path):
            changes.append("p12_file")
        if self.db.get(self.record) is not None:
            changes.append("record")
        return {
            "changes": changes,
            "key_changed": bool(changes),
            "before": _diff_view(state),
            "after": {"present": False},
        }

    # -- writing
    def install(self, content, p12, meta, plan, backup=False):  # type: (bytes, Optional[bytes], Dict[str, str], Dict[str, Any], bool) -> Dict[str, object]
        """Carry out ``plan`` (from :meth:`plan_install`); returns installed_at and backup paths."""
        changes = list(plan["changes"])
        self._ensure_directory()
        backups = {"backup_file": None, "p12_backup_file": None}  # type: Dict[str, Optional[str]]
        record = self.db.get(self.record)
        installed_at = record.props.get("InstalledAt", "") if record is not None else ""
        if plan["key_changed"]:
            if backup:
                backups = self._backup(changes)
            staged = []  # type: List[Tuple[str, str]]
            try:
                if "key_file" in changes:
                    staged.append((stage_file(self.directory, self.key_file, content), self.json_path))
                if "p12_file" in changes and p12 is not None:
                    staged.append((stage_file(self.directory, self.p12_file, p12), self.p12_path))
                # Every file is staged: only now replace the live ones.
                while staged:
                    tmp_path, path = staged[0]
                    replace(tmp_path, path)
                    staged.pop(0)
            finally:
                for tmp_path, _path in staged:
                    unlink_quietly(tmp_path)
            if p12 is None and os.path.lexists(self.p12_path):
                os.unlink(self.p12_path)
            fsync_directory(self.directory)
            installed_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.set_apply_pending(True)
            self.db.set_record(self.record, self.record_type, self._record_props(meta, p12 is not None, installed_at))
        self._fix_file_modes()
        result = {"installed_at": installed_at or None}  # type: Dict[str, object]
        result.update(backups)
        return result

    def remove(self, backup=False):  # type: (bool) -> Dict[str, object]
        backups = {"backup_file": None, "p12_backup_file": None}  # type: Dict[str, Optional[str]]
        if backup:
            backups = self._backup(["key_file", "p12_file"])
        for path in (self.json_path, self.p12_path):
            if os.path.lexists(path):
                os.unlink(path)
        if os.path.isdir(self.directory):
            fsync_directory(self.directory)
        if self.db.get(self.record) is not None:
            self.db.delete(self.record)
        return dict(backups)

    def _record_props(self, meta, with_p12, installed_at):  # type: (Dict[str, str], bool, str) -> Dict[str, str]
        return {
            "ClientEmail": meta["client_email"],
            "ClientId": meta["client_id"],
            "Fingerprint": meta["fingerprint_sha256"],
            "InstalledAt": installed_at,
            "KeyFile": self.json_path,
            "P12File": self.p12_path if with_p12 else "",
            "PrivateKeyId": meta["private_key_id"],
        }

    def _ensure_directory(self):  # type: () -> None
        if not os.path.isdir(self.directory):
            os.makedirs(self.directory, CREDENTIAL_DIR_MODE)
        os.chmod(self.directory, CREDENTIAL_DIR_MODE)
        if is_root():
            os.chown(self.directory, 0, 0)

    def _fix_file_modes(self):  # type: () -> None
        for path in (self.json_path, self.p12_path):
            facts = _file_facts(path)
            if facts is not None and not _mode_and_owner_ok(facts, CREDENTIAL_FILE_MODE):
                os.chmod(path, CREDENTIAL_FILE_MODE)
                if is_root():
                    os.chown(path, 0, 0)

    def _backup(self, changes):  # type: (List[str]) -> Dict[str, Optional[str]]
        """Copy the files about to be replaced or removed (0600, same directory)."""
        backups = {"backup_file": None, "p12_backup_file": None}  # type: Dict[str, Optional[str]]
        for name, change, path in (
            ("backup_file", "key_file", self.json_path),
            ("p12_backup_file", "p12_file", self.p12_path),
        ):
            data = _read_bytes(path) if change in changes else None
            if data is not None:
                target = backup_path_for(path)
                atomic_write(target, data)
                backups[name] = target
        return backups


def _mode_and_owner_ok(facts, mode):  # type: (Dict[str, object], int) -> bool
    if int(str(facts["mode"]), 8) != mode:
        return False
    return not is_root() or (facts["uid"] == 0 and facts["gid"] == 0)


def _diff_view(state):  # type: (Dict[str, Any]) -> Dict[str, Any]
    if not state.get("present"):
        return {"present": False}
    keys = (
        "present",
        "client_id",
        "client_email",
        "private_key_id",
        "fingerprint_sha256",
        "installed_at",
        "path",
        "p12_path",
    )
    return {key: state.get(key) for key in keys}


def module_run_command(module):  # type: (Any) -> RunCommand
    """``AnsibleModule.run_command`` as the adapter's ``run_command``.

    Arguments reach the db tool unchanged (no ``$VAR``/``~`` expansion), and a missing tool raises
    ``OSError``, which the adapter turns into a message naming the option to set.
    """

    def run_command(argv):  # type: (List[str]) -> Tuple[int, str, str]
        return module.run_command(argv, handle_exceptions=False, expand_user_and_vars=False)

    return run_command


def credential_store_from_params(run_command, params):  # type: (RunCommand, Mapping[str, Any]) -> "CredentialStore"
    """The credential store described by the ``msl`` and ``msl.CREDENTIALS`` options."""
    db = ConfigDb(run_command, params["db_command"], params["db_name"])
    return CredentialStore(
        db,
        params["credential_dir"],
        params["credential_record"],
        key_file=params["credential_key_file"],
        p12_file=params["credential_p12_file"],
    )


# --------------------------------------------------------------------------- the credentials module's run


class CredentialInputError(Exception):
    """The key handed to MSL cannot be installed; nothing was changed. ``details`` are public facts (ids)."""

    def __init__(self, msg, reason, field=None, **details):  # type: (str, str, Optional[str], **Any) -> None
        super(CredentialInputError, self).__init__(msg)
        self.msg = msg
        self.reason = reason
        self.field = field
        self.details = details

    def as_result(self):  # type: () -> Dict[str, Any]
        result = dict(self.details, reason=self.reason)
        if self.field is not None:
            result["field"] = self.field
        return result


def _handed_over_key(params):  # type: (Mapping[str, Any]) -> Tuple[bytes, Optional[bytes]]
    """The JSON key and the P12 the action plugin handed over (``content``, base64 ``p12_content``)."""
    if params.get("content") is None:
        raise CredentialInputError(
            "No key reached the module: src is read on the controller by the action plugin, which runs when the "
            "task uses nupoint.gworkspace.msl_oauth_credentials. Set src or content.",
            "read_error",
            "src",
        )
    p12 = None
    if params.get("p12_content") is not None:
        try:
            p12 = base64.b64decode("".join(params["p12_content"].split()).encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise_from(CredentialInputError("p12_content is not base64.", "p12_invalid", "p12_content"), None)
    return params["content"].encode("utf-8"), p12


def install_credentials(store, params, run_command, check_mode, diff):  # type: ("CredentialStore", Mapping[str, Any], RunCommand, bool, bool) -> Dict[str, Any]
    """``state: present``: compare with the pins, plan, install unless ``check_mode``, signal the event on a new key.

    Planning and installing happen under the store's lock, so two runs with different keys take turns and
    the files and the db record always describe one key (the last run's).
    """
    content, p12 = _handed_over_key(params)
    # Before the lock, whose file is created beside credential_dir: an unsafe place is refused untouched.
    store.refuse_unsafe_location()
    with store.locked(enabled=not check_mode):
        return _install(store, params, run_command, check_mode, diff, content, p12)


def _install(
    store,
    params,
    run_command,
    check_mode,
    diff,
    content,
    p12,
):  # type: ("CredentialStore", Mapping[str, Any], RunCommand, bool, bool, bytes, Optional[bytes]) -> Dict[str, Any]
    meta = credential_key_metadata(content)
    mismatches = expected_mismatches(
        meta, params["expected_client_id"], params["expected_client_email"], params["expected_fingerprint"]
    )
    if mismatches:
        raise CredentialInputError(
            "This is not the expected key: %s. Nothing was changed on MSL." % "; ".join(mismatches),
            "unexpected_key",
            client_id=meta["client_id"],
            client_email=meta["client_email"],
            fingerprint_sha256=meta["fingerprint_sha256"],
        )
    plan = store.plan_install(content, p12, meta)
    if store.apply_pending():
        # The key on MSL is the wanted one, but the run that installed it ended before signalling the apply event.
        plan["changes"].append("apply_event")
    changed = bool(plan["changes"])
    result = dict(
        changed=changed,
        changes=plan["changes"],
        client_id=meta["client_id"],
        client_email=meta["client_email"],
        private_key_id=meta["private_key_id"],
        fingerprint_sha256=meta["fingerprint_sha256"],
        path=store.json_path,
        p12_path=store.p12_path if p12 is not None else None,
        installed_at=plan["before"].get("installed_at") if not plan["key_changed"] else None,
        backup_file=None,
        p12_backup_file=None,
    )  # type: Dict[str, Any]
    if changed and not check_mode:
        result.update(store.install(content, p12, meta, plan, backup=params["backup"]))
        if plan["key_changed"] or "apply_event" in plan["changes"]:
            signal_event(run_command, params["credential_event"], params["signal_event_command"])
            store.set_apply_pending(False)
    if diff:
        result["diff"] = dict(before=plan["before"], after=dict(plan["after"], installed_at=result["installed_at"]))
    return result


def remove_credentials(store, params, run_command, check_mode, diff):  # type: ("CredentialStore", Mapping[str, Any], RunCommand, bool, bool) -> Dict[str, Any]
    """``state: absent``: remove the files and the record unless ``check_mode``, signal the event when removed."""
    with store.locked(enabled=not check_mode):
        return _remove(store, params, run_command, check_mode, diff)


def _remove(store, params, run_command, check_mode, diff):  # type: ("CredentialStore", Mapping[str, Any], RunCommand, bool, bool) -> Dict[str, Any]
    plan = store.plan_remove()
    changed = bool(plan["changes"])
    result = dict(changed=changed, changes=plan["changes"], backup_file=None, p12_backup_file=None)  # type: Dict[str, Any]
    if changed and not check_mode:
        result.update(store.remove(backup=params["backup"]))
        signal_event(run_command, params["credential_event"], params["signal_event_command"])
        store.set_apply_pending(False)
    if diff:
        result["diff"] = dict(before=plan["before"], after=plan["after"])
    return result
