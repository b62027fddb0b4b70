# Sphinx configuration of the collection's documentation site (`make docs`, output in .build/docs/html).
# Started from `antsibull-docs sphinx-init`; the differences are why this file exists:
# - no intersphinx: the build runs offline (the machine reaches PyPI only), and an unreachable inventory is a
#   warning, which `-W` makes an error;
# - myst-parser, so the guides in docs/*.md are pages of the site as they are, not copies converted to RST.

import fnmatch
import os
import posixpath
import re

from docutils import nodes

project = "nupoint.gworkspace"
copyright = "nupoint.gworkspace contributors"

title = "nupoint.gworkspace"
html_short_title = "nupoint.gworkspace"

extensions = ["sphinx_antsibull_ext", "myst_parser"]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# The Makefile builds from the pages antsibull-docs writes under collections/ plus copies of docs/*.md and
# roles/*/README.md at their places in the repository, so the guides' links to each other work unchanged.
include_patterns = ["index.rst", "collections/**", "docs/*.md", "roles/*/README.md"]

# GitHub-style heading anchors, so the guides' links to #sections resolve as they do on a forge.
myst_heading_anchors = 3

pygments_style = "ansible"
# Fenced blocks without a language are console transcripts and task output, not YAML.
highlight_language = "none"

html_theme = "sphinx_ansible_theme"
html_show_sphinx = False
html_theme_options = {"display_version": False}
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False

default_role = "any"
nitpicky = True


# --- Ansible's own documentation, offline --------------------------------------------------------------------
# antsibull-docs links module pages to Ansible's docsite (M(ansible.builtin.copy), "Common return values", ...),
# which intersphinx would resolve by downloading docs.ansible.com's inventory. Resolve those labels here instead,
# by their documented URL scheme; any other unresolved reference is still a warning (and an error with -W).
ANSIBLE_DOCS = "https://docs.ansible.com/ansible/latest/"
ANSIBLE_DOCS_LABELS = {
    "action_plugins": "plugins/action.html",
    "ansible_configuration_settings": "reference_appendices/config.html",
    "common_return_values": "reference_appendices/common_return_values.html",
}
_BUILTIN_LABEL = re.compile(r"^ansible_collections\.ansible\.builtin\.(\w+?)_(module|lookup|filter|test)(?:__(.+))?$")


def _ansible_docs_url(label):
    if label in ANSIBLE_DOCS_LABELS:
        return ANSIBLE_DOCS + ANSIBLE_DOCS_LABELS[label]
    match = _BUILTIN_LABEL.match(label)
    if match is None:
        return None
    name, kind, anchor = match.groups()
    url = "%scollections/ansible/builtin/%s_%s.html" % (ANSIBLE_DOCS, name, kind)
    return url + "#" + anchor if anchor else url


def _resolve_ansible_docs(app, env, node, contnode):
    if node.get("refdomain") != "std" or node.get("reftype") != "ref":
        return None
    url = _ansible_docs_url(node.get("reftarget", ""))
    if url is None:
        return None
    reference = nodes.reference("", "", internal=False, refuri=url)
    reference.append(contnode)
    return reference


# --- the guides' links to files that are not pages ---------------------------------------------------------
# On a forge, "[inventory](../examples/inventory)" opens the repository's tree; on the site it would be a dead
# link (myst warns). Point such links, and links to any file that is not a page of the site, at the repository.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
with open(os.path.join(REPO_ROOT, "galaxy.yml"), encoding="utf-8") as _galaxy:
    REPOSITORY_URL = re.search(r"^repository:\s*(\S+)", _galaxy.read(), re.MULTILINE).group(1)
_MD_LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)#\s]+)(#[^)\s]*)?\)")


def _is_page(path):
    return any(fnmatch.fnmatch(path, pattern) for pattern in include_patterns)


def _repository_links(app, docname, source):
    if not app.env.doc2path(docname).name.endswith(".md"):
        return
    here = posixpath.dirname(docname)

    def relink(match):
        target, anchor = match.group(1), match.group(2) or ""
        path = posixpath.normpath(posixpath.join(here, target))
        if _is_page(path):
            return match.group(0)
        if not os.path.exists(os.path.join(REPO_ROOT, path)) or path.startswith(".."):
            return match.group(0)  # left for myst to report
        return "](%s/-/tree/main/%s%s)" % (REPOSITORY_URL, path, anchor)

    source[0] = _MD_LINK.sub(relink, source[0])


def setup(app):
    app.connect("missing-reference", _resolve_ansible_docs)
    app.connect("source-read", _repository_links)
