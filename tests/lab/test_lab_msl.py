"""Self-tests of the emulated MSL hosts: the e-smith db tool, signal-event, restore, SSH, Ansible."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab import esmith

# --- the record format (no lab needed) ----------------------------------------------------


def test_record_format_round_trip():
    raw = esmith.format_value("service", {"status": "enabled", "NTPServer": "a.example b.example", "Empty": ""})
    assert raw == "service|Empty||NTPServer|a.example b.example|status|enabled"
    assert esmith.parse_value(raw) == (
        "service",
        {"status": "enabled", "NTPServer": "a.example b.example", "Empty": ""},
    )


def test_record_format_escapes_pipes_and_keeps_one_line():
    raw = esmith.format_value("service", {"Odd": "a|b", "Plain": "x"})
    assert raw == "service|Odd|a\\|b|Plain|x"
    assert esmith.parse_value(raw) == ("service", {"Odd": "a|b", "Plain": "x"})
    # Like esmith::config, a line break cuts the record there (what follows is lost).
    truncated = esmith.format_value("service", {"A": "first\nsecond", "B": "kept?"})
    assert truncated == "service|A|first"
    assert esmith.parse_value("plain") == ("plain", {})
    assert esmith.parse_value("service|Lonely") == ("service", {"Lonely": ""})


# --- the db tool ----------------------------------------------------------------------------


def db(lab, *args):
    return lab.db("msl1", "configuration", *args)


def test_db_round_trip(lab, msl_clean):
    assert db(lab, "set", "nupoint-oauth", "service", "ClientId", "123", "KeyFile", "/x/sa.json").returncode == 0
    assert db(lab, "get", "nupoint-oauth").stdout == "service\n"
    assert db(lab, "getprop", "nupoint-oauth", "ClientId").stdout == "123\n"
    assert db(lab, "setprop", "nupoint-oauth", "ClientId", "456", "Fingerprint", "ab:cd").returncode == 0
    assert db(lab, "getprop", "nupoint-oauth", "ClientId").stdout == "456\n"
    assert db(lab, "getprop", "nupoint-oauth", "Fingerprint").stdout == "ab:cd\n"
    assert db(lab, "delprop", "nupoint-oauth", "Fingerprint").returncode == 0
    missing = db(lab, "getprop", "nupoint-oauth", "Fingerprint")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert "nupoint-oauth" in db(lab, "keys").stdout.split()
    assert db(lab, "delete", "nupoint-oauth").returncode == 0
    gone = db(lab, "get", "nupoint-oauth")
    assert (gone.returncode, gone.stdout) == (1, "")
    assert db(lab, "delete", "nupoint-oauth").returncode == 1


def test_db_file_is_e_smith_flat_format(lab, msl_clean):
    db(lab, "setprop", "ntpd", "status", "enabled", "NTPServer", "127.0.0.1")
    lines = Path(lab.msl_paths("msl1")["db_file"]).read_text().splitlines()
    assert lines[0].startswith("# ")
    records = [line for line in lines if not line.startswith("#")]
    assert records == sorted(records)
    assert "ntpd=service|NTPServer|127.0.0.1|status|enabled" in records
    assert "DomainName=example.test" in records


def test_setprop_on_a_missing_key_exits_0_and_writes_nothing(lab, msl_clean):
    db_file = Path(lab.msl_paths("msl1")["db_file"])
    before = db_file.read_bytes()
    result = db(lab, "setprop", "no-such-record", "Prop", "value")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert db_file.read_bytes() == before
    assert db(lab, "get", "no-such-record").returncode == 1


def test_show_output_format(lab, msl_clean):
    db(lab, "set", "zz-test", "service", "b", "2", "a", "1", "C", "3")
    shown = db(lab, "show", "zz-test")
    assert shown.returncode == 0
    assert shown.stdout == "zz-test=service\n    C=3\n    a=1\n    b=2\n"
    assert db(lab, "show", "ntpd").stdout == "ntpd=service\n    NTPServer=\n    status=disabled\n"
    everything = db(lab, "show").stdout
    assert everything.startswith("DomainName=example.test\n")
    missing = db(lab, "show", "no-such-record")
    assert (missing.returncode, missing.stdout) == (1, "")


def test_signal_event_logs_and_renders_ntp_conf(lab, msl_clean):
    paths = lab.msl_paths("msl1")
    db(lab, "setprop", "ntpd", "status", "enabled", "NTPServer", "127.0.0.1")
    result = subprocess.run(
        [paths["signal_event_command"], "timeserver-update"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "server 127.0.0.1 iburst" in Path(paths["ntp_conf"]).read_text()
    subprocess.run([paths["signal_event_command"], "nupoint-oauth-update"], check=True)
    assert lab.signal_events("msl1") == ["timeserver-update", "nupoint-oauth-update"]
    db(lab, "setprop", "ntpd", "status", "disabled")
    subprocess.run([paths["signal_event_command"], "timeserver-update"], check=True)
    assert "server " not in Path(paths["ntp_conf"]).read_text()


def test_restore_msl_removes_oauth_data_and_restores_ntpd(lab, msl_clean):
    paths = lab.msl_paths("msl2")
    credential_dir = Path(paths["credential_dir"])
    credential_dir.mkdir(parents=True)
    (credential_dir / "service-account.json").write_text("{}")
    (credential_dir / "service-account.p12").write_bytes(b"\0")

    def run(*args):
        return lab.db("msl2", "configuration", *args)

    run("set", "nupoint-oauth", "service", "ClientId", "1", "KeyFile", str(credential_dir / "service-account.json"))
    run("setprop", "ntpd", "status", "enabled", "NTPServer", "127.0.0.1")
    # The backup taken now still has no OAuth record (MSL backups do not carry it).
    lab.backup_msl("msl2")
    run("setprop", "ntpd", "status", "disabled", "NTPServer", "")
    result = subprocess.run(
        [sys.executable, "-m", "tests.lab", "restore-msl", "msl2"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NUPOINT_LAB_DIR": lab.state_dir, "NUPOINT_LAB_PORT_BASE": str(lab.port_base)},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert not credential_dir.exists()
    assert run("get", "nupoint-oauth").returncode == 1
    assert run("getprop", "ntpd", "status").stdout == "enabled\n"
    assert run("getprop", "ntpd", "NTPServer").stdout == "127.0.0.1\n"
    assert lab.signal_events("msl2")[-1] == "post-restore"
    # msl1 is untouched.
    assert lab.db("msl1", "configuration", "getprop", "ntpd", "status").stdout == "disabled\n"


def test_initial_backup_restores_a_fresh_host(lab, msl_clean):
    lab.db("msl1", "configuration", "setprop", "ntpd", "status", "enabled")
    lab.restore_msl("msl1")
    assert lab.db("msl1", "configuration", "getprop", "ntpd", "status").stdout == "disabled\n"


# --- SSH and Ansible ------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["msl1", "msl2"])
def test_ssh_to_each_host(lab, msl_clean, host):
    result = lab.ssh(host, f"echo $NUPOINT_MSL_HOST; {lab.db_command(host)} configuration get SystemName")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [host, host]
    plain = subprocess.run(
        ["ssh", "-i", lab.ssh_key, "-p", str(lab.ssh_port(host)), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", f"root@{lab.host}", "true"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr


def test_ssh_refuses_other_keys(lab, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    result = subprocess.run(
        ["ssh", "-i", str(other), "-o", "IdentitiesOnly=yes", "-p", str(lab.ssh_port("msl1")),
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
         f"root@{lab.host}", "true"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 255


@pytest.mark.slow
def test_ansible_reaches_every_inventory_host(lab, msl_clean):
    ansible = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "ansible"
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(
        [str(ansible), "-i", lab.inventory_path, "all", "-m", "command", "-a",
         "{{ gworkspace_msl_db_command }} configuration get SystemName"],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for host, expected in (("msl1", "msl1"), ("msl2", "msl2"), ("msl1-local", "msl1")):
        assert f"{host} | CHANGED | rc=0 >>\n{expected}" in result.stdout
