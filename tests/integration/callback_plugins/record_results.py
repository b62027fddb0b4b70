# Test-only callback: records every task result as JSON for the integration tests to read.
"""Record task results to the file named by ``GWORKSPACE_TEST_RESULTS`` (JSON lines)."""

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: record_results
type: aggregate
short_description: Record task results as JSON lines (integration tests only)
description:
  - Appends one JSON object per task result to the file named by the E(GWORKSPACE_TEST_RESULTS)
    environment variable.
requirements:
  - enabled via C(callbacks_enabled)
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "record_results"
    CALLBACK_NEEDS_ENABLED = True

    def _record(self, result, status):
        path = os.environ.get("GWORKSPACE_TEST_RESULTS")
        if not path:
            return
        data = dict(result._result)
        self._clean_results(data, result._task.action)
        # The executor keeps the outcome in the callback name, not always in the result.
        data.setdefault("failed", status == "failed")
        entry = {
            "task": result._task.get_name(),
            "host": result._host.get_name(),
            "status": status,
            "result": data,
        }
        with open(path, "a") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")
