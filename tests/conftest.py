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
