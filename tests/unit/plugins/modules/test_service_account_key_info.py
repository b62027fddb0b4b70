"""service_account_key_info: main() end to end with files, content and P12."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json

import pytest

from ansible_collections.nupoint.gworkspace.plugins.modules import service_account_key_info as module
from tests.unit import keyfactory as kf


@pytest.fixture
def key_files(tmp_path):
    key = kf.rsa_key()
    json_path = tmp_path / "sa.json"
    json_path.write_text(kf.key_json(key))
    p12_path = tmp_path / "sa.p12"
    p12_path.write_bytes(kf.p12_bytes(key))
    return key, json_path, p12_path


def assert_no_key_material(key, result):
    rendered = json.dumps(result)
    for marker in kf.secret_markers(key):
        assert marker not in rendered


def test_path_and_p12_path(run_module, key_files):
    key, json_path, p12_path = key_files
    result = run_module(module, {"path": str(json_path), "p12_path": str(p12_path)})
    assert result["changed"] is False
    assert result["client_id"] == kf.CLIENT_ID
    assert result["p12_matches"] is True
    assert result["key_size"] == 2048
    assert_no_key_material(key, result)


def test_content_and_p12_content_are_masked_in_invocation(run_module, key_files):
    key, json_path, p12_path = key_files
    args = {"content": json_path.read_text(), "p12_content": base64.b64encode(p12_path.read_bytes()).decode()}
    result = run_module(module, args, check_mode=True)
    assert "failed" not in result
    assert result["invocation"]["module_args"]["content"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert result["invocation"]["module_args"]["p12_content"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert_no_key_material(key, result)


def test_missing_file_is_a_read_error(run_module, tmp_path):
    result = run_module(module, {"path": str(tmp_path / "nope.json")})
    assert result["failed"] is True
    assert result["reason"] == "read_error"
    assert "nope.json" in result["msg"]


def test_mismatching_p12_fails_with_reason(run_module, key_files, tmp_path):
    key, json_path = key_files[:2]
    other = tmp_path / "other.p12"
    other.write_bytes(kf.p12_bytes(kf.rsa_key(index=1), client_id=kf.OTHER_CLIENT_ID))
    result = run_module(module, {"path": str(json_path), "p12_path": str(other)})
    assert result["failed"] is True
    assert result["reason"] == "p12_mismatch"
    assert result["field"] == "p12"
    assert_no_key_material(key, result)


def test_invalid_key_content_does_not_echo_the_content(run_module):
    key = kf.rsa_key()
    broken = kf.key_json(key, type="authorized_user")
    result = run_module(module, {"content": broken})
    assert result["failed"] is True
    assert result["reason"] == "wrong_type"
    assert_no_key_material(key, result)


def test_path_and_content_are_mutually_exclusive(run_module, key_files):
    json_path = key_files[1]
    result = run_module(module, {"path": str(json_path), "content": "{}"})
    assert result["failed"] is True
    assert "mutually exclusive" in result["msg"]


def test_src_without_the_action_plugin_says_where_it_is_read(run_module, key_files):
    result = run_module(module, {"src": str(key_files[1])})
    assert result["failed"] is True
    assert (result["reason"], result["field"]) == ("read_error", "src")
    assert result["msg"].startswith("No key reached the module: src is read on the controller")


def test_p12_sources_are_mutually_exclusive(run_module, key_files):
    _key, json_path, p12_path = key_files
    p12 = base64.b64encode(p12_path.read_bytes()).decode()
    result = run_module(module, {"path": str(json_path), "p12_path": str(p12_path), "p12_content": p12})
    assert result["failed"] is True
    assert "mutually exclusive" in result["msg"]


def test_unreadable_p12_names_the_option(run_module, key_files, tmp_path):
    result = run_module(module, {"path": str(key_files[1]), "p12_path": str(tmp_path / "nope.p12")})
    assert (result["reason"], result["field"]) == ("read_error", "p12_path")
    assert "nope.p12" in result["msg"]
