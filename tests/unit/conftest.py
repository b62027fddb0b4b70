"""Fixtures for unit tests: call a module's main() with arguments and read its JSON result."""

import json
from typing import Any

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes


class ModuleExit(Exception):
    """Raised instead of sys.exit so a test can read the module's result."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(result)
        self.result = result


@pytest.fixture
def run_module(monkeypatch, capsys):
    """Run ``module.main()`` with ``args``; return the result dict (failed results included)."""

    def runner(module: Any, args: dict[str, Any], check_mode: bool = False, diff: bool = False) -> dict[str, Any]:
        payload = dict(args)
        payload["_ansible_check_mode"] = check_mode
        payload["_ansible_diff"] = diff
        payload.setdefault("_ansible_remote_tmp", "/tmp")
        payload.setdefault("_ansible_keep_remote_files", False)
        monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": payload})))
        monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
        with pytest.raises(SystemExit):
            module.main()
        out = capsys.readouterr().out
        return json.loads(out)

    return runner
