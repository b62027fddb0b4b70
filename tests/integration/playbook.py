"""Run real ansible-playbook processes from tests and read their results.

Integration tests drive the collection the way users do: a playbook, an inventory, the installed
collection (linked under .build/collections). The json stdout callback gives per-task results; the
default callback with -vvv gives the text a user would see (used by the secret-leak tests).

Why this runner is hand-written next to pytest-ansible: that plugin's ``ansible_module`` / ``ansible_adhoc``
fixtures (used in test_pytest_ansible_modules.py) run one module at a time inside the pytest process and return
its results, so they cannot give what the tests here need: the stdout of a real ``ansible-playbook`` process at
``-vvv``, scanned for key- and token-shaped strings; ``--diff`` text; plays with roles, ``register`` between tasks,
``ignore_errors`` / ``failed_when``; the playbooks under playbooks/ as users run them. Its ``--ansible-check``
option is not passed on either (see ``check_mode`` in test_pytest_ansible_modules.py).
"""

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS_ROOT = os.path.join(REPO_ROOT, ".build", "collections")
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
CALLBACK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "callback_plugins")
LOCAL_INVENTORY = "localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    tasks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def result(self, task_name: str, host: str | None = None) -> dict[str, Any]:
        """The result of the named task (for ``host``, or the only host)."""
        results = self.tasks[task_name]
        if host is None:
            assert len(results) == 1, "task %r ran on %d hosts" % (task_name, len(results))
            return results[0]
        return next(r for r in results if r["_host"] == host)


def run_playbook(
    plays: list[dict[str, Any]] | str,
    inventory: str | None = None,
    extra_vars: dict[str, Any] | None = None,
    check: bool = False,
    diff: bool = False,
    verbosity: int = 0,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    timeout: int = 600,
) -> PlaybookRun:
    """Run ``plays`` (a list of plays, or a playbook path) and return its output and per-task results.

    stdout is what a user sees (default callback); per-task results come from the record_results callback.
    """
    with tempfile.TemporaryDirectory(prefix="gworkspace-it-") as workdir:
        results_path = os.path.join(workdir, "results.jsonl")
        if isinstance(plays, str):
            playbook_path = plays
        else:
            playbook_path = os.path.join(workdir, "playbook.yml")
            with open(playbook_path, "w") as handle:
                yaml.safe_dump(plays, handle, sort_keys=False)
        if inventory is None:
            inventory = os.path.join(workdir, "hosts")
            with open(inventory, "w") as handle:
                handle.write(LOCAL_INVENTORY)
        cmd = [ANSIBLE_PLAYBOOK, "-i", inventory, playbook_path]
        if extra_vars:
            vars_path = os.path.join(workdir, "extra_vars.json")
            with open(vars_path, "w") as handle:
                json.dump(extra_vars, handle)
            cmd += ["-e", "@" + vars_path]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        cmd += extra_args or []
        run_env = dict(os.environ)
        run_env.update(
            {
                "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS_ROOT,
                "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
                "ANSIBLE_HOST_KEY_CHECKING": "false",
                "ANSIBLE_RETRY_FILES_ENABLED": "false",
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_LOCAL_TEMP": os.path.join(workdir, "tmp"),
                # Absolute: the async wrapper expands "~" from $HOME, async_status from the user's passwd entry;
                # they differ when a CI job sets HOME elsewhere.
                "ANSIBLE_ASYNC_DIR": os.path.join(workdir, "async"),
                "ANSIBLE_CALLBACK_PLUGINS": CALLBACK_DIR,
                "ANSIBLE_CALLBACKS_ENABLED": "record_results",
                "GWORKSPACE_TEST_RESULTS": results_path,
            }
        )
        run_env.update(env or {})
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=run_env, timeout=timeout, cwd=workdir, check=False
        )
        run = PlaybookRun(proc.returncode, proc.stdout, proc.stderr)
        if os.path.exists(results_path):
            with open(results_path) as handle:
                for line in handle:
                    entry = json.loads(line)
                    result = dict(entry["result"], _host=entry["host"], _status=entry["status"])
                    run.tasks.setdefault(entry["task"], []).append(result)
    return run
