"""pytest fixtures that start, share and stop the local lab.

- ``lab`` (session): a :class:`tests.lab.api.Lab`. If the lab is not (fully) up, it is brought up
  for the session and stopped, by PID, when the last test session using it ends (pytest-xdist
  workers share it through lease files). A lab that was already up is used and left running.
- ``lab_reset``: the emulated Google back to its baseline (users, keys, scopes, IMAP switches,
  clock, faults, latency, issued tokens) and the SNTP skew back to 0, before and after the test.
- ``msl_clean``: both MSL hosts back to their freshly generated state before the test.

Environment: ``NUPOINT_LAB_DIR`` / ``NUPOINT_LAB_PORT_BASE`` select the lab, as for the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.lab import orchestrator
from tests.lab.config import LabConfig

if TYPE_CHECKING:
    # Imported lazily at run time: this plugin is loaded by every test run, unit tests included.
    from tests.lab.api import Lab


def _log(message: str) -> None:
    print(f"\n[lab] {message}")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    from tests.lab.api import Lab

    cfg = LabConfig.from_env()
    holder = os.getpid()
    try:
        orchestrator.acquire(cfg, holder, log=_log)
    except orchestrator.LabError as exc:
        pytest.fail(f"lab could not start: {exc}", pytrace=False)
    try:
        yield Lab.load(cfg)
    finally:
        remaining = orchestrator.release(cfg, holder, log=_log)
        if remaining:
            pytest.fail(f"lab processes survived teardown: {remaining}", pytrace=False)


@pytest.fixture
def lab_reset(lab: Lab) -> Iterator[Lab]:
    def reset() -> None:
        lab.reset_google()
        lab.skew(0)

    reset()
    yield lab
    reset()


@pytest.fixture
def msl_clean(lab: Lab) -> Lab:
    for host in lab.msl_hosts:
        lab.reset_msl(host)
    return lab
