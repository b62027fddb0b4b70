"""The collection builds with ansible-galaxy into a clean tarball, installs from it into an empty collections
path, documents itself there (ansible-doc) and its modules run from there; the example execution environment
(examples/execution-environment.yml) makes an ansible-builder context that carries the collection and, through
its meta/execution-environment.yml, our Python and system dependencies."""

import ast
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from tests.integration.playbook import REPO_ROOT
from tests.unit import keyfactory as kf

BIN = os.path.dirname(sys.executable)

# Nothing of a developer's or CI's machine belongs in the tarball: lab state, venvs, caches, build output.
FORBIDDEN_TOP = (
    ".venv",
    ".lab",
    ".build",
    ".git",
    ".cache",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".ansible",
    ".ci",
    "collections",
    "hacking",
)
FORBIDDEN_PREFIXES = ("tests/output", "bench/results")


def _run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)


def _clean_env(collections_path):
    """Only the installed copy counts: no PYTHONPATH or collections path pointing at the development link."""
    return dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(collections_path),
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
        PYTHONPATH="",
        ANSIBLE_NOCOLOR="1",
    )


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    build = _run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(dist), REPO_ROOT])
    assert build.returncode == 0, build.stdout + build.stderr
    (built,) = dist.glob("nupoint-gworkspace-*.tar.gz")
    return built


@pytest.fixture(scope="module")
def installed(tarball, tmp_path_factory):
    install_root = tmp_path_factory.mktemp("collections")
    install = _run(
        [
            os.path.join(BIN, "ansible-galaxy"),
            "collection",
            "install",
            "--offline",
            "-p",
            str(install_root),
            str(tarball),
        ],
        env=_clean_env(install_root),
    )
    assert install.returncode == 0, install.stdout + install.stderr
    collection = install_root / "ansible_collections" / "nupoint" / "gworkspace"
    assert (collection / "MANIFEST.json").is_file(), install.stdout
    return install_root


def _modules(collection_dir):
    modules_dir = os.path.join(collection_dir, "plugins", "modules")
    return sorted(name[:-3] for name in os.listdir(modules_dir) if name.endswith(".py") and name != "__init__.py")


def _short_description(module_file):
    with open(module_file, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets):
            return yaml.safe_load(node.value.value)["short_description"]
    raise AssertionError("no DOCUMENTATION in %s" % module_file)


def test_tarball_holds_the_collection_and_nothing_of_the_machine(tarball):
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    for needed in (
        "MANIFEST.json",
        "FILES.json",
        "meta/runtime.yml",
        "meta/execution-environment.yml",
        "requirements.txt",
        "bindep.txt",
        "CHANGELOG.md",
        "plugins/modules/service_account_key_info.py",
        "roles/oauth_credentials/meta/argument_specs.yml",
        "playbooks/verify.yml",
    ):
        assert needed in names, needed
    leaked = [
        name
        for name in names
        if name.split("/", 1)[0] in FORBIDDEN_TOP
        or name.startswith(FORBIDDEN_PREFIXES)
        or "/__pycache__" in "/" + name
        or name.endswith((".pyc", ".tar.gz", ".plugin-cache.yaml"))
    ]
    assert leaked == []


def test_ansible_doc_lists_every_module_with_its_short_description(installed):
    collection = installed / "ansible_collections" / "nupoint" / "gworkspace"
    modules = _modules(str(collection))
    assert modules == _modules(REPO_ROOT)
    env = _clean_env(installed)
    listing = _run([os.path.join(BIN, "ansible-doc"), "-t", "module", "-l", "nupoint.gworkspace"], env=env)
    assert listing.returncode == 0, listing.stderr
    listed = {line.split()[0] for line in listing.stdout.splitlines() if line.strip()}
    assert listed == {"nupoint.gworkspace." + name for name in modules}
    # The text listing cuts descriptions to the terminal's width; the JSON one has them whole.
    as_json = _run([os.path.join(BIN, "ansible-doc"), "-t", "module", "-l", "--json", "nupoint.gworkspace"], env=env)
    assert as_json.returncode == 0, as_json.stderr
    descriptions = yaml.safe_load(as_json.stdout)
    expected = {
        "nupoint.gworkspace." + name: _short_description(str(collection / "plugins" / "modules" / (name + ".py")))
        for name in modules
    }
    assert descriptions == expected


def test_a_module_runs_from_the_installed_copy(installed, tmp_path):
    key_path = tmp_path / "sa.json"
    key_path.write_text(kf.key_json())
    env = _clean_env(installed)
    run = _run(
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
        env=env,
        cwd=str(tmp_path),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert kf.CLIENT_ID in run.stdout
    doc = _run([os.path.join(BIN, "ansible-doc"), "nupoint.gworkspace.service_account_key_info"], env=env)
    assert doc.returncode == 0, doc.stderr
    assert str(installed) in doc.stdout


def _requirement_lines(path):
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]


def test_execution_environment_context_carries_the_collection_and_its_dependencies(tarball, installed, tmp_path):
    with open(os.path.join(REPO_ROOT, "examples", "execution-environment.yml"), encoding="utf-8") as handle:
        definition = yaml.safe_load(handle)
    assert definition["version"] == 3
    # The example expects the tarball from `make build` beside it; give it this build's.
    shutil.copy(os.path.join(REPO_ROOT, "examples", "execution-environment.yml"), tmp_path)
    shutil.copytree(os.path.join(REPO_ROOT, "examples", "ee"), tmp_path / "ee")
    shutil.copy(tarball, tmp_path / "ee" / "nupoint-gworkspace.tar.gz")
    create = _run(
        [os.path.join(BIN, "ansible-builder"), "create", "-f", "execution-environment.yml", "-c", "context"],
        cwd=str(tmp_path),
    )
    assert create.returncode == 0, create.stdout + create.stderr
    build = tmp_path / "context" / "_build"
    assert (build / "collections" / "nupoint-gworkspace.tar.gz").read_bytes() == tarball.read_bytes()
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    assert galaxy["collections"] == [{"name": "collections/nupoint-gworkspace.tar.gz", "type": "file"}]
    containerfile = next(p for p in (tmp_path / "context").iterdir() if p.name in ("Containerfile", "Dockerfile"))
    assert "introspect.py introspect" in containerfile.read_text()

    # The image build finds the collection's dependencies with the context's own introspect script, run on the
    # installed collections; run it here on ours (the container build itself needs podman/docker and a registry).
    introspect = _run([sys.executable, str(build / "scripts" / "introspect.py"), "introspect", str(installed)])
    assert introspect.returncode == 0, introspect.stderr
    found = yaml.safe_load(introspect.stdout)
    suffix = "  # from collection nupoint.gworkspace"
    assert found["python"] == [
        line + suffix for line in _requirement_lines(os.path.join(REPO_ROOT, "requirements.txt"))
    ]
    assert found["system"] == [line + suffix for line in _requirement_lines(os.path.join(REPO_ROOT, "bindep.txt"))]
