# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-user check's HTML report, and the fleet index page over several hosts' reports.

One self-contained page per run, for the people the result is handed to (a manager, a help desk): the
header (domain, host, time, client and key, clock offset, collection version), an inline SVG chart of
users per failure class, the latency percentiles, what fixes each class, and a sortable, filterable
table of the failed users with Google's message and the fix. Everything the reader needs is in the
HTML itself: the chart is SVG, the table is complete and ordered (class, then user) without
JavaScript; the little inline script only adds sorting and filtering. A URL fragment such as
``#class=imap_disabled&sort=user:desc`` applies a filter and an order on load, so a link can point at
"the users with IMAP disabled".

Why it is built this way:

- Standard library only, Python 3.6 syntax: it runs on MSL, where there is no jinja2.
- Every text that comes from a server, a user list or the inventory goes through ``html.escape``;
  the script reads rows through ``dataset``/``textContent``, never ``innerHTML``. A Content Security
  Policy forbids every external load, so the page cannot fetch anything, offline or not.
- The fix texts are ``failures.hint()``: the one vocabulary, never a copy.

The fleet page (:func:`fleet_index`) takes several JSON reports (``report.report_documents``' shape)
and links each host's own HTML report.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
from collections import Counter

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass

from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import html_escape
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import failures

# The collection's version, for the report's header (the module runs on MSL without galaxy.yml;
# tests/unit/plugins/module_utils/_google/test_report_html.py keeps it equal to galaxy.yml's).
COLLECTION_VERSION = "0.1.0"

LATENCY_PHASES = ("token", "connect", "auth", "select", "total")

# One colour per class: green for ok, amber for the network, red for the token endpoint, blue for IMAP.
CLASS_COLOURS = {
    "ok": "#2e7d32",
    "dns": "#b26a00",
    "connect": "#c77800",
    "tls": "#8d6e00",
    "timeout": "#a15c00",
    "token_unauthorized_scope": "#b71c1c",
    "token_invalid_user": "#c62828",
    "token_clock_skew": "#ad1457",
    "token_invalid_key": "#880e4f",
    "token_other": "#6a1b9a",
    "imap_disabled": "#1565c0",
    "imap_auth_failed": "#283593",
    "imap_other": "#00695c",
    "api_error": "#4e342e",
}

_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

_STYLE = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1b1b1b; background: #f6f7f9; }
header { background: #16324f; color: #fff; padding: 16px 24px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header .verdict { font-size: 16px; }
main { padding: 16px 24px 32px; max-width: 1400px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 12px 16px; margin: 0 0 16px; }
h2 { font-size: 16px; margin: 0 0 8px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.facts dt { color: #555; }
dl.facts dd { margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-all; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 4px 8px; border-bottom: 1px solid #e6e8eb; }
th { background: #eef1f4; position: sticky; top: 0; }
#latency, #fleet-totals { width: auto; min-width: 460px; }
#failed-users td:first-child { white-space: nowrap; }
#failed-users td.msg { width: 38%; }
#failed-users td.fix { width: 30%; }
section { overflow-x: auto; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.cls { display: inline-block; padding: 0 6px; border-radius: 3px; color: #fff; font-size: 12px; white-space: nowrap; }
.msg { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; word-break: break-word; }
.fix { font-size: 12px; color: #333; }
.muted { color: #666; }
.ok-text { color: #2e7d32; } .bad-text { color: #b71c1c; }
#controls { margin: 0 0 8px; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
#controls[hidden] { display: none; }
th button { font: inherit; font-weight: bold; background: none; border: 0; padding: 0; cursor: pointer; color: inherit; }
th[aria-sort=ascending] button::after { content: " \\25B2"; }
th[aria-sort=descending] button::after { content: " \\25BC"; }
svg text { font: 12px system-ui, "DejaVu Sans", sans-serif; }
@media print { #controls { display: none; } th { position: static; } }
"""

_SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("failed-users");
  if (!table) { return; }
  var body = table.tBodies[0];
  var select = document.getElementById("class-filter");
  var search = document.getElementById("search");
  var shown = document.getElementById("shown-count");
  document.getElementById("controls").hidden = false;
  var numeric = { attempts: true, total: true };
  function rows() { return Array.prototype.slice.call(body.rows); }
  function filter() {
    var cls = select.value, text = search.value.toLowerCase(), count = 0;
    rows().forEach(function (row) {
      var visible = (!cls || row.dataset.class === cls) &&
        (!text || row.textContent.toLowerCase().indexOf(text) !== -1);
      row.hidden = !visible;
      if (visible) { count += 1; }
    });
    shown.textContent = String(count);
    table.dataset.filter = cls;
  }
  function sort(key, dir) {
    if (!key) { return; }
    var sign = dir === "desc" ? -1 : 1;
    var sorted = rows().sort(function (a, b) {
      var x = a.dataset[key] || "", y = b.dataset[key] || "";
      var c = numeric[key] ? (parseFloat(x) || 0) - (parseFloat(y) || 0) : x.localeCompare(y);
      if (c === 0) { c = a.dataset.user.localeCompare(b.dataset.user); }
      return c * sign;
    });
    sorted.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      if (th.dataset.key === key) { th.setAttribute("aria-sort", dir === "desc" ? "descending" : "ascending"); }
      else { th.removeAttribute("aria-sort"); }
    });
    table.dataset.sort = key + ":" + (dir === "desc" ? "desc" : "asc");
  }
  function fromFragment() {
    var params = {};
    window.location.hash.replace(/^#/, "").split("&").forEach(function (pair) {
      var at = pair.indexOf("=");
      if (at > 0) { params[decodeURIComponent(pair.slice(0, at))] = decodeURIComponent(pair.slice(at + 1)); }
    });
    if (params["class"] !== undefined) {
      var known = Array.prototype.some.call(select.options, function (o) { return o.value === params["class"]; });
      select.value = known ? params["class"] : "";
    }
    if (params.q !== undefined) { search.value = params.q; }
    if (params.sort) { var parts = params.sort.split(":"); sort(parts[0], parts[1]); }
    filter();
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    var button = th.querySelector("button");
    if (!button) { return; }
    button.addEventListener("click", function () {
      var dir = th.getAttribute("aria-sort") === "ascending" ? "desc" : "asc";
      sort(th.dataset.key, dir);
    });
  });
  select.addEventListener("change", filter);
  search.addEventListener("input", filter);
  window.addEventListener("hashchange", fromFragment);
  fromFragment();
})();
"""


def _e(value):  # type: (Any) -> str
    return html_escape("" if value is None else str(value))


def _number(value):  # type: (Any) -> str
    if isinstance(value, float):
        return ("%.1f" % value).rstrip("0").rstrip(".") if value != int(value) else "%d" % value
    return _e(value)


def domain_of(users):  # type: (Iterable[str]) -> str
    """The domain most users belong to (the Workspace domain the report is about); empty when none."""
    domains = Counter(user.rpartition("@")[2].lower() for user in users if "@" in user)
    return domains.most_common(1)[0][0] if domains else ""


def fix_for(failure_class, phase):  # type: (str, Optional[str]) -> str
    """What fixes ``failure_class``, worded for where it happened: ``failures.hint``, the one vocabulary."""
    endpoint = failures.ENDPOINT_TOKEN if phase in (None, "token") else failures.ENDPOINT_IMAP
    return failures.hint(failure_class, endpoint)


def _page(title, header, body, script=""):  # type: (str, str, str, str) -> str
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" content="%s">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="nupoint.gworkspace %s">\n'
        "<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n<header>%s</header>\n<main>\n%s</main>\n%s</body>\n</html>\n"
        % (
            _CSP,
            _e(COLLECTION_VERSION),
            _e(title),
            _STYLE,
            header,
            body,
            "<script>%s</script>\n" % script if script else "",
        )
    )


def _facts(rows):  # type: (Sequence[Any]) -> str
    items = "".join("<dt>%s</dt><dd>%s</dd>" % (_e(name), _e(value)) for name, value in rows if value not in (None, ""))
    return '<dl class="facts">%s</dl>' % items


def _class_badge(failure_class):  # type: (str) -> str
    return '<span class="cls" style="background:%s">%s</span>' % (
        CLASS_COLOURS.get(failure_class, "#455a64"),
        _e(failure_class),
    )


def class_chart(by_class, link=True):  # type: (Mapping[str, int], bool) -> str
    """An inline SVG bar chart of users per class (classes with users only), readable without script."""
    counts = [(name, int(count)) for name, count in by_class.items() if count]
    order = {name: index for index, name in enumerate(failures.FAILURE_CLASSES)}
    counts.sort(key=lambda item: (item[0] != failures.OK, -item[1], order.get(item[0], 99), item[0]))
    if not counts:
        return '<p class="muted">No users.</p>'
    label_width, bar_width, row_height = 190, 560, 26
    largest = max(count for name, count in counts)
    total = sum(count for name, count in counts)
    height = row_height * len(counts) + 8
    parts = [
        '<svg id="class-chart" role="img" width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg">'
        % (label_width + bar_width + 110, height, label_width + bar_width + 110, height),
        "<title>Users per failure class</title>",
    ]
    for index, (name, count) in enumerate(counts):
        y = 4 + index * row_height
        width = max(2, round(bar_width * count / float(largest)))
        bar_svg = (
            '<g class="bar" data-class="%s"><title>%s: %d user%s</title>'
            '<text x="%d" y="%d" text-anchor="end">%s</text>'
            '<rect x="%d" y="%d" width="%d" height="%d" rx="2" fill="%s"/>'
            '<text x="%d" y="%d">%d (%.1f %%)</text></g>'
            % (
                _e(name),
                _e(name),
                count,
                "" if count == 1 else "s",
                label_width - 8,
                y + 16,
                _e(name),
                label_width,
                y + 3,
                width,
                row_height - 6,
                CLASS_COLOURS.get(name, "#455a64"),
                label_width + width + 6,
                y + 16,
                count,
                100.0 * count / total,
            )
        )
        if link and name != failures.OK:
            bar_svg = '<a href="#class=%s">%s</a>' % (_e(name), bar_svg)
        parts.append(bar_svg)
    parts.append("</svg>")
    return "".join(parts)


def _latency_table(latency):  # type: (Mapping[str, Mapping[str, Any]]) -> str
    rows = []
    for phase in LATENCY_PHASES:
        values = latency.get(phase)
        if values:
            rows.append(
                '<tr><td>%s</td><td class="num">%s</td><td class="num">%s</td><td class="num">%s</td></tr>'
                % (_e(phase), _number(values.get("p50")), _number(values.get("p95")), _number(values.get("max")))
            )
    if not rows:
        return '<p class="muted">No latency measured.</p>'
    return (
        '<table id="latency"><thead><tr><th>phase</th><th class="num">p50 (ms)</th><th class="num">p95 (ms)</th>'
        '<th class="num">max (ms)</th></tr></thead><tbody>%s</tbody></table>' % "".join(rows)
    )


def _fix_table(failed):  # type: (Sequence[Mapping[str, Any]]) -> str
    by_class = {}  # type: Dict[str, List[Mapping[str, Any]]]
    for result in failed:
        by_class.setdefault(result["failure_class"], []).append(result)
    rows = []
    for name in sorted(by_class, key=lambda item: (-len(by_class[item]), item)):
        phases = sorted({result.get("phase") or "" for result in by_class[name]})
        fixes = []
        for phase in phases:
            fix = fix_for(name, phase or None)
            if fix not in fixes:
                fixes.append(fix)
        rows.append(
            '<tr data-class="%s"><td>%s</td><td class="num"><a href="#class=%s">%d</a></td><td class="fix">%s</td></tr>'
            % (_e(name), _class_badge(name), _e(name), len(by_class[name]), "<br>".join(_e(fix) for fix in fixes))
        )
    return (
        '<table id="fixes"><thead><tr><th>class</th><th class="num">users</th><th>what fixes it</th></tr></thead>'
        "<tbody>%s</tbody></table>" % "".join(rows)
    )


def _failed_table(failed):  # type: (Sequence[Mapping[str, Any]]) -> str
    classes = sorted({result["failure_class"] for result in failed})
    options = "".join('<option value="%s">%s</option>' % (_e(name), _e(name)) for name in classes)
    controls = (
        '<div id="controls" hidden><label>class <select id="class-filter"><option value="">all classes</option>%s'
        '</select></label><label>search <input id="search" type="search" placeholder="user or message"></label>'
        '<span><span id="shown-count">%d</span> of %d shown</span></div>' % (options, len(failed), len(failed))
    )
    headers = (
        ("user", "user", ""),
        ("class", "class", ""),
        ("phase", "phase", ""),
        ("attempts", "attempts", "num"),
        ("total", "total ms", "num"),
        ("message", "Google's or the server's message", ""),
        ("", "what fixes it", ""),
    )
    head = "".join(
        "<th%s%s>%s</th>"
        % (
            ' data-key="%s"' % key if key else "",
            ' class="%s"' % css if css else "",
            '<button type="button">%s</button>' % _e(label) if key and key != "message" else _e(label),
        )
        for key, label, css in headers
    )
    rows = []
    ordered = sorted(failed, key=lambda result: (result["failure_class"], result["user"].lower()))
    for result in ordered:
        total = (result.get("latency_ms") or {}).get("total", "")
        rows.append(
            '<tr data-user="%s" data-class="%s" data-phase="%s" data-attempts="%s" data-total="%s">'
            '<td>%s</td><td>%s</td><td>%s</td><td class="num">%s</td><td class="num">%s</td>'
            '<td class="msg">%s</td><td class="fix">%s</td></tr>'
            % (
                _e(result["user"].lower()),
                _e(result["failure_class"]),
                _e(result.get("phase") or ""),
                _e(result.get("attempts", "")),
                _e(total),
                _e(result["user"]),
                _class_badge(result["failure_class"]),
                _e(result.get("phase") or ""),
                _e(result.get("attempts", "")),
                _number(total),
                _e(result.get("message", "")),
                _e(fix_for(result["failure_class"], result.get("phase"))),
            )
        )
    return (
        '%s<table id="failed-users" data-sort="class:asc" data-filter=""><thead><tr>%s</tr></thead><tbody>%s</tbody></table>'
        % (
            controls,
            head,
            "".join(rows),
        )
    )


def _seconds(value):  # type: (Any) -> str
    try:
        return "%+.3f s" % float(value)
    except (TypeError, ValueError):
        return ""


def report_header_facts(meta, results):  # type: (Mapping[str, Any], Sequence[Mapping[str, Any]]) -> List[Any]
    """``(label, value)`` rows of the report's header; values that are not known are left out."""
    fingerprint = meta.get("fingerprint_sha256")
    return [
        ("Domain", meta.get("domain") or domain_of(result["user"] for result in results)),
        ("MSL host", meta.get("host")),
        ("Node", meta.get("node")),
        ("Started (UTC)", meta.get("started_at")),
        ("IMAP server", "%s:%s" % (meta["imap_host"], meta.get("imap_port", "")) if meta.get("imap_host") else ""),
        ("Mailbox opened", meta.get("select_mailbox") or ("none (login only)" if "select_mailbox" in meta else "")),
        ("Client ID", meta.get("client_id")),
        ("Service account", meta.get("client_email")),
        ("Key ID", meta.get("private_key_id")),
        ("Key fingerprint (SHA-256)", fingerprint),
        (
            "Clock offset",
            _seconds(meta.get("clock_offset_seconds")) if meta.get("clock_offset_seconds") is not None else "",
        ),
        ("Collection", "nupoint.gworkspace %s" % (meta.get("collection_version") or COLLECTION_VERSION)),
    ]


def render_report(results, summary, meta):  # type: (Sequence[Mapping[str, Any]], Mapping[str, Any], Mapping[str, Any]) -> str
    """The HTML report of one run, as text: self-contained, every server text escaped."""
    failed = [result for result in results if result["failure_class"] != failures.OK]
    facts = report_header_facts(meta, results)
    where = meta.get("host") or meta.get("node") or ""
    total = summary.get("total", len(results))
    ok = summary.get("ok", total - len(failed))
    verdict = (
        '<span class="verdict">IMAP login ok for all %d users</span>' % total
        if not failed
        else '<span class="verdict">IMAP login ok for %d of %d users; %d failed: %s</span>'
        % (
            ok,
            total,
            len(failed),
            _e(failures.class_counts_text(summary.get("by_class") or failures.count_classes(results))),
        )
    )
    header = "<h1>IMAP access check%s</h1>%s" % (" &middot; " + _e(where) if where else "", verdict)
    run_facts = _facts(
        [
            ("Users checked", total),
            ("Duration", "%.1f s" % summary["duration_seconds"] if "duration_seconds" in summary else ""),
            ("Users per second", summary.get("users_per_second")),
            ("Concurrency", summary.get("concurrency")),
        ]
    )
    by_class = summary.get("by_class") or failures.count_classes(results)
    body = [
        '<section id="about"><h2>Run</h2>%s</section>' % _facts(facts),
        '<section id="chart"><h2>Users per failure class</h2>%s</section>' % class_chart(by_class),
        '<section id="timing"><h2>Latency</h2>%s%s</section>'
        % (run_facts, _latency_table(summary.get("latency_ms") or {})),
    ]
    if failed:
        body.append('<section id="fix"><h2>What fixes each class</h2>%s</section>' % _fix_table(failed))
        body.append(
            '<section id="failed"><h2>Failed users (%d)</h2>%s</section>' % (len(failed), _failed_table(failed))
        )
    else:
        body.append('<section id="failed"><h2>Failed users</h2><p class="ok-text">None.</p></section>')
    title = "IMAP access check %s - %d of %d ok" % (where, ok, total)
    return _page(title, header, "\n".join(body) + "\n", _SCRIPT if failed else "")


# --------------------------------------------------------------------------- the fleet page


def fleet_index(entries):  # type: (Sequence[Mapping[str, Any]]) -> str
    """One page over several hosts' runs.

    ``entries``: ``{"host": name, "document": the JSON report (meta, summary, results), "href": link to
    the host's HTML report or None}``, in the order to show. The page shows the fleet's totals per class
    (chart) and one row per host with its counts, its most common failure classes and the link.
    """
    totals = dict.fromkeys(failures.FAILURE_CLASSES, 0)  # type: Dict[str, int]
    rows = []
    fleet_total = fleet_failed = 0
    for entry in entries:
        document = entry.get("document") or {}
        summary = document.get("summary") or {}
        meta = document.get("meta") or {}
        by_class = summary.get("by_class") or {}
        for name, count in by_class.items():
            totals[name] = totals.get(name, 0) + int(count)
        total, failed = int(summary.get("total", 0)), int(summary.get("failed", 0))
        fleet_total += total
        fleet_failed += failed
        href = entry.get("href")
        host = _e(entry.get("host") or meta.get("host") or meta.get("node") or "?")
        rows.append(
            '<tr data-host="%s" data-failed="%d"><td>%s</td><td>%s</td><td class="num">%d</td><td class="num">%d</td>'
            '<td class="num %s">%d</td><td>%s</td><td>%s</td></tr>'
            % (
                host,
                failed,
                '<a href="%s">%s</a>' % (_e(href), host) if href else host,
                _e(meta.get("started_at", "")),
                total,
                int(summary.get("ok", 0)),
                "bad-text" if failed else "ok-text",
                failed,
                " ".join(
                    "%s %d" % (_class_badge(name), count)
                    for name, count in sorted(by_class.items(), key=lambda item: (-item[1], item[0]))
                    if count and name != failures.OK
                )
                or '<span class="ok-text">all ok</span>',
                _e(meta.get("private_key_id", "")),
            )
        )
    hosts_failing = sum(
        1 for entry in entries if int(((entry.get("document") or {}).get("summary") or {}).get("failed", 0))
    )
    header = (
        "<h1>IMAP access check &middot; %d MSL hosts</h1>"
        '<span class="verdict">%d of %d users ok; %d hosts with failed users</span>'
        % (len(entries), fleet_total - fleet_failed, fleet_total, hosts_failing)
    )
    body = (
        '<section id="chart"><h2>Users per failure class, all hosts</h2>%s</section>\n'
        '<section id="hosts"><h2>Hosts</h2><table id="fleet"><thead><tr><th>host</th><th>started (UTC)</th>'
        '<th class="num">users</th><th class="num">ok</th><th class="num">failed</th><th>failure classes</th>'
        "<th>key ID</th></tr></thead><tbody>%s</tbody></table></section>\n"
        '<p class="muted">nupoint.gworkspace %s. Each host\'s report has its failed users and what fixes each class.</p>\n'
        % (class_chart(totals, link=False), "".join(rows), _e(COLLECTION_VERSION))
    )
    return _page("IMAP access check - %d hosts" % len(entries), header, body)


def fleet_entries(report_paths, dest):  # type: (Sequence[Mapping[str, str]], str) -> List[Dict[str, Any]]
    """Read each host's JSON report: ``report_paths`` items are ``{"host", "json", "html"}`` (``html`` optional).

    Links are made relative to ``dest``'s directory, so the fetched tree can be moved or zipped.
    Raises ``OSError`` / ``ValueError`` for an unreadable report.
    """
    base = os.path.dirname(os.path.abspath(dest))
    entries = []
    for item in report_paths:
        with open(item["json"], "rb") as handle:
            document = json.loads(handle.read().decode("utf-8"))
        html_path = item.get("html")
        href = None
        if html_path and os.path.exists(html_path):
            href = os.path.relpath(os.path.abspath(html_path), base).replace(os.sep, "/")
        entries.append({"host": item.get("host") or "", "document": document, "href": href})
    return entries
