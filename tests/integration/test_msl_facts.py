"""msl_facts and the learn procedure (playbooks/learn_msl.yml) against the lab's msl1 over real SSH.

The learn test simulates a Server Manager upload that does not follow the collection's defaults: the key and its
P12 in a directory of their own with other file names, a db record of another name, and another event signalled
through the host's own signal-event. The playbook's printed variables must point there, and msl_oauth_credentials
given those variables must install and verify the key in that place.
"""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.playbook import REPO_ROOT, PlaybookRun, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

HOST = "msl1"
DOCS = Path(REPO_ROOT) / "docs" / "msl-assumptions.md"
UPLOAD_DIR = "/opt/mitel/gapps"
UPLOAD_KEY = "gapps-sa.json"
UPLOAD_P12 = "gapps-sa.p12"
UPLOAD_RECORD = "gapps-oauth"
UPLOAD_EVENT = "gapps-oauth-update"
FACTS_ARGS = {
    "root": "{{ gworkspace_msl_root }}",
    "db_command": "{{ gworkspace_msl_db_command }}",
    "client_id": "{{ gworkspace_expected_client_id }}",
    "client_email": "{{ gworkspace_expected_client_email }}",
}


def under(lab: Any, path: str) -> str:
    return os.path.join(lab.msl_root(HOST), path.lstrip("/"))


def no_secrets(run: PlaybookRun, lab: Any) -> None:
    output = run.stdout + run.stderr + json.dumps(run.tasks)
    assert "PRIVATE KEY" not in output
    private_key = json.loads(Path(lab.key_file).read_text())["private_key"]
    assert private_key.splitlines()[1] not in output


def play(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": "msl_facts", "hosts": HOST, "gather_facts": False, "tasks": tasks}]


def test_facts_over_ssh(lab, msl_clean):
    """Release, interpreters, NuPoint from rpm, and the collection's own key found by its identifiers."""
    root = lab.msl_root(HOST)
    os.makedirs(under(lab, "/usr/bin"))
    os.symlink(lab.data["msl_python"], under(lab, "/usr/bin/python3"))
    Path(under(lab, "/etc/e-smith-release")).write_text("Mitel Standard Linux release 11.0.88.0\n")
    rpm = Path(under(lab, "/usr/bin/rpm"))
    rpm.write_text("#!/bin/sh\nprintf 'bash\\t4.2.46-35.el7_9\\nnupoint-um\\t22.0.1.6-1\\n'\n")
    rpm.chmod(0o755)
    version = subprocess.run(
        [lab.data["msl_python"], "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    run = run_playbook(
        play(
            [
                {
                    "name": "install",
                    "nupoint.gworkspace.msl_oauth_credentials": {
                        "src": "{{ gworkspace_key_file }}",
                        "db_command": "{{ gworkspace_msl_db_command }}",
                        "signal_event_command": "{{ gworkspace_msl_signal_event_command }}",
                        "credential_dir": "{{ gworkspace_msl_credential_dir }}",
                    },
                },
                {"name": "facts", "nupoint.gworkspace.msl_facts": FACTS_ARGS},
            ]
        ),
        inventory=lab.inventory_path,
    )
    assert run.rc == 0, run.stdout + run.stderr
    facts = run.result("facts")
    assert facts["changed"] is False
    assert facts["release"]["name"] == "Mitel Standard Linux release 11.0.88.0"
    assert facts["release"]["file"] == under(lab, "/etc/e-smith-release")
    assert facts["release"]["sysconfig"] == {"ProductName": "Mitel Standard Linux", "ReleaseVersion": "11.0"}
    assert [(p["path"], p["version"]) for p in facts["pythons"]] == [(under(lab, "/usr/bin/python3"), version)]
    assert facts["nupoint"]["present"] is True
    assert facts["nupoint"]["version"] == "22.0.1.6-1"
    key_path = os.path.join(lab.credential_dir(HOST), "service-account.json")
    db_file = lab.msl_paths(HOST)["db_file"]
    assert [f["path"] for f in facts["files"]] == [db_file, key_path]
    key = facts["files"][1]
    assert (key["mode"], key["owner"], key["matched"]) == ("0600", "root", ["client_id", "client_email"])
    assert key["sha256"] == hashlib.sha256(Path(lab.key_file).read_bytes()).hexdigest()
    assert [(r["db"], r["key"]) for r in facts["records"]] == [("configuration", "nupoint-oauth")]
    assert facts["records"][0]["matched_props"] == {"ClientEmail": ["client_email"], "ClientId": ["client_id"]}
    assert facts["search"]["truncated"] is False
    assert facts["search"]["roots"][0] == os.path.join(root, "etc")
    no_secrets(run, lab)


def learn(lab: Any, tmp_path: Path, phase: str) -> PlaybookRun:
    run = run_playbook(
        "nupoint.gworkspace.learn_msl",
        inventory=lab.inventory_path,
        extra_vars={
            "learn_phase": phase,
            "learn_msl_snapshot_dir": str(tmp_path / "learn"),
            # The lab's signal-event logs to its own file; a real MSL logs events through syslog.
            "learn_msl_event_logs": ["/var/log/signal-event.log"],
        },
        extra_args=["--limit", HOST],
    )
    assert run.rc == 0, run.stdout + run.stderr
    no_secrets(run, lab)
    return run


def simulate_server_manager_upload(lab: Any) -> None:
    """The key where this NuPoint keeps it (not our defaults), its db record, its event."""
    directory = under(lab, UPLOAD_DIR)
    os.makedirs(directory, mode=0o700)
    for source, name in ((lab.key_file, UPLOAD_KEY), (lab.p12_file, UPLOAD_P12)):
        shutil.copyfile(source, os.path.join(directory, name))
        os.chmod(os.path.join(directory, name), 0o600)
    lab.db(
        HOST,
        "configuration",
        "set",
        UPLOAD_RECORD,
        "service",
        "ClientEmail",
        lab.client_email,
        "ClientId",
        lab.client_id,
        "KeyFile",
        os.path.join(directory, UPLOAD_KEY),
        check=True,
    )
    subprocess.run([lab.signal_event_command(HOST), UPLOAD_EVENT], check=True, capture_output=True)


def test_learn_a_foreign_upload_then_install_there(lab, msl_clean, tmp_path):
    # NuPoint's install brings its event (an event is a directory of /etc/e-smith/events).
    os.makedirs(under(lab, "/etc/e-smith/events/" + UPLOAD_EVENT))
    os.makedirs(under(lab, "/etc/e-smith/events/timeserver-update"))
    before = learn(lab, tmp_path, "before")
    assert before.result("Snapshot before the upload")["snapshot_written"] is True
    assert "then run this playbook again with -e learn_phase=after" in before.stdout
    assert os.stat(tmp_path / "learn" / (HOST + "-before.json")).st_mode & 0o777 == 0o600

    simulate_server_manager_upload(lab)
    after = learn(lab, tmp_path, "after")
    directory = under(lab, UPLOAD_DIR)
    learned = after.result("Snapshot after the upload, compared with the one before")["learned"]
    assert learned["options"] == {
        "credential_dir": directory,
        "credential_key_file": UPLOAD_KEY,
        "credential_p12_file": UPLOAD_P12,
        "credential_record": UPLOAD_RECORD,
        "credential_event": UPLOAD_EVENT,
    }
    assert learned["notes"] == []
    # What the playbook printed, line by line, is the learned text: YAML to paste into host_vars and plays.
    for line in learned["text"].splitlines():
        assert json.dumps(line) in after.stdout, line
    assert learned["text"].replace(lab.msl_root(HOST), "") == docs_example()
    printed = yaml.safe_load(learned["text"])
    host_vars = {name: value for name, value in printed.items() if name.startswith("gworkspace_")}
    assert host_vars == {
        "gworkspace_msl_credential_dir": directory,
        "gworkspace_msl_credential_key_file": UPLOAD_KEY,
        "gworkspace_msl_credential_p12_file": UPLOAD_P12,
        "gworkspace_msl_credential_record": UPLOAD_RECORD,
        "gworkspace_msl_credential_event": UPLOAD_EVENT,
    }

    # The printed variables, pasted as an administrator would, drive the oauth_credentials role's install step
    # (host_vars) and msl_oauth_credentials_info (module_defaults).
    events_before = lab.signal_events(HOST)
    module_defaults = printed["module_defaults"]
    for options in module_defaults.values():
        options.update(
            db_command="{{ gworkspace_msl_db_command }}",
            signal_event_command="{{ gworkspace_msl_signal_event_command }}",
        )
    run = run_playbook(
        [
            {
                "name": "install where NuPoint keeps it",
                "hosts": HOST,
                "gather_facts": False,
                "vars": dict(host_vars, gworkspace_p12_src="{{ gworkspace_p12_file }}"),
                "module_defaults": module_defaults,
                "tasks": [
                    {
                        "name": "install",
                        "ansible.builtin.include_role": {
                            "name": "nupoint.gworkspace.oauth_credentials",
                            "tasks_from": "install.yml",
                        },
                    },
                    {"name": "info", "nupoint.gworkspace.msl_oauth_credentials_info": {}},
                ],
            }
        ],
        inventory=lab.inventory_path,
    )
    assert run.rc == 0, run.stdout + run.stderr
    no_secrets(run, lab)
    (install_task,) = [name for name in run.tasks if name.endswith("Install the service-account key on MSL")]
    install = run.result(install_task)
    assert install["path"] == os.path.join(directory, UPLOAD_KEY)
    assert install["p12_path"] == os.path.join(directory, UPLOAD_P12)
    # Same key as uploaded: the files stay, the record gains what the collection records.
    assert install["changes"] == ["record"]
    info = run.result("info")
    assert (info["present"], info["consistent"], info["permission_problems"]) == (True, True, [])
    assert info["record"]["key"] == UPLOAD_RECORD
    assert info["client_id"] == lab.client_id
    assert lab.signal_events(HOST)[len(events_before) :] == [UPLOAD_EVENT]
    assert not os.path.exists(lab.credential_dir(HOST))  # nothing went to the collection's default place
    assert lab.db(HOST, "configuration", "show", "nupoint-oauth").stdout == ""


def docs_example() -> str:
    """The example output in docs/msl-assumptions.md (the fenced block after the learn-example marker)."""
    text = DOCS.read_text()
    block = text[text.index("<!-- learn-example:") :]
    block = block[block.index("```yaml\n") + len("```yaml\n") :]
    return block[: block.index("```\n")]
