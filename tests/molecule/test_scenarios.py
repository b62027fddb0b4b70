"""Every molecule scenario under extensions/molecule, one pytest test each, through pytest-ansible.

pytest-ansible lists the git-tracked ``*/molecule/<scenario>/molecule.yml`` files when pytest starts and
parametrizes its ``molecule_scenario`` fixture with them (test ids ``extensions-<scenario>``); each test runs
``molecule test -s <scenario>`` in ``extensions/``, the scenario's whole test sequence (destroy, syntax, prepare,
converge, idempotence, verify, cleanup, destroy). Molecule's output is captured and shown under the failing test.

    make molecule                                  all scenarios, one report
    make molecule PYTEST_ARGS="-k time_sync"       one scenario

pytest-ansible 26.10.0 marks this integration deprecated (a DeprecationWarning in the summary) in favour of
``molecule test --all``; the scenarios themselves do not depend on it and run unchanged under that command.
"""

from pathlib import Path

import pytest
from pytest_ansible import plugin
from pytest_ansible.molecule import MoleculeScenario

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SCENARIOS_DIR = Path(__file__).resolve().parents[2] / "extensions" / "molecule"


def test_every_scenario_is_collected():
    """pytest-ansible finds scenarios with ``git ls-files``: one it misses (untracked, or git absent) would not run."""
    on_disk = sorted(path.parent.name for path in SCENARIOS_DIR.glob("*/molecule.yml"))
    assert on_disk, "no molecule scenarios under %s" % SCENARIOS_DIR
    assert sorted(scenario.name for scenario in plugin.scenarios) == on_disk


def test_scenario(molecule_scenario: MoleculeScenario) -> None:
    proc = molecule_scenario.test()
    assert proc.returncode == 0, "molecule test -s %s exited %d (its output: 'Captured stdout call' above)" % (
        molecule_scenario.name,
        proc.returncode,
    )
