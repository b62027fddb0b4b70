# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-user check's report files: JSON (everything), CSV (one row per user) and HTML (the page people
read, ``report_html``), written 0600 atomically; and the run's progress file.

The report lists every user's address: it is written owner-only, never half-written (a temporary file
in the same directory, fsynced, then renamed). Server texts in the CSV are neutralised for spreadsheet
programs, in the HTML escaped. Standard library only; parses as Python 3.6.

The progress file (:class:`ProgressFile`, ``report_path`` + ``.progress``) is the exception to "atomic
rewrite": it is appended to, one short line about every second, because ``tail -f`` follows the file it
opened, and a file replaced by a rename would freeze it. It holds counts only, no user.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import io
import json
import os
import threading

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass

from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import monotonic
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import report_html
from ansible_collections.nupoint.gworkspace.plugins.module_utils.files import atomic_write

REPORT_FIELDS = (
    "user",
    "failure_class",
    "phase",
    "attempts",
    "token_ms",
    "connect_ms",
    "auth_ms",
    "select_ms",
    "total_ms",
    "message",
)


def report_paths(report_path):  # type: (str) -> Tuple[str, str]
    """``(json_path, csv_path)``: the JSON at ``report_path``, the CSV next to it with a ``.csv`` suffix."""
    root, extension = os.path.splitext(report_path)
    if extension.lower() == ".json":
        return report_path, root + ".csv"
    if extension.lower() == ".csv":
        return root + ".json", report_path
    return report_path, report_path + ".csv"


def html_report_path(report_path):  # type: (str) -> str
    """The HTML report's path: next to the JSON report, with an ``.html`` suffix."""
    return os.path.splitext(report_paths(report_path)[0])[0] + ".html"


def progress_path(report_path):  # type: (str) -> str
    """The progress file's path: ``report_path`` + ``.progress``."""
    return report_path + ".progress"


# What a playbook may add to the report's header (imap_check's report_meta): facts the module cannot know.
HEADER_META_FIELDS = ("host", "domain", "fingerprint_sha256", "clock_offset_seconds")


def header_meta(extra):  # type: (Optional[Mapping[str, Any]]) -> Dict[str, Any]
    """The known, non-empty fields of ``extra`` (:data:`HEADER_META_FIELDS`), as text or, for the offset, a number."""
    meta = {}  # type: Dict[str, Any]
    for name, value in (extra or {}).items():
        if name not in HEADER_META_FIELDS or value is None or value == "":
            continue
        if name == "clock_offset_seconds":
            try:
                meta[name] = float(value)
            except (TypeError, ValueError):
                continue
        else:
            meta[name] = str(value)
    return meta


def report_documents(results, summary, meta):  # type: (Sequence[Mapping[str, Any]], Mapping[str, Any], Mapping[str, Any]) -> Tuple[bytes, bytes]
    """The JSON and CSV reports' bytes. The CSV has one row per user (:data:`REPORT_FIELDS`)."""
    document = {"meta": dict(meta), "summary": dict(summary), "results": list(results)}
    json_bytes = (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REPORT_FIELDS)
    for result in results:
        latency = result.get("latency_ms", {})
        writer.writerow(
            [
                _csv_safe(result["user"]),
                result["failure_class"],
                result.get("phase") or "",
                result.get("attempts", ""),
                latency.get("token", ""),
                latency.get("connect", ""),
                latency.get("auth", ""),
                latency.get("select", ""),
                latency.get("total", ""),
                _csv_safe(result.get("message", "")),
            ]
        )
    return json_bytes, buffer.getvalue().encode("utf-8")


def _csv_safe(value):  # type: (Any) -> str
    # A cell starting with = + - @ is a formula to spreadsheet programs; server texts are not ours to trust.
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def write_report(report_path, results, summary, meta):  # type: (str, Sequence[Mapping[str, Any]], Mapping[str, Any], Mapping[str, Any]) -> Dict[str, str]
    """Write the JSON, CSV and HTML reports (atomically, mode 0600); return ``{"json", "csv", "html"}`` paths."""
    json_path, csv_path = report_paths(report_path)
    html_path = html_report_path(report_path)
    json_bytes, csv_bytes = report_documents(results, summary, meta)
    html_bytes = report_html.render_report(results, summary, meta).encode("utf-8")
    atomic_write(json_path, json_bytes)
    atomic_write(csv_path, csv_bytes)
    atomic_write(html_path, html_bytes)
    return {"json": json_path, "csv": csv_path, "html": html_path}


# --------------------------------------------------------------------------- progress


def progress_line(done, total, failed, elapsed, finished=False):  # type: (int, int, int, float, bool) -> str
    """``"1200 / 2500 checked, 3 failed, 41 s left"``: the left time from the rate so far."""
    text = "%d / %d checked, %d failed" % (done, total, failed)
    if finished:
        return "%s, done in %.1f s" % (text, elapsed)
    if done and elapsed > 0:
        return "%s, %d s left" % (text, round((total - done) * elapsed / done))
    return text + ", starting"


class ProgressFile:
    """Appends :func:`progress_line` to ``path`` at most every ``interval`` seconds while users are checked.

    :meth:`record` is called by every worker after each user: it counts under a lock and writes only when
    the interval has passed and no other worker is writing, so workers never wait on the disk. Failing
    to write progress never fails the run (the file is a courtesy; the report is the result).
    """

    def __init__(self, path, total, interval=1.0, clock=monotonic):  # type: (str, int, float, Callable[[], float]) -> None
        self.path = path
        self.total = total
        self.interval = interval
        self.done = 0
        self.failed = 0
        self._clock = clock
        self._started = clock()
        self._last_write = self._started
        self._count_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._fd = None  # type: Optional[int]
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            os.fchmod(self._fd, 0o600)
        except (IOError, OSError):
            self._fd = None
        self._write(progress_line(0, total, 0, 0.0))

    def record(self, result):  # type: (Mapping[str, Any]) -> None
        now = self._clock()
        with self._count_lock:
            self.done += 1
            if result.get("failure_class") != "ok":
                self.failed += 1
            due = now - self._last_write >= self.interval
            if due:
                self._last_write = now
            done, failed = self.done, self.failed
        if due and self._write_lock.acquire(False):
            try:
                self._write(progress_line(done, self.total, failed, now - self._started))
            finally:
                self._write_lock.release()

    def close(self):  # type: () -> None
        """Write the final line and close the file."""
        with self._write_lock:
            self._write(progress_line(self.done, self.total, self.failed, self._clock() - self._started, True))
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except (IOError, OSError):
                    pass
                self._fd = None

    def _write(self, line):  # type: (str) -> None
        # One write() of one short line on an O_APPEND descriptor: a reader never sees half of it.
        if self._fd is None:
            return
        try:
            os.write(self._fd, (line + "\n").encode("ascii"))
        except (IOError, OSError):
            pass
