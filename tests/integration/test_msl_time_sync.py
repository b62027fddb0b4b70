"""msl_time_sync and the time_sync role against the lab: msl1 over real SSH, lab chrony, the skewed responder.

Everything the plays need comes from the lab inventory (``gworkspace_*`` variables); the role's own
variables are mapped from them here, so the role never depends on lab names.
"""

import os
import re
import stat
import sys
from typing import Any

import pytest

from tests.integration.playbook import PlaybookRun, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

HOST = "msl1"
# The lab's skewed responder is off by exactly SKEW; a measurement on a busy machine may differ by a
# little, so measured values are compared within TOLERANCE and never read from formatted messages.
SKEW = 120
TOLERANCE = 2
# Fast measurement settings for the lab (loopback servers do not rate-limit).
FAST = {"samples": 3, "sample_interval": 0.1, "timeout": 1}
MSL_ARGS = {
    "db_command": "{{ gworkspace_msl_db_command }}",
    "signal_event_command": "{{ gworkspace_msl_signal_event_command }}",
}
LAB_SERVERS = {"servers": "{{ gworkspace_ntp_servers }}", "ntp_port": "{{ gworkspace_ntp_port }}"}
SKEWED_SERVERS = {"servers": "{{ gworkspace_ntp_servers }}", "ntp_port": "{{ gworkspace_skewed_ntp_port }}"}
ROLE_VARS = {
    "time_sync_servers": "{{ gworkspace_ntp_servers }}",
    "time_sync_ntp_port": "{{ gworkspace_ntp_port }}",
    "time_sync_msl_db_command": "{{ gworkspace_msl_db_command }}",
    "time_sync_msl_signal_event_command": "{{ gworkspace_msl_signal_event_command }}",
    "time_sync_samples": 3,
    "time_sync_sample_interval": 0.1,
    "time_sync_timeout": 1,
}


def play(tasks: list[dict[str, Any]], hosts: str = HOST) -> list[dict[str, Any]]:
    return [{"name": "time sync", "hosts": hosts, "gather_facts": False, "tasks": tasks}]


def sync_task(name: str, register: str | None = None, **args: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"name": name, "nupoint.gworkspace.msl_time_sync": dict(FAST, **args)}
    if register:
        task["register"] = register
    return task


def role_play(hosts: str = HOST, **extra_vars: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": "time_sync role",
            "hosts": hosts,
            "gather_facts": False,
            "roles": [{"role": "nupoint.gworkspace.time_sync", "vars": dict(ROLE_VARS, **extra_vars)}],
        }
    ]


def role_result(run: PlaybookRun, suffix: str, host: str = HOST) -> dict[str, Any]:
    """The result of the role task whose name ends with ``suffix`` (role tasks are named ``role : task``)."""
    names = [name for name in run.tasks if name.endswith(suffix)]
    assert names, "no task ending in %r in %s" % (suffix, list(run.tasks))
    return run.result(names[0], host)


def ntp_record(lab: Any, host: str = HOST) -> dict[str, str]:
    shown = lab.db(host, "configuration", "show", "ntpd", check=True).stdout.splitlines()
    return dict(line.strip().split("=", 1) for line in shown[1:])


def timeserver_events(lab: Any, host: str = HOST) -> int:
    return lab.signal_events(host).count("timeserver-update")


def test_enable_on_msl1_over_ssh_four_steps(lab, msl_clean):
    assert ntp_record(lab)["status"] == "disabled"
    args = dict(LAB_SERVERS, **MSL_ARGS)
    run = run_playbook(
        play(
            [
                dict(sync_task("check", **args), check_mode=True),
                sync_task("real", **args),
                dict(sync_task("check again", **args), check_mode=True),
                sync_task("real again", **args),
            ]
        ),
        inventory=lab.inventory_path,
        diff=True,
    )
    assert run.rc == 0, run.stdout + run.stderr
    check, real, check_again, real_again = (
        run.result(name, HOST) for name in ("check", "real", "check again", "real again")
    )

    assert check["changed"] is True
    assert check["record_before"]["props"] == {"NTPServer": "", "status": "disabled"}
    assert check["record_after"]["props"] == {"NTPServer": "127.0.0.1", "status": "enabled"}
    assert real["changed"] is True
    assert real["record_after"] == check["record_after"]
    assert check_again["changed"] is False
    assert real_again["changed"] is False
    assert real_again["record_before"] == real["record_after"]
    for result in (check, real, check_again, real_again):
        assert result["synchronized"] is True
        assert result["server_results"][0]["status"] == "ok"
    # The --diff output names the record's properties before and after.
    assert "NTPServer" in run.stdout and "ntpd record" in run.stdout

    assert ntp_record(lab) == {"NTPServer": "127.0.0.1", "status": "enabled"}
    assert timeserver_events(lab) == 1, "the event is signalled once, by the real run only"
    with open(lab.msl_paths(HOST)["ntp_conf"]) as handle:
        assert "server 127.0.0.1 iburst" in handle.read()


def test_panel_semantics_off_is_an_empty_server_and_disabled_does_the_same(lab, msl_clean):
    """SME Server's Date and Time panel, which MSL's descends from, turns network time off by emptying NTPServer and
    leaving status=enabled: the module reads that as off, turns it on, and turns it off the same way."""
    lab.db(HOST, "configuration", "setprop", "ntpd", "status", "enabled", "NTPServer", "", check=True)
    args = dict(LAB_SERVERS, **MSL_ARGS)
    run = run_playbook(
        play(
            [
                dict(sync_task("read", **args), check_mode=True),
                sync_task("on", **args),
                sync_task("off", state="disabled", **MSL_ARGS),
                sync_task("off again", state="disabled", **MSL_ARGS),
            ]
        ),
        inventory=lab.inventory_path,
    )
    assert run.rc == 0, run.stdout + run.stderr
    read, on, off, off_again = (run.result(name, HOST) for name in ("read", "on", "off", "off again"))
    assert read["network_time_before"] is False  # status=enabled alone is not network time
    assert read["changed"] is True and read["network_time"] is True
    assert on["network_time_before"] is False and on["network_time"] is True
    assert off["changed"] is True and off["network_time_before"] is True and off["network_time"] is False
    assert off["record_after"]["props"] == {"NTPServer": "", "status": "enabled"}
    assert off_again["changed"] is False
    assert ntp_record(lab) == {"NTPServer": "", "status": "enabled"}
    with open(lab.msl_paths(HOST)["ntp_conf"]) as handle:
        assert not re.search(r"^server ", handle.read(), re.MULTILINE)


def test_offset_against_lab_chrony_is_within_limit(lab, lab_reset, figure):
    run = run_playbook(
        play(
            [
                sync_task(
                    "measure",
                    manage=False,
                    http_date_url="{{ gworkspace_token_uri }}",
                    ca_path="{{ gworkspace_ca_path }}",
                    samples=4,
                    **LAB_SERVERS,
                )
            ]
        ),
        inventory=lab.inventory_path,
    )
    assert run.rc == 0, run.stdout + run.stderr
    result = run.result("measure", HOST)
    server = result["server_results"][0]
    figure(
        "lab chrony offset %+.6f s, delay %.6f s, stratum %d"
        % (result["offset_seconds"], server["delay_seconds"], server["stratum"])
    )
    # Lab chrony serves this very machine's clock: the offset is measurement noise.
    assert abs(result["offset_seconds"]) < 0.05
    assert result["synchronized"] is True
    assert server["status"] == "ok"
    assert server["samples_ok"] == 4
    assert server["stratum"] == 8  # chrony's "local stratum 8"
    # The emulated Google's Date header agrees within its one-second resolution, over TLS with the lab CA.
    assert result["http_date"]["status"] == "ok", result["http_date"]["msg"]
    assert abs(result["http_date"]["offset_seconds"]) <= 1.5


@pytest.fixture
def fake_step(tmp_path, lab):
    """A step command that records its arguments and "fixes" the clock by zeroing the lab's skew.

    It changes no real clock: like a real step, it makes the measured offset disappear, by telling
    the skewed responder (the only server in these tests) to stop being skewed.
    """
    record = tmp_path / "step-calls.txt"
    script = tmp_path / "fake-step"
    script.write_text(
        "#!%s\n"
        "import sys\n"
        "with open(%r, 'a') as handle:\n"
        "    handle.write(' '.join(sys.argv[1:]) + '\\n')\n"
        "with open(%r, 'w') as handle:\n"
        "    handle.write('0\\n')\n"
        "print('step time server %%s offset 120.0 sec' %% sys.argv[-1])\n"
        % (sys.executable, str(record), str(lab.cfg.sntp_offset_file))
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, record


def test_skewed_server_fail_warn_step(lab, lab_reset, msl_clean, fake_step):
    script, record = fake_step
    lab.skew(SKEW)
    args = dict(SKEWED_SERVERS, manage=False)
    run = run_playbook(
        play(
            [
                dict(sync_task("fail", **args), ignore_errors=True),
                sync_task("warn", on_excess_offset="warn", **args),
                dict(
                    sync_task(
                        "step in check mode", on_excess_offset="step", step_command=[str(script), "{server}"], **args
                    ),
                    check_mode=True,
                ),
                sync_task(
                    "step", on_excess_offset="step", step_command=[str(script), "--port", "{port}", "{server}"], **args
                ),
            ]
        ),
        inventory=lab.inventory_path,
    )
    assert run.rc == 0, run.stdout + run.stderr

    fail = run.result("fail", HOST)
    assert fail["failed"] is True
    assert fail["reason"] == "offset_exceeded"
    assert fail["offset_seconds"] == pytest.approx(SKEW, abs=TOLERANCE)
    assert "This host's clock is " in fail["msg"] and "behind network time" in fail["msg"]
    assert "Invalid JWT" in fail["msg"]

    warn = run.result("warn", HOST)
    assert warn.get("failed") is False
    assert warn["synchronized"] is False
    assert warn["offset_seconds"] == pytest.approx(SKEW, abs=TOLERANCE)
    assert any("behind network time" in warning for warning in warn["warnings"])
    assert "[WARNING]" in run.stdout + run.stderr

    check_step = run.result("step in check mode", HOST)
    assert check_step["changed"] is True
    assert check_step["stepped"] is False

    step = run.result("step", HOST)
    assert step["changed"] is True
    assert step["stepped"] is True
    assert step["offset_seconds"] == pytest.approx(SKEW, abs=TOLERANCE)
    assert step["offset_after_step_seconds"] == pytest.approx(0, abs=TOLERANCE)
    assert step["synchronized"] is True
    assert step["step_command"] == [str(script), "--port", str(lab.skewed_ntp_port), "127.0.0.1"]
    # Called exactly once, by the real run, with the server (check mode ran nothing).
    assert record.read_text().splitlines() == ["--port %d 127.0.0.1" % lab.skewed_ntp_port]
    assert lab.skew_seconds == 0


def test_all_servers_unreachable_is_a_clear_failure(lab, msl_clean):
    # B+7 is not in the lab's port plan: nothing listens there.
    silent_port = lab.port_base + 7
    run = run_playbook(
        play([sync_task("unreachable", servers=["127.0.0.1", "127.0.0.2"], ntp_port=silent_port, **MSL_ARGS)]),
        inventory=lab.inventory_path,
    )
    assert run.rc != 0
    result = run.result("unreachable", HOST)
    assert result["reason"] == "no_server"
    assert result["msg"].startswith("No NTP server gave usable time")
    assert "127.0.0.1: " in result["msg"] and "127.0.0.2: " in result["msg"]
    assert "Traceback" not in run.stdout + run.stderr
    assert [server["status"] for server in result["server_results"]] == ["connect", "connect"]


def test_role_restores_the_record_after_an_msl_restore(lab, msl_clean):
    first = run_playbook(role_play(), inventory=lab.inventory_path)
    assert first.rc == 0, first.stdout + first.stderr
    assert ntp_record(lab) == {"NTPServer": "127.0.0.1", "status": "enabled"}

    lab.restore_msl(HOST)  # the backup was taken while network time was off
    assert ntp_record(lab)["status"] == "disabled"

    again = run_playbook(role_play(), inventory=lab.inventory_path)
    assert again.rc == 0, again.stdout + again.stderr
    measured = role_result(again, "Enable network time in the MSL config db and measure the offset")
    assert measured["changed"] is True
    assert measured["record_before"]["props"]["status"] == "disabled"
    assert ntp_record(lab) == {"NTPServer": "127.0.0.1", "status": "enabled"}

    idempotent = run_playbook(role_play(), inventory=lab.inventory_path)
    assert idempotent.rc == 0
    assert "changed=0" in idempotent.stdout


def test_role_fails_the_play_with_the_oauth_explanation(lab, lab_reset, msl_clean):
    lab.skew(SKEW)
    run = run_playbook(role_play(time_sync_ntp_port="{{ gworkspace_skewed_ntp_port }}"), inventory=lab.inventory_path)
    assert run.rc != 0
    measured = role_result(run, "Enable network time in the MSL config db and measure the offset")
    assert measured["offset_seconds"] == pytest.approx(SKEW, abs=TOLERANCE)
    failure = role_result(run, "Fail with what a wrong clock does to NuPoint")
    assert "time_sync (esmith backend) failed" in failure["msg"]
    assert "This host's clock is " in failure["msg"] and "behind network time" in failure["msg"]
    assert "Invalid JWT" in failure["msg"]


def test_role_chrony_backend_on_a_generic_host(lab, tmp_path):
    conf = tmp_path / "chrony.conf"
    run = run_playbook(
        role_play(
            hosts="msl1-local",
            time_sync_backend="chrony",
            time_sync_chrony_conf_path=str(conf),
            time_sync_chrony_manage_package=False,
            time_sync_chrony_manage_service=False,
            time_sync_chrony_extra_config=["# lab extra line"],
        ),
        inventory=lab.inventory_path,
    )
    assert run.rc == 0, run.stdout + run.stderr
    text = conf.read_text()
    assert "server 127.0.0.1 iburst port %d" % lab.ntp_port in text
    assert "# lab extra line" in text
    measured = role_result(run, "Measure the clock offset", host="msl1-local")
    assert measured["synchronized"] is True
    assert "record_before" not in measured  # clock_offset_info: no db is read or written
    assert os.path.getsize(conf) > 0


def chrony_role_play(conf: Any, **extra_vars: Any) -> list[dict[str, Any]]:
    """The role's chrony backend on the local lab host, against a scenario file, without package or service."""
    return role_play(
        hosts="msl1-local",
        time_sync_backend="chrony",
        time_sync_chrony_conf_path=str(conf),
        time_sync_chrony_manage_package=False,
        time_sync_chrony_manage_service=False,
        **extra_vars,
    )


def test_role_chrony_backend_fails_on_a_skewed_clock(lab, lab_reset, tmp_path):
    lab.skew(SKEW)
    run = run_playbook(
        chrony_role_play(tmp_path / "chrony.conf", time_sync_ntp_port="{{ gworkspace_skewed_ntp_port }}"),
        inventory=lab.inventory_path,
    )
    assert run.rc != 0
    measured = role_result(run, "Measure the clock offset", host="msl1-local")
    assert measured["synchronized"] is False
    assert measured["offset_seconds"] == pytest.approx(SKEW, abs=TOLERANCE)
    failure = role_result(run, "Fail with what a wrong clock does to NuPoint", host="msl1-local")
    assert "time_sync (chrony backend) failed" in failure["msg"]
    assert "behind network time" in failure["msg"] and "Invalid JWT" in failure["msg"]


def test_role_chrony_backend_steps_and_measures_again(lab, lab_reset, tmp_path, fake_step):
    script, record = fake_step
    lab.skew(SKEW)
    run = run_playbook(
        chrony_role_play(
            tmp_path / "chrony.conf",
            time_sync_ntp_port="{{ gworkspace_skewed_ntp_port }}",
            time_sync_on_excess_offset="step",
            time_sync_step_command="%s --port {port} {server}" % script,
        ),
        inventory=lab.inventory_path,
    )
    assert run.rc == 0, run.stdout + run.stderr
    assert record.read_text().splitlines() == ["--port %d 127.0.0.1" % lab.skewed_ntp_port]
    assert lab.skew_seconds == 0
    measurement = role_result(run, "Publish the measurement", host="msl1-local")["ansible_facts"][
        "time_sync_measurement"
    ]
    assert measurement["stepped"] is True
    assert measurement["synchronized"] is True
    assert measurement["offset_seconds"] == pytest.approx(SKEW, abs=TOLERANCE)
    assert measurement["offset_after_step_seconds"] == pytest.approx(0, abs=TOLERANCE)
    assert measurement["step_command"] == [str(script), "--port", str(lab.skewed_ntp_port), "127.0.0.1"]
