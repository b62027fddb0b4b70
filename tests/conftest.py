"""Shared pytest set-up for unit, lab and integration tests."""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS_ROOT = os.path.join(REPO_ROOT, ".build", "collections")
COLLECTION_LINK = os.path.join(COLLECTIONS_ROOT, "ansible_collections", "nupoint", "gworkspace")

# `make` creates the link; create it here too so a bare `pytest` works after `make venv`.
if not os.path.lexists(COLLECTION_LINK):
    os.makedirs(os.path.dirname(COLLECTION_LINK), exist_ok=True)
    os.symlink(REPO_ROOT, COLLECTION_LINK)
for path in (COLLECTIONS_ROOT, REPO_ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)

pytest_plugins = ["tests.lab.pytest_plugin"]

# Under pytest-xdist with --dist loadfile (make integration) whole files go to the workers in collection order. The
# longest files first let both workers end together: in name order one worker ran test_secret_sweep alone for the
# last minutes (14.2 min for tests/lab + tests/integration). Beside each: its seconds in one process (2026-12-02).
LONGEST_FIRST = (
    "tests/integration/test_load.py",  # 155
    "tests/integration/test_key_rotation.py",  # 146
    "tests/integration/test_faults.py",  # 126
    "tests/integration/test_playbooks.py",  # 114
    "tests/integration/test_secret_sweep.py",  # 65
    "tests/integration/test_key_lifecycle.py",  # 65
    "tests/integration/test_msl_oauth_credentials.py",  # 59
    "tests/integration/test_msl_time_sync.py",  # 48
)


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, the files of LONGEST_FIRST first (in that order), the rest in their order after them."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {path: index for index, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
