"""The playbooks administrators run, against the lab's two MSL hosts over real SSH.

- provision.yml: ``--check --diff`` on fresh hosts says what would change and changes nothing (every file under
  each host's directory, config db and event log included); a real run, then a second one with ``changed=0``.
- verify.yml: exit 0 on healthy hosts and non-zero once msl1 was restored, changing nothing either way.
- post_restore.yml: after ``restore-msl msl1`` it repairs msl1 (found -> repaired -> verified) and leaves msl2
  byte-identical.
- the failures an administrator meets first: a missing scope (the Admin console text) and a key that is not the
  pinned one (stopped before MSL is touched).

The inventory is the lab's, plus the collection-wide variables mapped from it (``gworkspace_key_src`` is the
lab's key file) and the key's pins, as an administrator's group_vars would set them.
"""

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.playbook import PlaybookRun, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

HOSTS = ("msl1", "msl2")
MAIL_SCOPE = "https://mail.google.com/"


def inventory(lab: Any, tmp_path: Path, **overrides: Any) -> list[str]:
    """The lab's inventory plus the collection-wide variables the playbooks read."""
    variables = {
        "gworkspace_key_src": "{{ gworkspace_key_file }}",
        "gworkspace_um_users": "{{ gworkspace_um_users_file }}",
        "gworkspace_expected_client_id": lab.client_id,
        "gworkspace_expected_client_email": lab.client_email,
        "gworkspace_key_fingerprint": lab.public_key_sha256,
        # One SNTP sample per server keeps the runs short; the measurement is still made.
        "time_sync_samples": 1,
        "time_sync_sample_interval": 0.2,
    }
    variables.update(overrides)
    extra = tmp_path / "gworkspace.yml"
    extra.write_text(yaml.safe_dump({"all": {"vars": variables}}))
    return [lab.inventory_path, str(extra)]


def run(lab: Any, tmp_path: Path, name: str, check: bool = False, **overrides: Any) -> PlaybookRun:
    sources = inventory(lab, tmp_path, **overrides)
    result = run_playbook(
        "nupoint.gworkspace." + name,
        inventory=sources[0],
        extra_args=["-i", sources[1]],
        check=check,
        diff=check,
    )
    output = result.stdout + result.stderr
    assert "PRIVATE KEY" not in output
    assert "ya29." not in output
    return result


def snapshot(lab: Any, host: str) -> dict[str, Any]:
    """Every file under the host's directory: relative path -> (mode, SHA-256 of the bytes)."""
    root = Path(lab.msl_root(host))
    files = {}
    for path in sorted(root.rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_file() and not path.is_symlink():
            files[str(path.relative_to(root))] = (oct(mode), hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            files[str(path.relative_to(root))] = (oct(mode), None)
    return files


def recap(result: PlaybookRun, host: str) -> dict[str, int]:
    match = re.search(r"^%s\s+:\s+(.*)$" % re.escape(host), result.stdout, re.MULTILINE)
    assert match, result.stdout
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def summary(result: PlaybookRun, task: str, host: str) -> list[str]:
    return result.result(task, host=host)["msg"]


def test_provision_check_mode_changes_nothing_then_provisions_idempotently(lab, lab_reset, msl_clean, tmp_path):
    before = {host: snapshot(lab, host) for host in HOSTS}

    checked = run(lab, tmp_path, "provision", check=True)
    assert checked.rc == 0, checked.stdout + checked.stderr
    for host in HOSTS:
        assert snapshot(lab, host) == before[host], "--check changed %s" % host
        assert recap(checked, host)["changed"] >= 2  # network time and the key would change
        install = checked.result("nupoint.gworkspace.oauth_credentials : Install the service-account key on MSL", host)
        assert install["changed"] is True
        assert sorted(install["changes"]) == ["directory_mode", "key_file", "record"]
        assert install["diff"]["before"]["present"] is False
        assert install["diff"]["after"]["private_key_id"] == lab.private_key_id
        assert lab.signal_events(host) == []
    # The diff names what would change, never key material.
    assert '"present": true' in checked.stdout or "present: true" in checked.stdout or install["diff"]

    provisioned = run(lab, tmp_path, "provision")
    assert provisioned.rc == 0, provisioned.stdout + provisioned.stderr
    for host in HOSTS:
        lines = summary(provisioned, "Summary", host)
        assert lines[0] == "provision on %s: OK" % host
        assert "installed (" in lines[2]
        assert lines[4] == "IMAP: login ok for %d of %d users" % (lab.users_count, lab.users_count)
        assert lab.db(host, "configuration", "getprop", "nupoint-oauth", "ClientId").stdout.strip() == lab.client_id
        assert lab.db(host, "configuration", "getprop", "ntpd", "status").stdout.strip() == "enabled"
        assert lab.signal_events(host) == ["timeserver-update", "nupoint-oauth-update"]

    after_first = {host: snapshot(lab, host) for host in HOSTS}
    again = run(lab, tmp_path, "provision")
    assert again.rc == 0, again.stdout + again.stderr
    for host in HOSTS:
        assert recap(again, host)["changed"] == 0, again.stdout
        assert snapshot(lab, host) == after_first[host]
        assert "already installed" in summary(again, "Summary", host)[2]


def test_verify_and_post_restore_after_restoring_msl1(lab, lab_reset, msl_clean, tmp_path):
    provisioned = run(lab, tmp_path, "provision")
    assert provisioned.rc == 0, provisioned.stdout + provisioned.stderr

    healthy = {host: snapshot(lab, host) for host in HOSTS}
    verified = run(lab, tmp_path, "verify")
    assert verified.rc == 0, verified.stdout + verified.stderr
    for host in HOSTS:
        assert recap(verified, host)["changed"] == 0
        assert snapshot(lab, host) == healthy[host]
        assert summary(verified, "Summary", host)[0] == "verify on %s: OK" % host

    lab.restore_msl("msl1")
    restored = {host: snapshot(lab, host) for host in HOSTS}
    broken = run(lab, tmp_path, "verify")
    assert broken.rc != 0
    for host in HOSTS:
        assert recap(broken, host)["changed"] == 0
        assert snapshot(lab, host) == restored[host], "verify changed %s" % host
    msl1 = summary(broken, "Summary", "msl1")
    assert msl1[0] == "verify on msl1: PROBLEMS"
    assert "problem: no OAuth key on MSL (after an MSL restore: run post_restore.yml)" in msl1
    assert any(line.startswith("problem: time: network time is not on in the config db") for line in msl1)
    assert summary(broken, "Summary", "msl2")[0] == "verify on msl2: OK"
    assert recap(broken, "msl1")["failed"] == 1 and recap(broken, "msl2")["failed"] == 0

    repaired = run(lab, tmp_path, "post_restore")
    assert repaired.rc == 0, repaired.stdout + repaired.stderr
    msl1 = summary(repaired, "nupoint.gworkspace.post_restore : Summary", "msl1")
    assert msl1[0] == "post_restore on msl1: OK"
    assert msl1[1] == "found:    no OAuth key on MSL (what an MSL restore leaves behind)"
    assert msl1[2].startswith("repaired: key reinstalled from the controller (")
    assert "network time re-enabled in the config db" in msl1[2]
    assert msl1[3].startswith(
        "verified: clock within 5 s of network time; delegation authorised for 5 users x 1 scope(s);"
    )
    assert msl1[3].endswith("IMAP login ok for %d of %d users" % (lab.users_count, lab.users_count))
    msl2 = summary(repaired, "nupoint.gworkspace.post_restore : Summary", "msl2")
    assert msl2[0] == "post_restore on msl2: OK"
    assert msl2[2] == "repaired: nothing to repair"
    assert snapshot(lab, "msl2") == restored["msl2"], "post_restore touched the healthy msl2"
    assert recap(repaired, "msl2")["changed"] == 0
    assert (
        lab.db("msl1", "configuration", "getprop", "nupoint-oauth", "PrivateKeyId").stdout.strip() == lab.private_key_id
    )

    after = {host: snapshot(lab, host) for host in HOSTS}
    verified = run(lab, tmp_path, "verify")
    assert verified.rc == 0, verified.stdout + verified.stderr
    assert {host: snapshot(lab, host) for host in HOSTS} == after


def test_provision_names_the_missing_scope_and_what_to_paste(lab, lab_reset, msl_clean, tmp_path):
    lab.google.revoke_scopes(lab.client_id)
    result = run(lab, tmp_path, "provision", gworkspace_imap_check=False)
    assert result.rc != 0
    failure = result.result(
        "nupoint.gworkspace.oauth_credentials : Fail with what to authorise in the Admin console", "msl1"
    )
    msg = failure["msg"]
    assert "Domain-wide delegation does not authorise client ID %s" % lab.client_id in msg
    assert (
        "https://admin.google.com/ac/owl/domainwidedelegation?clientScopeToAdd=%s&clientIdToAdd=%s&overwriteClientId=true"
        % (MAIL_SCOPE, lab.client_id)
        in msg
    )
    assert "Client ID:    %s" % lab.client_id in msg
    assert "OAuth scopes: %s" % MAIL_SCOPE in msg


def test_a_key_that_is_not_the_pinned_one_stops_before_msl(lab, lab_reset, msl_clean, tmp_path):
    before = {host: snapshot(lab, host) for host in HOSTS}
    result = run(lab, tmp_path, "post_restore", gworkspace_key_fingerprint="00" * 32, post_restore_time_sync=False)
    assert result.rc != 0
    for host in HOSTS:
        assert snapshot(lab, host) == before[host]
        lines = summary(result, "nupoint.gworkspace.post_restore : Summary", host)
        assert lines[0] == "post_restore on %s: FAILED" % host
        assert "is not the key pinned in inventory" in lines[-1]
    assert os.path.exists(lab.key_file)
