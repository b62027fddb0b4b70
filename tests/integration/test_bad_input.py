"""The bad-input corpus (issue 13 item 1): every module and the playbooks' variables, fed what administrators get wrong.

The inputs and their expected answers are in tests/integration/bad_input_cases.py (``CASES``), made at run time
(nothing key-shaped is committed). All module cases run in one ansible-playbook run of two plays: the modules that run
on MSL against the lab's msl1 over real SSH, the Google modules on the controller. The run uses a vault password that
does not open the vaulted key file (the vault case), which the other tasks never need.

For every refused input: ``failed``, a ``msg`` naming the problem and the fix (key words, not sentences), a
``reason``, ``changed: false``, no traceback and no key material in the result. Inputs the collection accepts by
design (a BOM, CRLF, PKCS#1, loopback http, invalid addresses among valid ones) run in check mode; their case says
why they are valid. Around the whole run, both MSL hosts' directory trees (files, modes, owners, the config db, the
event log) are hashed: they must be byte-identical, and no shell may ever have run an NTP server name.

The playbooks' variables (``PLAYBOOK_CASES``) go through provision.yml: one run, one bad variable per host.

To read every result of the corpus run (when a case fails), set BAD_INPUT_DUMP=<file>: the run's JSON is written there.
"""

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration import bad_input_cases as bic
from tests.integration.playbook import REPO_ROOT, PlaybookRun, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

HOSTS = ("msl1", "msl2")
# Strings that must never appear in a result: PEM armour and the lab key's base64 body.
LEAK_MARKERS = ("PRIVATE KEY", "MII")
# One SSH round trip per task instead of several (the lab's sshd needs no tty): the corpus has many tasks.
FAST_SSH = {"ANSIBLE_PIPELINING": "true"}


@dataclass
class CorpusRun:
    run: PlaybookRun
    before: dict[str, Any]
    after: dict[str, Any]
    marker: str
    lab: Any


def _prime_plays() -> list[dict[str, Any]]:
    """Both MSL hosts as provision.yml leaves them: network time on the lab's server, the lab's key installed."""
    return [
        {
            "name": "prime the MSL hosts",
            "hosts": "msl",
            "gather_facts": False,
            "module_defaults": bic.MODULE_DEFAULTS,
            "tasks": [
                {
                    "name": "time",
                    bic.TIME: {"servers": "{{ gworkspace_ntp_servers }}", "state": "enabled"},
                },
                {"name": "key", bic.MSL_KEY: {"src": "{{ gworkspace_key_file }}"}},
            ],
        }
    ]


def _task(case: bic.Case, files: dict[str, str], root: Path, marker: str) -> dict[str, Any]:
    task: dict[str, Any] = {
        "name": case.id,
        case.module: bic.resolve(case.args, files, root, marker),
        "ignore_errors": True,
    }
    if case.accepted:
        task["check_mode"] = True
    return task


def _corpus_plays(lab: Any, files: dict[str, str], marker: str) -> list[dict[str, Any]]:
    root = Path(lab.msl_root(bic.ON_MSL))
    plays = []
    for where in (bic.ON_MSL, bic.ON_CONTROLLER):
        plays.append(
            {
                "name": "bad input on %s" % where,
                "hosts": where,
                "gather_facts": False,
                # The MSL options come from the MSL host's inventory variables.
                "module_defaults": bic.MODULE_DEFAULTS if where == bic.ON_MSL else {},
                "tasks": [_task(case, files, root, marker) for case in bic.CASES if case.where == where],
            }
        )
    return plays


@pytest.fixture(scope="module")
def corpus(lab, tmp_path_factory) -> Iterator[CorpusRun]:
    work = tmp_path_factory.mktemp("bad-input")
    for host in lab.msl_hosts:
        lab.reset_msl(host)
    prime = run_playbook(_prime_plays(), inventory=lab.inventory_path, env=FAST_SSH)
    assert prime.rc == 0, prime.stdout + prime.stderr
    bic.make_unsafe_store_paths(Path(lab.msl_root(bic.ON_MSL)))
    wrong_vault_password = work / "wrong-vault-password"
    files = bic.make_files(lab, work / "files", wrong_vault_password)
    marker = str(work / bic.MARKER_NAME)
    before = {host: bic.tree_digest(Path(lab.msl_root(host))) for host in HOSTS}
    started = time.monotonic()
    run = run_playbook(
        _corpus_plays(lab, files, marker),
        inventory=lab.inventory_path,
        extra_args=["--vault-password-file", str(wrong_vault_password)],
        env=FAST_SSH,
    )
    print("bad-input corpus: %d tasks in one run, %.1f s" % (len(bic.CASES), time.monotonic() - started))
    after = {host: bic.tree_digest(Path(lab.msl_root(host))) for host in HOSTS}
    if os.environ.get("BAD_INPUT_DUMP"):
        with open(os.environ["BAD_INPUT_DUMP"], "w") as handle:
            json.dump({"rc": run.rc, "stdout": run.stdout, "stderr": run.stderr, "tasks": run.tasks}, handle, indent=1)
    yield CorpusRun(run, before, after, marker, lab)
    # The unsafe places made in msl1's tree are no other test's business.
    for host in lab.msl_hosts:
        lab.reset_msl(host)


def _field(result: dict[str, Any], dotted: str) -> Any:
    value: Any = result
    for part in dotted.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def _expected(value: Any, lab: Any) -> Any:
    if value == "@lab_fingerprint":
        return lab.public_key_sha256
    if value == "@lab_client_id":
        return lab.client_id
    return value


def _plain(value: Any) -> Any:
    return value.replace(":", "").lower() if isinstance(value, str) else value


def test_case_count(figure):
    """The number the closing note quotes: module cases plus playbook-variable cases."""
    total = len(bic.CASES) + len(PLAYBOOK_CASES)
    figure(
        "bad-input corpus: %d cases (%d module, %d playbook-variable; %d accepted by design)"
        % (total, len(bic.CASES), len(PLAYBOOK_CASES), sum(case.accepted for case in bic.CASES))
    )
    assert total >= 40
    # Every module of the collection has bad input of its own in the corpus.
    modules = {case.module.rsplit(".", 1)[1] for case in bic.CASES}
    shipped = {path.stem for path in Path(REPO_ROOT, "plugins", "modules").glob("*.py") if path.stem != "__init__"}
    assert shipped - modules == set(), "modules without a bad-input case: %s" % sorted(shipped - modules)


@pytest.mark.parametrize("case", bic.CASES, ids=bic.case_ids())
def test_bad_input(corpus: CorpusRun, case: bic.Case):
    assert case.id in corpus.run.tasks, "task %r did not run:\n%s" % (case.id, corpus.run.stdout[-3000:])
    result = corpus.run.result(case.id)
    text = json.dumps(result)
    for marker in LEAK_MARKERS:
        assert marker not in text, "key material in the result of %r" % case.id
    assert "Traceback" not in text and "exception" not in result, result
    if case.accepted:
        assert not result.get("failed"), (case.why, result.get("msg"))
        for name, value in case.expect.items():
            got = _field(result, name)
            want = _expected(value, corpus.lab)
            assert _plain(got) == _plain(want), (name, got, want)
        return
    assert result.get("failed") is True, result
    assert result.get("changed") is False, result
    assert isinstance(result.get("reason"), str) and result["reason"], result
    assert result["reason"] == case.reason, (result["reason"], result.get("msg"))
    msg = result.get("msg", "").lower()
    for word in case.words:
        assert word.lower() in msg, "%r not in msg %r" % (word, result.get("msg"))
    for name, value in case.expect.items():
        assert value.startswith("@contains:")
        assert value[len("@contains:") :] in _field(result, name), (name, _field(result, name))


def test_msl_hosts_byte_identical(corpus: CorpusRun):
    """Nothing the corpus did changed a file, mode, owner, the config db or the event log of either MSL host."""
    for host in HOSTS:
        before, after = corpus.before[host], corpus.after[host]
        changed = sorted(path for path in set(before) | set(after) if before.get(path) != after.get(path))
        assert not changed, "%s changed: %s" % (host, changed)


def test_no_shell_ran(corpus: CorpusRun):
    """No NTP server name reached a shell: the file the metacharacters would create does not exist."""
    assert not os.path.exists(corpus.marker)
    assert not os.path.exists(os.path.join(corpus.lab.msl_root(bic.ON_MSL), bic.MARKER_NAME))


# --------------------------------------------------------------------------- the playbooks' variables

# (host, inventory variables of that host, words of the failing task's msg, the reason of the key check the stop
# quotes or None). One provision.yml run, one bad variable per host, each host primed first so that anything before
# the failure has nothing to change.
PLAYBOOK_CASES = [
    (
        "msl1",
        {"gworkspace_ntp_servers": ["time.google.com; touch @marker"]},
        ("time_sync_servers", "letters, digits, dots and hyphens"),
        None,
    ),
    (
        "msl2",
        {"gworkspace_key_src": "@file:authorized_user"},
        ("is refused", "authorized_user", "nothing on msl2 was changed"),
        "wrong_type",
    ),
    (
        "msl1-local",
        {"gworkspace_key_src": "@file:vaulted"},
        ("is refused", "decrypt", "vault password", "nothing on msl1-local was changed"),
        "read_error",
    ),
]


def test_playbook_variables(lab, tmp_path):
    for host in lab.msl_hosts:
        lab.reset_msl(host)
    prime = run_playbook(_prime_plays(), inventory=lab.inventory_path, env=FAST_SSH)
    assert prime.rc == 0, prime.stdout + prime.stderr
    wrong_vault_password = tmp_path / "wrong-vault-password"
    files = bic.make_files(lab, tmp_path / "files", wrong_vault_password)
    marker = str(tmp_path / bic.MARKER_NAME)
    root = Path(lab.msl_root("msl1"))
    hosts = {host: bic.resolve(variables, files, root, marker) for host, variables, _words, _reason in PLAYBOOK_CASES}
    extra = tmp_path / "bad-vars.yml"
    extra.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {
                        "gworkspace_key_src": "{{ gworkspace_key_file }}",
                        "gworkspace_um_users": "{{ gworkspace_um_users_file }}",
                        "time_sync_samples": 1,
                        "time_sync_sample_interval": 0.2,
                    },
                    "children": {
                        "msl": {"hosts": {h: v for h, v in hosts.items() if h != "msl1-local"}},
                        "msl_local": {"hosts": {"msl1-local": hosts["msl1-local"]}},
                    },
                }
            }
        )
    )
    before = {host: bic.tree_digest(Path(lab.msl_root(host))) for host in HOSTS}
    run = run_playbook(
        "nupoint.gworkspace.provision",
        inventory=lab.inventory_path,
        extra_args=["-i", str(extra), "--vault-password-file", str(wrong_vault_password)],
        extra_vars={"gworkspace_target": "msl:msl_local"},
        env=FAST_SSH,
    )
    after = {host: bic.tree_digest(Path(lab.msl_root(host))) for host in HOSTS}
    for host in lab.msl_hosts:
        lab.reset_msl(host)
    assert run.rc != 0
    # The controller's key check (service_account_key_info, one item per key of the play) gives each refusal its reason.
    key_checks = [
        name for name in run.tasks if name.endswith("Validate every service-account key of the play on the controller")
    ]
    assert len(key_checks) == 1, list(run.tasks)
    items = {item["item"]["src"]: item for item in run.result(key_checks[0])["results"]}
    for host, _variables, _words, reason in PLAYBOOK_CASES:
        if reason is not None:
            # The role judges these itself (failed_when: false), so the item is not marked failed.
            item = items[hosts[host]["gworkspace_key_src"]]
            assert (item["reason"], item["changed"]) == (reason, False), item
    for host, _variables, words, _reason in PLAYBOOK_CASES:
        failed = [
            (name, result)
            for name, results in run.tasks.items()
            for result in results
            if result["_host"] == host
            and result.get("failed")
            and not result.get("ignore_errors")
            and result["_status"] == "failed"
        ]
        assert len(failed) == 1, (host, [name for name, _result in failed])
        name, result = failed[0]
        # These stops are the playbook's own checks (ansible.builtin.assert), which have no `reason` field; the
        # module refusal they quote (the key's) carries one in the task before.
        assert result.get("changed") is False, (host, name, result)
        msg = result.get("msg", "").lower()
        for word in words:
            assert word.lower() in msg, (host, word, result.get("msg"))
        for leak in LEAK_MARKERS:
            assert leak not in json.dumps(result)
    assert before == after
    assert not os.path.exists(marker)
