"""Unit tests for the HTML report, the fleet page and the progress file (_google.report_html, _google.report)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import html
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import (
    failures,
    imap_login,
    pool,
    report,
    report_html,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))))
JWT = re.compile(r"eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{20,}")
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'
DISABLED = (
    "The IMAP server refused the XOAUTH2 login: [ALERT] Your account is not enabled for IMAP use. Please visit your "
    "Gmail settings page and enable your account for IMAP access. (Failure). " + failures.hint("imap_disabled")
)


def synthetic_results() -> list[dict[str, Any]]:
    """What a run of 40 users returns: ok, IMAP disabled, unknown users, a refused connection, a hostile server."""
    results: list[dict[str, Any]] = []
    for number in range(30):
        latency = {"token": 10.0 + number, "connect": 5.0, "auth": 7.5, "select": 1.0, "total": 23.5 + number}
        results.append(
            {
                "user": "u%02d@example.test" % number,
                "failure_class": "ok",
                "phase": None,
                "message": "",
                "attempts": 1,
                "latency_ms": latency,
            }
        )
    for number in range(5):
        results.append(
            {
                "user": "disabled%d@example.test" % number,
                "failure_class": "imap_disabled",
                "phase": "auth",
                "message": DISABLED,
                "attempts": 1,
                "latency_ms": {"token": 9.0, "connect": 4.0, "total": 20.0 + number},
            }
        )
    for number in range(3):
        results.append(
            {
                "user": "ghost%d@example.test" % number,
                "failure_class": "token_invalid_user",
                "phase": "token",
                "message": "Google refused the token request (invalid_grant: Invalid email or User ID).",
                "attempts": 1,
                "latency_ms": {"token": 12.0, "total": 12.5},
                "google_error": "invalid_grant",
            }
        )
    results.append(
        {
            "user": "far@example.test",
            "failure_class": "connect",
            "phase": "connect",
            "message": "Cannot connect to the IMAP server (connect): Connection refused.",
            "attempts": 1,
            "latency_ms": {"token": 9.0, "total": 300.0},
        }
    )
    results.append(
        {
            "user": "evil@example.test",
            "failure_class": "imap_other",
            "phase": "select",
            "message": EVIL,
            "attempts": 3,
            "latency_ms": {"token": 9.0, "total": 40.0},
        }
    )
    return results


def synthetic_report() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    results = synthetic_results()
    summary = imap_login.summarize(results, 2.5, 16)
    meta = {
        "started_at": "2025-01-02T03:04:05Z",
        "imap_host": "imap.gmail.com",
        "imap_port": 993,
        "select_mailbox": "INBOX",
        "client_id": "123456789012345678901",
        "client_email": "nupoint-um@project.iam.gserviceaccount.com",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "node": "msl1.example.test",
    }
    meta.update(report.header_meta({"host": "msl1", "fingerprint_sha256": "ab:cd:ef", "clock_offset_seconds": "0.25"}))
    return results, summary, meta


def failed_rows(page: str) -> list[str]:
    return re.findall(r'<tr data-user="[^"]*" data-class="([^"]*)"', page)


def test_report_has_header_chart_latency_and_failed_users():
    results, summary, meta = synthetic_report()
    page = report_html.render_report(results, summary, meta)
    assert page.startswith("<!DOCTYPE html>")
    for fact in (
        "example.test",
        "msl1",
        "msl1.example.test",
        "2025-01-02T03:04:05Z",
        "123456789012345678901",
        "0123456789abcdef0123456789abcdef01234567",
        "ab:cd:ef",
        "+0.250 s",
        "nupoint.gworkspace %s" % report_html.COLLECTION_VERSION,
    ):
        assert "<dd>%s</dd>" % html.escape(fact) in page, fact
    assert '<svg id="class-chart"' in page
    assert re.findall(r'<g class="bar" data-class="([^"]+)"', page) == [
        "ok",
        "imap_disabled",
        "token_invalid_user",
        "connect",
        "imap_other",
    ]
    assert '<table id="latency">' in page and "<td>select</td>" in page
    # Failed users only, ordered by class then user without script; every class has its fix.
    assert failed_rows(page) == ["connect"] + ["imap_disabled"] * 5 + ["imap_other"] + ["token_invalid_user"] * 3
    assert "u00@example.test" not in page
    assert "IMAP login ok for 30 of 40 users; 10 failed" in page


def test_fix_texts_are_the_vocabularys_hints_for_the_right_endpoint():
    results, summary, meta = synthetic_report()
    page = report_html.render_report(results, summary, meta)
    assert html.escape(failures.hint("imap_disabled")) in page
    assert html.escape(failures.hint("token_invalid_user")) in page
    # A connect failure at the IMAP server gets the IMAP wording, not the token endpoint's.
    assert html.escape(failures.hint("connect", failures.ENDPOINT_IMAP)) in page
    assert html.escape(failures.hint("connect", failures.ENDPOINT_TOKEN)) not in page
    assert report_html.fix_for("timeout", "token") == failures.hint("timeout", failures.ENDPOINT_TOKEN)


def test_server_text_is_escaped_and_nothing_loads_from_outside():
    results, summary, meta = synthetic_report()
    meta["host"] = '"><script>bad()</script>'
    page = report_html.render_report(results, summary, meta)
    assert EVIL not in page and "<script>bad()" not in page
    assert html.escape(EVIL) in page
    assert page.count("<script>") == 1  # ours, inline
    assert not re.search(r'\s(?:src|href)="(?:[a-z]+:)?//', page)
    assert not re.search(r"@import|url\(", page)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_nothing_secret_shaped_in_the_reports(tmp_path):
    results, summary, meta = synthetic_report()
    paths = report.write_report(str(tmp_path / "imap.json"), results, summary, meta)
    for path in paths.values():
        text = Path(path).read_text()
        assert "ya29." not in text and "PRIVATE KEY" not in text and 'private_key"' not in text
        assert not JWT.search(text), path


def test_write_report_writes_html_beside_private(tmp_path):
    results, summary, meta = synthetic_report()
    paths = report.write_report(str(tmp_path / "imap.json"), results, summary, meta)
    assert paths == {
        "json": str(tmp_path / "imap.json"),
        "csv": str(tmp_path / "imap.csv"),
        "html": str(tmp_path / "imap.html"),
    }
    for path in paths.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert report.html_report_path("/var/tmp/report") == "/var/tmp/report.html"
    assert report.html_report_path("/var/tmp/r.csv") == "/var/tmp/r.html"
    assert sorted(os.listdir(tmp_path)) == ["imap.csv", "imap.html", "imap.json"]


def test_all_ok_report_has_no_table_and_no_script():
    results = [r for r in synthetic_results() if r["failure_class"] == "ok"]
    page = report_html.render_report(results, imap_login.summarize(results, 1.0, 4), {"node": "n"})
    assert "IMAP login ok for all 30 users" in page
    assert 'id="failed-users"' not in page and "<script>" not in page
    assert "Key ID" not in page  # not known: left out, not shown empty


def test_header_meta_keeps_known_fields_only():
    assert report.header_meta(
        {"host": "msl1", "evil": "x", "fingerprint_sha256": "", "clock_offset_seconds": "n/a"}
    ) == {"host": "msl1"}
    assert report.header_meta(None) == {}
    assert report.header_meta({"clock_offset_seconds": -1}) == {"clock_offset_seconds": -1.0}


def test_collection_version_matches_galaxy_yml():
    with open(os.path.join(ROOT, "galaxy.yml")) as handle:
        version = re.search(r"^version:\s*(\S+)", handle.read(), re.MULTILINE)
    assert version is not None
    assert version.group(1).strip("\"'") == report_html.COLLECTION_VERSION


def test_fleet_index_links_each_host_and_sums_the_classes(tmp_path):
    hosts = {}
    for host, drop in (("msl1", 0), ("msl2<b>", 5)):
        results, summary, meta = synthetic_report()
        results = results[drop:]
        summary = imap_login.summarize(results, 2.0, 16)
        (tmp_path / "r" / host).mkdir(parents=True)
        paths = report.write_report(str(tmp_path / "r" / host / "imap.json"), results, summary, meta)
        hosts[host] = paths
    entries = report_html.fleet_entries(
        [{"host": host, "json": paths["json"], "html": paths["html"]} for host, paths in hosts.items()]
        + [{"host": "msl3", "json": hosts["msl1"]["json"], "html": str(tmp_path / "missing.html")}],
        str(tmp_path / "r" / "index.html"),
    )
    page = report_html.fleet_index(entries)
    assert "msl2<b>" not in page and "msl2&lt;b&gt;" in page
    assert '<a href="msl1/imap.html">msl1</a>' in page
    assert '<a href="msl2&lt;b&gt;/imap.html">' in page
    assert re.findall(r'<tr data-host="([^"]*)" data-failed="(\d+)"', page) == [
        ("msl1", "10"),
        ("msl2&lt;b&gt;", "10"),
        ("msl3", "10"),
    ]
    assert "<td>msl3</td>" in page  # no report page to link
    assert "85 of 115 users ok; 3 hosts with failed users" in page
    assert '<svg id="class-chart"' in page and "<script>" not in page


def test_fleet_entries_refuses_an_unreadable_report(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError):
        report_html.fleet_entries([{"host": "h", "json": str(tmp_path / "bad.json")}], str(tmp_path / "i.html"))
    with pytest.raises(OSError):
        report_html.fleet_entries([{"host": "h", "json": str(tmp_path / "none.json")}], str(tmp_path / "i.html"))


# --------------------------------------------------------------------------- progress


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ((0, 2500, 0, 0.0), "0 / 2500 checked, 0 failed, starting"),
        ((1200, 2500, 3, 37.8), "1200 / 2500 checked, 3 failed, 41 s left"),
        ((2500, 2500, 3, 80.04, True), "2500 / 2500 checked, 3 failed, done in 80.0 s"),
    ],
)
def test_progress_line(args, line):
    assert report.progress_line(*args) == line


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_file_appends_about_every_interval(tmp_path):
    clock = FakeClock()
    path = str(tmp_path / "imap.json.progress")
    progress = report.ProgressFile(path, 10, interval=1.0, clock=clock)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for number in range(10):
        clock.now += 0.4
        progress.record({"failure_class": "ok" if number % 4 else "imap_disabled"})
    progress.close()
    lines = Path(path).read_text().splitlines()
    assert lines[0] == "0 / 10 checked, 0 failed, starting"
    assert lines[-1] == "10 / 10 checked, 3 failed, done in 4.0 s"
    # Every 0.4 s a user, a line per second at most: after users 3, 6 and 9 (1.2, 2.4, 3.6 s).
    assert lines[1:-1] == [
        "3 / 10 checked, 1 failed, 3 s left",
        "6 / 10 checked, 2 failed, 2 s left",
        "9 / 10 checked, 3 failed, 0 s left",
    ]


def test_progress_file_that_cannot_be_written_does_not_fail_the_run(tmp_path):
    progress = report.ProgressFile(str(tmp_path / "missing-dir" / "p.progress"), 2)
    progress.record({"failure_class": "ok"})
    progress.close()
    assert not (tmp_path / "missing-dir").exists()


def test_run_per_user_reports_every_result_skipped_ones_included():
    seen: list[dict[str, Any]] = []
    breaker = pool.Breaker(2, lambda result: result["failure_class"] if result["failure_class"] != "ok" else None)

    def work(item: int) -> dict[str, Any]:
        return {"item": item, "failure_class": "connect"}

    def skip(item: int, cause: Any) -> dict[str, Any]:
        return {"item": item, "failure_class": cause["failure_class"], "skipped": True}

    results = pool.run_per_user(list(range(6)), work, 1, breaker, skip, on_result=seen.append)
    assert [result["item"] for result in results] == list(range(6))
    assert sorted(result["item"] for result in seen) == list(range(6))
    assert sum(1 for result in seen if result.get("skipped")) == 4


def test_progress_then_report_for_a_whole_check(tmp_path):
    """run_check writes progress while it checks and the three reports after (a fake IMAP client and tokens)."""
    report_path = str(tmp_path / "imap.json")
    progress_seen = []

    class Source:
        client_id = "1234"
        client_email = "sa@example.test"
        private_key_id = "abcd"

        def token(self, subject: str, scopes: Any = None) -> tuple[str, float]:
            progress_seen.append(os.path.exists(report_path + ".progress"))
            raise failures.TokenError("token_invalid_user", "Google refused: invalid_grant.")

        def close(self) -> None:
            pass

    params = {
        "concurrency": 2,
        "ca_path": None,
        "imap_host": "imap.example.test",
        "imap_port": 993,
        "timeout": 1.0,
        "user_timeout": 5.0,
        "retries": 0,
        "select_mailbox": "INBOX",
        "return_results": False,
        "report_path": report_path,
        "report_meta": {"host": "msl9"},
    }
    result = imap_login.run_check(Source(), ["a@example.test", "b@example.test"], params, write_report=True)
    assert all(progress_seen)
    assert sorted(result["report"]) == ["csv", "html", "json"]
    lines = Path(report_path + ".progress").read_text().splitlines()
    assert lines[0].startswith("0 / 2 checked") and lines[-1].startswith("2 / 2 checked, 2 failed, done in")
    document = json.loads(Path(report_path).read_text())
    assert document["meta"]["host"] == "msl9" and document["meta"]["private_key_id"] == "abcd"
    assert "<dd>msl9</dd>" in Path(result["report"]["html"]).read_text()
