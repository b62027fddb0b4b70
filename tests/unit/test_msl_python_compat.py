"""Code that runs on MSL must run on the system Python of every supported MSL release: 2.7 and 3.6+.

The proof is static, with vermin (https://github.com/netromdk/vermin): every module that runs on MSL and
every module_utils file (they are shared with the controller-side modules, so all of them are in) is
checked for targets 2.7 and 3.6. This machine has no Python 2.7 or 3.6 interpreter (Debian 12 ships
neither), so what vermin cannot see (str/bytes semantics on 2.7) is not proven here; README says so.
``make vermin`` runs this file.
"""

import glob
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERMIN = os.path.join(os.path.dirname(sys.executable), "vermin")
TARGETS = ["-t=2.7-", "-t=3.6-"]

#: The modules that run on the MSL host (the others run on the controller: their action plugins or the
#: playbooks delegate them to localhost, and they may use google-auth, cryptography and requests).
MSL_MODULES = (
    "clock_offset_info",
    "delegation_check",
    "imap_check",
    "msl_facts",
    "msl_oauth_credentials",
    "msl_oauth_credentials_info",
    "msl_time_sync",
)
CONTROLLER_MODULES = (
    "gmail_imap_settings",
    "imap_check_fleet_report",
    "service_account",
    "service_account_key",
    "service_account_key_info",
    "service_account_keys_info",
    "workspace_imap_policy_info",
)


def msl_side_files():
    files = sorted(glob.glob(os.path.join(ROOT, "plugins", "module_utils", "**", "*.py"), recursive=True))
    files += [os.path.join(ROOT, "plugins", "modules", name + ".py") for name in MSL_MODULES]
    return files


def vermin(paths):
    command = [VERMIN, *TARGETS, "--no-tips", "--violations", "--no-make-paths-absolute", *paths]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_every_module_is_placed():
    modules = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "modules")) if name.endswith(".py"))
    assert modules == sorted(MSL_MODULES + CONTROLLER_MODULES), (
        "place each new module in MSL_MODULES or CONTROLLER_MODULES"
    )


def test_msl_side_code_runs_on_python_27_and_36():
    result = vermin(msl_side_files())
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "construct",
    [
        "from __future__ import annotations\n",
        "import dataclasses\n",
        "def f(a, *, b):\n    return a, b\n",
        "x = 1\nprint(f'{x=}')\n",
        "import concurrent.futures\n",
        "def f(x: int) -> int:\n    return x\n",
    ],
    ids=["future-annotations", "dataclasses", "keyword-only", "f-string", "concurrent.futures", "annotations"],
)
def test_the_check_fails_on_a_newer_construct(tmp_path, construct):
    """The check bites: one construct Python 2.7 or 3.6 lacks, in an otherwise ported file, fails it."""
    path = tmp_path / "msl_side.py"
    path.write_text("from __future__ import absolute_import, division, print_function\n" + textwrap.dedent(construct))
    result = vermin([str(path)])
    assert result.returncode != 0
    assert "Target versions not met" in result.stdout


def test_module_utils_import_without_the_modules_python_27_lacks():
    """Import every module_utils file with typing, concurrent.futures, dataclasses and html unavailable."""
    script = textwrap.dedent(
        """
        import glob, importlib, sys
        import ansible.module_utils.basic, ssl, urllib.parse, http.client, email.utils, imaplib, json
        for name in ("typing", "concurrent", "concurrent.futures", "dataclasses", "html"):
            sys.modules[name] = None
        failed = []
        for path in sorted(glob.glob("plugins/module_utils/**/*.py", recursive=True)):
            name = "ansible_collections.nupoint.gworkspace." + path[:-3].replace("/", ".")
            try:
                importlib.import_module(name)
            except Exception as exc:
                failed.append("%s: %s: %s" % (name, type(exc).__name__, exc))
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
        """
    )
    collections = os.path.join(ROOT, ".build", "collections")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([collections, ROOT]))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
