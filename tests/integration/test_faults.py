"""Faults against the lab (issue 13, item 2): what the collection does when the world breaks mid-run.

Each test puts one fault into the lab - the emulated Google's control API (error bursts with or without
``Retry-After``, latency, a stepped clock), a stopped service (the token endpoint's server, Dovecot), a
killed SSH session or module process on the emulated MSL host, a full file system under the credential
directory - and asserts on the outcome's values: the failure class of every user, what the lab's request
log recorded, the bytes of the credential file. Never on wall time text; where a bound on time is the
point (a deadline, ``Retry-After``), it is asserted on the lab's or the module's own numbers, with margins
that hold on a busy 2-core machine.

Faults that stop a lab service bring it back in ``finally``, through the lab API (by PID); the tmpfs
mounted over msl1's credential directory is unmounted in the fixture's teardown.
"""

import errno
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.lab_tasks import imap_check_task as imap_task
from tests.integration.playbook import PlaybookRun, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

MAIL = "https://mail.google.com/"
HOST = "msl1"
NETWORK = {"connect", "timeout"}
CLOCK_HINT = "Google refused the JWT's issue/expiry time: the clock of the node that signs the JWT is wrong."
MSL_ARGS = {
    "db_command": "{{ gworkspace_msl_db_command }}",
    "signal_event_command": "{{ gworkspace_msl_signal_event_command }}",
    "credential_dir": "{{ gworkspace_msl_credential_dir }}",
}


# ----------------------------------------------------------------------------------------- helpers


def lab_vars(lab: Any) -> dict[str, Any]:
    return {
        "key_file": lab.key_file,
        "token_uri": lab.token_uri,
        "ca_path": lab.ca_path,
        "imap_port": lab.imap_port,
        "control_url": lab.google_base_url + "/_lab/",
    }


def delegation_task(name: str, **args: Any) -> dict[str, Any]:
    module_args = {
        "src": "{{ key_file }}",
        "token_uri": "{{ token_uri }}",
        "ca_path": "{{ ca_path }}",
        "timeout": 5,
        "retries": 3,
        "fail_on_error": False,
    }
    module_args.update(args)
    return {"name": name, "nupoint.gworkspace.delegation_check": module_args}


def control_task(name: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
    """A play step that flips a lab switch between two module tasks (the control API, over the lab CA)."""
    return {
        "name": name,
        "ansible.builtin.uri": {
            "url": "{{ control_url }}" + action,
            "method": "POST",
            "body_format": "json",
            "body": body,
            "ca_path": "{{ ca_path }}",
            "use_proxy": False,
        },
    }


def run_local(lab: Any, *tasks: dict[str, Any], timeout: int = 600) -> PlaybookRun:
    run = run_playbook(
        [{"name": "faults", "hosts": "localhost", "gather_facts": False, "tasks": list(tasks)}],
        extra_vars=lab_vars(lab),
        timeout=timeout,
    )
    assert "ya29." not in run.stdout + run.stderr
    return run


def by_user(result: dict[str, Any]) -> dict[str, str]:
    return {entry["user"]: entry["failure_class"] for entry in result["results"]}


def token_posts(lab: Any) -> list[dict[str, Any]]:
    """The token requests the lab's emulated Google received since the last stats reset, oldest first."""
    return [entry for entry in lab.google.requests("/token") if entry["method"] == "POST" and entry["path"] == "/token"]


class Background:
    """Run ``target`` in a thread; ``join()`` returns its value or raises what it raised."""

    def __init__(self, target: Callable[[], Any]) -> None:
        self._target = target
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._target()
        except BaseException as exc:  # noqa: BLE001 - re-raised in join()
            self._error = exc

    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 600) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the background run did not finish"
        if self._error is not None:
            raise self._error
        return self._value


def wait_for(condition: Callable[[], Any], timeout: float, what: str, while_alive: Background | None = None) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` s or when the run ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if while_alive is not None and not while_alive.alive():
            pytest.fail("the run ended before %s" % what)
        time.sleep(0.05)
    pytest.fail("timed out waiting for %s" % what)


def checked_so_far(progress: Path) -> int:
    """Users done according to the module's progress file (``1200 / 2500 checked, ...``), 0 before it exists."""
    try:
        lines = progress.read_text().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        head = line.split(" checked", 1)[0]
        if "/" in head:
            return int(head.split("/")[0].strip())
    return 0


@pytest.fixture
def many_users(lab, lab_reset):
    """1,000 users in the lab for the test (the previous count afterwards)."""
    before = lab.users_count
    if before < 1000:
        lab.set_users(1000)
    yield lab.users[:1000]
    if before < 1000:
        lab.set_users(before)


# ------------------------------------------------------------------ 1. token endpoint error bursts


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(500, None), (503, None), (429, 3)],
    ids=["500", "503", "429-retry-after"],
)
def test_token_endpoint_burst_is_retried_then_succeeds(lab, lab_reset, status, retry_after):
    """A burst shorter than the retry budget (2 faults, retries=3): both modules retry and every check is ok."""
    users = lab.users[:3]
    fault: dict[str, Any] = {"path_prefix": "/token", "status": status, "count": 2}
    if retry_after is not None:
        fault["retry_after"] = retry_after
    lab.google.reset_stats()
    run = run_local(
        lab,
        control_task("burst before imap_check", "faults", fault),
        imap_task("imap", users=users, concurrency=1, fail_threshold=0),
        control_task("burst before delegation_check", "faults", fault),
        delegation_task("delegation", subjects=users[:1], fail_on_error=True),
    )
    assert run.rc == 0, run.stdout + run.stderr
    imap = run.result("imap")
    assert imap["summary"]["ok"] == 3 and imap["summary"]["failed"] == 0
    assert set(by_user(imap).values()) == {"ok"}
    delegation = run.result("delegation")
    assert delegation["authorized"] is True
    assert [check["failure_class"] for check in delegation["checks"]] == ["ok"]

    stats = lab.google.stats()
    assert stats["faults_served"] == 4
    assert stats["endpoints"]["token"][str(status)] == 4
    assert lab.google.state()["faults"] == []
    posts = token_posts(lab)
    # One user at a time, so each burst met one request and its retries: fault, fault, success.
    statuses = [entry["status"] for entry in posts]
    assert statuses == [status, status, 200, 200, 200, status, status, 200], statuses
    waits = [
        later["received_at"] - earlier["answered_at"]
        for earlier, later in itertools.pairwise(posts)
        if earlier["fault"]
    ]
    assert len(waits) == 4
    if retry_after is not None:
        # Retry-After honoured: each retry came at least Retry-After seconds after the refusal (less a margin for
        # clock granularity); the module's own backoff for a first retry would be 0.5 - 1.5 s.
        assert min(waits) >= retry_after - 0.25, waits
    else:
        # Exponential backoff with +-50 % jitter, base 1 s: never an immediate hammering of a failing endpoint.
        assert min(waits) >= 0.5 - 0.05, waits


# ------------------------------------------------------------------ 2. token endpoint down


def test_token_endpoint_down_fails_fast_as_connect_and_writes_the_report(lab, lab_reset, tmp_path):
    users = lab.users[:50]
    report = tmp_path / "imap-check.json"
    lab.stop_service("google")
    try:
        run = run_local(
            lab,
            imap_task("imap", users=users, report_path=str(report), concurrency=4),
            delegation_task("delegation", subjects=users[:2]),
        )
    finally:
        lab.start_services()
    assert run.rc == 0, run.stdout + run.stderr
    imap = run.result("imap")
    results = imap["results"]
    assert set(by_user(imap).values()) == {"connect"}
    assert {entry["phase"] for entry in results} == {"token"}
    tried = [entry for entry in results if entry["attempts"] > 0]
    # A refused connection is not retried, and once max(20, 2 x concurrency) users in a row failed alike, the
    # rest are not tried: fast, whatever the number of users.
    assert all(entry["attempts"] == 1 for entry in tried)
    assert len(tried) <= 20 + 4
    assert "Cannot connect to the token endpoint" in tried[0]["message"]
    assert "Connection refused" in tried[0]["message"]
    assert imap["summary"]["by_class"]["connect"] == 50
    # The run completed and wrote its reports, every user in them.
    document = json.loads(report.read_text())
    assert document["summary"]["total"] == 50
    assert {entry["failure_class"] for entry in document["results"]} == {"connect"}
    assert report.with_suffix(".csv").exists() and report.with_suffix(".html").exists()
    assert (
        report.with_name(report.name + ".progress")
        .read_text()
        .splitlines()[-1]
        .startswith("50 / 50 checked, 50 failed, done")
    )

    delegation = run.result("delegation")
    assert delegation["authorized"] is False
    assert [check["failure_class"] for check in delegation["checks"]] == ["connect", "connect"]
    # Back up: the same check passes.
    again = run_local(lab, imap_task("again", users=users[:3], fail_threshold=0))
    assert again.result("again")["summary"]["ok"] == 3


# ------------------------------------------------------------------ 3. slow token endpoint


def test_slow_token_endpoint_is_cut_at_the_deadline(lab, lab_reset):
    """The token endpoint answers after 8 s; timeout=1, user_timeout=3: every user is timeout, none waits 8 s."""
    users = lab.users[:4]
    lab.google.set_latency("/token", 8000)
    lab.google.reset_stats()
    run = run_local(
        lab,
        imap_task("imap", users=users, concurrency=2, timeout=1, retries=3, user_timeout=3),
        delegation_task("delegation", subjects=users[:1], timeout=1, retries=1),
    )
    lab.google.reset_latency()
    assert run.rc == 0, run.stdout + run.stderr
    imap = run.result("imap")
    assert set(by_user(imap).values()) == {"timeout"}
    assert {entry["phase"] for entry in imap["results"]} == {"token"}
    for entry in imap["results"]:
        # user_timeout bounds a user, retries included: at most user_timeout + one timeout (the last request
        # may start just before the deadline), plus a generous margin for a loaded machine.
        assert entry["latency_ms"]["total"] <= (3 + 1 + 3) * 1000, entry
        assert entry["attempts"] <= 4
    # Two rounds of two workers: the module's own duration, well under one 8 s answer per user.
    assert imap["summary"]["duration_seconds"] <= 2 * (3 + 1) + 6
    delegation = run.result("delegation")
    assert [check["failure_class"] for check in delegation["checks"]] == ["timeout"]
    assert delegation["authorized"] is False
    # Every token request the modules made timed out on the client; the server answered none before 8 s.
    for entry in token_posts(lab):
        assert entry["answered_at"] - entry["received_at"] >= 8 - 0.1


# ------------------------------------------------------------------ 4. Dovecot killed mid-run


def test_dovecot_killed_mid_run(lab, many_users, tmp_path, figure):
    report = tmp_path / "imap-check.json"
    progress = report.with_name(report.name + ".progress")
    run_in_background = Background(
        lambda: run_local(
            lab, imap_task("imap", users=many_users, report_path=str(report), concurrency=2, return_results=True)
        )
    )
    try:
        done_before = wait_for(
            lambda: checked_so_far(progress) >= 100 and checked_so_far(progress),
            300,
            "100 users checked",
            run_in_background,
        )
        lab.stop_service("dovecot")
        run = run_in_background.join()
    finally:
        lab.start_services()
    assert run.rc == 0, run.stdout + run.stderr
    result = run.result("imap")
    results = result["results"]
    assert [entry["user"] for entry in results] == many_users
    classes = [entry["failure_class"] for entry in results]
    ok = classes.count("ok")
    failed = [entry for entry in results if entry["failure_class"] != "ok"]
    assert ok >= done_before - 2  # those done before the kill (a user in flight may have been cut)
    assert failed, "Dovecot was stopped with users left to check"
    # Every affected user is classed as a network failure (refused, reset or cut off), none as a surprise.
    assert {entry["failure_class"] for entry in failed} <= NETWORK, {e["failure_class"] for e in failed}
    assert all(entry["phase"] in ("connect", "auth", "select") for entry in failed)
    # The ok users are the ones before the kill: the failures form the tail (in-flight users aside).
    first_failure = classes.index(next(c for c in classes if c != "ok"))
    assert classes[first_failure + 2 :].count("ok") == 0
    # The run completed: summary, reports and progress cover all 1,000 users.
    summary = result["summary"]
    assert (summary["total"], summary["ok"], summary["failed"]) == (1000, ok, 1000 - ok)
    tried = sum(1 for entry in failed if entry["attempts"] > 0)
    figure(
        "Dovecot stopped after %d users: %s; %d failed users tried, the rest not tried (breaker)"
        % (done_before, {k: v for k, v in summary["by_class"].items() if v}, tried)
    )
    document = json.loads(report.read_text())
    assert document["summary"]["total"] == 1000
    assert [entry["failure_class"] for entry in document["results"]] == classes
    assert progress.read_text().splitlines()[-1].startswith("1000 / 1000 checked, %d failed, done" % (1000 - ok))
    # Dovecot is back: the same users log in again.
    again = run_local(lab, imap_task("again", users=many_users[-3:], fail_threshold=0))
    assert again.result("again")["summary"]["ok"] == 3


# ------------------------------------------------------------------ 5. SSH dropped mid-task


def _processes() -> Iterator[tuple[int, str]]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/cmdline" % name, "rb") as handle:
                    yield int(name), handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue


def _stat(pid: int) -> tuple[str, int]:
    """(comm, ppid) of a process."""
    with open("/proc/%d/stat" % pid) as handle:
        text = handle.read()
    comm = text[text.index("(") + 1 : text.rindex(")")]
    return comm, int(text[text.rindex(")") + 2 :].split()[1])


def _ssh_session_pids(pid: int, listener: int) -> list[int]:
    """The sshd processes between ``listener`` (the host's sshd) and ``pid``: the SSH session that runs it."""
    chain = []
    current = pid
    while current > 1:
        try:
            comm, parent = _stat(current)
        except (OSError, ValueError):
            break
        if comm.startswith("sshd") and current != listener:
            chain.append(current)
        if parent == listener:
            return chain
        current = parent
    return []


class Dropper(threading.Thread):
    """Waits for a process whose command line contains every one of ``markers``, then drops the SSH session
    that runs it (SIGKILL to its sshd processes: the connection dies, the remote command gets SIGHUP), or kills
    the module's Python (``victim="python"``), ``delay`` seconds later. ``hit`` says whether it fired."""

    def __init__(self, markers: tuple[str, ...], listener: int, delay: float = 0.0, victim: str = "ssh") -> None:
        super().__init__(daemon=True)
        self.markers = markers
        self.listener = listener
        self.delay = delay
        self.victim = victim
        self.hit: list[str] = []
        self._done = threading.Event()

    def stop(self) -> None:
        self._done.set()
        self.join(30)

    def run(self) -> None:
        own = os.getpid()
        while not self._done.is_set():
            matches = [
                (pid, cmdline)
                for pid, cmdline in _processes()
                if pid != own and all(marker in cmdline for marker in self.markers)
            ]
            # Only processes under the host's sshd: the controller's ssh client carries the same command line.
            sessions = [(pid, cmdline, _ssh_session_pids(pid, self.listener)) for pid, cmdline in matches]
            sessions = [entry for entry in sessions if entry[2]]
            if sessions:
                # The targets are resolved now: after the delay the process may have ended, its SSH session not.
                if self.victim == "python":
                    targets = [
                        pid
                        for pid, cmdline, _chain in sessions
                        if os.path.basename(cmdline.split()[0]).startswith("python")
                    ]
                    if not targets:  # only the shell that will start it so far
                        time.sleep(0.005)
                        continue
                else:
                    targets = sessions[0][2]
                if self.delay:
                    time.sleep(self.delay)
                for target in targets:
                    try:
                        os.kill(target, signal.SIGKILL)
                        self.hit.append("%s %d" % (self.victim, target))
                    except ProcessLookupError:
                        pass
                return
            time.sleep(0.005)


def credential_state(lab: Any) -> dict[str, Any]:
    directory = Path(lab.credential_dir(HOST))
    names = sorted(path.name for path in directory.iterdir()) if directory.is_dir() else []
    key_path = directory / "service-account.json"
    record = lab.db(HOST, "configuration", "getprop", "nupoint-oauth", "PrivateKeyId").stdout.strip()
    return {
        "names": names,
        "key": key_path.read_bytes() if key_path.exists() else None,
        "record_key_id": record or None,
    }


def install_play(key_file: str, ignore_errors: bool = True, **tools: str) -> list[dict[str, Any]]:
    """Install ``key_file`` on msl1, then read what msl1 holds; ``tools`` replace the db or signal-event command."""
    return [
        {
            "name": "install",
            "hosts": HOST,
            "gather_facts": False,
            "tasks": [
                {
                    "name": "install",
                    "nupoint.gworkspace.msl_oauth_credentials": dict(MSL_ARGS, src=key_file, **tools),
                    "ignore_errors": ignore_errors,
                    "ignore_unreachable": ignore_errors,
                },
                {"name": "info", "nupoint.gworkspace.msl_oauth_credentials_info": dict(MSL_ARGS)},
            ],
        }
    ]


def second_key(lab: Any, tmp_path: Path) -> tuple[str, Path]:
    """A second key of the lab's service account (registered with the emulated Google): (private_key_id, file)."""
    from tests.integration.test_msl_oauth_credentials import second_key_json

    _key, key_id, text = second_key_json(lab, index=7)
    path = tmp_path / "second-key.json"
    path.write_text(text)
    return key_id, path


def sshd_pid(lab: Any, host: str = HOST) -> int:
    lab.reload()
    return int(lab.data["services"]["sshd-" + host]["pid"])


def install(lab: Any, key_file: Path, ignore_errors: bool = False, **tools: str) -> PlaybookRun:
    run = run_playbook(install_play(str(key_file), ignore_errors, **tools), inventory=lab.inventory_path, timeout=300)
    if not ignore_errors:
        assert run.rc == 0, run.stdout + run.stderr
    return run


def slow_tools(lab: Any, directory: Path) -> dict[str, str]:
    """msl1's db and signal-event commands behind wrappers that wait 3 s before writing the credential record and
    before signalling the apply event: long enough for the test to see them run and drop the SSH session then (the
    hang-up kills the wrapper, so the real command never runs)."""
    db = directory / "slow-db"
    db.write_text(
        '#!/bin/sh\nif [ "$2" = set ] && [ "$3" = nupoint-oauth ]; then sleep 3; fi\nexec %s "$@"\n'
        % lab.db_command(HOST)
    )
    event = directory / "slow-signal-event"
    event.write_text('#!/bin/sh\nsleep 3\nexec %s "$@"\n' % lab.signal_event_command(HOST))
    for path in (db, event):
        path.chmod(0o755)
    return {"db_command": str(db), "signal_event_command": str(event)}


# Where the drop lands: (markers of the process to wait for, delay, victim). The module's Python as it starts
# (the session dropped, or the Python killed a little later), and while it runs the db tool to write the record
# (the key file is then new, the record old) and signal-event to apply it (both new, the event not signalled).
DROPS = [
    (("AnsiballZ_msl_oauth_credentials.py",), 0.0, "ssh"),
    (("AnsiballZ_msl_oauth_credentials.py",), 0.1, "python"),
    (("slow-db", "set", "nupoint-oauth"), 0.0, "ssh"),
    (("slow-signal-event", "nupoint-oauth-update"), 0.0, "ssh"),
]


def test_ssh_dropped_during_msl_oauth_credentials(lab, lab_reset, msl_clean, tmp_path, figure):
    """Each drop replaces one key with the other (they alternate), then a rerun installs the wanted one."""
    second_id, second_file = second_key(lab, tmp_path)
    keys = [(lab.private_key_id, Path(lab.key_file)), (second_id, second_file)]
    install(lab, keys[0][1])
    tools = slow_tools(lab, tmp_path)
    outcomes = []
    for markers, delay, victim in DROPS:
        (old_id, old_file), (new_id, new_file) = keys
        old_key, new_key = old_file.read_bytes(), new_file.read_bytes()
        before = credential_state(lab)
        assert (before["key"], before["record_key_id"]) == (old_key, old_id)
        applied_before = lab.signal_events(HOST).count("nupoint-oauth-update")
        dropper = Dropper(markers, sshd_pid(lab), delay, victim)
        dropper.start()
        try:
            install(lab, new_file, ignore_errors=True, **tools)
        finally:
            dropper.stop()
        state = credential_state(lab)
        where = (" ".join(markers[-2:]), delay, victim)
        # Never a partial key file: the old key's bytes or the new key's, and no staged copy left behind.
        assert state["key"] in (old_key, new_key), where
        assert [name for name in state["names"] if name.endswith(".tmp")] == [], (where, state["names"])
        assert state["record_key_id"] in (old_id, new_id), where
        outcomes.append(
            (
                *where,
                "dropped" if dropper.hit else "finished first",
                "key file " + ("new" if state["key"] == new_key else "old"),
                "record " + ("new" if state["record_key_id"] == new_id else "old"),
            )
        )
        # A rerun repairs it: the new key, a consistent record, and the apply event signalled since the drop.
        rerun = install(lab, new_file)
        info = rerun.result("info")
        assert (info["consistent"], info["private_key_id"]) == (True, new_id), (where, info)
        assert credential_state(lab)["key"] == new_key
        applied = lab.signal_events(HOST).count("nupoint-oauth-update")
        assert applied > applied_before, ("the new key was never applied (no event since the drop)", outcomes[-1])
        keys.reverse()
    for outcome in outcomes:
        figure(
            "SSH drop during msl_oauth_credentials (where, delay, victim, outcome, key file, record): %s" % (outcome,)
        )
    # Every drop landed (the db tool and signal-event wait 3 s for it; the module's Python runs for longer than 0.1 s).
    assert [outcome[3] for outcome in outcomes] == ["dropped"] * 4, outcomes
    assert [outcomes[index][4:] for index in (2, 3)] == [
        ("key file new", "record old"),
        ("key file new", "record new"),
    ], outcomes


def test_ssh_dropped_during_post_restore_then_rerun_repairs(lab, lab_reset, msl_clean, tmp_path):
    """msl1 holds another key (not the pinned one): post_restore reinstalls the pinned key, and SSH drops then."""
    from tests.integration.test_playbooks import inventory as playbook_inventory

    pinned_id, pinned_key = lab.private_key_id, Path(lab.key_file).read_bytes()
    other_id, other_file = second_key(lab, tmp_path)
    install(lab, other_file)  # as a restore of an older backup would leave it
    assert credential_state(lab)["key"] == other_file.read_bytes()
    sources = playbook_inventory(lab, tmp_path)

    def post_restore(*extra: str) -> PlaybookRun:
        return run_playbook(
            "nupoint.gworkspace.post_restore",
            inventory=sources[0],
            # The IMAP re-check is not what this test is about (test_playbooks runs it): skipped, to keep it short.
            extra_args=["-i", sources[1], "--limit", HOST, "-e", "post_restore_check_imap=false", *extra],
            timeout=600,
        )

    # The drop lands while the module writes the db record, after it replaced the key file.
    slow_db = slow_tools(lab, tmp_path)["db_command"]
    dropper = Dropper(("slow-db", "set", "nupoint-oauth"), sshd_pid(lab), 0.0, "ssh")
    dropper.start()
    try:
        dropped = post_restore("-e", "gworkspace_msl_db_command=%s" % slow_db)
    finally:
        dropper.stop()
    assert dropper.hit, "the credential install never wrote the record"
    assert dropped.rc != 0  # the host became unreachable mid-task
    state = credential_state(lab)
    # The new (pinned) key complete, the record still the old one's: inconsistent, and said so, until the rerun.
    assert (state["key"], state["record_key_id"]) == (pinned_key, other_id)
    assert [name for name in state["names"] if name.endswith(".tmp")] == [], state["names"]
    applied_before = lab.signal_events(HOST).count("nupoint-oauth-update")

    repaired = post_restore()
    assert repaired.rc == 0, repaired.stdout + repaired.stderr
    lines = repaired.result("nupoint.gworkspace.post_restore : Summary", host=HOST)["msg"]
    assert lines[0] == "post_restore on %s: OK" % HOST, lines
    assert credential_state(lab)["key"] == pinned_key
    assert lab.db(HOST, "configuration", "getprop", "nupoint-oauth", "PrivateKeyId").stdout.strip() == pinned_id
    assert lines[2].startswith("repaired: key reinstalled from the controller (record"), lines
    assert lab.signal_events(HOST).count("nupoint-oauth-update") == applied_before + 1


# ------------------------------------------------------------------ 6. disk full on the MSL store


@pytest.fixture
def small_credential_fs(lab, msl_clean):
    """A 16 KiB tmpfs mounted over msl1's credential directory (skipped when mounting is not permitted)."""
    directory = Path(lab.credential_dir(HOST))
    directory.mkdir(parents=True, mode=0o700)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k,mode=0700", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (%s); the unit tests cover a full disk" % mounted.stderr.strip())
    try:
        yield directory
    finally:
        for args in (["umount", str(directory)], ["umount", "-l", str(directory)]):
            if subprocess.run(args, capture_output=True, check=False).returncode == 0:
                break


def fill(directory: Path) -> int:
    """Write a filler file until the file system is full; returns its size."""
    written = 0
    with open(directory / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                written += handle.write(b"\0" * 512)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return written


def test_disk_full_keeps_the_old_key_and_says_why(lab, lab_reset, small_credential_fs, tmp_path):
    directory = small_credential_fs
    old_id, old_file = lab.private_key_id, Path(lab.key_file)
    new_id, new_file = second_key(lab, tmp_path)
    install(lab, old_file)
    assert credential_state(lab)["key"] == old_file.read_bytes()
    fill(directory)
    events = lab.signal_events(HOST)
    db_before = Path(lab.msl_paths(HOST)["db_file"]).read_bytes()

    full = install(lab, new_file, ignore_errors=True)
    result = full.result("install", host=HOST)
    assert result["failed"] is True and result["changed"] is False
    assert "No space left on device" in result["msg"], result["msg"]
    assert "The previous key, if any, is still in place." in result["msg"]
    assert result["reason"] == "write_error"
    # The old key intact, nothing staged left behind, the record and the event log untouched.
    state = credential_state(lab)
    assert state["key"] == old_file.read_bytes()
    assert state["names"] == ["filler", "service-account.json"]
    assert (state["record_key_id"], lab.signal_events(HOST)) == (old_id, events)
    assert Path(lab.msl_paths(HOST)["db_file"]).read_bytes() == db_before
    assert full.result("info", host=HOST)["consistent"] is True

    # Space again: the same run installs the new key.
    (directory / "filler").unlink()
    again = install(lab, new_file)
    assert again.result("install", host=HOST)["changed"] is True
    assert credential_state(lab)["key"] == new_file.read_bytes()
    assert again.result("info", host=HOST)["private_key_id"] == new_id


# ------------------------------------------------------------------ 7. the clock stepped mid-run


def test_clock_stepped_during_imap_check_is_classed_clock_skew(lab, many_users, tmp_path):
    """Ten minutes between the signer's clock and Google's, from the middle of a run on.

    The controller signed every assertion at the task's start; stepping the emulated Google's clock back by 600 s
    (beyond its 300 s tolerance) mid-run is what Google sees when the signing node's clock jumps ten minutes ahead:
    every assertion's ``iat`` is then in Google's future.
    """
    users = many_users[:400]
    report = tmp_path / "imap-check.json"
    progress = report.with_name(report.name + ".progress")
    background = Background(
        lambda: run_local(lab, imap_task("imap", users=users, report_path=str(report), concurrency=2))
    )
    try:
        done_before = wait_for(
            lambda: checked_so_far(progress) >= 50 and checked_so_far(progress), 300, "50 users checked", background
        )
        lab.google.set_clock(offset_seconds=-600)
        run = background.join()
    finally:
        lab.google.set_clock(offset_seconds=0)
    assert run.rc == 0, run.stdout + run.stderr
    result = run.result("imap")
    classes = [entry["failure_class"] for entry in result["results"]]
    assert set(classes) == {"ok", "token_clock_skew"}, set(classes)
    assert classes.count("ok") >= done_before
    skewed = [entry for entry in result["results"] if entry["failure_class"] == "token_clock_skew"]
    assert all(entry["phase"] == "token" and entry["google_error"] == "invalid_grant" for entry in skewed)
    # The class comes with its hint: what is wrong and what fixes it.
    assert all(CLOCK_HINT in entry["message"] and "msl_time_sync" in entry["message"] for entry in skewed)
    assert all(entry["attempts"] == 1 for entry in skewed)  # a refusal is not retried
    first = classes.index("token_clock_skew")
    assert classes[first + 2 :].count("ok") == 0  # from the step on (in-flight users aside), every user
    assert result["summary"]["by_class"]["token_clock_skew"] == len(skewed)
    assert json.loads(report.read_text())["summary"]["by_class"]["token_clock_skew"] == len(skewed)
