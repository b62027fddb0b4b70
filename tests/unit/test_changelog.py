"""The release in galaxy.yml is the changelog's latest release, and CHANGELOG.md is rendered from it."""

import os

import yaml
from ansible.module_utils.compat.version import LooseVersion

REPO_ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _yaml(*parts):
    with open(os.path.join(REPO_ROOT, *parts), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def test_galaxy_version_is_the_latest_changelog_release():
    releases = _yaml("changelogs", "changelog.yaml")["releases"]
    latest = max(releases, key=LooseVersion)
    assert _yaml("galaxy.yml")["version"] == latest


def test_changelog_md_has_the_latest_release():
    releases = _yaml("changelogs", "changelog.yaml")["releases"]
    latest = max(releases, key=LooseVersion)
    with open(os.path.join(REPO_ROOT, "CHANGELOG.md"), encoding="utf-8") as handle:
        text = handle.read()
    # antsibull-changelog escapes Markdown: "v0\.1\.0".
    assert "## v%s" % latest.replace(".", "\\.") in text
