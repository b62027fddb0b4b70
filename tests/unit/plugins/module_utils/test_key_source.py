"""module_utils.key_source: the key option names, their argument spec and the node-side reader."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils import key_source as ks
from ansible_collections.nupoint.gworkspace.plugins.module_utils.service_account import KeyValidationError
from tests.unit import keyfactory as kf


@pytest.mark.parametrize(
    ("p12", "node", "names"),
    [
        (False, True, ("src", "content", "path")),
        (True, True, ("src", "content", "path", "p12_src", "p12_content", "p12_path", "p12_password")),
        (True, False, ("src", "content", "p12_src", "p12_content", "p12_password")),
    ],
)
def test_option_names_spec_and_groups_agree(p12, node, names):
    assert ks.key_option_names(p12, node) == names
    spec = ks.key_source_argument_spec(p12=p12, node=node)
    assert tuple(spec) == names
    groups = ks.key_source_mutually_exclusive(p12=p12, node=node)
    assert groups[0] == [name for name in ("src", "content", "path") if name in names]
    assert groups[1:] == ([[name for name in ("p12_src", "p12_content", "p12_path") if name in names]] if p12 else [])


def test_secrets_are_no_log_and_files_are_paths():
    spec = ks.key_source_argument_spec(p12=True)
    assert {name for name, option in spec.items() if option.get("no_log")} == set(ks.SECRET_OPTIONS)
    assert {name for name, option in spec.items() if option["type"] == "path"} == {
        "src",
        "path",
        "p12_src",
        "p12_path",
    }
    assert spec["p12_password"]["default"] == "notasecret"
    assert spec["content"] == {"type": "str", "no_log": True}


def test_specs_are_fresh_dicts():
    first = ks.key_source_argument_spec()
    first["src"]["required"] = True
    assert "required" not in ks.key_source_argument_spec()["src"]


def test_read_key_text_from_content_or_path(tmp_path):
    text = kf.key_json()
    assert ks.read_key_text({"content": text, "path": None, "src": None}) == text
    key_file = tmp_path / "sa.json"
    key_file.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert ks.read_key_text({"content": None, "path": str(key_file)}) == text


@pytest.mark.parametrize(
    ("params", "reason", "field", "message"),
    [
        ({"src": "files/sa.json"}, "read_error", "src", "No key reached the module: src is read on the controller"),
        ({}, "read_error", "src", "No service-account key: set src"),
        ({"path": "/nonexistent/sa.json"}, "read_error", "path", "Cannot read the key file /nonexistent/sa.json"),
        ({"content": "{not json"}, "not_json", None, "not complete JSON"),
        ({"content": '{"type": "service_account"}'}, "missing_field", "project_id", "has no 'project_id' field"),
    ],
)
def test_read_key_text_refusals(params, reason, field, message):
    with pytest.raises(KeyValidationError) as excinfo:
        ks.read_key_text(params)
    assert (excinfo.value.reason, excinfo.value.field) == (reason, field)
    assert message in excinfo.value.msg
    assert ks.no_key_message(params) == (excinfo.value.msg if field == "src" else None)


def test_read_p12_from_content_or_path(tmp_path):
    p12 = kf.p12_bytes(kf.rsa_key())
    encoded = base64.b64encode(p12).decode()
    # Base64 wrapped over lines (as `base64` prints it) decodes the same.
    wrapped = "\n".join(encoded[index : index + 76] for index in range(0, len(encoded), 76))
    assert ks.read_p12({"p12_content": wrapped}) == p12
    p12_file = tmp_path / "sa.p12"
    p12_file.write_bytes(p12)
    assert ks.read_p12({"p12_content": None, "p12_path": str(p12_file)}) == p12
    assert ks.read_p12({"p12_content": None, "p12_path": None}) is None
    assert ks.read_p12({}) is None


@pytest.mark.parametrize(
    ("params", "reason", "field"),
    [
        ({"p12_content": "not base64!"}, "p12_invalid", "p12_content"),
        ({"p12_path": "/nonexistent/sa.p12"}, "read_error", "p12_path"),
    ],
)
def test_read_p12_refusals(params, reason, field):
    with pytest.raises(KeyValidationError) as excinfo:
        ks.read_p12(params)
    assert (excinfo.value.reason, excinfo.value.field) == (reason, field)
