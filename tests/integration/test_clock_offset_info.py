"""clock_offset_info against the lab: msl1 over real SSH and a local host, lab chrony and the skewed responder.

The module only measures: these tests check what it reports and that nothing on the host changed.
"""

from typing import Any

import pytest

from tests.integration.playbook import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

HOST = "msl1"
# Fast measurement settings for the lab (loopback servers do not rate-limit).
FAST = {"samples": 3, "sample_interval": 0.1, "timeout": 1}
LAB_SERVERS = {"servers": "{{ gworkspace_ntp_servers }}", "ntp_port": "{{ gworkspace_ntp_port }}"}
SKEWED_SERVERS = {"servers": "{{ gworkspace_ntp_servers }}", "ntp_port": "{{ gworkspace_skewed_ntp_port }}"}
# The lab's responder is skewed by exactly this; a measurement on a busy machine may differ by a little.
SKEW = 120
TOLERANCE = 2


def play(tasks: list[dict[str, Any]], hosts: str = HOST) -> list[dict[str, Any]]:
    return [{"name": "clock offset", "hosts": hosts, "gather_facts": False, "tasks": tasks}]


def measure_task(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "nupoint.gworkspace.clock_offset_info": dict(FAST, **args)}


def msl_state(lab: Any, host: str = HOST) -> tuple[str, list[str]]:
    """The config db as the db tool prints it, and the events signalled so far."""
    return lab.db(host, "configuration", "show", check=True).stdout, lab.signal_events(host)


@pytest.mark.parametrize("host", [HOST, "msl1-local"])
def test_lab_chrony_within_the_limit(lab, msl_clean, host):
    before = msl_state(lab)
    run = run_playbook(
        play(
            [
                dict(measure_task("check mode", **LAB_SERVERS), check_mode=True),
                measure_task(
                    "measure",
                    http_date_url="{{ gworkspace_token_uri }}",
                    ca_path="{{ gworkspace_ca_path }}",
                    **LAB_SERVERS,
                ),
            ],
            hosts=host,
        ),
        inventory=lab.inventory_path,
    )
    assert run.rc == 0, run.stdout + run.stderr
    for name in ("check mode", "measure"):
        result = run.result(name, host)
        assert result["changed"] is False
        assert result["synchronized"] is True
        assert result["excess_offset"] is None
        # Lab chrony serves this very machine's clock: the offset is measurement noise.
        assert abs(result["offset_seconds"]) < 1
        (server,) = result["server_results"]
        assert server["status"] == "ok"
        assert server["samples_ok"] == 3
        assert server["stratum"] == 8  # chrony's "local stratum 8"
    http_date = run.result("measure", host)["http_date"]
    assert http_date["status"] == "ok", http_date["msg"]
    assert abs(http_date["offset_seconds"]) <= 1.5
    assert msl_state(lab) == before, "measuring changed the MSL host"


def test_skewed_server_is_reported_not_failed(lab, lab_reset, msl_clean):
    lab.skew(SKEW)
    before = msl_state(lab)
    run = run_playbook(
        play(
            [
                measure_task("measure", **SKEWED_SERVERS),
                dict(
                    measure_task("measure and insist", **SKEWED_SERVERS),
                    register="insisted",
                    failed_when="not insisted.synchronized",
                    ignore_errors=True,
                ),
            ]
        ),
        inventory=lab.inventory_path,
    )
    assert run.rc == 0, run.stdout + run.stderr
    result = run.result("measure", HOST)
    assert result.get("failed") is False
    assert result["changed"] is False
    assert result["synchronized"] is False
    assert result["offset_seconds"] == pytest.approx(SKEW, abs=TOLERANCE)
    excess = result["excess_offset"]
    assert excess["source"] == "ntp"
    assert excess["offset_seconds"] == pytest.approx(SKEW, abs=TOLERANCE)
    assert excess["server"] == "127.0.0.1"
    assert "behind network time (NTP server 127.0.0.1)" in excess["msg"]
    assert "Invalid JWT" in excess["msg"]
    assert excess["msg"] in result["warnings"]
    assert "[WARNING]" in run.stdout + run.stderr
    assert run.result("measure and insist", HOST)["failed"] is True
    assert msl_state(lab) == before, "measuring changed the MSL host"


def test_no_server_answers(lab):
    # B+7 is not in the lab's port plan: nothing listens there.
    run = run_playbook(
        play([measure_task("unreachable", servers=["127.0.0.1", "127.0.0.2"], ntp_port=lab.port_base + 7)]),
        inventory=lab.inventory_path,
    )
    assert run.rc != 0
    result = run.result("unreachable", HOST)
    assert result["reason"] == "no_server"
    assert result["msg"].startswith("No NTP server gave usable time")
    assert [server["status"] for server in result["server_results"]] == ["connect", "connect"]
    assert "Traceback" not in run.stdout + run.stderr
