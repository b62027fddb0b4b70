"""msl_time_sync: main() with a fake command runner and scripted SNTP servers on loopback."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
from typing import Any

import pytest

from ansible_collections.nupoint.gworkspace.plugins.modules import msl_time_sync as module
from tests.unit import http_date_server as http_date
from tests.unit.command_runner import FakeRunner, load_cases, patch_run_command
from tests.unit.sntp_responder import SntpResponder, unused_udp_port

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_msl_time_sync.yaml")
FAST = {"servers": ["127.0.0.1"], "samples": 1, "sample_interval": 0, "timeout": 0.5}
# Seconds a measured offset may differ from the responder's scripted one (a loaded machine delays replies).
MEASUREMENT_TOLERANCE = 2


@pytest.fixture
def http_date_server(tmp_path):
    yield from http_date.serving(tmp_path)


ENABLED_RECORD = "ntpd=service\n    NTPServer=127.0.0.1\n    status=enabled\n"


def substitute(value: Any, port: int) -> Any:
    if value == "{port}":
        return port
    if isinstance(value, str):
        return value.replace("{port}", str(port))
    if isinstance(value, list):
        return [substitute(item, port) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, port) for key, item in value.items()}
    return value


@pytest.mark.parametrize("case", load_cases(CASES))
def test_case(case, run_module, monkeypatch):
    with SntpResponder(case.get("server_behaviour")) as ntp:
        port = ntp.port if case.get("ntp_server", True) else unused_udp_port()
        runner = patch_run_command(monkeypatch, FakeRunner(substitute(case["commands"], port)))
        args = dict(FAST, ntp_port=port, **case["args"])
        result = run_module(module, args, check_mode=case.get("check_mode", False), diff=case.get("diff", False))
    runner.assert_done()
    expected = substitute(dict(case["expected"]), port)
    for key, value in expected.pop("approx", {}).items():
        assert result[key] == pytest.approx(value, abs=MEASUREMENT_TOLERANCE), key
    for text in expected.pop("msg_contains", []):
        assert text in result["msg"]
    warnings = " | ".join(result.get("warnings", []))
    for text in expected.pop("warnings_contain", []):
        assert text in warnings
    expected.setdefault("failed", False)
    for key, value in expected.items():
        assert result.get(key, False if key == "failed" else None) == value, key


def test_measurement_fields(run_module, monkeypatch):
    patch_run_command(monkeypatch, FakeRunner([]))
    with SntpResponder({"offset": 0.25, "stratum": 3}) as ntp:
        result = run_module(module, dict(FAST, manage=False, samples=3, ntp_port=ntp.port))
    assert result["synchronized"] is True
    assert result["offset_seconds"] == pytest.approx(0.25, abs=0.05)
    assert result["selected_server"] == "127.0.0.1"
    (server,) = result["server_results"]
    assert server["status"] == "ok"
    assert server["samples_sent"] == server["samples_ok"] == 3
    assert server["stratum"] == 3
    assert server["address"] == "127.0.0.1"
    assert server["reference_id"] == "127.0.0.1"
    assert 0 <= server["delay_seconds"] < 0.5


def test_step_falls_back_to_the_next_server(run_module, monkeypatch):
    """Two servers agree the clock is off; the step against the first fails, the second one works."""
    behaviour = [{"offset": 100}, {"offset": 0}]
    with SntpResponder(behaviour) as first, SntpResponder(behaviour, host="127.0.0.2", port=first.port):
        runner = patch_run_command(
            monkeypatch,
            FakeRunner(
                [
                    {"command": ["step", "127.0.0.1"], "rc": 1, "err": "no server suitable"},
                    {"command": ["step", "127.0.0.2"], "rc": 0},
                ]
            ),
        )
        result = run_module(
            module,
            dict(
                FAST,
                manage=False,
                servers=["127.0.0.1", "127.0.0.2"],
                ntp_port=first.port,
                on_excess_offset="step",
                step_command="step {server}",
            ),
        )
    runner.assert_done()
    assert result["stepped"] is True
    assert result["step_command"] == ["step", "127.0.0.2"]
    assert result["offset_seconds"] == pytest.approx(100, abs=0.5)
    assert result["offset_after_step_seconds"] == pytest.approx(0, abs=0.5)
    assert result["synchronized"] is True


def test_one_silent_server_is_a_warning_not_a_failure(run_module, monkeypatch):
    patch_run_command(monkeypatch, FakeRunner([]))
    with SntpResponder({"drop": True}) as silent, SntpResponder({"offset": 0.1}, host="127.0.0.2", port=silent.port):
        result = run_module(
            module, dict(FAST, manage=False, servers=["127.0.0.1", "127.0.0.2"], ntp_port=silent.port, timeout=0.2)
        )
    assert result.get("failed", False) is False
    assert [server["status"] for server in result["server_results"]] == ["timeout", "ok"]
    assert result["selected_server"] == "127.0.0.2"
    assert any("127.0.0.1 gave no usable time" in warning for warning in result["warnings"])


def test_disagreeing_servers_are_outvoted_and_reported(run_module, monkeypatch):
    patch_run_command(monkeypatch, FakeRunner([]))
    with (
        SntpResponder({"offset": 0.1}) as one,
        SntpResponder({"offset": 0.2}, host="127.0.0.2", port=one.port),
        SntpResponder({"offset": 600}, host="127.0.0.3", port=one.port),
    ):
        result = run_module(
            module, dict(FAST, manage=False, servers=["127.0.0.1", "127.0.0.2", "127.0.0.3"], ntp_port=one.port)
        )
    assert result["synchronized"] is True
    assert result["offset_seconds"] == pytest.approx(0.2, abs=0.05)
    assert result["spread_seconds"] == pytest.approx(599.9, abs=0.1)
    assert any("disagree" in warning for warning in result["warnings"])


def test_http_date_second_opinion_can_overrule_ntp(run_module, monkeypatch, http_date_server):
    patch_run_command(monkeypatch, FakeRunner([]))
    url = http_date_server(skew=300)
    with SntpResponder({"offset": 0}) as ntp:
        result = run_module(module, dict(FAST, manage=False, ntp_port=ntp.port, http_date_url=url))
    assert result["failed"] is True
    assert result["reason"] == "offset_exceeded"
    assert "Date header of %s (NTP agreed within the limit)" % url in result["msg"]
    assert result["http_date"]["status"] == "ok"
    assert result["http_date"]["offset_seconds"] == pytest.approx(300, abs=2)


def test_unreachable_http_date_only_warns(run_module, monkeypatch):
    patch_run_command(monkeypatch, FakeRunner([]))
    url = "http://127.0.0.1:%d/" % unused_udp_port()
    with SntpResponder({"offset": 0}) as ntp:
        result = run_module(module, dict(FAST, manage=False, ntp_port=ntp.port, http_date_url=url))
    assert result.get("failed", False) is False
    assert result["synchronized"] is True
    assert result["http_date"]["status"] == "connect"
    assert any("second opinion is unavailable" in warning for warning in result["warnings"])
