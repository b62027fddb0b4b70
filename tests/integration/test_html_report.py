"""The HTML report in a real browser: Debian's chromium, headless, offline, driven by its own command line.

The report is rendered from a synthetic run (40 users, five failure classes, a hostile server text) with
``report.write_report``, as imap_check writes it. Chromium loads it from a file with networking off, runs its
script, and ``--dump-dom`` gives the DOM after the script: the URL fragment (``#class=...``, ``#sort=...``)
drives the filter and the sort, so the DOM shows whether they worked. A screenshot is kept as a CI artifact
(``.build/report-screenshot.png``). Skipped, with the reason, when chromium is not installed (the Makefile's
APT_PACKAGES installs it).
"""

import os
import re
import shutil
import stat
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import report
from tests.unit.plugins.module_utils._google.test_report_html import synthetic_report

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / ".build" / "report-screenshot.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

requires_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (make apt installs Debian's chromium package)"
)


class Rows(HTMLParser):
    """The failed-users table's rows (data attributes, hidden or not), the table's own attributes, the chart's bars."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.table: dict[str, Any] = {}
        self.bars: list[str] = []
        self.controls_hidden = True
        self._in_table = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table" and attributes.get("id") == "failed-users":
            self._in_table, self.table = True, attributes
        elif tag == "tr" and self._in_table and "data-user" in attributes:
            self.rows.append(attributes)
        elif tag == "g" and attributes.get("class") == "bar":
            self.bars.append(attributes.get("data-class") or "")
        elif tag == "div" and attributes.get("id") == "controls":
            self.controls_hidden = "hidden" in attributes

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--user-data-dir=%s" % profile,
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def dom(tmp_path: Path, page: Path, fragment: str = "") -> Rows:
    run = chromium(tmp_path, "--dump-dom", page.as_uri() + fragment)
    assert run.returncode == 0, run.stderr[-2000:]
    parsed = Rows()
    parsed.feed(run.stdout)
    assert parsed.rows, run.stdout[:2000]
    return parsed


@pytest.fixture(scope="module")
def html_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results, summary, meta = synthetic_report()
    directory = tmp_path_factory.mktemp("report")
    paths = report.write_report(str(directory / "imap-check.json"), results, summary, meta)
    return Path(paths["html"])


@requires_chromium
def test_chart_and_table_are_there_after_the_script_ran(tmp_path, html_report):
    page = dom(tmp_path, html_report)
    assert page.bars == ["ok", "imap_disabled", "token_invalid_user", "connect", "imap_other"]
    assert not page.controls_hidden  # the script ran and showed the filter controls
    assert len(page.rows) == 10 and not any("hidden" in row for row in page.rows)
    assert page.table["data-sort"] == "class:asc" and page.table["data-filter"] == ""


@requires_chromium
def test_filter_by_class_from_the_fragment(tmp_path, html_report):
    page = dom(tmp_path, html_report, "#class=imap_disabled")
    visible = [row for row in page.rows if "hidden" not in row]
    assert [row["data-class"] for row in visible] == ["imap_disabled"] * 5
    assert len(page.rows) == 10  # the others are hidden, not removed
    assert page.table["data-filter"] == "imap_disabled"


@requires_chromium
def test_sort_from_the_fragment(tmp_path, html_report):
    page = dom(tmp_path, html_report, "#sort=user:desc")
    users = [row["data-user"] for row in page.rows]
    assert users == sorted(users, reverse=True)
    assert page.table["data-sort"] == "user:desc"
    page = dom(tmp_path, html_report, "#sort=total:desc&class=imap_disabled")
    visible = [row for row in page.rows if "hidden" not in row]
    totals = [float(row["data-total"]) for row in visible]
    assert totals == sorted(totals, reverse=True) and len(totals) == 5


@requires_chromium
def test_hostile_server_text_stays_text(tmp_path, html_report):
    run = chromium(tmp_path, "--dump-dom", html_report.as_uri())
    assert '<img src="x"' not in run.stdout and 'onerror="alert' not in run.stdout
    assert "&lt;script&gt;alert(" in run.stdout


@requires_chromium
def test_screenshot_is_kept_as_an_artifact(tmp_path, html_report):
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    if SCREENSHOT.exists():
        SCREENSHOT.unlink()
    run = chromium(tmp_path, "--screenshot=%s" % SCREENSHOT, "--window-size=1200,1600", html_report.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    data = SCREENSHOT.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 1600)
    assert os.path.getsize(SCREENSHOT) > 20000  # not a blank page
    assert re.search(r"\.png$", str(SCREENSHOT))


# --------------------------------------------------------------------------- a lab run through the role


def run_role_on_fleet(lab: Any, tmp_path: Path, users: list[str], check: bool = False) -> Any:
    from tests.integration.playbook import run_playbook

    (tmp_path / "remote").mkdir(exist_ok=True)
    variables = {
        "gworkspace_um_users": users,
        "imap_access_key_src": lab.key_file,
        "imap_access_token_uri": lab.token_uri,
        "imap_access_ca_path": lab.ca_path,
        "imap_access_imap_host": "127.0.0.1",
        "imap_access_imap_port": lab.imap_port,
        # msl1 and msl2 share this machine's file system: one report per host.
        "imap_access_remote_report": str(tmp_path / "remote" / "{{ inventory_hostname }}-imap-check.json"),
        "imap_access_report_dir": str(tmp_path / "reports"),
        "imap_access_timeout": 5,
        "imap_access_poll_interval": 1,
        "imap_access_fail_threshold": "50%",
        "imap_access_clock_offset": 0.012,
    }
    play = {
        "name": "IMAP access on the fleet",
        "hosts": "msl1,msl2",
        "gather_facts": False,
        "roles": [{"role": "nupoint.gworkspace.imap_access", "vars": variables}],
    }
    run = run_playbook([play], inventory=lab.inventory_path, check=check)
    assert "ya29." not in run.stdout + run.stderr and "PRIVATE KEY" not in run.stdout + run.stderr
    return run


@pytest.mark.lab
def test_role_states_duration_prints_progress_fetches_html_and_writes_the_fleet_page(lab, lab_reset, tmp_path):
    users = lab.users[:40]
    for user in users[:3]:
        lab.google.set_user_imap(user, False)
    run = run_role_on_fleet(lab, tmp_path, users)
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "Checking 40 users of msl1, 16 at a time at first, more while throughput grows: expect about" in run.stdout
    progress = [entry["msg"] for entry in run.tasks["nupoint.gworkspace.imap_access : Progress"]]
    assert any(re.search(r"^msl[12]: 40 / 40 checked, 3 failed, done in", line) for line in progress), progress
    for host in ("msl1", "msl2"):
        remote = tmp_path / "remote" / ("%s-imap-check.json.progress" % host)
        assert remote.read_text().splitlines()[-1].startswith("40 / 40 checked, 3 failed, done in")
        page = tmp_path / "reports" / host / ("%s-imap-check.html" % host)
        assert stat.S_IMODE(page.stat().st_mode) == 0o600
        assert "Report (html): %s" % page in run.stdout
        text = page.read_text()
        assert "<dd>%s</dd>" % host in text and "<dd>+0.012 s</dd>" in text
    index = tmp_path / "reports" / "index.html"
    assert "Fleet page (2 hosts): %s" % index in run.stdout
    fleet = index.read_text()
    assert '<a href="msl1/msl1-imap-check.html">msl1</a>' in fleet
    assert '<a href="msl2/msl2-imap-check.html">msl2</a>' in fleet
    # Bookkeeping only: nothing changed on any host.
    assert re.search(r"msl1\s*: ok=\d+\s+changed=0", run.stdout) and re.search(
        r"msl2\s*: ok=\d+\s+changed=0", run.stdout
    )
    if CHROMIUM is not None:
        parsed = dom(tmp_path, tmp_path / "reports" / "msl1" / "msl1-imap-check.html", "#class=imap_disabled")
        assert [row["data-class"] for row in parsed.rows if "hidden" not in row] == ["imap_disabled"] * 3


@pytest.mark.lab
def test_role_in_check_mode_writes_no_report(lab, lab_reset, tmp_path):
    run = run_role_on_fleet(lab, tmp_path, lab.users[:5], check=True)
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "nupoint.gworkspace.imap_access : Progress" not in run.tasks  # no async job in check mode
    assert not (tmp_path / "reports").exists()
    assert list((tmp_path / "remote").iterdir()) == []
