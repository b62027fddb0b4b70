"""``async:`` on a module with a key-reading action plugin: imap_check for 500 lab users.

Two ways users run a long check: ``async`` + ``poll`` (the executor polls with async_status), and ``poll: 0``
followed by ``async_status`` until the job has finished. The key is read on the controller by the action plugin
and signed with there; the async job gets the signed assertions as ``no_log`` ``presigned``. Neither the key nor
an assertion may show in the ``-vvv`` output, in the results, or in the job's result file that the async wrapper
leaves on the node (``ANSIBLE_ASYNC_DIR``).

The key options and the Google connection options come from ``module_defaults`` on the action group
``gworkspace_google``, so the group is exercised the way the README recommends.
"""

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.playbook import PlaybookRun, run_playbook
from tests.lab.api import Lab
from tests.lab.config import LabConfig

pytestmark = [pytest.mark.lab, pytest.mark.slow]

USERS = 500
NO_LOG = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
JWT = re.compile(r"eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{20,}")


@pytest.fixture(scope="module")
def users500(lab: Lab) -> Iterator[list[str]]:
    """At least 500 users in the lab for these tests; the previous count (lab and emulated Google) afterwards."""
    before = lab.users_count
    google_before = len(lab.google.users())
    if before < USERS:
        lab.set_users(USERS)
    yield lab.users[:USERS]
    if before < USERS:
        lab.set_users(before)
    assert Lab.load(LabConfig.from_env()).users_count == before
    assert len(lab.users) == before
    assert len(lab.google.users()) == google_before


def key_markers(lab: Lab) -> list[str]:
    """Strings that only a leak of the lab's private key could put in a text: the PEM armour and every body line."""
    with open(lab.key_file) as handle:
        pem = json.load(handle)["private_key"]
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    assert len(body) > 10
    return ["PRIVATE KEY-----", *body]


def assert_no_key(lab: Lab, text: str, where: str) -> None:
    for marker in key_markers(lab):
        assert marker not in text, "key material in %s" % where
    assert "ya29." not in text, "access token in %s" % where
    assert not JWT.search(text), "a signed JWT assertion in %s" % where


def imap_play(lab: Lab, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": "async imap_check",
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {
                "group/nupoint.gworkspace.gworkspace_google": {
                    "src": lab.key_file,
                    "token_uri": lab.token_uri,
                    "ca_path": lab.ca_path,
                    "timeout": 10,
                    "retries": 3,
                }
            },
            "tasks": tasks,
        }
    ]


def check_args(lab: Lab, users_path: Path) -> dict[str, Any]:
    """imap_check's own options; the key and connection options come from the group's module_defaults."""
    return {
        "users_file": str(users_path),
        "imap_host": "127.0.0.1",
        "imap_port": lab.imap_port,
        "fail_threshold": 0,
        "return_results": False,
    }


def run_async_play(lab: Lab, tmp_path: Path, tasks: list[dict[str, Any]]) -> tuple[PlaybookRun, Path]:
    async_dir = tmp_path / "async"
    remote_tmp = tmp_path / "remote-tmp"
    run = run_playbook(
        imap_play(lab, tasks),
        verbosity=3,
        env={"ANSIBLE_ASYNC_DIR": str(async_dir), "ANSIBLE_REMOTE_TMP": str(remote_tmp)},
    )
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert_no_key(lab, run.stdout + run.stderr, "the -vvv output")
    assert_no_key(lab, json.dumps(run.tasks), "the task results")
    # The module ran from a copy in the remote tmp dir, with its arguments: the async wrapper removes it when the
    # job ends (it may still be doing so right after the job's result was written).
    deadline = time.monotonic() + 60
    while list(remote_tmp.glob("*/AnsiballZ_*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not list(remote_tmp.glob("*/AnsiballZ_*"))
    return run, async_dir


def assert_all_ok(result: dict[str, Any]) -> None:
    summary = result["summary"]
    assert (summary["total"], summary["ok"], summary["failed"]) == (USERS, USERS, 0), summary
    assert result["failed_users"] == []
    assert result.get("failed") is not True


def users_file(tmp_path: Path, users: list[str]) -> Path:
    path = tmp_path / "um-users.txt"
    path.write_text("\n".join(users) + "\n")
    return path


def test_async_with_poll(lab: Lab, users500: list[str], lab_reset: Lab, tmp_path: Path) -> None:
    task = {
        "name": "check",
        "nupoint.gworkspace.imap_check": check_args(lab, users_file(tmp_path, users500)),
        "async": 600,
        "poll": 2,
        "register": "polled",
    }
    run, async_dir = run_async_play(lab, tmp_path, [task])
    result = run.result("check")
    assert_all_ok(result)
    assert result["finished"] == 1
    assert result["ansible_job_id"]
    # Polled results come from async_status, not through the action plugin: the assertions show masked.
    assert result["invocation"]["module_args"]["presigned"] == NO_LOG
    assert result["invocation"]["module_args"].get("content") is None
    # The executor removes the job file once it has polled the result.
    assert not (async_dir / result["ansible_job_id"]).exists()


def test_async_fire_and_forget_then_async_status(lab: Lab, users500: list[str], lab_reset: Lab, tmp_path: Path) -> None:
    tasks = [
        {
            "name": "start",
            "nupoint.gworkspace.imap_check": check_args(lab, users_file(tmp_path, users500)),
            "async": 600,
            "poll": 0,
            "register": "job",
        },
        {
            "name": "wait",
            "ansible.builtin.async_status": {"jid": "{{ job.ansible_job_id }}"},
            "register": "finished",
            "until": "finished.finished",
            "retries": 300,
            "delay": 2,
        },
    ]
    run, async_dir = run_async_play(lab, tmp_path, tasks)
    started = run.result("start")
    assert started["started"] == 1
    assert "summary" not in started
    result = run.result("wait")
    assert_all_ok(result)
    assert result["invocation"]["module_args"]["presigned"] == NO_LOG

    # async_status in its default mode leaves the job file: what the wrapper wrote on the node.
    job_file = async_dir / started["ansible_job_id"]
    text = job_file.read_text()
    assert_no_key(lab, text, "the async job file %s" % job_file)
    job = json.loads(text)
    assert job["summary"]["ok"] == USERS
    assert job["client_id"] == lab.client_id
    assert job["invocation"]["module_args"]["presigned"] == NO_LOG
    # src stays on the controller, and so does the key: the module was handed the signed assertions only.
    assert job["invocation"]["module_args"].get("src") is None
    assert job["invocation"]["module_args"].get("content") is None
    for leftover in async_dir.iterdir():
        assert_no_key(lab, leftover.read_text(errors="replace"), "the async dir file %s" % leftover)
