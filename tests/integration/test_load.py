"""Load: imap_check over 2,500 lab users, three times back to back, in one process and in three.

- In one process: ``imap_login.run_check`` (what the module's ``main`` calls), with the lab's key and CA,
  three times. After every run the process has the file descriptors and threads it had before the first
  (no socket, file or worker thread left behind: the token endpoint's kept-alive connections included),
  Dovecot holds no more connections than before, and the resident memory after the third run is within :data:`RSS_GROWTH_MB` of
  what it was after the first (the first run pays for the imports and caches; later runs must not grow).
- ``provision.yml`` on both lab MSL hosts with 2,500 users: every step passes and each host's IMAP check
  logs all 2,500 in (two 2,500-user checks at once, over SSH, as the playbook runs them).
- In three processes: the module itself (``python plugins/modules/imap_check.py ARGS``, as Ansible runs it
  minus the AnsiballZ packaging) with the assertions the controller signs, three times. After each
  process has exited, Dovecot holds no connection more than before; the peak RSS
  of the third process is within :data:`RSS_GROWTH_MB` of the first's.

Every login must succeed every time. Values are asserted with tolerances, never durations. The lab's user
count is raised to 2,500 for the test and put back afterwards.
"""

import gc
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import imap_login, token
from tests.integration import test_playbooks as playbooks

pytestmark = [pytest.mark.lab, pytest.mark.slow]

USERS = 2500
RUNS = 3
RSS_GROWTH_MB = 20.0
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(REPO, "plugins", "modules", "imap_check.py")
# A TCP socket's state in /proc/net/tcp: connections a server still holds (established, or closing on its side).
HELD_STATES = {"01", "08"}  # ESTABLISHED, CLOSE_WAIT
SETTLE_SECONDS = 20.0


# --------------------------------------------------------------------------- what the process and the servers hold


def open_fds() -> dict[str, str]:
    """This process's open file descriptors: number -> what it points at."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[name] = os.readlink(os.path.join("/proc/self/fd", name))
        except OSError:
            continue  # the descriptor listdir itself used, closed meanwhile
    return fds


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS in /proc/self/status")


def server_connections(port: int) -> int:
    """TCP connections the server listening on ``port`` (127.0.0.1) holds: established or closing on its side."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] in HELD_STATES:
                    count += 1
    return count


def settled_connections(port: int, baseline: int) -> int:
    """The server's connection count once it is back to ``baseline``, or what it still is after SETTLE_SECONDS.

    A closed client's connection leaves the server's table when the server has read the close: that can
    take a moment on a loaded machine, so the count is polled (bounded); the test asserts the value.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    count = server_connections(port)
    while count > baseline and time.monotonic() < deadline:
        time.sleep(0.2)
        count = server_connections(port)
    return count


def held(lab: Any) -> int:
    """Connections Dovecot holds on the IMAPS port.

    Only the checks connect there. The token endpoint's table is no such measure: Dovecot keeps its own
    kept-alive connections to the emulated Google's tokeninfo, as many as its load asks for; the
    client's token connections are among the process's own descriptors, checked in one process.
    """
    return server_connections(lab.imap_port)


def settled(lab: Any, baseline: int) -> int:
    return settled_connections(lab.imap_port, baseline)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def users2500(lab, lab_reset):
    """2,500 users in the lab for the test; the previous count afterwards."""
    before = lab.users_count
    if before < USERS:
        lab.set_users(USERS)
    yield lab.users[:USERS]
    if before < USERS:
        lab.set_users(before)


def module_params(lab: Any, report_path: str) -> dict[str, Any]:
    """imap_check's options as the module passes them to run_check: its defaults, the lab's endpoints."""
    return {
        "concurrency": None,  # not set: the run finds its own (pool.AdaptiveConcurrency)
        "ca_path": lab.ca_path,
        "imap_host": lab.host,
        "imap_port": lab.imap_port,
        "timeout": token.DEFAULT_TIMEOUT,
        "user_timeout": imap_login.DEFAULT_USER_TIMEOUT,
        "retries": token.DEFAULT_RETRIES,
        "select_mailbox": imap_login.DEFAULT_MAILBOX,
        "return_results": False,
        "report_path": report_path,
        "report_meta": None,
    }


def all_ok(summary: dict[str, Any]) -> bool:
    return summary["total"] == USERS and summary["ok"] == USERS


# --------------------------------------------------------------------------- the tests


def test_three_runs_in_one_process_leak_nothing(lab, users2500, tmp_path, figure):
    with open(lab.key_file) as handle:
        key = handle.read()
    report_path = str(tmp_path / "imap-check.json")
    params = module_params(lab, report_path)
    gc.collect()
    fds_before, threads_before, servers_before = open_fds(), threading.active_count(), held(lab)
    runs = []
    for number in range(1, RUNS + 1):
        source = imap_login.new_token_source(key, token.SCOPE_MAIL, token_uri=lab.token_uri, ca_path=lab.ca_path)
        result = imap_login.run_check(source, users2500, params, write_report=True)
        del source
        gc.collect()
        runs.append(
            {
                "run": number,
                "summary": {name: result["summary"][name] for name in ("total", "ok", "failed", "by_class")},
                "levels": result["summary"].get("concurrency_levels"),
                "fds": open_fds(),
                "threads": threading.active_count(),
                "rss_mb": rss_mb(),
                "servers": settled(lab, servers_before),
            }
        )
        del result
    for run in runs:
        assert all_ok(run["summary"]), run["summary"]
        extra = {fd: target for fd, target in run["fds"].items() if fd not in fds_before}
        assert not extra, "run %d left file descriptors open: %s" % (run["run"], extra)
        assert run["threads"] == threads_before, "run %d: %d threads, %d before" % (
            run["run"],
            run["threads"],
            threads_before,
        )
        assert run["servers"] == servers_before, "run %d: server connections %s, %s before" % (
            run["run"],
            run["servers"],
            servers_before,
        )
    summary = [
        {
            "run": run["run"],
            "ok": run["summary"]["ok"],
            "fds": len(run["fds"]),
            "threads": run["threads"],
            "rss_mb": round(run["rss_mb"], 1),
            "levels": run["levels"],
        }
        for run in runs
    ]
    figure(
        "in one process: %s; before: fds %d, threads %d, dovecot connections %d"
        % (summary, len(fds_before), threads_before, servers_before)
    )
    growth = runs[-1]["rss_mb"] - runs[0]["rss_mb"]
    assert growth <= RSS_GROWTH_MB, "RSS grew %.1f MB from run 1 to run %d: %s" % (
        growth,
        RUNS,
        [round(run["rss_mb"], 1) for run in runs],
    )
    assert os.path.exists(report_path)


def run_module(args_path: str, cwd: str) -> tuple[int, dict[str, Any], str, float]:
    """The module in a child process: ``(returncode, result, stderr tail, peak RSS in MB)``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(REPO, ".build", "collections"), REPO])
    with open(os.path.join(cwd, "stdout"), "w+b") as out, open(os.path.join(cwd, "stderr"), "w+b") as err:
        proc = subprocess.Popen([sys.executable, MODULE, args_path], stdout=out, stderr=err, env=env, cwd=cwd)
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            if proc.returncode is None and proc.poll() is None:
                proc.kill()
                proc.wait()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    try:
        result = json.loads(stdout)
    except ValueError:
        result = {"unparsable_stdout": stdout[-2000:]}
    return proc.returncode, result, stderr[-2000:], usage.ru_maxrss / 1024.0


def test_three_module_processes_leak_nothing(lab, users2500, tmp_path, figure):
    with open(lab.key_file) as handle:
        signer = token.KeySigner(handle.read(), token_uri=lab.token_uri)
    # What the action plugin hands the module: one assertion per user, signed on the controller.
    presigned = token.sign_assertions(signer, [(user, [token.SCOPE_MAIL]) for user in users2500])
    users_file = tmp_path / "um-users.txt"
    users_file.write_text("\n".join(users2500) + "\n")
    args_path = str(tmp_path / "args.json")
    with open(args_path, "w") as handle:
        json.dump(
            {
                "ANSIBLE_MODULE_ARGS": {
                    "presigned": json.dumps(presigned),
                    "users_file": str(users_file),
                    "token_uri": lab.token_uri,
                    "ca_path": lab.ca_path,
                    "imap_host": lab.host,
                    "imap_port": lab.imap_port,
                    "return_results": False,
                    "report_path": str(tmp_path / "imap-check.json"),
                    "_ansible_tmpdir": str(tmp_path),
                    "_ansible_remote_tmp": str(tmp_path),
                }
            },
            handle,
        )
    servers_before = held(lab)
    runs = []
    for number in range(1, RUNS + 1):
        rc, result, stderr, peak_rss = run_module(args_path, str(tmp_path))
        runs.append({"run": number, "rc": rc, "result": result, "stderr": stderr, "peak_rss_mb": peak_rss})
        runs[-1]["servers"] = settled(lab, servers_before)
    for run in runs:
        totals = run["result"].get("summary") or {}
        assert run["rc"] == 0 and totals and all_ok(totals), (run["rc"], run["result"].get("msg"), run["stderr"])
        assert run["servers"] == servers_before, "after process %d: server connections %s, %s before" % (
            run["run"],
            run["servers"],
            servers_before,
        )
    summary = [
        {
            "run": run["run"],
            "rc": run["rc"],
            "ok": (run["result"].get("summary") or {}).get("ok"),
            "peak_rss_mb": round(run["peak_rss_mb"], 1),
            "dovecot_connections_after": run["servers"],
        }
        for run in runs
    ]
    figure("in three processes: %s; before: dovecot connections %d" % (summary, servers_before))
    growth = runs[-1]["peak_rss_mb"] - runs[0]["peak_rss_mb"]
    assert growth <= RSS_GROWTH_MB, "peak RSS %s MB" % [round(run["peak_rss_mb"], 1) for run in runs]


def test_provision_on_both_msl_hosts_with_2500_users(lab, users2500, msl_clean, tmp_path):
    provisioned = playbooks.run(lab, tmp_path, "provision")
    assert provisioned.rc == 0, provisioned.stdout[-3000:] + provisioned.stderr[-2000:]
    for host in playbooks.HOSTS:
        lines = playbooks.summary(provisioned, "Summary", host)
        assert lines[0] == "provision on %s: OK" % host, lines
        assert lines[4] == "IMAP: login ok for %d of %d users" % (USERS, USERS), lines
