"""module_utils/time_sync: the ntpd record plan, the step command template and the offset verdict."""

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils.msl import ConfigDb, MslError, Record
from ansible_collections.nupoint.gworkspace.plugins.module_utils.time_sync import (
    NtpRecordNames,
    TimeSyncError,
    apply_record,
    desired_properties,
    excess_message,
    offset_verdict,
    plan_record,
    step_argv,
    step_servers,
)
from tests.unit.command_runner import FakeRunner

NAMES = NtpRecordNames()
DB = "/sbin/e-smith/db"


def test_enabled_stores_only_the_first_server():
    assert desired_properties(NAMES, "enabled", ["a.example", "b.example"]) == {
        "status": "enabled",
        "NTPServer": "a.example",
    }


def test_disabled_leaves_the_server_alone():
    assert desired_properties(NAMES, "disabled", ["a.example"]) == {"status": "disabled"}


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
