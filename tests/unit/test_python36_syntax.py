"""Code that runs on MSL must parse as Python 3.6 (MSL's system Python on older releases)."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MSL_SIDE_DIRS = ("plugins/modules", "plugins/module_utils")


def msl_side_files():
    for directory in MSL_SIDE_DIRS:
        for parent, _dirs, names in sorted(os.walk(os.path.join(ROOT, directory))):
            for name in sorted(names):
                if name.endswith(".py"):
                    yield os.path.relpath(os.path.join(parent, name), ROOT)


@pytest.mark.parametrize("path", list(msl_side_files()))
def test_parses_as_python36(path):
    with open(os.path.join(ROOT, path)) as handle:
        source = handle.read()
    tree = ast.parse(source, filename=path, feature_version=(3, 6))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            assert "annotations" not in [alias.name for alias in node.names], path
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            assert "dataclasses" not in names, "%s: dataclasses needs Python 3.7" % path
