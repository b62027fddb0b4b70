# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an MSL host is and where NuPoint keeps the service account: the logic of ``msl_facts``.

Nothing public says where NuPoint stores the key uploaded in the Server Manager (docs/msl-assumptions.md).
This module finds out on the host itself, read-only and bounded:

- the MSL release (the first of :data:`RELEASE_FILES` that exists, and the config db's ``sysconfig`` record);
- the Python interpreters at :data:`PYTHON_GLOBS` with their versions (``python -V`` under a timeout);
- NuPoint's packages (``rpm -qa``, names matching :data:`NUPOINT_PACKAGE_PATTERN`) and
  :data:`NUPOINT_DIRECTORIES`;
- every config-db record (every db in :data:`DB_DIRECTORY`) and every file under :data:`SEARCH_PATHS` that
  mentions the service account's client ID or e-mail. Files are walked without following links or leaving the
  root's file system, up to a depth, a size and a number of files; a match is reported by path, size, mode,
  owner, mtime, SHA-256 and which identifier matched, never by content.

A snapshot (:func:`take_snapshot`) is the db records and the metadata of every file under the search paths;
:func:`diff_snapshots` and :func:`learn` compare two of them (before and after an upload in the Server Manager)
and say which module options and inventory variables point the collection at what NuPoint uses. Both are pure
functions over the snapshots' dicts.

Every documented location is prefixed with ``root`` (``/`` on a real host), so the same code reads a copy of a
host's tree or an emulated host (the test lab). Paths in results are the real paths, prefix included, so they can
be given to the other modules as they are.

Runs on MSL: standard library only, Python 2.7 and 3.6+.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import grp
import hashlib
import json
import os
import pwd
import re
import stat
import threading
import time

from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import raise_from
from ansible_collections.nupoint.gworkspace.plugins.module_utils.files import atomic_write
from ansible_collections.nupoint.gworkspace.plugins.module_utils.msl import (
    CREDENTIAL_PROPS,
    DEFAULTS,
    ConfigDb,
    MslError,
)

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Callable, Dict, List, Optional, Tuple  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass

# --------------------------------------------------------------------------- documented locations

# Release files, most specific first: SME Server / e-smith, Mitel, then the Enterprise Linux base.
RELEASE_FILES = (
    "/etc/e-smith-release",
    "/etc/mitel-release",
    "/etc/redhat-release",
    "/etc/centos-release",
    "/etc/system-release",
    "/etc/os-release",
)
# Where Enterprise Linux puts interpreters: the system ones, /usr/local builds, Software Collections
# (rh-python36 and the like on EL7) and EL8's platform-python.
PYTHON_GLOBS = (
    "/usr/bin/python*",
    "/bin/python*",
    "/usr/local/bin/python*",
    "/opt/rh/*/root/usr/bin/python*",
    "/usr/libexec/platform-python*",
)
_PYTHON_NAME = re.compile(r"^(python|platform-python)(\d+(\.\d+)?)?$")
_PYTHON_VERSION = re.compile(r"Python (\d+\.\d+(?:\.\d+)?\S*)")
RPM_COMMANDS = ("/bin/rpm", "/usr/bin/rpm")
# NuPoint's package names are not published; any installed package whose name contains "nupoint" counts.
NUPOINT_PACKAGE_PATTERN = re.compile(r"nupoint", re.IGNORECASE)
# Directories a NuPoint install may have. Guesses, reported as found or not, never as proof of absence.
# /var/lib/nupoint is not among them: the collection's own default credential_dir creates it.
NUPOINT_DIRECTORIES = ("/opt/nupoint", "/usr/nupoint", "/var/nupoint", "/etc/nupoint", "/home/nupoint")
DB_DIRECTORY = "/home/e-smith/db"
EVENTS_DIRECTORY = "/etc/e-smith/events"
# Where an upload through the Server Manager can land: configuration, application data, add-on software.
SEARCH_PATHS = ("/etc", "/home", "/opt", "/root", "/srv", "/usr/local", "/var/lib", "/var/opt", "/var/spool")
# Logs that name the events signal-event runs (e-smith logs each event through syslog).
EVENT_LOGS = ("/var/log/messages",)

LIMITS = {
    "max_depth": 12,
    "max_file_size": 1024 * 1024,
    "max_binary_size": 64 * 1024,
    "max_files": 50000,
    # What one run reads in all: a bound on the disk and CPU a scan takes from a host that runs voice mail.
    "max_total_size": 256 * 1024 * 1024,
}
EVENT_LOG_READ_LIMIT = 4 * 1024 * 1024
RESULT_LIST_LIMIT = 200
PYTHON_VERSION_TIMEOUT = 10.0
_READ_HEAD = 8192
SNAPSHOT_FORMAT = "nupoint.gworkspace.msl_snapshot"
SNAPSHOT_VERSION = 1
# Every snapshot file starts with these bytes, so a search never reports (or snapshots) a snapshot.
SNAPSHOT_MAGIC = b'{"format": "' + SNAPSHOT_FORMAT.encode("ascii") + b'"'
IDENTIFIERS = ("client_id", "client_email")

# Values the results never show: properties named like a secret, and values shaped like a key or token.
_SECRET_PROP = re.compile(r"pass(word|wd|phrase)?|secret|token", re.IGNORECASE)
_KEY_SHAPED = re.compile(r"-----BEGIN|^[A-Za-z0-9+/=_-]{100,}$")
REDACTED = "(redacted)"


class DiscoveryError(Exception):
    """Bad input (an unreadable snapshot, a snapshot path in a bad place); ``reason`` names the class."""

    def __init__(self, msg, reason):  # type: (str, str) -> None
        super(DiscoveryError, self).__init__(msg)
        self.msg = msg
        self.reason = reason


def under(root, path):  # type: (str, str) -> str
    """``path`` (absolute, as on a real host) inside ``root``."""
    if root in ("", "/"):
        return path
    return os.path.join(root, path.lstrip("/"))


def timed_run_command(module):  # type: (Any) -> Callable[..., Tuple[int, str, str]]
    """``AnsibleModule.run_command`` with a timeout: the process is killed when it runs longer.

    ``run_command`` has no timeout of its own; its ``before_communicate_callback`` hands over the process,
    which a timer kills. A killed process returns a negative exit code.
    """

    def run_command(argv, timeout=None):  # type: (List[str], Optional[float]) -> Tuple[int, str, str]
        timers = []  # type: List[threading.Timer]

        def arm(process):  # type: (Any) -> None
            if timeout:
                timer = threading.Timer(timeout, _kill_quietly, [process])
                timer.daemon = True
                timer.start()
                timers.append(timer)

        try:
            return module.run_command(
                argv,
                handle_exceptions=False,
                expand_user_and_vars=False,
                before_communicate_callback=arm,
            )
        finally:
            for timer in timers:
                timer.cancel()

    return run_command


def _kill_quietly(process):  # type: (Any) -> None
    try:
        process.kill()
    except OSError:
        pass


# --------------------------------------------------------------------------- release, Pythons, NuPoint


def _first_line(path, limit=4096):  # type: (str, int) -> Optional[str]
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit)
    except (IOError, OSError):
        return None
    text = data.decode("utf-8", "replace")
    if os.path.basename(path) == "os-release":
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
        value = fields.get("PRETTY_NAME") or fields.get("NAME") or ""
        return value.strip().strip('"') or None
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return None


def release_facts(root, db):  # type: (str, Optional[ConfigDb]) -> Dict[str, Any]
    """The release as the first of RELEASE_FILES says it (``file`` names it), and the ``sysconfig`` record."""
    checked = [under(root, path) for path in RELEASE_FILES]
    result = {"name": None, "file": None, "checked": checked, "sysconfig": None}  # type: Dict[str, Any]
    for path in checked:
        line = _first_line(path)
        if line:
            result["name"] = line
            result["file"] = path
            break
    if db is not None:
        try:
            record = db.get("sysconfig")
        except MslError:
            record = None
        if record is not None:
            result["sysconfig"] = {
                name: record.props[name]
                for name in ("ProductName", "ReleaseVersion", "Version", "Release")
                if name in record.props
            }
    return result


def python_facts(root, run_command, timeout=PYTHON_VERSION_TIMEOUT):
    # type: (str, Callable[..., Tuple[int, str, str]], float) -> List[Dict[str, Any]]
    """Each interpreter at PYTHON_GLOBS: path, the file it resolves to, version (``None`` when -V failed), error."""
    found = []  # type: List[Dict[str, Any]]
    seen = set()
    for pattern in PYTHON_GLOBS:
        for path in sorted(glob.glob(under(root, pattern))):
            if path in seen or not _PYTHON_NAME.match(os.path.basename(path)):
                continue
            seen.add(path)
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                continue
            entry = {"path": path, "resolves_to": os.path.realpath(path), "version": None, "error": None}
            try:
                rc, out, err = run_command([path, "-V"], timeout=timeout)
            except OSError as exc:
                entry["error"] = "cannot run: %s" % exc
            else:
                match = _PYTHON_VERSION.search((out or "") + "\n" + (err or ""))
                if match and rc == 0:
                    entry["version"] = match.group(1)
                elif rc < 0:
                    entry["error"] = "no answer to -V within %g s" % timeout
                else:
                    entry["error"] = "'-V' exited %d: %s" % (rc, ((err or out) or "").strip()[:200])
            found.append(entry)
    return found


def nupoint_facts(root, run_command, db_records=None):
    # type: (str, Callable[..., Tuple[int, str, str]], Optional[Dict[str, Dict[str, Any]]]) -> Dict[str, Any]
    """NuPoint's packages and version from rpm, the candidate directories that exist, and ``present``.

    ``present`` is ``True`` when rpm lists a NuPoint package, ``False`` when rpm works and lists none, and
    ``None`` (unknown) when there is no rpm to ask; ``version`` is the first package's, else ``"unknown"``.
    """
    result = {
        "present": None,
        "version": "unknown",
        "packages": [],
        "source": None,
        "rpm": None,
        "directories": [under(root, path) for path in NUPOINT_DIRECTORIES if os.path.isdir(under(root, path))],
        "db_records": sorted(key for key in (db_records or {}) if "nupoint" in key.lower()),
        "note": None,
    }  # type: Dict[str, Any]
    rpm = next((under(root, path) for path in RPM_COMMANDS if os.access(under(root, path), os.X_OK)), None)
    if rpm is None:
        result["note"] = "unknown: no rpm at %s to ask which packages are installed" % " or ".join(
            under(root, p) for p in RPM_COMMANDS
        )
        return result
    result["rpm"] = rpm
    try:
        rc, out, err = run_command([rpm, "-qa", "--qf", "%{NAME}\\t%{VERSION}-%{RELEASE}\\n"], timeout=120.0)
    except OSError as exc:
        rc, out, err = -1, "", str(exc)
    if rc != 0:
        result["note"] = "unknown: '%s -qa' failed (exit %d): %s" % (rpm, rc, (err or out or "").strip()[:200])
        return result
    for line in out.splitlines():
        name, _sep, version = line.strip().partition("\t")
        if name and NUPOINT_PACKAGE_PATTERN.search(name):
            result["packages"].append({"name": name, "version": version or None})
    result["packages"].sort(key=lambda package: package["name"])
    result["present"] = bool(result["packages"])
    result["source"] = "rpm"
    if result["packages"]:
        result["version"] = result["packages"][0]["version"] or "unknown"
    else:
        result["note"] = "rpm lists no package whose name contains 'nupoint'"
    return result


def event_names(root):  # type: (str) -> List[str]
    """The events the host can signal: the directories under EVENTS_DIRECTORY (``actions`` is not one)."""
    directory = under(root, EVENTS_DIRECTORY)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(name for name in names if name != "actions" and os.path.isdir(os.path.join(directory, name)))


# --------------------------------------------------------------------------- config dbs


def db_names(root):  # type: (str) -> List[str]
    """The dbs in DB_DIRECTORY: its regular files, without lock, backup and temporary files."""
    directory = under(root, DB_DIRECTORY)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(
        name
        for name in names
        if not name.startswith(".")
        and not re.search(r"(\.lock|\.tmp|~|\.\d+|\.bak|\.rpm\w*)$", name)
        and os.path.isfile(os.path.join(directory, name))
        and not os.path.islink(os.path.join(directory, name))
    )


def _shown_value(prop, value):  # type: (str, str) -> str
    if _SECRET_PROP.search(prop) or _KEY_SHAPED.search(value):
        return REDACTED
    return value


def _stored_value(prop, value):  # type: (str, str) -> str
    """What a snapshot keeps: the value, or for a secret its digest (so a change shows, the value does not)."""
    if _shown_value(prop, value) == REDACTED:
        return "%s sha256:%s" % (REDACTED, hashlib.sha256(value.encode("utf-8")).hexdigest())
    return value


def public_value(value):  # type: (str) -> str
    """A stored value as results show it: a redacted one without its digest."""
    return REDACTED if value.startswith(REDACTED) else value


def read_dbs(root, run_command, db_command):
    # type: (str, Callable[..., Tuple[int, str, str]], str) -> Tuple[Dict[str, Dict[str, Any]], List[str]]
    """Every record of every db, as ``{db: {key: {"type", "props"}}}`` with secrets redacted; and the errors."""
    dbs = {}  # type: Dict[str, Dict[str, Any]]
    errors = []  # type: List[str]
    for name in db_names(root):
        reader = ConfigDb(run_command, db_command, name)
        try:
            records = reader.records()
        except MslError as exc:
            errors.append(exc.msg)
            continue
        dbs[name] = {
            key: {
                "type": record.type,
                "props": {prop: _stored_value(prop, value) for prop, value in record.props.items()},
            }
            for key, record in records.items()
        }
    return dbs, errors


def _mentions(text, identifiers):  # type: (str, Dict[str, str]) -> List[str]
    lowered = text.lower()
    return [name for name in IDENTIFIERS if identifiers.get(name) and identifiers[name].lower() in lowered]


def matching_records(dbs, identifiers):  # type: (Dict[str, Dict[str, Any]], Dict[str, str]) -> List[Dict[str, Any]]
    """The records whose type or property values mention an identifier; ``props`` names what each one holds."""
    found = []
    for db_name in sorted(dbs):
        for key in sorted(dbs[db_name]):
            record = dbs[db_name][key]
            matched = {}
            for prop in sorted(record["props"]):
                hits = _mentions(record["props"][prop], identifiers)
                if hits:
                    matched[prop] = hits
            if matched or _mentions(record["type"], identifiers):
                found.append(
                    {
                        "db": db_name,
                        "key": key,
                        "type": record["type"],
                        "props": {prop: public_value(value) for prop, value in record["props"].items()},
                        "matched_props": matched,
                    }
                )
    return found


# --------------------------------------------------------------------------- files


def _owner(uid, gid):  # type: (int, int) -> Tuple[Optional[str], Optional[str]]
    try:
        user = pwd.getpwuid(uid).pw_name  # type: Optional[str]
    except KeyError:
        user = None
    try:
        group = grp.getgrgid(gid).gr_name  # type: Optional[str]
    except KeyError:
        group = None
    return user, group


def _iso(timestamp):  # type: (float) -> str
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


class FileScan:
    """One bounded walk of the search paths: per-file metadata, identifier matches, and what was left out."""

    def __init__(self, roots, identifiers, limits=None, exclude=()):
        # type: (List[str], Dict[str, str], Optional[Dict[str, Any]], Any) -> None
        self.roots = list(roots)
        self.identifiers = {name: value for name, value in identifiers.items() if value}
        self.limits = dict(LIMITS)
        self.limits.update({name: value for name, value in (limits or {}).items() if value is not None})
        self.exclude = {os.path.realpath(path) for path in exclude if path}
        self.files = {}  # type: Dict[str, Dict[str, Any]]
        self.stats = {
            "files_examined": 0,
            "skipped_too_large": 0,
            "skipped_binary": 0,
            "skipped_total_size": 0,
            "skipped_unreadable": 0,
            "skipped_other_filesystem": 0,
            "directories_beyond_max_depth": 0,
            "missing_roots": [],
            "bytes_read": 0,
        }  # type: Dict[str, Any]
        self.truncated = []  # type: List[str]

    def run(self):  # type: () -> FileScan
        for root in self.roots:
            if self.limits["max_files"] <= self.stats["files_examined"]:
                break
            self._walk(root)
        return self

    def _walk(self, top):  # type: (str) -> None
        try:
            device = os.lstat(top).st_dev
        except OSError:
            self.stats["missing_roots"].append(top)
            return
        if not os.path.isdir(top) or os.path.islink(top):
            self.stats["missing_roots"].append(top)
            return
        base_depth = top.rstrip(os.sep).count(os.sep)
        for parent, dirnames, filenames in os.walk(top, topdown=True, followlinks=False):
            depth = parent.rstrip(os.sep).count(os.sep) - base_depth
            kept = []
            for name in sorted(dirnames):
                path = os.path.join(parent, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if info.st_dev != device:
                    self.stats["skipped_other_filesystem"] += 1
                elif depth + 1 > self.limits["max_depth"]:
                    self.stats["directories_beyond_max_depth"] += 1
                    self._truncated("max_depth")
                else:
                    kept.append(name)
            dirnames[:] = kept
            for name in sorted(filenames):
                if self.stats["files_examined"] >= self.limits["max_files"]:
                    self._truncated("max_files")
                    dirnames[:] = []
                    return
                self._file(os.path.join(parent, name))

    def _truncated(self, reason):  # type: (str) -> None
        if reason not in self.truncated:
            self.truncated.append(reason)

    def _file(self, path):  # type: (str) -> None
        try:
            info = os.lstat(path)
        except OSError:
            return
        # Only regular files: never follow a link, never open a FIFO or a device.
        if not stat.S_ISREG(info.st_mode) or os.path.realpath(path) in self.exclude:
            return
        self.stats["files_examined"] += 1
        entry = {
            "size": info.st_size,
            "mode": "%04o" % stat.S_IMODE(info.st_mode),
            "uid": info.st_uid,
            "gid": info.st_gid,
            "mtime": int(info.st_mtime),
            "sha256": None,
            "binary": None,
            "matched": [],
        }  # type: Dict[str, Any]
        if info.st_size > self.limits["max_file_size"]:
            self.stats["skipped_too_large"] += 1
            self._truncated("max_file_size")
        elif self.stats["bytes_read"] + info.st_size > self.limits["max_total_size"]:
            # Listed by its metadata, like a file over max_file_size; smaller files after it may still fit.
            self.stats["skipped_total_size"] += 1
            self._truncated("max_total_size")
        else:
            try:
                content = self._read(path, info.st_size, entry)
            except (IOError, OSError):
                self.stats["skipped_unreadable"] += 1
                content = None
            if content is not None:
                if content.startswith(SNAPSHOT_MAGIC):
                    self.stats["files_examined"] -= 1
                    return
                entry["sha256"] = hashlib.sha256(content).hexdigest()
                lowered = content.lower()
                entry["matched"] = [
                    name
                    for name in IDENTIFIERS
                    if name in self.identifiers and self.identifiers[name].lower().encode("utf-8") in lowered
                ]
        self.files[path] = entry

    def _read(self, path, size, entry):  # type: (str, int, Dict[str, Any]) -> Optional[bytes]
        with open(path, "rb") as handle:
            head = handle.read(_READ_HEAD)
            entry["binary"] = b"\0" in head
            if entry["binary"] and size > self.limits["max_binary_size"]:
                self.stats["skipped_binary"] += 1
                self.stats["bytes_read"] += len(head)
                return None
            content = head + handle.read(self.limits["max_file_size"] + 1 - len(head))
        self.stats["bytes_read"] += len(content)
        return content

    def matches(self):  # type: () -> List[Dict[str, Any]]
        """The files that mention an identifier: metadata only (path, size, mode, owner, mtime, sha256)."""
        found = []
        for path in sorted(self.files):
            entry = self.files[path]
            if entry["matched"]:
                user, group = _owner(entry["uid"], entry["gid"])
                found.append(
                    {
                        "path": path,
                        "size": entry["size"],
                        "mode": entry["mode"],
                        "owner": user,
                        "group": group,
                        "uid": entry["uid"],
                        "gid": entry["gid"],
                        "mtime": _iso(entry["mtime"]),
                        "sha256": entry["sha256"],
                        "binary": entry["binary"],
                        "matched": list(entry["matched"]),
                    }
                )
        return found

    def summary(self):  # type: () -> Dict[str, Any]
        summary = dict(self.stats)
        summary.update(
            roots=list(self.roots),
            limits=dict(self.limits),
            truncated=bool(self.truncated),
            truncated_by=list(self.truncated),
        )
        return summary


# --------------------------------------------------------------------------- event logs


def event_log_state(root, logs):  # type: (str, List[str]) -> Dict[str, Dict[str, int]]
    """Size and inode of each event log, so a later run reads only what was appended."""
    state = {}
    for log in logs:
        path = under(root, log)
        try:
            info = os.stat(path)
        except OSError:
            continue
        state[path] = {"size": info.st_size, "inode": info.st_ino}
    return state


def appended_lines(path, before):  # type: (str, Optional[Dict[str, int]]) -> List[str]
    """Lines added to ``path`` since ``before`` (all of it when it was rotated or absent), bounded."""
    try:
        info = os.stat(path)
    except OSError:
        return []
    offset = 0
    if before and before.get("inode") == info.st_ino and before.get("size", 0) <= info.st_size:
        offset = before["size"]
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(EVENT_LOG_READ_LIMIT)
    except (IOError, OSError):
        return []
    return data.decode("utf-8", "replace").splitlines()


def events_in(lines, known):  # type: (List[str], List[str]) -> List[str]
    """The known event names the lines mention as a word, in order of first mention."""
    names = set(known)
    seen = []  # type: List[str]
    for line in lines:
        for word in re.split(r"[^A-Za-z0-9_.-]+", line):
            if word in names and word not in seen:
                seen.append(word)
    return seen


# --------------------------------------------------------------------------- snapshots


def take_snapshot(root, dbs, scan, events, event_logs):
    # type: (str, Dict[str, Any], FileScan, List[str], Dict[str, Dict[str, int]]) -> Dict[str, Any]
    return {
        "created_at": _iso(time.time()),
        "root": root,
        "identifiers": dict(scan.identifiers),
        "search": scan.summary(),
        "dbs": dbs,
        "files": scan.files,
        "events": list(events),
        "event_logs": event_logs,
    }


def snapshot_text(snapshot):  # type: (Dict[str, Any]) -> str
    """The snapshot file's text: starts with SNAPSHOT_MAGIC, then the snapshot with sorted keys."""
    return '{"format": "%s", "version": %d, "snapshot": %s}\n' % (
        SNAPSHOT_FORMAT,
        SNAPSHOT_VERSION,
        json.dumps(snapshot, sort_keys=True, separators=(",", ":")),
    )


def write_snapshot(path, snapshot):  # type: (str, Dict[str, Any]) -> bool
    """Write the snapshot (0600) unless the file already holds the same one (``created_at`` aside); True when written."""
    try:
        current = load_snapshot(path)
    except DiscoveryError:
        current = None
    if current is not None and _comparable(current) == _comparable(snapshot):
        return False
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    atomic_write(path, snapshot_text(snapshot).encode("utf-8"))
    return True


def _comparable(snapshot):  # type: (Dict[str, Any]) -> Dict[str, Any]
    return {key: value for key, value in snapshot.items() if key != "created_at"}


def load_snapshot(path):  # type: (str) -> Dict[str, Any]
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        raise_from(
            DiscoveryError(
                "Cannot read the snapshot %s: %s. Take it first with msl_facts snapshot_path=%s (learn_phase=before)."
                % (path, exc, path),
                "snapshot_missing",
            ),
            exc,
        )
    try:
        document = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise_from(
            DiscoveryError(
                "%s is not a msl_facts snapshot (%s). Take the snapshot again." % (path, exc), "snapshot_invalid"
            ),
            exc,
        )
    if not isinstance(document, dict) or document.get("format") != SNAPSHOT_FORMAT:
        raise DiscoveryError("%s is not a msl_facts snapshot. Take the snapshot again." % path, "snapshot_invalid")
    if document.get("version") != SNAPSHOT_VERSION:
        raise DiscoveryError(
            "%s is a version %r snapshot; this collection reads version %d. Take the snapshot again."
            % (path, document.get("version"), SNAPSHOT_VERSION),
            "snapshot_invalid",
        )
    return document["snapshot"]


def _capped(items):  # type: (List[Any]) -> List[Any]
    return items[:RESULT_LIST_LIMIT]


def diff_snapshots(before, after):  # type: (Dict[str, Any], Dict[str, Any]) -> Dict[str, Any]
    """What changed between two snapshots: files, db records (property by property) and events signalled."""
    old_files, new_files = before.get("files", {}), after.get("files", {})
    added = sorted(set(new_files) - set(old_files))
    removed = sorted(set(old_files) - set(new_files))
    changed = []
    for path in sorted(set(old_files) & set(new_files)):
        old, new = old_files[path], new_files[path]
        what = [field for field in ("size", "sha256", "mode", "uid", "gid") if old.get(field) != new.get(field)]
        if not what and old.get("sha256") is None and old.get("mtime") != new.get("mtime"):
            what = ["mtime"]  # content not hashed (too large or binary): the time is all there is
        if what:
            changed.append({"path": path, "changed": what})
    records = {"added": [], "removed": [], "changed": []}  # type: Dict[str, List[Dict[str, Any]]]
    old_dbs, new_dbs = before.get("dbs", {}), after.get("dbs", {})
    for db_name in sorted(set(old_dbs) | set(new_dbs)):
        old_db, new_db = old_dbs.get(db_name, {}), new_dbs.get(db_name, {})
        for key in sorted(set(new_db) - set(old_db)):
            records["added"].append(_record_view(db_name, key, new_db[key]))
        for key in sorted(set(old_db) - set(new_db)):
            records["removed"].append(_record_view(db_name, key, old_db[key]))
        for key in sorted(set(old_db) & set(new_db)):
            old, new = old_db[key], new_db[key]
            if old != new:
                view = _record_view(db_name, key, new)
                view["changed_props"] = sorted(
                    prop
                    for prop in set(old["props"]) | set(new["props"])
                    if old["props"].get(prop) != new["props"].get(prop)
                )
                view["old_type"] = old["type"]
                records["changed"].append(view)
    return {
        "files": {"added": _capped(added), "removed": _capped(removed), "changed": _capped(changed)},
        "file_counts": {"added": len(added), "removed": len(removed), "changed": len(changed)},
        "records": records,
        "events": list(after.get("events_signalled", [])),
        "search_truncated": bool(before.get("search", {}).get("truncated") or after.get("search", {}).get("truncated")),
    }


def _record_view(db_name, key, record):  # type: (str, str, Dict[str, Any]) -> Dict[str, Any]
    return {
        "db": db_name,
        "key": key,
        "type": record["type"],
        "props": {prop: public_value(value) for prop, value in record["props"].items()},
    }


# --------------------------------------------------------------------------- learning


_KEY_SUFFIXES = (".json",)
_P12_SUFFIXES = (".p12", ".pfx")
_EVENT_HINT = re.compile(r"google|gapps|oauth|gmail|nupoint|imap|um", re.IGNORECASE)
# What each of the collection's record properties holds (msl.CREDENTIAL_PROPS).
_PROP_HOLDS = {"ClientId": "client_id", "ClientEmail": "client_email", "KeyFile": "key_file", "P12File": "p12_file"}
# The variables the roles (oauth_credentials, key_rotation, post_restore) and verify.yml pass as these options.
ROLE_VARIABLES = {
    "credential_dir": "gworkspace_msl_credential_dir",
    "credential_key_file": "gworkspace_msl_credential_key_file",
    "credential_p12_file": "gworkspace_msl_credential_p12_file",
    "credential_record": "gworkspace_msl_credential_record",
    "credential_event": "gworkspace_msl_credential_event",
}


def learn(before, after, defaults=None):
    # type: (Dict[str, Any], Dict[str, Any], Optional[Dict[str, str]]) -> Dict[str, Any]
    """From a snapshot before and one after an upload in the Server Manager: the options and variables to set.

    The key file is a new or changed text file that mentions the service account (both identifiers when both
    are known; a ``.json`` name first); the P12 file a new or changed binary (or ``.p12``) file beside it; the
    record a new or changed config-db record that mentions the service account; the event the one signal-event
    ran between the snapshots. Whatever cannot be told is left out and said in ``notes``.
    """
    defaults = dict(DEFAULTS, **(defaults or {}))
    diff = diff_snapshots(before, after)
    identifiers = {name: value for name, value in after.get("identifiers", {}).items() if value}
    notes = []  # type: List[str]
    options = {}  # type: Dict[str, str]
    if not identifiers:
        notes.append(
            "No client_id or client_email was given, so no file or record could be recognised as the service "
            "account's: run both phases with the service account's client ID and e-mail."
        )
    files = after.get("files", {})
    touched = list(diff["files"]["added"]) + [change["path"] for change in diff["files"]["changed"]]
    wanted = set(identifiers)
    # The db files mention the service account too; they are reported as records.
    db_directory = under(after.get("root") or "/", DB_DIRECTORY)
    key_candidates = [
        path
        for path in touched
        if files.get(path, {}).get("matched")
        and set(files[path]["matched"]) >= wanted
        and not files[path].get("binary")
        and os.path.dirname(path) != db_directory
    ]
    key_candidates.sort(key=lambda path: (not path.endswith(_KEY_SUFFIXES), path))
    key_path = key_candidates[0] if key_candidates else None
    p12_path = None
    if key_path is not None:
        if len(key_candidates) > 1:
            notes.append(
                "Several new or changed files mention the service account: %s; %s is taken as the key file."
                % (", ".join(key_candidates), key_path)
            )
        directory = os.path.dirname(key_path)
        options["credential_dir"] = directory
        options["credential_key_file"] = os.path.basename(key_path)
        p12_candidates = sorted(
            (
                path
                for path in touched
                if path != key_path
                and os.path.dirname(path) == directory
                and (files.get(path, {}).get("binary") or path.lower().endswith(_P12_SUFFIXES))
            ),
            key=lambda path: (not path.lower().endswith(_P12_SUFFIXES), path),
        )
        if p12_candidates:
            p12_path = p12_candidates[0]
            options["credential_p12_file"] = os.path.basename(p12_path)
        else:
            notes.append("No P12 file appeared beside the key: this NuPoint reads the JSON key only.")
    elif identifiers:
        notes.append(
            "No new or changed file mentions %s: the key was not written under the search paths (%s), or in a form "
            "that does not contain the identifiers. Widen search_paths, or look at the new files listed in "
            "differences." % (" or ".join(sorted(identifiers)), ", ".join(after.get("search", {}).get("roots", [])))
        )
    record_view = _learn_record(diff, identifiers, key_path, p12_path, options, notes)
    _learn_event(diff, options, notes)
    if diff["search_truncated"]:
        notes.append(
            "The file search was cut short (see search.truncated_by): raise the limits or narrow search_paths if "
            "the key is not found."
        )
    inventory = {ROLE_VARIABLES[name]: value for name, value in options.items() if name in ROLE_VARIABLES}
    if "db_name" in options:
        notes.append(
            "The record is in the %s db: the roles read and write the configuration db, so only plays of your own "
            "(module_defaults with db_name) can use it." % options["db_name"]
        )
    differs = {name: value for name, value in options.items() if value != defaults.get(name)}
    return {
        "options": options,
        "differs_from_defaults": sorted(differs),
        "inventory": inventory,
        "record": record_view,
        "notes": notes,
        "text": learned_text(options, inventory, record_view, notes, defaults),
        "differences": diff,
    }


def _learn_record(diff, identifiers, key_path, p12_path, options, notes):
    # type: (Dict[str, Any], Dict[str, str], Optional[str], Optional[str], Dict[str, str], List[str]) -> Optional[Dict[str, Any]]
    candidates = []
    for view in diff["records"]["added"] + diff["records"]["changed"]:
        holds = {}
        for prop, value in view["props"].items():
            for name in IDENTIFIERS:
                if identifiers.get(name) and value.lower() == identifiers[name].lower():
                    holds[prop] = name
            if key_path and value == key_path:
                holds[prop] = "key_file"
            if p12_path and value == p12_path:
                holds[prop] = "p12_file"
            if key_path and prop not in holds and value == os.path.dirname(key_path):
                holds[prop] = "credential_dir"
        if any(name in holds.values() for name in IDENTIFIERS):
            candidates.append((view, holds))
    if not candidates:
        if identifiers:
            notes.append(
                "No new or changed config-db record mentions the service account: NuPoint keeps no record of the "
                "upload in the e-smith dbs; keep the default credential_record (the collection's own)."
            )
        return None
    view, holds = candidates[0]
    if len(candidates) > 1:
        notes.append(
            "Several new or changed records mention the service account: %s; %s/%s is taken."
            % (", ".join("%s/%s" % (c["db"], c["key"]) for c, _h in candidates), view["db"], view["key"])
        )
    record = {
        "db": view["db"],
        "key": view["key"],
        "type": view["type"],
        "props": sorted(view["props"]),
        "holds": holds,
        "compatible": False,
    }
    foreign = sorted(prop for prop in view["props"] if prop not in CREDENTIAL_PROPS)
    misplaced = sorted(prop for prop, name in holds.items() if prop in _PROP_HOLDS and _PROP_HOLDS[prop] != name)
    if foreign or misplaced:
        notes.append(
            "NuPoint's record %s/%s has properties the collection does not write (%s). msl_oauth_credentials "
            "replaces its whole credential_record with ClientEmail, ClientId, Fingerprint, InstalledAt, KeyFile, "
            "P12File and PrivateKeyId, so credential_record is not set to it: keep the collection's own record and "
            "report these property names to the collection's maintainers (docs/msl-assumptions.md)."
            % (view["db"], view["key"], ", ".join(foreign + misplaced))
        )
        return record
    record["compatible"] = True
    options["credential_record"] = view["key"]
    if view["db"] != DEFAULTS["db_name"]:
        options["db_name"] = view["db"]
    return record


def _learn_event(diff, options, notes):  # type: (Dict[str, Any], Dict[str, str], List[str]) -> None
    events = diff["events"]
    if not events:
        notes.append(
            "No event was seen in the event logs between the snapshots: the upload signalled none (or the logs "
            "are elsewhere, see event_logs); keep credential_event as it is and check /var/log/messages."
        )
        return
    if len(events) == 1:
        options["credential_event"] = events[0]
        return
    hinted = [name for name in events if _EVENT_HINT.search(name)]
    if len(hinted) == 1:
        options["credential_event"] = hinted[0]
        notes.append("Events seen between the snapshots: %s; %s is taken." % (", ".join(events), hinted[0]))
    else:
        notes.append(
            "Several events were seen between the snapshots (%s); set credential_event to the one NuPoint's upload "
            "signals." % ", ".join(events)
        )


def learned_text(options, inventory, record, notes, defaults):
    # type: (Dict[str, str], Dict[str, str], Optional[Dict[str, Any]], List[str], Dict[str, str]) -> str
    """What the learn procedure prints: inventory variables, the same as module_defaults, NuPoint's record, notes."""
    lines = []
    if inventory:
        lines.append(
            "# host_vars/<this host>.yml (the oauth_credentials, key_rotation and post_restore roles, verify.yml)"
        )
        for name in sorted(inventory):
            lines.append("%s: %s" % (name, inventory[name]))
    if options:
        lines.append("# plays of your own that call the modules directly:")
        lines.append("module_defaults:")
        lines.append("  nupoint.gworkspace.msl_oauth_credentials: &learned_msl_credentials")
        for name in sorted(options):
            suffix = "" if options[name] != defaults.get(name) else "  # the default"
            lines.append("    %s: %s%s" % (name, options[name], suffix))
        lines.append("  nupoint.gworkspace.msl_oauth_credentials_info: *learned_msl_credentials")
    else:
        lines.append("# nothing learned: see the notes")
    if record is not None:
        lines.append(
            "# NuPoint's record: %s/%s (type %s), properties %s"
            % (record["db"], record["key"], record["type"], ", ".join(record["props"]))
        )
        for prop in sorted(record["holds"]):
            lines.append("#   %s holds the %s" % (prop, record["holds"][prop].replace("_", " ")))
    for note in notes:
        lines.append("# note: " + note)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the module's run


def discover(params, run_command):  # type: (Dict[str, Any], Callable[..., Tuple[int, str, str]]) -> Dict[str, Any]
    """Everything msl_facts reports; writes the snapshot when ``params['snapshot_path']`` is set and
    ``params['_write']`` is true (not in check mode)."""
    root = params.get("root") or "/"
    identifiers = {"client_id": params.get("client_id") or "", "client_email": params.get("client_email") or ""}
    db_command = params["db_command"]
    warnings = []  # type: List[str]
    before = None
    if params.get("compare_with"):
        before = load_snapshot(params["compare_with"])
    for name in ("snapshot_path", "compare_with"):
        path = params.get(name)
        if path and any(_inside(path, under(root, top)) for top in params.get("search_paths") or SEARCH_PATHS):
            raise DiscoveryError(
                "%s %s is inside a search path: put snapshots outside %s (for example under /var/tmp), so one "
                "snapshot does not record the other."
                % (name, path, ", ".join(params.get("search_paths") or SEARCH_PATHS)),
                "snapshot_path_in_search",
            )
    dbs, db_errors = read_dbs(root, run_command, db_command)
    for error in db_errors:
        warnings.append("A config db could not be read: %s" % error)
    config_db = ConfigDb(run_command, db_command, params.get("db_name") or DEFAULTS["db_name"])
    search_paths = [under(root, path) for path in (params.get("search_paths") or SEARCH_PATHS)]
    scan = FileScan(
        search_paths,
        identifiers,
        limits={name: params.get(name) for name in LIMITS},
        exclude=[params.get("snapshot_path"), params.get("compare_with")],
    ).run()
    if scan.truncated:
        warnings.append(
            "The file search stopped short (%s): results may be incomplete. Raise the limits or narrow "
            "search_paths." % ", ".join(scan.truncated)
        )
    events = event_names(root)
    logs = event_log_state(root, params.get("event_logs") or list(EVENT_LOGS))
    snapshot = take_snapshot(root, dbs, scan, events, logs)
    if before is not None:
        signalled = []  # type: List[str]
        for path in sorted(logs):
            for name in events_in(appended_lines(path, before.get("event_logs", {}).get(path)), events):
                if name not in signalled:
                    signalled.append(name)
        snapshot["events_signalled"] = signalled
    result = {
        "changed": False,
        "root": root,
        "release": release_facts(root, config_db),
        "pythons": python_facts(root, run_command, params.get("python_timeout") or PYTHON_VERSION_TIMEOUT),
        "nupoint": nupoint_facts(root, run_command, dbs.get(config_db.db_name)),
        "events": events,
        "dbs": sorted(dbs),
        "records": matching_records(dbs, identifiers) if any(identifiers.values()) else [],
        "files": scan.matches(),
        "search": scan.summary(),
        "snapshot_path": params.get("snapshot_path"),
        "snapshot_written": False,
        "warnings": warnings,
    }  # type: Dict[str, Any]
    if params.get("snapshot_path") and params.get("_write", True):
        result["snapshot_written"] = write_snapshot(params["snapshot_path"], snapshot)
        result["changed"] = result["snapshot_written"]
    if before is not None:
        learned = learn(before, snapshot)
        result["differences"] = learned.pop("differences")
        result["learned"] = learned
    return result


def _inside(path, directory):  # type: (str, str) -> bool
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)
