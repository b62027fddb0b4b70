"""msl_oauth_credentials and msl_oauth_credentials_info: main() against an emulated MSL host (four-step pattern)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os

import pytest
from ansible.module_utils.common import warnings

from ansible_collections.nupoint.gworkspace.plugins.module_utils import service_account as sa
from ansible_collections.nupoint.gworkspace.plugins.modules import msl_oauth_credentials as module
from ansible_collections.nupoint.gworkspace.plugins.modules import msl_oauth_credentials_info as info_module
from tests.unit import keyfactory as kf
from tests.unit.esmith_host import EsmithHost


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """AnsibleModule keeps warnings in a module-level list; main() runs in-process here, so start each test clean."""
    monkeypatch.setattr(warnings, "_global_warnings", [])


@pytest.fixture
def host(tmp_path):
    return EsmithHost(tmp_path / "msl1")


def args_for(host, key, **extra):
    args = dict(host.module_args(), content=kf.key_json(key, private_key_id="%040x" % 7))
    args.update(extra)
    return args


def assert_clean(key, result):
    rendered = json.dumps(result)
    for marker in kf.secret_markers(key):
        assert marker not in rendered


def test_four_steps_check_real_check_real(run_module, host):
    key = kf.rsa_key()
    args = args_for(host, key)
    fingerprint = sa.public_key_fingerprint_sha256(key.public_key())

    first_check = run_module(module, args, check_mode=True, diff=True)
    assert first_check["changed"] is True
    assert first_check["changes"] == ["key_file", "record", "directory_mode"]
    assert first_check["diff"]["before"] == {"present": False}
    assert first_check["diff"]["after"]["fingerprint_sha256"] == fingerprint
    assert host.snapshot() == {"db": host.snapshot()["db"], "files": {}, "events": []}
    assert host.db("show", "nupoint-oauth") == ""

    real = run_module(module, args, diff=True)
    assert real["changed"] is True
    assert real["fingerprint_sha256"] == fingerprint
    assert real["client_id"] == kf.CLIENT_ID
    assert real["path"] == host.credential_dir + "/service-account.json"
    assert real["installed_at"]
    assert host.events() == ["nupoint-oauth-update"]

    second_check = run_module(module, args, check_mode=True, diff=True)
    assert second_check["changed"] is False
    assert second_check["diff"]["before"] == second_check["diff"]["after"]

    again = run_module(module, args)
    assert again["changed"] is False
    assert again["installed_at"] == real["installed_at"]
    assert host.events() == ["nupoint-oauth-update"]  # the event ran once
    for result in (first_check, real, second_check, again):
        assert_clean(key, result)
        assert result["invocation"]["module_args"]["content"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_rotation_with_backup_and_p12(run_module, host):
    old, new = kf.rsa_key(), kf.rsa_key(index=1)
    run_module(module, args_for(host, old, p12_content=base64.b64encode(kf.p12_bytes(old)).decode()))
    new_args = dict(host.module_args(), content=kf.key_json(new, private_key_id="%040x" % 8), backup=True)
    result = run_module(module, new_args, diff=True)
    assert result["changed"] is True
    assert result["changes"] == ["key_file", "p12_file", "record"]
    assert result["backup_file"].startswith(host.credential_dir + "/service-account.json.")
    assert result["p12_backup_file"].endswith("~")
    assert result["diff"]["before"]["private_key_id"] == "%040x" % 7
    assert result["diff"]["after"]["private_key_id"] == "%040x" % 8
    assert result["p12_path"] is None
    assert host.events() == ["nupoint-oauth-update", "nupoint-oauth-update"]
    assert_clean(new, result)
    assert_clean(old, result)


@pytest.mark.parametrize(
    ("option", "value", "shown"),
    [
        ("expected_client_id", "999999999", "client ID is %s, expected 999999999" % kf.CLIENT_ID),
        ("expected_client_email", "x@y.iam.gserviceaccount.com", "expected x@y.iam.gserviceaccount.com"),
        ("expected_fingerprint", "ab:cd", "expected ab:cd"),
    ],
)
def test_expected_mismatch_fails_and_changes_nothing(run_module, host, option, value, shown):
    key = kf.rsa_key()
    before = host.snapshot()
    result = run_module(module, args_for(host, key, **{option: value}))
    assert result["failed"] is True
    assert result["reason"] == "unexpected_key"
    assert shown in result["msg"]
    assert host.snapshot() == before


def test_expected_values_that_match_pass(run_module, host):
    key = kf.rsa_key()
    fingerprint = sa.public_key_fingerprint_sha256(key.public_key())
    result = run_module(
        module,
        args_for(
            host,
            key,
            expected_client_id=kf.CLIENT_ID,
            expected_client_email=kf.CLIENT_EMAIL,
            expected_fingerprint=fingerprint.replace(":", "").upper(),
        ),
    )
    assert result["changed"] is True


def test_without_content_explains_the_action_plugin(run_module, host):
    result = run_module(module, host.module_args())
    assert result["failed"] is True
    assert "action plugin" in result["msg"]


def test_bad_p12_content_fails(run_module, host):
    result = run_module(module, args_for(host, kf.rsa_key(), p12_content="%%% not base64"))
    assert result["failed"] is True
    assert result["reason"] == "p12_invalid"


def test_db_tool_missing_fails_cleanly(run_module, host):
    args = args_for(host, kf.rsa_key(), db_command=str(host.root / "nope" / "db"))
    result = run_module(module, args)
    assert result["failed"] is True
    assert "db_command" in result["msg"]


def test_absent_four_steps(run_module, host):
    key = kf.rsa_key()
    run_module(module, args_for(host, key))
    absent = dict(host.module_args(), state="absent")
    check = run_module(module, absent, check_mode=True, diff=True)
    assert check["changed"] is True
    assert check["diff"]["after"] == {"present": False}
    assert run_module(info_module, host.module_args())["present"] is True
    real = run_module(module, absent)
    assert real["changed"] is True
    assert run_module(module, absent, check_mode=True)["changed"] is False
    assert run_module(module, absent)["changed"] is False
    assert host.events() == ["nupoint-oauth-update", "nupoint-oauth-update"]


def test_info_reports_installed_key_and_problems(run_module, host):
    key = kf.rsa_key()
    empty = run_module(info_module, host.module_args())
    assert empty["present"] is False
    assert empty["changed"] is False
    run_module(module, args_for(host, key))
    info = run_module(info_module, host.module_args())
    assert info["present"] is True
    assert info["consistent"] is True
    assert info["fingerprint_sha256"] == sa.public_key_fingerprint_sha256(key.public_key())
    assert info["private_key_id"] == "%040x" % 7
    assert_clean(key, info)
    os.chmod(info["path"], 0o640)
    exposed = run_module(info_module, host.module_args())
    assert any("mode 0640" in warning for warning in exposed["warnings"])
    host.db("setprop", "nupoint-oauth", "ClientId", "42")
    broken = run_module(info_module, host.module_args())
    assert broken["consistent"] is False
    assert any("inconsistent" in warning for warning in broken["warnings"])
