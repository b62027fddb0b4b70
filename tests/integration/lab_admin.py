"""A Google Cloud project administrator the lab honours: the admin credential of the key-lifecycle tests.

IAM and Service Usage calls act as a project administrator, never as NuPoint's service account
(docs/key-lifecycle.md). The lab's emulated Google lets a service account administer the projects that
list it as an admin (``GoogleControl.add_project(..., admins=[...])``); this makes one, once, for every
test that needs it.
"""

import json
from pathlib import Path
from typing import Any

from tests.lab.google import jwtutil
from tests.unit import keyfactory

ADMIN_PROJECT = "nupoint-admin"
ADMIN_SA = "key-admin@%s.iam.gserviceaccount.com" % ADMIN_PROJECT
ADMIN_CLIENT_ID = "880000000000000000001"


def add_admin(lab: Any, path: Path, administers: tuple[str, ...] = (), key_index: int = 3) -> tuple[Path, Any]:
    """Register the admin service account and its key with the lab, make it an admin of ``administers``,
    and write its JSON key to ``path`` (0600). Returns ``(path, private key)``."""
    key = keyfactory.rsa_key(index=key_index)
    document = keyfactory.key_dict(
        key, client_email=ADMIN_SA, client_id=ADMIN_CLIENT_ID, project_id=ADMIN_PROJECT, token_uri=lab.token_uri
    )
    lab.google.add_service_account(ADMIN_SA, ADMIN_CLIENT_ID, ADMIN_PROJECT)
    lab.google.register_key(ADMIN_SA, document["private_key_id"], jwtutil.public_key_pem(key))
    for project in administers:
        lab.google.add_project(project, admins=[ADMIN_SA])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return path, key
