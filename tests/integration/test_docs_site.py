"""`make docs` builds the documentation site offline and without a single warning, and it has every page."""

import os
import subprocess

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import failures
from tests.integration.playbook import REPO_ROOT


def _names(directory, suffix):
    return sorted(
        name[: -len(suffix)] if suffix else name
        for name in os.listdir(os.path.join(REPO_ROOT, directory))
        if name.endswith(suffix) and not name.startswith("_")
    )


MODULES = _names("plugins/modules", ".py")
ROLES = [
    name
    for name in _names("roles", "")
    if os.path.isfile(os.path.join(REPO_ROOT, "roles", name, "meta", "argument_specs.yml"))
]
GUIDES = _names("docs", ".md")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    build = subprocess.run(
        ["make", "--no-print-directory", "docs", "DOCS=%s" % out],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    with open(out / "warnings.txt", encoding="utf-8") as handle:
        assert handle.read() == ""
    return out / "html"


def _page(site, *parts):
    path = site.joinpath(*parts)
    assert path.is_file(), path
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("module", MODULES)
def test_every_module_has_a_page_from_its_documentation(site, module):
    page = _page(site, "collections", "nupoint", "gworkspace", "%s_module.html" % module)
    assert "nupoint.gworkspace.%s" % module in page
    assert "Parameters" in page


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_a_page_from_its_argument_specs(site, role):
    page = _page(site, "collections", "nupoint", "gworkspace", "%s_role.html" % role)
    assert "nupoint.gworkspace.%s" % role in page


@pytest.mark.parametrize("guide", GUIDES)
def test_every_guide_is_a_page(site, guide):
    _page(site, "docs", "%s.html" % guide)


def test_troubleshooting_page_lists_every_class(site):
    page = _page(site, "docs", "troubleshooting.html")
    missing = [
        name
        for name in failures.FAILURE_CLASSES
        if '<code class="docutils literal notranslate"><span class="pre">%s</span></code>' % name not in page
    ]
    assert missing == []


def test_the_index_links_the_guides_and_the_reference(site):
    page = _page(site, "index.html")
    for target in (
        "docs/troubleshooting.html",
        "docs/security.html",
        "docs/user-guide.html",
        "docs/msl-assumptions.html",
        "collections/index_module.html",
    ):
        assert 'href="%s"' % target in page, target
