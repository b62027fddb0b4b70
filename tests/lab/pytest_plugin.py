"""pytest fixtures that start, share and stop the local lab.

- ``lab`` (session): a :class:`tests.lab.api.Lab`. If the lab is not (fully) up, it is brought up
  for the session and stopped, by PID, when the last test session using it ends (lease files: two
  pytest runs may share one lab). A lab that was already up is used and left running.
- ``lab_reset``: the emulated Google back to its baseline (users, keys, scopes, IMAP switches,
  clock, faults, latency, issued tokens) and the SNTP skew back to 0, before and after the test.
- ``msl_clean``: both MSL hosts back to their freshly generated state before the test.

Environment: ``NUPOINT_LAB_DIR`` / ``NUPOINT_LAB_PORT_BASE`` select the lab, as for the CLI.

Under pytest-xdist (``make integration`` runs two workers) each worker has a lab of its own, because the tests
change a lab's state (Google's users and faults, the MSL hosts' files): worker ``gw0`` uses the selected lab,
worker ``gwN`` the state directory ``<dir>-gwN`` and the port base ``+ 100 * N``. The worker sets both variables in
its environment, so everything it starts (ansible-playbook, molecule, the lab CLI) finds the same lab.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from tests.lab import orchestrator
from tests.lab.config import ENV_PORT_BASE, ENV_STATE_DIR, LabConfig

if TYPE_CHECKING:
    # Imported lazily at run time: this plugin is loaded by every test run, unit tests included.
    from tests.lab.api import Lab


# Ports a worker's lab is moved by: a lab takes B..B+11, test_lab_lifecycle's private lab B+40..B+51.
WORKER_PORT_STRIDE = 100


def worker_lab_environment(environ: Mapping[str, str], worker: str) -> dict[str, str]:
    """The lab variables for pytest-xdist worker ``worker`` (``gw0``, ``gw1``...): gw0 keeps the selected lab."""
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    if index == 0:
        return {}
    cfg = LabConfig.from_env(environ)
    return {
        ENV_STATE_DIR: "%s-gw%d" % (cfg.state_dir, index),
        ENV_PORT_BASE: str(cfg.port_base + WORKER_PORT_STRIDE * index),
    }


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        os.environ.update(worker_lab_environment(os.environ, worker))


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
def figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``figure(text)``: a figure the test measured (a count, a rate, a ratio), printed in the run's summary.

    A test's own output is captured, and a pytest-xdist worker's is not shown at all; figures travel with the test's
    report (``user_properties``) and are listed under "figures" at the end of every run, for the closing notes.
    """

    def record(text: str) -> None:
        request.node.user_properties.append(("figure", text))

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    seen = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, text in getattr(report, "user_properties", ()):
                if name == "figure" and (report.nodeid, text) not in seen:
                    seen.append((report.nodeid, text))
    if seen:
        terminalreporter.section("figures")
        for nodeid, text in sorted(seen, key=lambda item: item[0]):
            terminalreporter.write_line("%s: %s" % (nodeid.split("::", 1)[-1], text))


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
