"""The collection's metadata stays in step with its plugins."""

import ast
import importlib
import os

import pytest
import yaml
from ansible.module_utils import basic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTION = "nupoint.gworkspace"

# What the comments in meta/runtime.yml promise each narrower action group shares: the doc fragments every member
# extends, so module_defaults on the group may set any option of them.
GROUP_FRAGMENTS = {
    "gworkspace_google": ("nupoint.gworkspace.google", "nupoint.gworkspace.google.KEY_SOURCE"),
    "gworkspace_msl": ("nupoint.gworkspace.msl",),
}


def module_names():
    modules_dir = os.path.join(ROOT, "plugins", "modules")
    return sorted(name[:-3] for name in os.listdir(modules_dir) if name.endswith(".py") and not name.startswith("_"))


def action_groups():
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as handle:
        return yaml.safe_load(handle)["action_groups"]


def module_documentation(name):
    with open(os.path.join(ROOT, "plugins", "modules", name + ".py")) as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [target.id for target in node.targets] == ["DOCUMENTATION"]:
            return yaml.safe_load(node.value.value)
    raise AssertionError("%s has no DOCUMENTATION" % name)


def fragment_options(fragment):
    """The options a doc fragment (``nupoint.gworkspace.NAME`` or ``nupoint.gworkspace.NAME.VARIANT``) documents."""
    parts = fragment.split(".")
    module = importlib.import_module("ansible_collections.nupoint.gworkspace.plugins.doc_fragments.%s" % parts[2])
    text = getattr(module.ModuleDocFragment, parts[3] if len(parts) > 3 else "DOCUMENTATION")
    return set(yaml.safe_load(text).get("options") or {})


class SpecCaptured(Exception):
    def __init__(self, argument_spec):
        super().__init__("argument spec captured")
        self.argument_spec = argument_spec


def module_argument_spec(name, monkeypatch):
    """The argument spec the module hands AnsibleModule (base class or subclass), without running it."""

    def capture(self, argument_spec, *args, **kwargs):
        raise SpecCaptured(argument_spec)

    monkeypatch.setattr(basic.AnsibleModule, "__init__", capture)
    module = importlib.import_module("ansible_collections.nupoint.gworkspace.plugins.modules.%s" % name)
    with pytest.raises(SpecCaptured) as excinfo:
        module.main()
    return excinfo.value.argument_spec


def test_action_group_gworkspace_lists_every_module():
    assert sorted(action_groups()["gworkspace"]) == module_names()


def test_groups_are_the_documented_ones_and_name_real_modules():
    groups = action_groups()
    assert set(groups) == {"gworkspace"} | set(GROUP_FRAGMENTS)
    for group, members in groups.items():
        assert sorted(members) == sorted(set(members)), group
        assert set(members) <= set(module_names()), group


@pytest.mark.parametrize("group", sorted(GROUP_FRAGMENTS))
def test_group_members_document_and_accept_the_shared_options(group, monkeypatch):
    shared = set().union(*(fragment_options(fragment) for fragment in GROUP_FRAGMENTS[group]))
    assert shared
    members = set(action_groups()[group])
    for name in module_names():
        fragments = module_documentation(name).get("extends_documentation_fragment") or []
        # Every module that shares the options is in the group, and only those.
        assert (name in members) == set(GROUP_FRAGMENTS[group]).issubset(fragments), (group, name)
        if name in members:
            accepted = set(module_argument_spec(name, monkeypatch))
            assert shared <= accepted, "%s does not accept %s" % (name, sorted(shared - accepted))


def test_readme_lists_every_module_and_role():
    with open(os.path.join(ROOT, "README.md")) as handle:
        readme = handle.read()
    for name in module_names():
        assert "nupoint.gworkspace.%s" % name in readme
    for group in action_groups():
        assert "group/nupoint.gworkspace.%s" % group in readme
    roles_dir = os.path.join(ROOT, "roles")
    for role in os.listdir(roles_dir) if os.path.isdir(roles_dir) else []:
        assert "nupoint.gworkspace.%s" % role in readme


def test_every_role_has_argument_specs():
    roles_dir = os.path.join(ROOT, "roles")
    for role in os.listdir(roles_dir) if os.path.isdir(roles_dir) else []:
        assert os.path.isfile(os.path.join(roles_dir, role, "meta", "argument_specs.yml")), role
