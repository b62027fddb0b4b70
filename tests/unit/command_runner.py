"""A fake ``run_command`` that plays back an exact list of expected commands (community.general uthelper style).

A case lists the commands a module must run, in order, each with what it returns::

    - command: [/sbin/e-smith/db, configuration, show, ntpd]
      rc: 0
      out: "ntpd=service\\n    status=disabled\\n"
      err: ""
    - command: [/sbin/e-smith/signal-event, timeserver-update]
      raise: ENOENT          # the tool is missing: run_command raises OSError

``FakeRunner(calls)`` is the callable (``runner(argv) -> (rc, out, err)``, accepting and ignoring
``run_command``'s keyword arguments); ``patch_run_command(monkeypatch, runner)`` puts it in place of
``AnsibleModule.run_command`` for module ``main()`` tests; ``runner.assert_done()`` checks nothing
expected was left unrun. ``load_cases(path)`` reads a YAML case table for ``pytest.mark.parametrize``.
"""

import errno
import os
from typing import Any

import pytest
import yaml
from ansible.module_utils.basic import AnsibleModule


class FakeRunner:
    def __init__(self, calls: list[dict[str, Any]] | None = None) -> None:
        self.expected = [dict(call) for call in calls or []]
        self.ran: list[list[str]] = []

    def __call__(self, argv: list[str], *args: Any, **kwargs: Any) -> tuple[int, str, str]:
        argv = [str(arg) for arg in argv]
        index = len(self.ran)
        self.ran.append(argv)
        if index >= len(self.expected):
            raise AssertionError("unexpected command #%d: %r (expected only %d)" % (index, argv, len(self.expected)))
        call = self.expected[index]
        if argv != [str(arg) for arg in call["command"]]:
            raise AssertionError("command #%d: ran %r, expected %r" % (index, argv, call["command"]))
        if "raise" in call:
            code = getattr(errno, call["raise"])
            raise OSError(code, os.strerror(code), argv[0])
        return call.get("rc", 0), call.get("out", ""), call.get("err", "")

    def assert_done(self) -> None:
        missing = self.expected[len(self.ran) :]
        assert not missing, "expected commands not run: %r" % [call["command"] for call in missing]


def patch_run_command(monkeypatch: pytest.MonkeyPatch, runner: FakeRunner) -> FakeRunner:
    def run_command(module: AnsibleModule, argv: list[str], *args: Any, **kwargs: Any) -> tuple[int, str, str]:
        return runner(argv, *args, **kwargs)

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    return runner


def load_cases(path: str) -> list[Any]:
    """``pytest.param`` per case of a YAML list of ``{id: ..., ...}`` mappings."""
    with open(path) as handle:
        cases = yaml.safe_load(handle)
    return [pytest.param(case, id=case["id"]) for case in cases]
