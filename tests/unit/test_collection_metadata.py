"""The collection's metadata stays in step with its plugins."""

import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def module_names():
    modules_dir = os.path.join(ROOT, "plugins", "modules")
    return sorted(name[:-3] for name in os.listdir(modules_dir) if name.endswith(".py") and not name.startswith("_"))


def test_action_group_lists_every_module():
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as handle:
        runtime = yaml.safe_load(handle)
    assert sorted(runtime["action_groups"]["gworkspace"]) == module_names()


def test_readme_lists_every_module_and_role():
    with open(os.path.join(ROOT, "README.md")) as handle:
        readme = handle.read()
    for name in module_names():
        assert "nupoint.gworkspace.%s" % name in readme
    roles_dir = os.path.join(ROOT, "roles")
    for role in os.listdir(roles_dir) if os.path.isdir(roles_dir) else []:
        assert "nupoint.gworkspace.%s" % role in readme


def test_every_role_has_argument_specs():
    roles_dir = os.path.join(ROOT, "roles")
    for role in os.listdir(roles_dir) if os.path.isdir(roles_dir) else []:
        assert os.path.isfile(os.path.join(roles_dir, role, "meta", "argument_specs.yml")), role
