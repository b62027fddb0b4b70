"""module_utils/time_sync: the ntpd record plan, the step command, the offset verdict, TimeSync and measure_clock.

TimeSync and measure_clock are driven directly (not through a module's main()), with a fake command
runner and scripted SNTP / HTTP Date servers on loopback.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils.clock import ClockError
from ansible_collections.nupoint.gworkspace.plugins.module_utils.msl import (
    ConfigDb,
    MslError,
    Record,
    msl_time_argument_spec,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.time_sync import (
    TIME_ERRORS,
    NtpRecordNames,
    TimeSync,
    TimeSyncError,
    apply_record,
    desired_properties,
    excess_message,
    failure_details,
    measure_clock,
    measurement_argument_spec,
    network_time_on,
    offset_verdict,
    plan_record,
    smearing_warning,
    step_argv,
    step_servers,
)
from tests.unit import http_date_server as http_date
from tests.unit.command_runner import FakeRunner
from tests.unit.sntp_responder import SntpResponder, unused_udp_port

NAMES = NtpRecordNames()
DB = "/sbin/e-smith/db"


def test_enabled_stores_only_the_first_server():
    assert desired_properties(NAMES, "enabled", ["a.example", "b.example"]) == {
        "status": "enabled",
        "NTPServer": "a.example",
    }


@pytest.mark.parametrize(
    ("props", "status"),
    [
        ({"status": "enabled", "NTPServer": "a.example"}, "enabled"),
        ({"status": "enabled", "NTPServer": "a.example", "SyncToHWClockSupported": "yes"}, "enabled"),
        ({"status": "enabled", "NTPServer": "a.example", "SyncToHWClockSupported": "no"}, "disabled"),
    ],
    ids=["hw-clock-unset", "hw-clock-yes", "hw-clock-no"],
)
def test_disabled_clears_the_server_as_the_panel_does(props, status):
    """SME Server's Date and Time panel (disable_ntp): NTPServer emptied, status kept enabled unless no HW clock sync."""
    current = Record("ntpd", "service", props)
    assert desired_properties(NAMES, "disabled", ["a.example"], current) == {"status": status, "NTPServer": ""}


def test_disabled_without_a_record_creates_the_panels_record():
    assert desired_properties(NAMES, "disabled", [], None) == {"status": "enabled", "NTPServer": ""}


@pytest.mark.parametrize(
    ("props", "on"),
    [
        ({"status": "enabled", "NTPServer": "ntp1.example"}, True),
        ({"status": "enabled", "NTPServer": ""}, False),  # what the panel leaves when network time is off
        ({"status": "enabled", "NTPServer": "  "}, False),
        ({"status": "enabled"}, False),
        ({"status": "disabled", "NTPServer": "ntp1.example"}, False),
    ],
)
def test_network_time_is_on_only_with_status_enabled_and_a_server(props, on):
    assert network_time_on(NAMES, Record("ntpd", "service", props)) is on


def test_network_time_is_off_without_a_record():
    assert network_time_on(NAMES, None) is False


@pytest.mark.parametrize(
    ("servers", "warns"),
    [
        (["time.google.com", "pool.ntp.org"], True),
        (["time1.google.com", "TIME2.google.com.", "ntp.example.net"], True),
        (["time.google.com", "time2.google.com"], False),
        (["pool.ntp.org", "ntp.example.net"], False),
        ([], False),
    ],
)
def test_mixing_googles_smearing_servers_with_others_warns(servers, warns):
    warning = smearing_warning(servers)
    assert (warning is not None) is warns
    if warns:
        assert "smear leap seconds" in warning
        assert "Leap Smear" in warning


def test_plan_keeps_other_properties_and_the_type():
    current = Record("ntpd", "service", {"status": "disabled", "NTPServer": "", "SyncToHWClock": "yes"})
    after = plan_record(NAMES, current, {"status": "enabled", "NTPServer": "a.example"})
    assert after == Record("ntpd", "service", {"status": "enabled", "NTPServer": "a.example", "SyncToHWClock": "yes"})
    assert current.props["status"] == "disabled", "the current record must not be modified"


def test_plan_is_none_when_nothing_differs():
    current = Record("ntpd", "service", {"status": "enabled", "NTPServer": "a.example"})
    assert plan_record(NAMES, current, {"status": "enabled", "NTPServer": "a.example"}) is None


def test_plan_creates_a_missing_record_as_a_service():
    assert plan_record(NAMES, None, {"status": "disabled"}) == Record("ntpd", "service", {"status": "disabled"})


def test_apply_sets_only_what_differs_and_signals_once():
    runner = FakeRunner(
        [
            {"command": [DB, "configuration", "setprop", "ntpd", "status", "enabled"]},
            {"command": [DB, "configuration", "getprop", "ntpd", "status"], "out": "enabled\n"},
            {"command": ["/sbin/e-smith/signal-event", "timeserver-update"]},
        ]
    )
    current = Record("ntpd", "service", {"status": "disabled", "NTPServer": "a.example"})
    after = Record("ntpd", "service", {"status": "enabled", "NTPServer": "a.example"})
    apply_record(ConfigDb(runner), runner, NAMES, current, after, "/sbin/e-smith/signal-event")
    runner.assert_done()


def test_apply_does_not_signal_when_the_write_did_not_stick():
    runner = FakeRunner(
        [
            {"command": [DB, "configuration", "setprop", "ntpd", "status", "enabled"]},
            {"command": [DB, "configuration", "getprop", "ntpd", "status"], "rc": 1},
        ]
    )
    current = Record("ntpd", "service", {"status": "disabled"})
    with pytest.raises(MslError, match=r"did not take ntpd\.status='enabled'"):
        apply_record(ConfigDb(runner), runner, NAMES, current, Record("ntpd", "service", {"status": "enabled"}), "/x")
    runner.assert_done()


@pytest.mark.parametrize(
    ("template", "argv"),
    [
        (None, ["ntpdate", "-u", "-b", "ntp1.example"]),
        ("chronyc makestep", ["chronyc", "makestep"]),
        ("sntp -S {server}:{port}", ["sntp", "-S", "ntp1.example:1123"]),
        ("'/opt/a b/step' --json='{\"x\": 1}' {server}", ["/opt/a b/step", '--json={"x": 1}', "ntp1.example"]),
        (["/bin/step", "{server}", "{port}", "{other}"], ["/bin/step", "ntp1.example", "1123", "{other}"]),
    ],
)
def test_step_argv(template, argv):
    assert step_argv(template, "ntp1.example", 1123) == argv


@pytest.mark.parametrize("template", ["", [], "'unbalanced", [1, 2], ["ok", None]])
def test_bad_step_command(template):
    with pytest.raises(TimeSyncError) as caught:
        step_argv(template, "s", 123)
    assert caught.value.reason == "invalid_step_command"


def ntp(offset, servers=None):
    return {
        "offset_seconds": offset,
        "selected_server": "a",
        "servers": servers or [{"server": "a", "status": "ok"}],
    }


def test_verdict_within_limit():
    assert offset_verdict(ntp(4.9), None, 5) is None
    assert offset_verdict(ntp(-4.9), None, 5) is None


def test_verdict_beyond_limit_either_way():
    assert offset_verdict(ntp(5.1), None, 5)["source"] == "ntp"
    assert offset_verdict(ntp(-5.1), None, 5)["offset_seconds"] == -5.1


def test_http_date_counts_only_beyond_its_uncertainty():
    close = {"status": "ok", "url": "u", "offset_seconds": 5.8, "uncertainty_seconds": 1.0}
    far = dict(close, offset_seconds=6.2)
    down = {"status": "connect", "url": "u", "offset_seconds": None, "uncertainty_seconds": None}
    assert offset_verdict(ntp(0.0), close, 5) is None
    assert offset_verdict(ntp(0.0), far, 5) == {"source": "http_date", "offset_seconds": 6.2, "server": "u"}
    assert offset_verdict(ntp(0.0), down, 5) is None


def test_excess_message_explains_oauth():
    message = excess_message({"source": "ntp", "offset_seconds": 120.0, "server": "ntp1"}, 5)
    assert "clock is 120.000 s behind network time (NTP server ntp1)" in message
    assert "(offset +120.000 s)" in message
    assert "Invalid JWT" in message
    assert "iat/exp" in message
    assert "ahead of" in excess_message({"source": "ntp", "offset_seconds": -8.0, "server": "ntp1"}, 5)


def test_step_servers_selected_first_then_usable_in_order():
    servers = [
        {"server": "a", "status": "timeout"},
        {"server": "b", "status": "ok"},
        {"server": "c", "status": "ok"},
        {"server": "d", "status": "ok"},
    ]
    assert step_servers({"selected_server": "c", "servers": servers}) == ["c", "b", "d"]


# --------------------------------------------------------------------------- TimeSync and measure_clock, driven directly


def sync_params(port, **overrides):
    """msl_time_sync's options with their defaults, one fast sample against the responder on ``port``."""
    spec = msl_time_argument_spec()
    spec.update(measurement_argument_spec())
    values = {name: option.get("default") for name, option in spec.items()}
    values.update(
        servers=["127.0.0.1"],
        state="enabled",
        manage=True,
        on_excess_offset="fail",
        step_command=None,
        ntp_port=port,
        samples=1,
        sample_interval=0,
        timeout=0.5,
    )
    values.update(overrides)
    return values


SHOW_DISABLED = {
    "command": [DB, "configuration", "show", "ntpd"],
    "out": "ntpd=service\n    NTPServer=\n    status=disabled\n",
}
SHOW_ENABLED = {
    "command": [DB, "configuration", "show", "ntpd"],
    "out": "ntpd=service\n    NTPServer=127.0.0.1\n    status=enabled\n",
}
ENABLE = [
    {"command": [DB, "configuration", "setprop", "ntpd", "NTPServer", "127.0.0.1", "status", "enabled"]},
    {"command": [DB, "configuration", "getprop", "ntpd", "NTPServer"], "out": "127.0.0.1\n"},
    {"command": [DB, "configuration", "getprop", "ntpd", "status"], "out": "enabled\n"},
    {"command": ["/sbin/e-smith/signal-event", "timeserver-update"]},
]


def test_time_sync_enables_then_measures():
    runner = FakeRunner([SHOW_DISABLED, *ENABLE])
    with SntpResponder({"offset": 0.2}) as ntp:
        sync = TimeSync(sync_params(ntp.port), runner)
        result = sync.run()
    runner.assert_done()
    assert result["changed"] is True
    assert result["record_before"] == {
        "key": "ntpd",
        "type": "service",
        "props": {"NTPServer": "", "status": "disabled"},
    }
    assert result["record_after"]["props"] == {"NTPServer": "127.0.0.1", "status": "enabled"}
    assert result["synchronized"] is True
    assert result["offset_seconds"] == pytest.approx(0.2, abs=0.1)
    assert result["selected_server"] == "127.0.0.1"
    assert [server["status"] for server in result["server_results"]] == ["ok"]
    assert sync.warnings == []
    assert sync.diff()["after"] == result["record_after"]


def test_time_sync_check_mode_writes_nothing():
    runner = FakeRunner([SHOW_DISABLED])
    with SntpResponder({"offset": 0}) as ntp:
        result = TimeSync(sync_params(ntp.port), runner, check_mode=True).run()
    runner.assert_done()
    assert result["changed"] is True
    assert result["record_after"]["props"]["status"] == "enabled"


def test_time_sync_excess_offset_fails_and_keeps_the_measurement():
    runner = FakeRunner([SHOW_ENABLED])
    with SntpResponder({"offset": 120}) as ntp:
        sync = TimeSync(sync_params(ntp.port), runner)
        with pytest.raises(TimeSyncError) as caught:
            sync.run()
    assert caught.value.reason == "offset_exceeded"
    assert "behind network time (NTP server 127.0.0.1)" in caught.value.msg
    assert sync.result["synchronized"] is False
    assert sync.result["changed"] is False
    assert sync.result["offset_seconds"] == pytest.approx(120, abs=2)
    assert failure_details(caught.value) == {"reason": "offset_exceeded"}


def test_time_sync_warn_collects_the_message():
    with SntpResponder({"offset": -90}) as ntp:
        sync = TimeSync(sync_params(ntp.port, manage=False, on_excess_offset="warn"), FakeRunner([]))
        result = sync.run()
    assert result["synchronized"] is False
    assert result["record_before"] is None
    (warning,) = sync.warnings
    assert "ahead of network time" in warning and "Invalid JWT" in warning


def test_time_sync_step_falls_back_and_measures_again():
    behaviour = [{"offset": 100}, {"offset": 0}]
    runner = FakeRunner(
        [{"command": ["step", "127.0.0.1"], "rc": 1, "err": "refused"}, {"command": ["step", "127.0.0.2"]}]
    )
    with SntpResponder(behaviour) as first, SntpResponder(behaviour, host="127.0.0.2", port=first.port):
        params = sync_params(
            first.port,
            manage=False,
            servers=["127.0.0.1", "127.0.0.2"],
            on_excess_offset="step",
            step_command="step {server}",
        )
        result = TimeSync(params, runner).run()
    runner.assert_done()
    assert result["stepped"] is True
    assert result["step_command"] == ["step", "127.0.0.2"]
    assert result["offset_seconds"] == pytest.approx(100, abs=2)
    assert result["offset_after_step_seconds"] == pytest.approx(0, abs=2)
    assert result["synchronized"] is True


def test_time_sync_step_in_check_mode_only_says_what_it_would_run():
    with SntpResponder({"offset": 120}) as ntp:
        sync = TimeSync(sync_params(ntp.port, manage=False, on_excess_offset="step"), FakeRunner([]), check_mode=True)
        result = sync.run()
    assert result["changed"] is True
    assert result["stepped"] is False
    assert result["step_command"] == ["ntpdate", "-u", "-b", "127.0.0.1"]
    assert sync.warnings[0].startswith("Check mode: would step the clock.")


def test_time_sync_no_server_keeps_every_server_result():
    sync = TimeSync(sync_params(unused_udp_port(), manage=False), FakeRunner([]))
    with pytest.raises(ClockError) as caught:
        sync.run()
    details = failure_details(caught.value)
    assert details["reason"] == "no_server"
    assert [server["status"] for server in details["server_results"]] == ["connect"]
    assert sync.result["server_results"] == details["server_results"]


def test_time_sync_db_failure_is_msl_db():
    runner = FakeRunner([{"command": [DB, "configuration", "show", "ntpd"], "raise": "ENOENT"}])
    sync = TimeSync(sync_params(123), runner)
    with pytest.raises(MslError) as caught:
        sync.run()
    details = failure_details(caught.value)
    assert details["reason"] == "msl_db"
    assert details["cmd"] == [DB, "configuration", "show", "ntpd"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"servers": ["ntp.example.com:123"]}, "invalid_server"),
        ({"servers": []}, "invalid_option"),
        ({"samples": 0}, "invalid_option"),
        ({"timeout": 0}, "invalid_option"),
        ({"sample_interval": -1}, "invalid_option"),
        ({"step_command": "'unbalanced"}, "invalid_step_command"),
    ],
)
def test_time_sync_refuses_bad_options_before_running_anything(overrides, reason):
    runner = FakeRunner([])
    with pytest.raises(TIME_ERRORS) as caught:
        TimeSync(sync_params(123, **overrides), runner).run()
    assert failure_details(caught.value)["reason"] == reason
    assert runner.ran == []


def test_measure_clock_within_limit():
    warnings = []
    with SntpResponder({"offset": 0.3}) as ntp:
        result = measure_clock(sync_params(ntp.port), warnings.append)
    assert result["synchronized"] is True
    assert result["excess_offset"] is None
    assert result["offset_seconds"] == pytest.approx(0.3, abs=0.1)
    assert result["http_date"] is None
    assert warnings == []


def test_measure_clock_beyond_limit_explains_and_warns():
    warnings = []
    with SntpResponder({"offset": 120}) as ntp:
        result = measure_clock(sync_params(ntp.port, max_offset=10), warnings.append)
    assert result["synchronized"] is False
    excess = result["excess_offset"]
    assert excess["source"] == "ntp"
    assert excess["server"] == "127.0.0.1"
    assert excess["offset_seconds"] == pytest.approx(120, abs=2)
    assert "behind network time" in excess["msg"] and "max_offset 10 s" in excess["msg"]
    assert warnings == [excess["msg"]]


@pytest.fixture
def http_date_server(tmp_path):
    yield from http_date.serving(tmp_path)


def test_measure_clock_http_date_second_opinion(http_date_server):
    url = http_date_server(skew=300)
    warnings = []
    with SntpResponder({"offset": 0}) as ntp:
        result = measure_clock(sync_params(ntp.port, http_date_url=url), warnings.append)
    assert result["synchronized"] is False
    assert result["excess_offset"]["source"] == "http_date"
    assert "Date header of %s" % url in result["excess_offset"]["msg"]
    assert result["http_date"]["offset_seconds"] == pytest.approx(300, abs=2)


def test_measure_clock_reports_a_silent_server_and_uses_the_other():
    warnings = []
    with SntpResponder({"drop": True}) as silent, SntpResponder({"offset": 0}, host="127.0.0.2", port=silent.port):
        result = measure_clock(
            sync_params(silent.port, servers=["127.0.0.1", "127.0.0.2"], timeout=0.2), warnings.append
        )
    assert [server["status"] for server in result["server_results"]] == ["timeout", "ok"]
    assert result["selected_server"] == "127.0.0.2"
    assert any("127.0.0.1 gave no usable time" in warning for warning in warnings)
