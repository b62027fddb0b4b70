"""Module-level checks through pytest-ansible's ``ansible_module`` / ``ansible_adhoc`` fixtures over the lab inventory.

pytest-ansible runs one module on inventory hosts inside the pytest process (its host manager and module dispatcher
build a one-task play and hand it to Ansible's TaskQueueManager) and returns each host's result as a dict: no
playbook file, no ansible-playbook process, no results callback. The modules still run as they do for users: over
real SSH to msl1/msl2 with the MSL hosts' standard-library Python, action plugins on the controller, module arguments
templated from the lab inventory's ``gworkspace_*`` variables.

What needs a real ``ansible-playbook`` process (its ``-vvv`` text scanned for key- and token-shaped strings, plays
with roles, several tasks that depend on each other) stays on tests/integration/playbook.py.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_ansible.module_dispatcher import v213 as dispatcher

from tests.lab.config import LabConfig

# The ``ansible`` marker is pytest-ansible's way to give its fixtures an inventory and a host pattern per test, in
# place of --ansible-inventory / --ansible-host-pattern on the command line (which every other test run would then
# need). The lab inventory is where NUPOINT_LAB_DIR puts it; the session-scoped ``lab`` fixture, set up before
# ``ansible_module``, brings the lab up and writes it.
HOST = "msl1"
pytestmark = [
    pytest.mark.lab,
    pytest.mark.slow,
    pytest.mark.ansible(inventory=str(LabConfig.from_env().inventory), host_pattern=HOST),
]

COLLECTION = "nupoint.gworkspace."
MSL_DB: dict[str, Any] = {
    "db_command": "{{ gworkspace_msl_db_command }}",
    "signal_event_command": "{{ gworkspace_msl_signal_event_command }}",
}
CREDENTIALS: dict[str, Any] = dict(MSL_DB, credential_dir="{{ gworkspace_msl_credential_dir }}")
KEY: dict[str, Any] = {"src": "{{ gworkspace_key_file }}", "p12_src": "{{ gworkspace_p12_file }}"}
# Loopback servers do not rate-limit: few samples, close together.
FAST: dict[str, Any] = {"samples": 3, "sample_interval": 0.1, "timeout": 1}
LAB_NTP: dict[str, Any] = {"servers": "{{ gworkspace_ntp_servers }}", "ntp_port": "{{ gworkspace_ntp_port }}"}
SKEWED_NTP: dict[str, Any] = {"servers": "{{ gworkspace_ntp_servers }}", "ntp_port": "{{ gworkspace_skewed_ntp_port }}"}
# The lab's skewed responder is off by exactly SKEW; a measurement on a busy machine may differ by a little.
SKEW = 120
TOLERANCE = 2
IMAP: dict[str, Any] = {
    "src": "{{ gworkspace_key_file }}",
    "token_uri": "{{ gworkspace_token_uri }}",
    "ca_path": "{{ gworkspace_ca_path }}",
    "imap_host": "{{ gworkspace_imap_host }}",
    "imap_port": "{{ gworkspace_imap_port }}",
    "timeout": 5,
    "retries": 3,
    "fail_threshold": "100%",
}


@contextlib.contextmanager
def check_mode() -> Iterator[None]:
    """Modules run through the fixtures inside this block run in check mode.

    Workaround: pytest-ansible 26.10.0 declares ``--ansible-check`` but never passes it on: its dispatcher hands
    Ansible's ad-hoc CLI the connection, user, become and module-path options only. Nor can a test parse that CLI again
    with ``--check``: Ansible keeps the first parse of the process (its global CLI arguments are a singleton). So the
    one-task play the dispatcher builds gets ``check_mode: true``, the task keyword a playbook would use. Every use below
    also shows that it took: the host is unchanged after a check run that reports ``changed``; and if pytest-ansible
    renames the method, monkeypatch fails the test instead of running it for real.
    """
    build_play = dispatcher.ModuleDispatcherV213._build_play_ds

    def build_checked_play(self: Any, complex_args: dict[str, Any]) -> dict[str, Any]:
        play = build_play(self, complex_args)
        return dict(play, tasks=[dict(task, check_mode=True) for task in play["tasks"]])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dispatcher.ModuleDispatcherV213, "_build_play_ds", build_checked_play)
        yield


def run(hosts: Any, module: str, **args: Any) -> dict[str, dict[str, Any]]:
    """Run the collection's ``module`` on ``hosts`` (a dispatcher from the fixtures): each contacted host's result."""
    results = getattr(hosts, COLLECTION + module)(**args)
    return {host: dict(result) for host, result in results.contacted.items()}


def on_host(hosts: Any, module: str, host: str = HOST, **args: Any) -> dict[str, Any]:
    """Run ``module`` where only ``host`` matches, and return that host's result."""
    results = run(hosts, module, **args)
    assert set(results) == {host}, sorted(results)
    return results[host]


def plain(fingerprint: str) -> str:
    """The lab writes fingerprints as bare hex; the collection as colon-separated pairs."""
    return fingerprint.strip().replace(":", "").lower()


def ntp_record(lab: Any, host: str = HOST) -> dict[str, str]:
    shown = lab.db(host, "configuration", "show", "ntpd", check=True).stdout.splitlines()
    return dict(line.strip().split("=", 1) for line in shown[1:])


def msl_state(lab: Any, host: str = HOST) -> tuple[str, list[str], list[str]]:
    """The config db as the db tool prints it, the events signalled so far and the credential directory's files."""
    credential_dir = Path(lab.credential_dir(host))
    files = sorted(path.name for path in credential_dir.iterdir()) if credential_dir.exists() else []
    return lab.db(host, "configuration", "show", check=True).stdout, lab.signal_events(host), files


def test_credentials_info_and_install_four_steps(lab, msl_clean, ansible_module):
    absent = on_host(ansible_module, "msl_oauth_credentials_info", **CREDENTIALS)
    assert (absent["changed"], absent["present"], absent["path"]) == (False, False, None)

    fresh = msl_state(lab)
    with check_mode():
        check = on_host(ansible_module, "msl_oauth_credentials", **KEY, **CREDENTIALS)
    assert check["changed"] is True
    assert check["changes"] == ["key_file", "p12_file", "record", "directory_mode"]
    assert msl_state(lab) == fresh, "check mode changed msl1"

    real = on_host(ansible_module, "msl_oauth_credentials", **KEY, **CREDENTIALS)
    assert real["changed"] is True
    assert real["private_key_id"] == lab.private_key_id
    assert plain(real["fingerprint_sha256"]) == lab.public_key_sha256
    with check_mode():
        assert on_host(ansible_module, "msl_oauth_credentials", **KEY, **CREDENTIALS)["changed"] is False
    again = on_host(ansible_module, "msl_oauth_credentials", **KEY, **CREDENTIALS)
    assert again["changed"] is False
    assert again["installed_at"] == real["installed_at"]
    assert lab.signal_events(HOST).count("nupoint-oauth-update") == 1

    info = on_host(ansible_module, "msl_oauth_credentials_info", **CREDENTIALS)
    assert (info["changed"], info["present"], info["consistent"]) == (False, True, True)
    assert (info["problems"], info["permission_problems"]) == ([], [])
    assert info["client_id"] == lab.client_id
    assert plain(info["fingerprint_sha256"]) == lab.public_key_sha256
    for result in (check, real, again, info):
        assert "PRIVATE KEY" not in repr(result)


def test_clock_offset_info_on_every_msl_host(lab, lab_reset, msl_clean, ansible_adhoc):
    """One module run over the ``msl`` group gives one result per host; skew is reported, not failed."""
    before = {host: msl_state(lab, host) for host in ("msl1", "msl2")}
    hosts = ansible_adhoc()["msl"]
    with check_mode():
        checked = run(hosts, "clock_offset_info", **FAST, **LAB_NTP)
    measured = run(hosts, "clock_offset_info", **FAST, **LAB_NTP)
    for results in (checked, measured):
        assert set(results) == {"msl1", "msl2"}
        for result in results.values():
            assert (result["changed"], result["synchronized"], result["excess_offset"]) == (False, True, None)
            # Lab chrony serves this very machine's clock: the offset is measurement noise.
            assert abs(result["offset_seconds"]) < 1
            (server,) = result["server_results"]
            assert (server["status"], server["samples_ok"]) == ("ok", 3)

    lab.skew(SKEW)
    skewed = on_host(ansible_adhoc()[HOST], "clock_offset_info", **FAST, **SKEWED_NTP)
    assert (skewed.get("failed", False), skewed["changed"], skewed["synchronized"]) == (False, False, False)
    assert skewed["offset_seconds"] == pytest.approx(SKEW, abs=TOLERANCE)
    assert skewed["excess_offset"]["offset_seconds"] == pytest.approx(SKEW, abs=TOLERANCE)
    assert skewed["excess_offset"]["msg"] in skewed["warnings"]
    assert {host: msl_state(lab, host) for host in before} == before, "measuring changed an MSL host"


def test_msl_time_sync_check_mode_then_real(lab, msl_clean, ansible_module):
    assert ntp_record(lab) == {"NTPServer": "", "status": "disabled"}
    fresh = msl_state(lab)
    with check_mode():
        check = on_host(ansible_module, "msl_time_sync", **FAST, **LAB_NTP, **MSL_DB)
    assert check["changed"] is True
    assert check["record_before"]["props"] == {"NTPServer": "", "status": "disabled"}
    assert check["record_after"]["props"] == {"NTPServer": "127.0.0.1", "status": "enabled"}
    assert check["synchronized"] is True
    assert msl_state(lab) == fresh, "check mode changed msl1"

    real = on_host(ansible_module, "msl_time_sync", **FAST, **LAB_NTP, **MSL_DB)
    assert real["changed"] is True
    assert real["record_after"] == check["record_after"]
    assert ntp_record(lab) == {"NTPServer": "127.0.0.1", "status": "enabled"}
    with check_mode():
        assert on_host(ansible_module, "msl_time_sync", **FAST, **LAB_NTP, **MSL_DB)["changed"] is False
    assert on_host(ansible_module, "msl_time_sync", **FAST, **LAB_NTP, **MSL_DB)["changed"] is False
    assert lab.signal_events(HOST).count("timeserver-update") == 1


def test_msl_time_sync_refuses_a_bad_server_name(lab, msl_clean, ansible_module):
    fresh = msl_state(lab)
    refused = on_host(ansible_module, "msl_time_sync", servers=["ntp.example.com; reboot"], **FAST, **MSL_DB)
    assert (refused["failed"], refused["changed"]) == (True, False)
    assert "ntp.example.com; reboot" in refused["msg"]
    assert msl_state(lab) == fresh


def test_imap_check_a_handful_of_users_on_msl1(lab, lab_reset, ansible_module):
    users = lab.users[:5]
    ghost = "ghost@" + lab.domain
    lab.google.set_user_imap(users[2], False)
    with check_mode():
        checked = on_host(ansible_module, "imap_check", users=[*users, ghost], **IMAP)
    result = on_host(ansible_module, "imap_check", users=[*users, ghost], **IMAP)
    for outcome in (checked, result):
        assert outcome.get("failed", False) is False, outcome.get("msg")
        assert outcome["changed"] is False
        classes = {entry["user"]: entry["failure_class"] for entry in outcome["results"]}
        assert classes == {
            **{user: "ok" for user in users if user != users[2]},
            users[2]: "imap_disabled",
            ghost: "token_invalid_user",
        }
        summary = outcome["summary"]
        assert (summary["total"], summary["ok"], summary["failed"]) == (6, 4, 2)
        assert outcome["client_id"] == lab.client_id
        assert "ya29." not in repr(outcome)
        assert "PRIVATE KEY" not in repr(outcome)
