"""playbooks/rotate_key.yml against the lab's two MSL hosts over real SSH.

- happy path: the new key on both hosts (config db and files), the old key gone at Google, the controller's copy
  replaced, the new pin printed; verify.yml (delegation + IMAP from both hosts) passes with it; no key material in
  the ``-vvv`` output;
- a failure after the install, on msl2 only (IMAP switched off, through the lab's control API, for the user msl2
  proves the new key with): both hosts back on the old key, the new key deleted at Google, the controller's copy
  untouched, the old key still works;
- ``--check``: the plan, and nothing changed (hosts' files and db, Google's key list, the controller's files);
- a young key is not rotated (the second run after a rotation, pinned through ``key_rotation_pin_file``), a disabled
  old key is deleted by a later run once its grace period is over;
- verify.yml warns about a key older than ``gworkspace_key_max_age_days`` (and says when it cannot tell);
  rotate_key.yml rotates such a key without ``key_rotation_force``;
- a host with a P12 twin downloaded apart from the JSON key (another key of the account at Google): the new key's
  P12 is derived from it (one key pair) and installed beside it, the controller's P12 replaced, the old P12's own key
  retired with the old key; verify.yml passes with the new pair.

The admin credential is a service account of another project that the lab lets administer the NuPoint project, as
``roles/iam.serviceAccountKeyAdmin`` would at Google. The controller's copy of the key is a copy of the lab's key in
the test's directory: the rotation replaces it.
"""

import hashlib
import json
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.integration.lab_admin import add_admin
from tests.integration.playbook import PlaybookRun, run_playbook
from tests.lab.google.server import service_account_pkcs12
from tests.unit import keyfactory

pytestmark = [pytest.mark.lab, pytest.mark.slow]

HOSTS = ("msl1", "msl2")
REPORT_TASK = "nupoint.gworkspace.key_rotation : Report the rotation"
PLAN_TASK = "nupoint.gworkspace.key_rotation : Say the plan"
ROLLBACK_TASK = "nupoint.gworkspace.key_rotation : Show the rollback report"


def normalized(fingerprint: str) -> str:
    return fingerprint.lower().replace(":", "")


@pytest.fixture
def rig(lab, lab_reset, msl_clean, tmp_path):
    """An admin credential the lab honours, the controller's copy of the key, both MSL hosts holding it."""
    admin_src, key = add_admin(lab, tmp_path / "admin.json", administers=(lab.project_id,))
    keys = tmp_path / "keys"
    keys.mkdir()
    key_src = keys / "nupoint-sa.json"
    shutil.copyfile(lab.key_file, key_src)
    key_src.chmod(0o600)
    rig = {
        "lab": lab,
        "tmp": tmp_path,
        "admin_src": str(admin_src),
        "admin_key": key,
        "key_src": str(key_src),
        "fingerprint": lab.public_key_sha256,
    }
    for host in HOSTS:
        # Network time on, as provision.yml leaves it (verify.yml checks it).
        lab.db(host, "configuration", "setprop", "ntpd", "status", "enabled", "NTPServer", "127.0.0.1", check=True)
    install(rig)
    return rig


def inventory(rig: dict[str, Any], host_vars: dict[str, dict[str, Any]] | None = None, **overrides: Any) -> list[str]:
    lab = rig["lab"]
    variables = {
        "gworkspace_key_src": rig["key_src"],
        "gworkspace_um_users": "{{ gworkspace_um_users_file }}",
        "gworkspace_expected_client_id": lab.client_id,
        "gworkspace_expected_client_email": lab.client_email,
        "gworkspace_key_fingerprint": rig["fingerprint"],
        "gworkspace_admin_key_src": rig["admin_src"],
        "time_sync_samples": 1,
        "time_sync_sample_interval": 0.2,
    }
    variables.update(overrides)
    variables = {name: value for name, value in variables.items() if value is not None}
    document: dict[str, Any] = {"all": {"vars": variables}}
    if host_vars:
        document["all"]["hosts"] = host_vars
    directory = rig["tmp"] / "inventory"
    directory.mkdir(exist_ok=True)
    extra = directory / "gworkspace.yml"
    extra.write_text(yaml.safe_dump(document))
    return [lab.inventory_path, str(extra)]


def run(rig: dict[str, Any], name: str, check: bool = False, verbosity: int = 0, **kwargs: Any) -> PlaybookRun:
    sources = inventory(rig, **kwargs)
    result = run_playbook(
        "nupoint.gworkspace." + name,
        inventory=sources[0],
        extra_args=["-i", sources[1]],
        check=check,
        verbosity=verbosity,
    )
    assert "ya29." not in result.stdout + result.stderr
    return result


def install(rig: dict[str, Any], host_vars: dict[str, dict[str, Any]] | None = None) -> None:
    """Both hosts hold the controller's key (and the P12 of a host with ``gworkspace_p12_src``), as after provision.yml."""
    play = {
        "name": "install",
        "hosts": "msl",
        "gather_facts": False,
        "tasks": [
            {
                "name": "install",
                "nupoint.gworkspace.msl_oauth_credentials": {
                    "src": rig["key_src"],
                    "p12_src": "{{ gworkspace_p12_src | default(omit) }}",
                    "db_command": "{{ gworkspace_msl_db_command }}",
                    "signal_event_command": "{{ gworkspace_msl_signal_event_command }}",
                    "credential_dir": "{{ gworkspace_msl_credential_dir }}",
                },
            }
        ],
    }
    sources = inventory(rig, host_vars=host_vars)
    result = run_playbook([play], inventory=sources[0], extra_args=["-i", sources[1]])
    assert result.rc == 0, result.stdout + result.stderr


def lab_keys(lab: Any) -> list[str]:
    return sorted(next(a["keys"] for a in lab.google.state()["service_accounts"] if a["email"] == lab.client_email))


def held(lab: Any, host: str) -> dict[str, str]:
    """What the host's config db says it holds."""
    props = {}
    for prop in ("PrivateKeyId", "Fingerprint"):
        props[prop] = lab.db(host, "configuration", "getprop", "nupoint-oauth", prop).stdout.strip()
    return props


def snapshot(root: str) -> dict[str, Any]:
    files = {}
    for path in sorted(Path(root).rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else None
        files[str(path.relative_to(root))] = (oct(mode), digest)
    return files


def markers_of(key_file: str) -> list[str]:
    document = json.loads(Path(key_file).read_text())
    return keyfactory.secret_markers(serialization.load_pem_private_key(document["private_key"].encode(), None))


def key_id_of(path: str) -> str:
    return json.loads(Path(path).read_text())["private_key_id"]


def lines(result: PlaybookRun, task: str) -> list[str]:
    return result.result(task, host="msl1")["msg"]


def pin_line(result: PlaybookRun) -> str:
    text = "\n".join(lines(result, REPORT_TASK))
    match = re.search(r'gworkspace_key_fingerprint: "([0-9a-fA-F:]+)"', text)
    assert match, text
    return match.group(1)


def test_rotation_installs_proves_and_retires_the_old_key(rig):
    lab = rig["lab"]
    old_id, old_markers = lab.private_key_id, markers_of(rig["key_src"])
    events_before = {host: lab.signal_events(host) for host in HOSTS}

    rotated = run(rig, "rotate_key", verbosity=3, key_rotation_force=True)
    assert rotated.rc == 0, rotated.stdout + rotated.stderr

    new_id = key_id_of(rig["key_src"])
    assert new_id != old_id
    assert lab_keys(lab) == [new_id], "the old key must be gone at Google, the new one there"
    new_fingerprint = pin_line(rotated)
    assert normalized(new_fingerprint) != normalized(rig["fingerprint"])
    for host in HOSTS:
        assert held(lab, host)["PrivateKeyId"] == new_id
        assert normalized(held(lab, host)["Fingerprint"]) == normalized(new_fingerprint)
        assert lab.signal_events(host) == events_before[host] + ["nupoint-oauth-update"]
    assert stat.S_IMODE(Path(rig["key_src"]).stat().st_mode) == 0o600
    assert not Path(rig["key_src"] + ".new").exists()
    report = lines(rotated, REPORT_TASK)
    assert report[0] == "key rotation for %s: DONE" % lab.client_email
    assert "old key %s deleted at Google" % old_id in report
    assert any(
        line.startswith("UPDATE INVENTORY where gworkspace_key_fingerprint is set for msl1, msl2") for line in report
    )

    # No key material in -vvv: neither the old key, the new one, nor the admin credential.
    output = rotated.stdout + rotated.stderr
    for marker in old_markers + markers_of(rig["key_src"]) + keyfactory.secret_markers(rig["admin_key"]):
        assert marker not in output

    # Logins work with the new key: verify.yml proves delegation and IMAP from both hosts with the controller's copy.
    rig["fingerprint"] = new_fingerprint
    verified = run(rig, "verify")
    assert verified.rc == 0, verified.stdout + verified.stderr
    for host in HOSTS:
        summary = verified.result("Summary", host=host)["msg"]
        assert summary[0] == "verify on %s: OK" % host, summary
        assert "ok: IMAP login ok for %d of %d users" % (lab.users_count, lab.users_count) in summary


def test_failure_after_the_install_on_msl2_rolls_every_host_back(rig):
    lab = rig["lab"]
    # msl2 serves other users than msl1; the first one msl2 proves the new key with cannot use IMAP.
    msl2_users = lab.users[40:]
    lab.google.set_user_imap(msl2_users[0], False)
    # msl1 also reads a P12 of the key (the same key pair): the rollback must put it back too.
    p12_src = rig["tmp"] / "keys" / "nupoint-sa.p12"
    lab_key = serialization.load_pem_private_key(
        json.loads(Path(lab.key_file).read_text())["private_key"].encode(), None
    )
    p12_src.write_bytes(service_account_pkcs12(lab_key, lab.client_id))
    p12_src.chmod(0o600)
    host_vars = {"msl1": {"gworkspace_p12_src": str(p12_src)}, "msl2": {"gworkspace_um_users": msl2_users}}
    install(rig, host_vars=host_vars)
    old_bytes, old_p12 = Path(rig["key_src"]).read_bytes(), p12_src.read_bytes()
    keys_before = lab_keys(lab)
    events_before = {host: lab.signal_events(host) for host in HOSTS}

    failed = run(rig, "rotate_key", key_rotation_force=True, host_vars=host_vars)
    assert failed.rc != 0

    # What happened, in the run's words.
    report = lines(failed, ROLLBACK_TASK)
    assert report[0] == "Key rotation FAILED and was rolled back."
    assert any(
        line.startswith('failed on msl2 at "Check every sampled user logs in with the new key"')
        and msl2_users[0] + ": imap_disabled" in line
        for line in report
    ), report
    assert not any(line.startswith("failed on msl1") for line in report)
    assert "back on the old key %s (the controller's copy, unchanged): msl1, msl2" % lab.private_key_id in report
    new_id = re.search(r"the new key (\w+) was deleted at Google", "\n".join(report)).group(1)
    assert new_id != lab.private_key_id
    for host in HOSTS:
        assert failed.result("nupoint.gworkspace.key_rotation : Fail the run", host=host)["failed"] is True
        # Both hosts had the new key (installed, then taken back): two apply events each.
        assert lab.signal_events(host) == events_before[host] + ["nupoint-oauth-update", "nupoint-oauth-update"]
        assert held(lab, host)["PrivateKeyId"] == lab.private_key_id
        assert normalized(held(lab, host)["Fingerprint"]) == normalized(rig["fingerprint"])
    assert (
        failed.result(
            "nupoint.gworkspace.key_rotation : Install the new key on MSL, pinned to its fingerprint", host="msl2"
        )["changed"]
        is True
    )

    # Google: the new key deleted, the old one untouched; the controller: its copy untouched, no staging file.
    assert lab_keys(lab) == keys_before == [lab.private_key_id]
    assert lab.private_key_id not in lab.google.state()["disabled_keys"]
    assert Path(rig["key_src"]).read_bytes() == old_bytes
    assert not Path(rig["key_src"] + ".new").exists()
    # msl1 had the new key's P12 (installed, then taken back): its old P12 again, the controller's unchanged.
    assert failed.result(
        "nupoint.gworkspace.key_rotation : Install the new key on MSL, pinned to its fingerprint", host="msl1"
    )["changed"]
    assert (Path(lab.credential_dir("msl1")) / "service-account.p12").read_bytes() == old_p12 == p12_src.read_bytes()
    assert not Path(str(p12_src) + ".new").exists()
    assert (
        "the new key %s was deleted at Google and %s.new and %s.new removed" % (new_id, rig["key_src"], p12_src)
        in report
    )

    # The old key works from both hosts again (IMAP back on for the user).
    lab.google.set_user_imap(msl2_users[0], True)
    verified = run(rig, "verify", host_vars=host_vars)
    assert verified.rc == 0, verified.stdout + verified.stderr


def test_check_mode_shows_the_plan_and_changes_nothing(rig):
    lab = rig["lab"]
    before = {host: snapshot(lab.msl_root(host)) for host in HOSTS}
    controller = snapshot(str(Path(rig["key_src"]).parent))
    keys_before = lab_keys(lab)

    checked = run(rig, "rotate_key", check=True, key_rotation_force=True)
    assert checked.rc == 0, checked.stdout + checked.stderr
    plan = [line.strip() for line in lines(checked, PLAN_TASK)]
    assert plan[1].startswith("DUE: key %s is 0 days old" % lab.private_key_id)
    assert plan[2] == "would: 1. create a new key into %s.new" % rig["key_src"]
    assert "2. install it on msl1, msl2, pinned to its fingerprint" in plan
    assert "4. delete the old key %s" % lab.private_key_id in plan

    for host in HOSTS:
        assert snapshot(lab.msl_root(host)) == before[host], "--check changed %s" % host
    assert snapshot(str(Path(rig["key_src"]).parent)) == controller
    assert lab_keys(lab) == keys_before


def test_a_young_key_is_not_rotated_and_a_disabled_key_is_deleted_after_its_grace(rig):
    lab = rig["lab"]
    # The pin lives in a vars file of the inventory that the rotation rewrites (documented in docs/key-lifecycle.md).
    group_vars = rig["tmp"] / "inventory" / "group_vars" / "all"
    group_vars.mkdir(parents=True)
    pin_file = group_vars / "key_pin.yml"
    pin_file.write_text('gworkspace_key_fingerprint: "%s"\n' % rig["fingerprint"])
    options = {"gworkspace_key_fingerprint": None, "key_rotation_pin_file": str(pin_file)}

    young = run(rig, "rotate_key", **options)
    assert young.rc == 0, young.stdout + young.stderr
    assert lines(young, PLAN_TASK)[1].startswith("NOT DUE: key %s is 0 days old, younger than" % lab.private_key_id)
    assert lab_keys(lab) == [lab.private_key_id]

    rotated = run(rig, "rotate_key", key_rotation_force=True, key_rotation_grace_days=7, **options)
    assert rotated.rc == 0, rotated.stdout + rotated.stderr
    new_id = key_id_of(rig["key_src"])
    assert lab_keys(lab) == sorted([lab.private_key_id, new_id])
    assert lab.google.state()["disabled_keys"] == [lab.private_key_id]
    assert yaml.safe_load(pin_file.read_text())["gworkspace_key_fingerprint"] == pin_line(rotated)

    # Second run: the pin file's new pin is accepted, the new key is young, the old one still in its grace period.
    before = {host: snapshot(lab.msl_root(host)) for host in HOSTS}
    again = run(rig, "rotate_key", key_rotation_grace_days=7, **options)
    assert again.rc == 0, again.stdout + again.stderr
    assert lines(again, PLAN_TASK)[1].startswith("NOT DUE: key %s is 0 days old" % new_id)
    assert lab_keys(lab) == sorted([lab.private_key_id, new_id])
    assert {host: snapshot(lab.msl_root(host)) for host in HOSTS} == before
    assert "changed=0" in again.stdout

    # With no grace left, a run deletes the disabled key (and still does not rotate the young one).
    cleaned = run(rig, "rotate_key", key_rotation_grace_days=0, **options)
    assert cleaned.rc == 0, cleaned.stdout + cleaned.stderr
    assert lab_keys(lab) == [new_id]
    assert any(line.startswith("deleted key %s" % lab.private_key_id) for line in lines(cleaned, PLAN_TASK))


def test_verify_warns_about_an_old_key_and_rotate_replaces_it_unforced(rig):
    lab = rig["lab"]
    # A key born 100 days ago (Google's clock in the past), as the controller's copy, installed on both hosts.
    lab.google.set_clock(tolerance_seconds=101 * 86400, offset_seconds=-100 * 86400)
    create = {
        "name": "old key",
        "nupoint.gworkspace.service_account_key": {
            "service_account": lab.client_email,
            "dest": str(rig["tmp"] / "keys" / "old.json"),
            "encrypt": "none",
            "src": rig["admin_src"],
            "token_uri": lab.token_uri,
            "ca_path": lab.ca_path,
            "api_base_url": lab.google_base_url,
        },
    }
    created = run_playbook([{"name": "old", "hosts": "localhost", "gather_facts": False, "tasks": [create]}])
    lab.google.set_clock(tolerance_seconds=300, offset_seconds=0)
    old = created.result("old key")
    assert old["created"] is True, old
    Path(rig["key_src"]).write_bytes((rig["tmp"] / "keys" / "old.json").read_bytes())
    rig["fingerprint"] = old["fingerprint_sha256"]
    install(rig)

    verified = run(rig, "verify", gworkspace_imap_check=False)
    assert verified.rc == 0, verified.stdout + verified.stderr
    summary = verified.result("Summary", host="msl1")["msg"]
    assert (
        "warning: the controller's key %s is 100 days old (gworkspace_key_max_age_days is 90): rotate it with "
        "rotate_key.yml" % old["key"]["key_id"] in summary
    ), summary

    unknown = run(rig, "verify", gworkspace_imap_check=False, gworkspace_admin_key_src=None)
    assert unknown.rc == 0, unknown.stdout + unknown.stderr
    assert "key age not checked" in unknown.stdout

    rotated = run(rig, "rotate_key")
    assert rotated.rc == 0, rotated.stdout + rotated.stderr
    assert lines(rotated, PLAN_TASK)[1].startswith("DUE: key %s is 100 days old" % old["key"]["key_id"])
    new_id = key_id_of(rig["key_src"])
    assert old["key"]["key_id"] not in lab_keys(lab) and new_id in lab_keys(lab)
    for host in HOSTS:
        assert held(lab, host)["PrivateKeyId"] == new_id


def test_a_p12_twin_is_derived_from_the_new_key_and_the_old_p12_key_is_retired(rig):
    lab, tmp = rig["lab"], rig["tmp"]
    # msl1 also reads a P12, downloaded from Google apart from the JSON key: another key of the account.
    other_dest = tmp / "keys" / "other.json"
    create = {
        "name": "other key",
        "nupoint.gworkspace.service_account_key": {
            "service_account": lab.client_email,
            "dest": str(other_dest),
            "encrypt": "none",
            "src": rig["admin_src"],
            "token_uri": lab.token_uri,
            "ca_path": lab.ca_path,
            "api_base_url": lab.google_base_url,
        },
    }
    created = run_playbook([{"name": "p12", "hosts": "localhost", "gather_facts": False, "tasks": [create]}])
    p12_key_id = created.result("other key")["key"]["key_id"]
    other = json.loads(other_dest.read_text())
    p12_src = tmp / "keys" / "nupoint-sa.p12"
    other_key = serialization.load_pem_private_key(other["private_key"].encode(), None)
    p12_src.write_bytes(service_account_pkcs12(other_key, lab.client_id))
    p12_src.chmod(0o600)
    other_dest.unlink()
    p12_hosts = {"msl1": {"gworkspace_p12_src": str(p12_src)}}
    install(rig, host_vars=p12_hosts)
    assert sorted(lab_keys(lab)) == sorted([lab.private_key_id, p12_key_id])

    rotated = run(rig, "rotate_key", key_rotation_force=True, host_vars=p12_hosts)
    assert rotated.rc == 0, rotated.stdout + rotated.stderr
    plan = [line.strip() for line in lines(rotated, PLAN_TASK)]
    assert plan[2] == "will: 1. create a new key into %s.new and its P12 (the same key pair) into %s.new" % (
        rig["key_src"],
        p12_src,
    ), plan
    assert "4. delete the old key %s and the old P12's own key %s" % (lab.private_key_id, p12_key_id) in plan

    # Google holds the new key only: the old key and the old P12's key are both deleted.
    new_id = key_id_of(rig["key_src"])
    assert lab_keys(lab) == [new_id]
    report = lines(rotated, REPORT_TASK)
    assert report[0] == "key rotation for %s: DONE" % lab.client_email
    assert "the old P12's own key %s deleted at Google too" % p12_key_id in report
    assert any(line.startswith("the controller's %s now holds the new key's P12" % p12_src) for line in report), report

    # The controller's P12 is the new key's own pair, in Google's layout; msl1 holds it, msl2 (no P12) none.
    new_key = serialization.load_pem_private_key(
        json.loads(Path(rig["key_src"]).read_text())["private_key"].encode(), None
    )
    p12_key, certificate, _extra = pkcs12.load_key_and_certificates(p12_src.read_bytes(), b"notasecret")
    assert p12_key is not None and certificate is not None
    assert p12_key.public_key().public_numbers() == new_key.public_key().public_numbers()
    assert stat.S_IMODE(p12_src.stat().st_mode) == 0o600
    assert (Path(lab.credential_dir("msl1")) / "service-account.p12").read_bytes() == p12_src.read_bytes()
    assert not (Path(lab.credential_dir("msl2")) / "service-account.p12").exists()
    assert not Path(rig["key_src"] + ".new").exists() and not Path(str(p12_src) + ".new").exists()
    for host in HOSTS:
        assert held(lab, host)["PrivateKeyId"] == new_id

    # verify.yml accepts the new pair (one key pair) and logs in from both hosts with it.
    rig["fingerprint"] = pin_line(rotated)
    verified = run(rig, "verify", host_vars=p12_hosts)
    assert verified.rc == 0, verified.stdout + verified.stderr
