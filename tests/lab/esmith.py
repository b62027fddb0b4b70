"""Emulated e-smith tools of a lab MSL host: ``/sbin/e-smith/db`` and ``/sbin/e-smith/signal-event``.

``up`` copies this file (stdlib only) to ``<host>/sbin/e-smith/db`` and ``.../signal-event`` with
the lab's Python as the first line; the program name picks the tool. The host root is found
relative to the script (three levels up), so each host directory is self-contained.

Database format, as e-smith's ``esmith::config`` / ``esmith::db`` store it: one record per line,
``key=type|prop|value|prop|value`` (properties sorted), a comment header, records sorted by key;
a whole record value is trimmed and cut at the first newline. A literal ``|`` inside a value is
written as ``\\|`` and read back as ``|`` (e-smith splits on unescaped pipes).

Exit codes follow e-smith: 0 on success, 1 when a key (or property) is missing, except
``setprop``, which exits 0 even when the key does not exist and nothing was written.
"""

import fcntl
import os
import re
import sys
import time

USAGE = {
    "keys": "db DBNAME keys",
    "print": "db DBNAME print [key]",
    "show": "db DBNAME show [key]",
    "get": "db DBNAME get key",
    "set": "db DBNAME set key type [prop1 val1] [prop2 val2] ...",
    "gettype": "db DBNAME gettype key",
    "settype": "db DBNAME settype key type",
    "getprop": "db DBNAME getprop key prop",
    "setprop": "db DBNAME setprop key prop1 val1 [prop2 val2] ...",
    "delprop": "db DBNAME delprop key prop1 [prop2] ...",
    "delete": "db DBNAME delete key",
}
HEADER = (
    "# DO NOT MODIFY THIS FILE.\n"
    "# This file is maintained by the configuration software (lab emulation of e-smith).\n"
    "# Manually editing it may put the system in an unknown state.\n"
    "#\n"
    "# updated: {updated}\n"
)
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


# --- record format ------------------------------------------------------------------------


def _pairs(items):
    """[k1, v1, k2, v2, ...] -> {k1: v1, k2: v2, ...} (a missing last value is empty)."""
    items = list(items)
    if len(items) % 2:
        items.append("")
    return {items[i]: items[i + 1] for i in range(0, len(items), 2)}


def parse_value(raw):
    """``type|p|v|p|v`` -> (type, {p: v})."""
    fields = [field.replace("\\|", "|") for field in _UNESCAPED_PIPE.split(raw)]
    return fields[0], _pairs(fields[1:])


def _escape(text):
    return str(text).replace("|", "\\|")


def format_value(record_type, props):
    value = _escape(record_type)
    for name in sorted(props):
        value += "|" + _escape(name) + "|" + _escape(props[name])
    # esmith::config stores one line per record and trims it.
    return value.split("\n", 1)[0].strip()


def read_db(path):
    """{key: raw value} from a db file (missing file = empty db)."""
    records = {}  # type: dict[str, str]
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return records
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        records[key.strip()] = value
    return records


def write_db(path, records):
    """Atomically replace the db file (temp file + rename, like esmith::config)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = "%s.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(HEADER.format(updated=time.strftime("%a %b %d %H:%M:%S %Y")))
        for key in sorted(records):
            handle.write("%s=%s\n" % (key, records[key]))
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)


class Database:
    """A db file with a lock held around read-modify-write."""

    def __init__(self, path):
        self.path = path
        self.records = {}
        self._lock = None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._lock = open(self.path + ".lock", "a", encoding="utf-8")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.records = read_db(self.path)
        return self

    def __exit__(self, *exc_info):
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def save(self):
        write_db(self.path, self.records)

    def get(self, key):
        raw = self.records.get(key)
        return None if raw is None else parse_value(raw)

    def put(self, key, record_type, props):
        self.records[key.strip()] = format_value(record_type, props)


# --- host layout --------------------------------------------------------------------------


def host_root_of(script):
    """<root>/sbin/e-smith/<tool> -> <root>."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(script))))


def db_path(root, dbname):
    if dbname.startswith("/"):
        return dbname
    return os.path.join(root, "home", "e-smith", "db", dbname)


# --- db verbs -----------------------------------------------------------------------------


def _usage(verb, out):
    out.write("usage: %s\n" % USAGE.get(verb, "db DBNAME {%s} ..." % ",".join(sorted(USAGE))))
    return 1


def _show(db, keys, out):
    for key in keys:
        record_type, props = db.get(key)
        out.write("%s=%s\n" % (key, record_type))
        for name in sorted(props):
            out.write("    %s=%s\n" % (name, props[name]))


def run_db(root, argv, out=sys.stdout, err=sys.stderr):
    if len(argv) < 2:
        return _usage(None, err)
    dbname, verb, args = argv[0], argv[1], argv[2:]
    if verb not in USAGE:
        return _usage(None, err)
    with Database(db_path(root, dbname)) as db:
        if verb == "keys":
            for key in sorted(db.records):
                out.write(key + "\n")
            return 0
        if verb in ("print", "show"):
            if len(args) > 1:
                return _usage(verb, err)
            keys = args if args else sorted(db.records)
            if args and args[0] not in db.records:
                return 1
            if verb == "print":
                for key in keys:
                    out.write("%s=%s\n" % (key, db.records[key]))
            else:
                _show(db, keys, out)
            return 0
        if not args:
            return _usage(verb, err)
        key = args[0]
        record = db.get(key)
        if verb in ("get", "gettype"):
            if len(args) != 1:
                return _usage(verb, err)
            if record is None:
                return 1
            out.write(record[0] + "\n")
            return 0
        if verb == "set":
            if len(args) < 2 or len(args) % 2:
                return _usage(verb, err)
            db.put(key, args[1], _pairs(args[2:]))
            db.save()
            return 0
        if verb == "settype":
            if len(args) != 2:
                return _usage(verb, err)
            if record is None:
                return 1
            db.put(key, args[1], record[1])
            db.save()
            return 0
        if verb == "getprop":
            if len(args) != 2:
                return _usage(verb, err)
            if record is None or args[1] not in record[1]:
                return 1
            out.write(record[1][args[1]] + "\n")
            return 0
        if verb == "setprop":
            if len(args) < 3 or len(args) % 2 == 0:
                return _usage(verb, err)
            if record is None:
                # Like the real tool: nothing written, and still success.
                return 0
            props = dict(record[1])
            props.update(_pairs(args[1:]))
            db.put(key, record[0], props)
            db.save()
            return 0
        if verb == "delprop":
            if len(args) < 2:
                return _usage(verb, err)
            if record is None:
                return 1
            props = {name: value for name, value in record[1].items() if name not in args[1:]}
            db.put(key, record[0], props)
            db.save()
            return 0
        # delete
        if len(args) != 1:
            return _usage(verb, err)
        if record is None:
            return 1
        del db.records[key]
        db.save()
        return 0


# --- signal-event -------------------------------------------------------------------------


def render_ntp_conf(root):
    """What the ``timeserver-update`` event's templates produce from the ``ntpd`` record."""
    with Database(db_path(root, "configuration")) as db:
        record = db.get("ntpd")
    record_type, props = record if record else ("service", {})
    status = props.get("status", "disabled")
    servers = [name for name in re.split(r"[\s,]+", props.get("NTPServer", "")) if name]
    lines = [
        "# ntp.conf generated by signal-event timeserver-update (lab emulation); do not edit.",
        "# ntpd record: type=%s status=%s NTPServer=%s" % (record_type, status, props.get("NTPServer", "")),
        "driftfile /var/lib/ntp/drift",
        "restrict default kod nomodify notrap nopeer noquery",
        "restrict 127.0.0.1",
    ]
    if status == "enabled":
        lines.extend("server %s iburst" % server for server in servers)
    else:
        lines.append("# network time disabled: no servers")
    target = os.path.join(root, "etc", "ntp.conf")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = target + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(tmp, target)


def log_event(root, event, args=()):
    log_dir = os.path.join(root, "var", "log")
    os.makedirs(log_dir, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with open(os.path.join(log_dir, "signal-event.log"), "a", encoding="utf-8") as handle:
        handle.write(" ".join([stamp, event, *args]) + "\n")


def run_signal_event(root, argv, err=sys.stderr):
    if not argv:
        err.write("usage: signal-event EVENT [ARGS...]\n")
        return 1
    event, args = argv[0], argv[1:]
    log_event(root, event, args)
    if event == "timeserver-update":
        render_ntp_conf(root)
    return 0


def main(argv=None):
    argv = sys.argv if argv is None else argv
    # The generated script is this very file: its own location gives the host root.
    tool = os.path.basename(__file__)
    root = host_root_of(__file__)
    if tool == "signal-event":
        return run_signal_event(root, argv[1:])
    return run_db(root, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
