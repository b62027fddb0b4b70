# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-user check's report files: JSON (everything) and CSV (one row per user), written 0600 atomically.

The report lists every user's address: it is written owner-only, never half-written (a temporary file
in the same directory, fsynced, then renamed). Server texts in the CSV are neutralised for spreadsheet
programs. Standard library only; parses as Python 3.6.
"""

import csv
import io
import json
import os
import tempfile
from typing import Any, Dict, Mapping, Sequence, Tuple

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


def report_paths(report_path: str) -> Tuple[str, str]:
    """``(json_path, csv_path)``: the JSON at ``report_path``, the CSV next to it with a ``.csv`` suffix."""
    root, extension = os.path.splitext(report_path)
    if extension.lower() == ".json":
        return report_path, root + ".csv"
    if extension.lower() == ".csv":
        return root + ".json", report_path
    return report_path, report_path + ".csv"


def report_documents(
    results: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], meta: Mapping[str, Any]
) -> Tuple[bytes, bytes]:
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


def _csv_safe(value: Any) -> str:
    # A cell starting with = + - @ is a formula to spreadsheet programs; server texts are not ours to trust.
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def write_private_file(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` atomically with ``data``, created with ``mode`` (the report lists users: 0600)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if fd != -1:
            os.close(fd)
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise


def write_report(
    report_path: str, results: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], meta: Mapping[str, Any]
) -> Dict[str, str]:
    """Write the JSON and CSV reports (atomically, mode 0600); return ``{"json": path, "csv": path}``."""
    json_path, csv_path = report_paths(report_path)
    json_bytes, csv_bytes = report_documents(results, summary, meta)
    write_private_file(json_path, json_bytes)
    write_private_file(csv_path, csv_bytes)
    return {"json": json_path, "csv": csv_path}
