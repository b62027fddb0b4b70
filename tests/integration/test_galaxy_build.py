"""The collection builds with ansible-galaxy, installs from the tarball, and its modules run from there."""

import os
import subprocess
import sys
import tarfile

from tests.integration.playbook import REPO_ROOT
from tests.unit import keyfactory as kf

BIN = os.path.dirname(sys.executable)


def test_build_install_and_run(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run(
        [os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(dist), REPO_ROOT],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (tarball,) = dist.glob("nupoint-gworkspace-*.tar.gz")

    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    assert "plugins/modules/service_account_key_info.py" in names
    assert "MANIFEST.json" in names
    leaked = [
        n for n in names if n.startswith((".venv", ".lab", ".build", ".git/", "tests/output")) or n.endswith(".pyc")
    ]
    assert not leaked, leaked

    install_root = tmp_path / "collections"
    # Only the installed copy counts: no PYTHONPATH or collections path pointing at the development link.
    env = dict(
        os.environ, ANSIBLE_COLLECTIONS_PATH=str(install_root), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", PYTHONPATH=""
    )
    install = subprocess.run(
        [
            os.path.join(BIN, "ansible-galaxy"),
            "collection",
            "install",
            "--offline",
            "-p",
            str(install_root),
            str(tarball),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert (install_root / "ansible_collections/nupoint/gworkspace/MANIFEST.json").is_file(), install.stdout

    key_path = tmp_path / "sa.json"
    key_path.write_text(kf.key_json())
    # Only the installed copy: no PYTHONPATH pointing at the development link.
    env = dict(
        os.environ, ANSIBLE_COLLECTIONS_PATH=str(install_root), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", PYTHONPATH=""
    )
    run = subprocess.run(
        [
            os.path.join(BIN, "ansible"),
            "localhost",
            "-c",
            "local",
            "-e",
            "ansible_python_interpreter=" + sys.executable,
            "-m",
            "nupoint.gworkspace.service_account_key_info",
            "-a",
            "path=" + str(key_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert kf.CLIENT_ID in run.stdout
    doc = subprocess.run(
        [os.path.join(BIN, "ansible-doc"), "nupoint.gworkspace.service_account_key_info"],
        capture_output=True,
        text=True,
        env=dict(env, ANSIBLE_NOCOLOR="1"),
        check=False,
    )
    assert doc.returncode == 0, doc.stderr
    assert str(install_root) in doc.stdout
