"""docs/troubleshooting.md and the failure vocabulary (plugins/module_utils/_google/failures.py) cannot drift.

- The table between the ``failure-classes`` markers is generated from failures.py (every class, every IAM
  refusal, and the fix each one's message gives). Regenerate it with
  ``NUPOINT_UPDATE_DOCS=1 pytest tests/unit/test_troubleshooting_doc.py``.
- Every class has its own section, and every refusal text the classifiers recognise is quoted in the section
  of the class it leads to, so a new text taught to a classifier needs a line in the doc.
"""

import os
import re

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import failures

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "troubleshooting.md")
BEGIN = (
    "<!-- BEGIN failure-classes: generated from plugins/module_utils/_google/failures.py; "
    "NUPOINT_UPDATE_DOCS=1 pytest tests/unit/test_troubleshooting_doc.py -->"
)
END = "<!-- END failure-classes -->"
ENDPOINT_WORDS = {failures.ENDPOINT_TOKEN: "token endpoint / API", failures.ENDPOINT_IMAP: "IMAP server"}


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def generated_table():
    rows = ["| class | where | what the module's message tells you to do |", "|---|---|---|"]
    for failure_class in failures.FAILURE_CLASSES:
        if failure_class == failures.OK:
            rows.append("| `ok` | — | nothing: the user (or the call) succeeded |")
        elif failure_class in failures.NETWORK_FAILURE_CLASSES:
            for endpoint, words in ENDPOINT_WORDS.items():
                rows.append(
                    "| `%s` | %s | %s |" % (failure_class, words, _cell(failures.hint(failure_class, endpoint)))
                )
        else:
            rows.append("| `%s` | — | %s |" % (failure_class, _cell(failures.hint(failure_class))))
    refusals = getattr(failures, "API_REFUSALS", ())
    if refusals:
        rows += [
            "",
            "IAM and Service Usage refusals (`failure_class: api_error`, the reason in `refusal`):",
            "",
            "| refusal | what the module's message tells you to do |",
            "|---|---|",
        ]
        rows += ["| `%s` | %s |" % (name, _cell(failures.API_REFUSAL_HINTS[name])) for name in refusals]
    return "\n".join(rows)


def read_doc():
    with open(DOC, encoding="utf-8") as handle:
        return handle.read()


def test_generated_table_is_current():
    text = read_doc()
    assert BEGIN in text and END in text, "docs/troubleshooting.md lost its failure-classes markers"
    head, rest = text.split(BEGIN, 1)
    current, tail = rest.split(END, 1)
    expected = "\n" + generated_table() + "\n"
    if os.environ.get("NUPOINT_UPDATE_DOCS") == "1" and current != expected:
        with open(DOC, "w", encoding="utf-8") as handle:
            handle.write(head + BEGIN + expected + END + tail)
        current = expected
    assert current == expected, (
        "docs/troubleshooting.md's table differs from failures.py: "
        "run NUPOINT_UPDATE_DOCS=1 pytest tests/unit/test_troubleshooting_doc.py"
    )


def sections():
    """``{heading's first code span: section text}`` for the ``###`` sections."""
    found = {}
    for block in re.split(r"^### ", read_doc(), flags=re.MULTILINE)[1:]:
        title, _newline, body = block.partition("\n")
        names = re.findall(r"`([a-z_]+)`", title)
        for name in names:
            found[name] = body.lower()
    return found


def test_every_class_has_a_section():
    documented = sections()
    vocabulary = set(failures.FAILURE_CLASSES) | set(getattr(failures, "API_REFUSALS", ()))
    assert sorted(vocabulary - set(documented)) == []
    assert sorted(set(documented) - vocabulary) == [], "sections for classes failures.py does not know"


def _known_texts():
    """``(failure_class, lower-case fragment)`` for every refusal text the classifiers match."""
    for failure_class, fragments in failures._DESCRIPTION_CLASSES:
        for fragment in fragments:
            yield failure_class, fragment
    for failure_class, _retryable, fragments in failures._IMAP_TEXT_CLASSES:
        for fragment in fragments:
            yield failure_class, fragment


@pytest.mark.parametrize(("failure_class", "fragment"), sorted(set(_known_texts())))
def test_every_recognised_text_is_quoted_in_its_section(failure_class, fragment):
    assert fragment in sections()[failure_class]
