"""Set-up for the molecule scenarios under pytest (tests/molecule/test_scenarios.py).

pytest-ansible runs each scenario as ``python -m molecule test -s <name>`` in a child process that inherits this
process's environment and working directory. Two things pytest-ansible changes or assumes are put back here:

- the working directory: it runs molecule in ``extensions`` as a path relative to the repository root (where it
  listed the scenarios with git), so the tests run from the repository root whatever directory pytest started in;
- ``ANSIBLE_COLLECTIONS_PATH``: started in a directory with a galaxy.yml, pytest-ansible points it at a symlink copy
  of the collection it makes in ``collections/`` (for collection unit tests). Molecule gets what ``make molecule``
  always gave it: ``.build/collections``, where the collection is linked whole.

``NUPOINT_LAB_DIR`` / ``NUPOINT_LAB_PORT_BASE`` pass through unchanged: each scenario's prepare brings that lab up
unless it runs already, and its cleanup stops it only if prepare started it.
"""

import os
from collections.abc import Iterator

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS_ROOT = os.path.join(REPO_ROOT, ".build", "collections")


@pytest.fixture(autouse=True)
def molecule_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", COLLECTIONS_ROOT)
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_SCAN_SYS_PATH", "false")
    yield
