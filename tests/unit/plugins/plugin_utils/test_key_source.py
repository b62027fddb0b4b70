"""plugin_utils.key_source: controller-side key reading (vault-aware, binary P12), validation, invocation scrub.

Also what the key-reading action plugins make of a task's arguments (build_module_args).
"""

import base64
import json
import os

import pytest
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret

from ansible_collections.nupoint.gworkspace.plugins.action.msl_oauth_credentials import (
    ActionModule as MslCredentialsAction,
)
from ansible_collections.nupoint.gworkspace.plugins.plugin_utils import key_source as ks
from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.google_api_action import GoogleApiActionBase
from tests.unit import keyfactory as kf

VAULT_PASSWORD = b"unit-vault-password"


class FakeAction:
    """The two things key_source uses from ActionBase: _find_needle and _loader."""

    def __init__(self, loader, files_dir=None):
        self._loader = loader
        self.files_dir = files_dir

    def _find_needle(self, dirname, needle):
        for candidate in (os.path.join(self.files_dir or "", needle), needle):
            if os.path.exists(candidate):
                return candidate
        raise AnsibleError("Could not find or access '%s'" % needle)


@pytest.fixture
def loader():
    loader = DataLoader()
    loader.set_vault_secrets([("default", VaultSecret(VAULT_PASSWORD))])
    return loader


@pytest.fixture
def files(tmp_path):
    key, other = kf.rsa_key(), kf.rsa_key(index=1)
    vault = VaultLib([("default", VaultSecret(VAULT_PASSWORD))])
    paths = {
        "json": tmp_path / "sa.json",
        "vault_json": tmp_path / "sa.json.vault",
        "p12": tmp_path / "sa.p12",
        "vault_p12": tmp_path / "sa.p12.vault",
        "other_p12": tmp_path / "other.p12",
    }
    key_json = kf.key_json(key)
    paths["json"].write_text(key_json)
    paths["vault_json"].write_bytes(vault.encrypt(key_json.encode()))
    p12 = kf.p12_bytes(key)
    paths["p12"].write_bytes(p12)
    paths["vault_p12"].write_bytes(vault.encrypt(p12))
    paths["other_p12"].write_bytes(kf.p12_bytes(other))
    return key, {name: str(path) for name, path in paths.items()}


def test_plain_and_vaulted_files_give_the_same_key(loader, files):
    _key, paths = files
    action = FakeAction(loader)
    plain = ks.load_key(action, {"src": paths["json"], "p12_src": paths["p12"]})
    vaulted = ks.load_key(action, {"src": paths["vault_json"], "p12_src": paths["vault_p12"]})
    assert plain.content == vaulted.content
    assert plain.p12 == vaulted.p12
    assert vaulted.key.p12_matches is True
    assert vaulted.metadata["client_id"] == kf.CLIENT_ID
    assert vaulted.source == paths["vault_json"]
    assert "PRIVATE KEY" not in repr(vaulted)


def test_files_dir_is_searched_first(loader, files, tmp_path):
    _key, _paths = files
    action = FakeAction(loader, files_dir=str(tmp_path))
    assert ks.load_key(action, {"src": "sa.json"}).metadata["client_email"] == kf.CLIENT_EMAIL


def test_vaulted_file_without_password_is_a_read_error(files):
    _key, paths = files
    with pytest.raises(ks.KeySourceError) as excinfo:
        ks.load_key(FakeAction(DataLoader()), {"src": paths["vault_json"]})
    assert excinfo.value.reason == "read_error"
    assert excinfo.value.field == "src"


def test_missing_file(loader, tmp_path):
    with pytest.raises(ks.KeySourceError) as excinfo:
        ks.load_key(FakeAction(loader), {"src": str(tmp_path / "nope.json")})
    assert excinfo.value.reason == "read_error"
    assert "nope.json" in excinfo.value.msg


def test_p12_of_another_key_is_refused(loader, files):
    _key, paths = files
    with pytest.raises(ks.KeySourceError) as excinfo:
        ks.load_key(FakeAction(loader), {"src": paths["json"], "p12_src": paths["other_p12"]})
    assert excinfo.value.reason == "p12_mismatch"
    assert excinfo.value.as_result()["failed"] is True


def test_content_as_templated_dict_and_as_text(loader, files):
    key, _paths = files
    data = kf.key_dict(key)
    from_dict = ks.load_key(FakeAction(loader), {"content": data})
    assert json.loads(from_dict.content) == data
    from_text = ks.load_key(FakeAction(loader), {"content": kf.key_json(key)})
    assert from_text.source == "content"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({}, "src"),
        ({"src": "a", "content": "b"}, "src"),
        ({"src": "a", "p12_src": "b", "p12_content": "c"}, "p12_src"),
    ],
)
def test_option_errors(loader, args, field):
    with pytest.raises(ks.KeySourceError) as excinfo:
        ks.load_key(FakeAction(loader), args)
    assert excinfo.value.field == field


def test_not_required_returns_none(loader):
    assert ks.load_key(FakeAction(loader), {"path": "/on/the/node"}, required=False) is None
    with pytest.raises(ks.KeySourceError):
        ks.load_key(FakeAction(loader), {"p12_src": "x"}, required=False)


def test_module_args_carry_content_not_paths(loader, files):
    _key, paths = files
    task_args = {"src": paths["json"], "p12_src": paths["p12"], "p12_password": "notasecret", "backup": True}
    key = ks.load_key(FakeAction(loader), task_args)
    module_args = ks.module_args_with_key(task_args, key)
    assert set(module_args) == {"content", "p12_content", "backup"}
    assert base64.b64decode(module_args["p12_content"]) == key.p12


def test_scrub_invocation_restores_task_key_options():
    result = {
        "invocation": {
            "module_args": {
                "content": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER",
                "p12_content": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER",
                "backup": False,
                "state": "present",
            }
        }
    }
    ks.scrub_invocation(result, {"src": "files/sa.json", "p12_content": "QUJD", "state": "present"})
    assert result["invocation"]["module_args"] == {
        "backup": False,
        "state": "present",
        "src": "files/sa.json",
        "p12_content": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER",
    }
    untouched = {"msg": "no invocation"}
    ks.scrub_invocation(untouched, {"src": "x"})
    assert untouched == {"msg": "no invocation"}


class FakeKeyAction(FakeAction):
    MODULE_NAME = "nupoint.gworkspace.delegation_check"


def test_google_api_actions_refuse_p12_and_two_key_sources(loader, files):
    _key, paths = files
    action = FakeKeyAction(loader)
    with pytest.raises(ks.KeySourceError, match="JSON key only; remove p12_src") as excinfo:
        GoogleApiActionBase.build_module_args(action, {"src": paths["json"], "p12_src": paths["p12"]})
    assert excinfo.value.as_result() == {
        "failed": True,
        "msg": "nupoint.gworkspace.delegation_check: Google APIs are called with the JSON key only; remove p12_src.",
        "reason": "bad_field",
        "field": "p12_src",
    }
    with pytest.raises(ks.KeySourceError, match="not src and path") as excinfo:
        GoogleApiActionBase.build_module_args(action, {"src": paths["json"], "path": "/on/the/node"})
    assert excinfo.value.field == "path"


def test_google_api_actions_hand_over_content_or_leave_path(loader, files):
    _key, paths = files
    action = FakeKeyAction(loader)
    from_src = GoogleApiActionBase.build_module_args(action, {"src": paths["json"], "subjects": ["a@example.test"]})
    with open(paths["json"]) as handle:
        assert from_src == {"content": handle.read(), "subjects": ["a@example.test"]}
    on_node = {"path": "/var/lib/nupoint/oauth/service-account.json", "subjects": ["a@example.test"]}
    assert GoogleApiActionBase.build_module_args(action, on_node) == on_node


def test_msl_credentials_action_refuses_an_unexpected_key_before_msl(loader, files):
    _key, paths = files
    with pytest.raises(ks.KeySourceError) as excinfo:
        MslCredentialsAction.build_module_args(
            FakeAction(loader), {"src": paths["json"], "expected_client_id": "1234567"}
        )
    result = excinfo.value.as_result()
    assert result["reason"] == "unexpected_key"
    assert "expected 1234567" in result["msg"]
    assert "Nothing was changed on MSL" in result["msg"]
    assert result["client_id"] == kf.CLIENT_ID
    assert "field" not in result
    absent = MslCredentialsAction.build_module_args(FakeAction(loader), {"state": "absent", "backup": True})
    assert absent == {"state": "absent", "backup": True}
    assert "PRIVATE KEY" not in json.dumps(result)
