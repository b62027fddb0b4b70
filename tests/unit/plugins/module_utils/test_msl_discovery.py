"""Discovery on an MSL host (module_utils.msl_discovery, stdlib only) against a throw-away emulated host.

The host is the lab's e-smith ``db`` in a temp dir (tests/unit/esmith_host.py); interpreters and rpm are small
scripts placed under the host's root, so every probe runs a real program.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat
import subprocess
import sys

import pytest
import yaml

from ansible_collections.nupoint.gworkspace.plugins.module_utils import msl_discovery as disc
from ansible_collections.nupoint.gworkspace.plugins.modules import msl_facts
from tests.unit import keyfactory as kf
from tests.unit.esmith_host import EsmithHost

CLIENT_ID = kf.CLIENT_ID
CLIENT_EMAIL = kf.CLIENT_EMAIL
IDS = {"client_id": CLIENT_ID, "client_email": CLIENT_EMAIL}


@pytest.fixture
def host(tmp_path):
    host = EsmithHost(tmp_path / "msl1")
    host.db("set", "sysconfig", "configuration", "ProductName", "Mitel Standard Linux", "ReleaseVersion", "11.0")
    host.db("set", "ntpd", "service", "status", "disabled", "NTPServer", "")
    return host


class PopenModule:
    """What ``timed_run_command`` needs of AnsibleModule: run_command with ``before_communicate_callback``."""

    def run_command(self, argv, before_communicate_callback=None, **_kwargs):
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if before_communicate_callback is not None:
            before_communicate_callback(process)
        out, err = process.communicate()
        return process.returncode, out.decode(), err.decode()


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "wb" if isinstance(data, bytes) else "w") as handle:
        handle.write(data)
    os.chmod(str(path), mode)
    return str(path)


def script(path, body):
    return write(path, "#!/bin/sh\n" + body + "\n", 0o755)


def params(host, **overrides):
    base = {
        "root": str(host.root),
        "db_command": host.db_command,
        "db_name": "configuration",
        "client_id": CLIENT_ID,
        "client_email": CLIENT_EMAIL,
        "search_paths": list(disc.SEARCH_PATHS),
        "event_logs": ["/var/log/messages"],
        "python_timeout": 10.0,
        "snapshot_path": None,
        "compare_with": None,
        "_write": True,
    }
    base.update((name, None) for name in disc.LIMITS)
    base.update(overrides)
    return base


def run(host, **overrides):
    return disc.discover(params(host, **overrides), disc.timed_run_command(PopenModule()))


def simulate_upload(host, directory="/opt/mitel/gapps", record="gapps-oauth", event="gapps-oauth-update", props=None):
    """What a Server Manager upload might do: key files in its own directory, a db record, an event in syslog."""
    root = str(host.root)
    key_dir = disc.under(root, directory)
    key_path = write(os.path.join(key_dir, "gapps-sa.json"), kf.key_json(), 0o600)
    p12_path = write(os.path.join(key_dir, "gapps-sa.p12"), b"\x30\x82\x00\x00" + os.urandom(2000), 0o600)
    record_props = {"ClientEmail": CLIENT_EMAIL, "ClientId": CLIENT_ID, "KeyFile": key_path}
    record_props.update(props or {})
    args = ["set", record, "service"]
    for name in sorted(record_props):
        args += [name, record_props[name]]
    host.db(*args)
    os.makedirs(disc.under(root, "/etc/e-smith/events/" + event), exist_ok=True)
    with open(disc.under(root, "/var/log/messages"), "a") as handle:
        handle.write("Dec  2 01:00:00 msl1 esmith::event[4711]: Processing event: %s\n" % event)
    return key_path, p12_path


def prepare_events(host, *names):
    for name in names:
        os.makedirs(disc.under(str(host.root), "/etc/e-smith/events/" + name), exist_ok=True)
    write(disc.under(str(host.root), "/var/log/messages"), "Dec  2 00:00:00 msl1 syslogd: started\n")


# --------------------------------------------------------------------------- release, Pythons, NuPoint


def test_release_from_the_first_file_that_exists_and_the_sysconfig_record(host):
    root = str(host.root)
    write(disc.under(root, "/etc/redhat-release"), "CentOS Linux release 7.9.2009 (Core)\n")
    write(disc.under(root, "/etc/e-smith-release"), "\nMitel Standard Linux release 11.0.88.0\n")
    facts = disc.release_facts(root, disc.ConfigDb(host.run_command, host.db_command))
    assert facts["name"] == "Mitel Standard Linux release 11.0.88.0"
    assert facts["file"] == disc.under(root, "/etc/e-smith-release")
    assert facts["sysconfig"] == {"ProductName": "Mitel Standard Linux", "ReleaseVersion": "11.0"}
    assert facts["checked"][0] == facts["file"]


def test_release_from_os_release_and_none_at_all(host, tmp_path):
    root = str(host.root)
    write(disc.under(root, "/etc/os-release"), 'NAME="CentOS Linux"\nPRETTY_NAME="CentOS Linux 7 (Core)"\n')
    assert disc.release_facts(root, None)["name"] == "CentOS Linux 7 (Core)"
    empty = disc.release_facts(str(tmp_path / "nothing"), None)
    assert (empty["name"], empty["file"], empty["sysconfig"]) == (None, None, None)


def test_pythons_found_with_versions_and_a_hung_one_timed_out(host):
    root = str(host.root)
    bin_dir = disc.under(root, "/usr/bin")
    os.makedirs(bin_dir)
    os.symlink(sys.executable, os.path.join(bin_dir, "python3"))
    script(os.path.join(bin_dir, "python2.7"), 'echo "Python 2.7.5" >&2')  # Python 2 answers -V on stderr
    script(os.path.join(bin_dir, "python2"), "exec sleep 30")
    script(os.path.join(bin_dir, "python3-config"), "echo not an interpreter")
    write(os.path.join(bin_dir, "python3.6"), "not executable\n", 0o644)
    found = disc.python_facts(root, disc.timed_run_command(PopenModule()), timeout=1.0)
    by_name = {os.path.basename(entry["path"]): entry for entry in found}
    assert sorted(by_name) == ["python2", "python2.7", "python3"]
    assert by_name["python2.7"]["version"] == "2.7.5"
    assert by_name["python3"]["version"] == "%d.%d.%d" % sys.version_info[:3]
    assert by_name["python3"]["resolves_to"] == os.path.realpath(sys.executable)
    assert by_name["python2"]["version"] is None
    assert "no answer to -V within 1 s" in by_name["python2"]["error"]


def test_nupoint_unknown_without_rpm(host):
    facts = disc.nupoint_facts(str(host.root), disc.timed_run_command(PopenModule()))
    assert facts["present"] is None
    assert facts["version"] == "unknown"
    assert facts["note"].startswith("unknown: no rpm at ")


@pytest.mark.parametrize(
    ("listing", "present", "version"),
    [
        ("bash\t4.2.46-34.el7\nnupoint-um\t22.0.1.6-1\nNuPoint-tts\t22.0.1-1\n", True, "22.0.1-1"),
        ("bash\t4.2.46-34.el7\n", False, "unknown"),
    ],
)
def test_nupoint_from_rpm(host, listing, present, version):
    root = str(host.root)
    script(disc.under(root, "/usr/bin/rpm"), "printf '%s'" % listing.replace("\t", "\\t").replace("\n", "\\n"))
    write(disc.under(root, "/opt/nupoint/README"), "x\n")
    facts = disc.nupoint_facts(root, disc.timed_run_command(PopenModule()))
    assert facts["present"] is present
    assert facts["version"] == version
    assert facts["directories"] == [disc.under(root, "/opt/nupoint")]
    if present:
        assert [package["name"] for package in facts["packages"]] == ["NuPoint-tts", "nupoint-um"]
        assert facts["source"] == "rpm"


def test_nupoint_rpm_failing_is_unknown(host):
    script(disc.under(str(host.root), "/bin/rpm"), "echo 'rpmdb: lock' >&2; exit 1")
    facts = disc.nupoint_facts(str(host.root), disc.timed_run_command(PopenModule()))
    assert facts["present"] is None
    assert "exit 1" in facts["note"] and "rpmdb: lock" in facts["note"]


# --------------------------------------------------------------------------- dbs


def test_every_db_is_read_records_matched_and_secrets_redacted(host):
    host.db("set", "gapps", "service", "Account", CLIENT_EMAIL.upper(), "Password", "hunter2", "status", "enabled")
    host.run_command([host.db_command, "accounts", "set", "np", "user", "Key", "A" * 120, "Id", CLIENT_ID])
    dbs, errors = disc.read_dbs(str(host.root), host.run_command, host.db_command)
    assert errors == []
    assert sorted(dbs) == ["accounts", "configuration"]  # configuration.lock is not a db
    assert dbs["configuration"]["gapps"]["props"]["Password"].startswith("(redacted) sha256:")
    found = disc.matching_records(dbs, IDS)
    assert [(record["db"], record["key"]) for record in found] == [("accounts", "np"), ("configuration", "gapps")]
    assert found[0]["props"] == {"Id": CLIENT_ID, "Key": "(redacted)"}
    assert found[0]["matched_props"] == {"Id": ["client_id"]}
    assert found[1]["props"]["Password"] == "(redacted)"
    assert found[1]["matched_props"] == {"Account": ["client_email"]}
    assert "hunter2" not in json.dumps(found)


# --------------------------------------------------------------------------- files


def test_matching_files_are_described_never_shown(host):
    root = str(host.root)
    key_path = write(disc.under(root, "/opt/np/sa.json"), kf.key_json(), 0o600)
    write(disc.under(root, "/etc/np.conf"), "account=%s\n" % CLIENT_EMAIL.upper())
    write(disc.under(root, "/etc/other.conf"), "nothing here\n")
    os.symlink(key_path, disc.under(root, "/etc/link-to-key.json"))
    os.mkfifo(disc.under(root, "/etc/a-fifo"))
    scan = disc.FileScan([disc.under(root, p) for p in ("/etc", "/opt", "/missing")], IDS).run()
    matches = scan.matches()
    assert [m["path"] for m in matches] == [disc.under(root, "/etc/np.conf"), key_path]
    key = matches[1]
    assert key["matched"] == ["client_id", "client_email"]
    assert (key["mode"], key["size"], key["binary"]) == ("0600", os.path.getsize(key_path), False)
    assert key["owner"] is not None and key["mtime"].endswith("Z")
    assert matches[0]["matched"] == ["client_email"]
    assert "PRIVATE KEY" not in json.dumps(matches)
    summary = scan.summary()
    assert summary["missing_roots"] == [disc.under(root, "/missing")]
    assert summary["truncated"] is False
    assert summary["files_examined"] == 3  # not the link, not the FIFO


def test_limits_truncate_and_say_so(host):
    root = str(host.root)
    for index in range(5):
        write(disc.under(root, "/etc/many/f%d" % index), "x\n")
    write(disc.under(root, "/etc/a/b/c/deep.conf"), CLIENT_EMAIL)
    write(disc.under(root, "/etc/big.bin"), b"\0" * 1500 + CLIENT_EMAIL.encode())
    write(disc.under(root, "/etc/large.txt"), "y" * 3000 + CLIENT_EMAIL)
    scan = disc.FileScan(
        [disc.under(root, "/etc")], IDS, {"max_depth": 2, "max_file_size": 2000, "max_binary_size": 1000}
    ).run()
    summary = scan.summary()
    assert sorted(summary["truncated_by"]) == ["max_depth", "max_file_size"]
    assert summary["directories_beyond_max_depth"] == 1
    assert (summary["skipped_binary"], summary["skipped_too_large"]) == (1, 1)
    assert scan.matches() == []
    assert scan.files[disc.under(root, "/etc/large.txt")]["sha256"] is None
    few = disc.FileScan([disc.under(root, "/etc")], IDS, {"max_files": 3}).run().summary()
    assert (few["files_examined"], few["truncated_by"]) == (3, ["max_files"])


def test_the_total_read_is_bounded_and_smaller_files_still_fit(host):
    root = str(host.root)
    write(disc.under(root, "/etc/a-first.conf"), "a" * 600)
    write(disc.under(root, "/etc/b-big.conf"), "b" * 600 + CLIENT_EMAIL)  # would pass 1,000 bytes: listed, not read
    write(disc.under(root, "/etc/c-small.conf"), CLIENT_EMAIL)  # still fits after it
    scan = disc.FileScan([disc.under(root, "/etc")], IDS, {"max_total_size": 1000}).run()
    summary = scan.summary()
    assert summary["truncated_by"] == ["max_total_size"]
    assert summary["skipped_total_size"] == 1
    assert summary["bytes_read"] == 600 + len(CLIENT_EMAIL) <= 1000
    assert scan.files[disc.under(root, "/etc/b-big.conf")]["sha256"] is None
    assert [match["path"] for match in scan.matches()] == [disc.under(root, "/etc/c-small.conf")]
    unbounded = disc.FileScan([disc.under(root, "/etc")], IDS).run().summary()
    assert (unbounded["truncated_by"], unbounded["bytes_read"]) == ([], 1200 + 2 * len(CLIENT_EMAIL))


def test_a_snapshot_is_never_searched_or_snapshotted(host):
    root = str(host.root)
    snapshot = disc.take_snapshot(
        root, {"configuration": {"x": {"type": "t", "props": {"E": CLIENT_EMAIL}}}}, disc.FileScan([], IDS), [], {}
    )
    write(disc.under(root, "/etc/old-snapshot.json"), disc.snapshot_text(snapshot))
    scan = disc.FileScan([disc.under(root, "/etc")], IDS).run()
    assert scan.files == {}


# --------------------------------------------------------------------------- snapshots and learning


def test_learn_points_at_what_the_upload_wrote(host, tmp_path):
    prepare_events(host, "email-update", "gapps-oauth-update")
    before_path, after_path = str(tmp_path / "snap" / "before.json"), str(tmp_path / "snap" / "after.json")
    before = run(host, snapshot_path=before_path)
    assert before["snapshot_written"] is True and before["changed"] is True
    assert stat.S_IMODE(os.stat(before_path).st_mode) == 0o600
    assert before["files"] == [] and before["records"] == []
    key_path, p12_path = simulate_upload(host)
    after = run(host, snapshot_path=after_path, compare_with=before_path)
    learned = after["learned"]
    assert learned["options"] == {
        "credential_dir": disc.under(str(host.root), "/opt/mitel/gapps"),
        "credential_key_file": "gapps-sa.json",
        "credential_p12_file": "gapps-sa.p12",
        "credential_record": "gapps-oauth",
        "credential_event": "gapps-oauth-update",
    }
    assert learned["inventory"] == {
        "gworkspace_msl_credential_dir": disc.under(str(host.root), "/opt/mitel/gapps"),
        "gworkspace_msl_credential_key_file": "gapps-sa.json",
        "gworkspace_msl_credential_p12_file": "gapps-sa.p12",
        "gworkspace_msl_credential_record": "gapps-oauth",
        "gworkspace_msl_credential_event": "gapps-oauth-update",
    }
    assert learned["record"]["holds"] == {"ClientEmail": "client_email", "ClientId": "client_id", "KeyFile": "key_file"}
    assert learned["record"]["compatible"] is True
    assert learned["notes"] == []
    assert "gworkspace_msl_credential_dir: %s\n" % disc.under(str(host.root), "/opt/mitel/gapps") in learned["text"]
    assert "    credential_event: gapps-oauth-update\n" in learned["text"]
    printed = yaml.safe_load(learned["text"])  # the printed text is YAML to paste
    assert printed["module_defaults"]["nupoint.gworkspace.msl_oauth_credentials_info"] == learned["options"]
    assert {name: printed[name] for name in learned["inventory"]} == learned["inventory"]
    differences = after["differences"]
    assert sorted(differences["files"]["added"]) == sorted([key_path, p12_path])
    assert [record["key"] for record in differences["records"]["added"]] == ["gapps-oauth"]
    assert differences["events"] == ["gapps-oauth-update"]
    db_file = disc.under(str(host.root), "/home/e-smith/db/configuration")
    assert [entry["path"] for entry in after["files"]] == [db_file, key_path]
    # Nothing of the key in what the module returns.
    key_text = json.loads(kf.key_json())["private_key"]
    assert key_text.splitlines()[1] not in json.dumps(after)


def test_snapshot_rewritten_only_when_it_changed_and_not_in_check_mode(host, tmp_path):
    path = str(tmp_path / "s.json")
    assert run(host, snapshot_path=path, _write=False)["snapshot_written"] is False
    assert not os.path.exists(path)
    assert run(host, snapshot_path=path)["snapshot_written"] is True
    assert run(host, snapshot_path=path)["changed"] is False
    write(disc.under(str(host.root), "/etc/new.conf"), "x\n")
    assert run(host, snapshot_path=path)["changed"] is True


def test_snapshot_inside_a_search_path_is_refused(host):
    with pytest.raises(disc.DiscoveryError) as caught:
        run(host, snapshot_path=disc.under(str(host.root), "/root/before.json"))
    assert caught.value.reason == "snapshot_path_in_search"
    assert "/var/tmp" in caught.value.msg
    assert not os.path.exists(disc.under(str(host.root), "/root/before.json"))


def test_compare_with_a_missing_or_foreign_file(host, tmp_path):
    with pytest.raises(disc.DiscoveryError) as caught:
        run(host, compare_with=str(tmp_path / "nope.json"))
    assert caught.value.reason == "snapshot_missing"
    write(tmp_path / "foreign.json", '{"a": 1}')
    with pytest.raises(disc.DiscoveryError) as caught:
        run(host, compare_with=str(tmp_path / "foreign.json"))
    assert caught.value.reason == "snapshot_invalid"


def snapshot(files=None, dbs=None, signalled=(), identifiers=None):
    return {
        "identifiers": IDS if identifiers is None else identifiers,
        "files": files or {},
        "dbs": dbs or {},
        "events_signalled": list(signalled),
        "search": {"roots": ["/etc"], "truncated": False},
    }


def entry(matched=(), binary=False, sha="a"):
    return {
        "size": 1,
        "mode": "0600",
        "uid": 0,
        "gid": 0,
        "mtime": 1,
        "sha256": sha,
        "binary": binary,
        "matched": list(matched),
    }


def test_learn_keeps_the_collections_record_when_nupoints_has_other_props():
    before = snapshot(dbs={"configuration": {}})
    after = snapshot(
        files={"/srv/g/key.txt": entry(IDS)},
        dbs={"configuration": {"gmail": {"type": "service", "props": {"SaEmail": CLIENT_EMAIL, "status": "enabled"}}}},
        signalled=["email-update", "nupoint-gapps"],
    )
    learned = disc.learn(before, after)
    assert learned["options"] == {
        "credential_dir": "/srv/g",
        "credential_key_file": "key.txt",
        "credential_event": "nupoint-gapps",
    }
    assert learned["record"]["compatible"] is False
    assert learned["record"]["holds"] == {"SaEmail": "client_email"}
    assert any("SaEmail, status" in note and "credential_record is not set" in note for note in learned["notes"])
    assert any("No P12 file" in note for note in learned["notes"])
    assert any("email-update, nupoint-gapps" in note for note in learned["notes"])
    assert learned["differs_from_defaults"] == ["credential_dir", "credential_event", "credential_key_file"]


def test_learn_says_plainly_when_nothing_was_found():
    learned = disc.learn(snapshot(), snapshot(files={"/etc/unrelated": entry()}))
    assert learned["options"] == {} and learned["inventory"] == {} and learned["record"] is None
    assert len(learned["notes"]) == 3  # no key file, no record, no event
    assert learned["text"].startswith("# nothing learned: see the notes\n")
    no_ids = disc.learn(snapshot(identifiers={}), snapshot(identifiers={}))
    assert "No client_id or client_email was given" in no_ids["notes"][0]


def test_learn_changed_key_in_place_and_a_changed_record():
    record = {"type": "service", "props": {"ClientId": CLIENT_ID, "KeyFile": "/var/lib/nupoint/oauth/k.json"}}
    before = snapshot(
        files={"/var/lib/nupoint/oauth/k.json": entry(IDS, sha="old")},
        dbs={"configuration": {"nupoint-oauth": dict(record, props={"ClientId": "1"})}},
    )
    after = snapshot(
        files={"/var/lib/nupoint/oauth/k.json": entry(IDS, sha="new")},
        dbs={"configuration": {"nupoint-oauth": record}},
        signalled=["nupoint-oauth-update"],
    )
    learned = disc.learn(before, after)
    assert learned["options"]["credential_dir"] == "/var/lib/nupoint/oauth"
    assert learned["options"]["credential_record"] == "nupoint-oauth"
    assert learned["differs_from_defaults"] == ["credential_key_file"]
    assert learned["differences"]["files"]["changed"] == [
        {"path": "/var/lib/nupoint/oauth/k.json", "changed": ["sha256"]}
    ]
    assert learned["differences"]["records"]["changed"][0]["changed_props"] == ["ClientId", "KeyFile"]
    assert "credential_record: nupoint-oauth  # the default" in learned["text"]


# --------------------------------------------------------------------------- the module


def test_module_facts_and_check_mode(run_module, host, tmp_path):
    path = str(tmp_path / "snap.json")
    args = {"root": str(host.root), "db_command": host.db_command, "client_email": CLIENT_EMAIL, "snapshot_path": path}
    result = run_module(msl_facts, args, check_mode=True)
    assert result["changed"] is False and result["snapshot_written"] is False
    assert not os.path.exists(path)
    assert result["dbs"] == ["configuration"]
    assert result["nupoint"]["version"] == "unknown"
    assert result["release"]["sysconfig"]["ReleaseVersion"] == "11.0"
    assert run_module(msl_facts, args)["changed"] is True
    assert run_module(msl_facts, args)["changed"] is False


@pytest.mark.parametrize(
    ("override", "needle"),
    [({"max_files": 0}, "max_files must be greater than 0"), ({"search_paths": ["etc"]}, "must be absolute paths")],
)
def test_module_refuses_bad_limits(run_module, host, override, needle):
    args = dict({"root": str(host.root), "db_command": host.db_command}, **override)
    result = run_module(msl_facts, args)
    assert result["failed"] is True and result["changed"] is False
    assert needle in result["msg"] and result["reason"] == "invalid_option"


def test_learn_a_record_in_another_db_is_for_module_defaults_only():
    record = {"type": "oauth", "props": {"ClientEmail": CLIENT_EMAIL}}
    learned = disc.learn(snapshot(dbs={"accounts": {}}), snapshot(dbs={"accounts": {"gapps": record}}))
    assert learned["options"] == {"credential_record": "gapps", "db_name": "accounts"}
    assert learned["inventory"] == {"gworkspace_msl_credential_record": "gapps"}
    assert any("The record is in the accounts db" in note for note in learned["notes"])
