"""clock_offset_info: main() against scripted SNTP servers on loopback; it measures and never runs a command."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.nupoint.gworkspace.plugins.modules import clock_offset_info as module
from tests.unit.command_runner import FakeRunner, patch_run_command
from tests.unit.sntp_responder import SntpResponder, unused_udp_port

FAST = {"servers": ["127.0.0.1"], "samples": 1, "sample_interval": 0, "timeout": 0.5}


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """AnsibleModule keeps warnings in a process-wide list: start each test with none from earlier tests."""
    monkeypatch.setattr(ansible_warnings, "_global_warnings", [])


@pytest.fixture
def no_commands(monkeypatch):
    """Any command the module ran would be unexpected: it changes nothing."""
    runner = patch_run_command(monkeypatch, FakeRunner([]))
    yield runner
    runner.assert_done()


@pytest.mark.parametrize("check_mode", [False, True])
def test_within_the_limit(run_module, no_commands, check_mode):
    with SntpResponder({"offset": 0.25, "stratum": 3}) as ntp:
        result = run_module(module, dict(FAST, samples=2, ntp_port=ntp.port), check_mode=check_mode)
    assert result["changed"] is False
    assert result.get("failed", False) is False
    assert result["synchronized"] is True
    assert result["excess_offset"] is None
    assert result["offset_seconds"] == pytest.approx(0.25, abs=0.1)
    assert result["selected_server"] == "127.0.0.1"
    (server,) = result["server_results"]
    assert server["status"] == "ok"
    assert server["samples_sent"] == server["samples_ok"] == 2
    assert server["stratum"] == 3
    assert result["http_date"] is None
    assert "warnings" not in result


def test_beyond_the_limit_is_reported_not_failed(run_module, no_commands):
    with SntpResponder({"offset": 120}) as ntp:
        result = run_module(module, dict(FAST, ntp_port=ntp.port))
    assert result["changed"] is False
    assert result.get("failed", False) is False
    assert result["synchronized"] is False
    excess = result["excess_offset"]
    assert excess["source"] == "ntp"
    assert excess["server"] == "127.0.0.1"
    assert excess["offset_seconds"] == pytest.approx(120, abs=2)
    assert "behind network time" in excess["msg"] and "Invalid JWT" in excess["msg"]
    assert excess["msg"] in result["warnings"]


def test_one_server_of_three_outvoted(run_module, no_commands):
    with (
        SntpResponder({"offset": 0.1}) as one,
        SntpResponder({"offset": 0.2}, host="127.0.0.2", port=one.port),
        SntpResponder({"offset": 600}, host="127.0.0.3", port=one.port),
    ):
        result = run_module(module, dict(FAST, servers=["127.0.0.1", "127.0.0.2", "127.0.0.3"], ntp_port=one.port))
    assert result["synchronized"] is True
    assert result["offset_seconds"] == pytest.approx(0.2, abs=0.1)
    assert any("disagree" in warning for warning in result["warnings"])


def test_no_server_answers(run_module, no_commands):
    port = unused_udp_port()
    result = run_module(module, dict(FAST, servers=["127.0.0.1", "127.0.0.2"], ntp_port=port))
    assert result["failed"] is True
    assert result["reason"] == "no_server"
    assert result["msg"].startswith("No NTP server gave usable time")
    assert [server["status"] for server in result["server_results"]] == ["connect", "connect"]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"servers": ["ntp.example.com:123"]}, "invalid_server"),
        ({"servers": []}, "invalid_option"),
        ({"max_offset": 0}, "invalid_option"),
        ({"samples": 0}, "invalid_option"),
    ],
)
def test_invalid_options(run_module, no_commands, args, reason):
    result = run_module(module, dict(FAST, **args))
    assert result["failed"] is True
    assert result["reason"] == reason
