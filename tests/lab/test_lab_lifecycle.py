"""The lab's life cycle through its CLI (what ``make lab-up`` / ``make lab-down`` run).

These tests run a second, private lab (own state directory, port base = session lab's + 40; each pytest-xdist
worker's session lab has a port base of its own, tests/lab/pytest_plugin.py), so they neither need nor disturb the
session's lab.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab import orchestrator, process
from tests.lab.config import LabConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def private_lab(tmp_path):
    base = LabConfig.from_env().port_base + 40
    cfg = LabConfig(state_dir=tmp_path / "lab", port_base=base)
    env = {**os.environ, "NUPOINT_LAB_DIR": str(cfg.state_dir), "NUPOINT_LAB_PORT_BASE": str(base)}

    def cli(*args, check=True):
        result = subprocess.run(
            [sys.executable, "-m", "tests.lab", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            check=False,
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    yield cfg, cli
    cli("down", check=False)


def recorded_pids(cfg):
    state = json.loads(cfg.lab_json.read_text())
    return {name: record["pid"] for name, record in state["services"].items()}


def lab_processes(cfg):
    """Every process that carries one of this lab's paths or instance names in its command line."""
    found = set()
    for marker in [str(cfg.state_dir), f"nupoint-lab-{cfg.imap_port}/"]:
        found.update(process.find_by_marker(marker))
    return sorted(found)


@pytest.mark.slow
def test_up_is_idempotent_and_down_leaves_nothing(private_lab):
    cfg, cli = private_lab
    started = time.monotonic()
    cli("up")
    assert time.monotonic() - started < 60
    first = recorded_pids(cfg)
    assert sorted(first) == sorted(orchestrator.SERVICES)
    status = cli("status")
    assert status.stdout.count(" up ") == len(orchestrator.SERVICES)
    key_before = Path(cfg.sa_json).read_bytes()

    again = cli("up")
    assert "already up" in again.stdout
    assert recorded_pids(cfg) == first
    assert Path(cfg.sa_json).read_bytes() == key_before  # running services keep their fixtures

    # A crashed service is restarted alone; the others keep running.
    os.kill(first["sntp"], signal.SIGKILL)
    process.wait_until(lambda: not process.is_alive(first["sntp"]), 5, "sntp to die")
    assert cli("status", check=False).returncode == 3
    cli("up")
    after = recorded_pids(cfg)
    assert after["sntp"] != first["sntp"]
    assert {k: v for k, v in after.items() if k != "sntp"} == {k: v for k, v in first.items() if k != "sntp"}

    dovecot_children = process.descendants(after["dovecot"])
    assert dovecot_children, "dovecot master should have children (auth, imap-login, ...)"

    cli("down")
    for name, pid in after.items():
        assert not process.is_alive(pid), f"{name} (pid {pid}) still runs"
    for pid in dovecot_children:
        assert not process.is_alive(pid), f"dovecot child {pid} still runs"
    assert lab_processes(cfg) == []
    assert cli("status", check=False).returncode == 3
    assert "nothing was running" in cli("down").stdout


@pytest.mark.slow
def test_cli_users_and_skew(private_lab):
    cfg, cli = private_lab
    cli("up")
    cli("users", "120")
    users = Path(cfg.users_file).read_text().split()
    assert len(users) == 120 and users[-1] == "user0120@example.test"
    assert json.loads(cfg.lab_json.read_text())["users_count"] == 120
    from tests.lab.google.client import GoogleControl

    google = GoogleControl(cfg.google_base_url, str(cfg.ca_path))
    assert "user0120@example.test" in google.users()
    assert cli("users", "0", check=False).returncode != 0

    cli("skew", "-7.5")
    from tests.lab import sntp

    assert abs(sntp.query("127.0.0.1", cfg.skewed_ntp_port).offset + 7.5) < 0.5

    # A fresh start keeps the user count.
    cli("down")
    cli("up")
    assert len(Path(cfg.users_file).read_text().split()) == 120
    assert "user0120@example.test" in GoogleControl(cfg.google_base_url, str(cfg.ca_path)).users()


def test_up_refuses_a_taken_port(private_lab):
    cfg, cli = private_lab
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", cfg.imap_port))
        blocker.listen()
        result = cli("up", check=False)
    assert result.returncode == 2
    assert f"127.0.0.1:{cfg.imap_port} is taken" in result.stderr
    # Whatever had started was stopped again.
    assert lab_processes(cfg) == []
