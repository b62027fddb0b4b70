"""plugin_utils.key_source: controller-side key reading (vault-aware, binary P12), validation, invocation scrub.

Also what the key-reading action plugins make of a task's arguments (build_module_args).
"""

import base64
import json
import os
from unittest.mock import MagicMock

import pytest
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret

from ansible_collections.nupoint.gworkspace.plugins.action.delegation_check import ActionModule as DelegationAction
from ansible_collections.nupoint.gworkspace.plugins.action.imap_check import ActionModule as ImapCheckAction
from ansible_collections.nupoint.gworkspace.plugins.action.msl_oauth_credentials import (
    ActionModule as MslCredentialsAction,
)
from ansible_collections.nupoint.gworkspace.plugins.action.service_account_key_info import (
    ActionModule as KeyInfoAction,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.key_source import KEY_OPTIONS, key_option_names
from ansible_collections.nupoint.gworkspace.plugins.plugin_utils import key_source as ks
from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.google_api_action import GoogleApiActionBase
from tests.unit import keyfactory as kf

VAULT_PASSWORD = b"unit-vault-password"


class FakeAction:
    """What key_source uses of an action plugin: _find_needle, _loader and the class attributes of KeyActionBase."""

    MODULE_NAME = "nupoint.gworkspace.some_module"
    KEY_OPTION_NAMES = KEY_OPTIONS

    def __init__(self, loader, files_dir=None, key_option_names=None):
        self._loader = loader
        self.files_dir = files_dir
        if key_option_names is not None:
            self.KEY_OPTION_NAMES = key_option_names

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
    paths["other_p12"].write_bytes(kf.p12_bytes(other, client_id=kf.OTHER_CLIENT_ID))
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
    ("args", "field", "message"),
    [
        ({}, "src", "The key is required: set src (a file on the controller), content or path (a file on the node)."),
        ({"src": "a", "content": "b"}, "src", "Give the key as one of src, content or path, not src and content."),
        ({"content": "a", "path": "b"}, "content", "not content and path."),
        ({"src": "a", "p12_src": "b", "p12_path": "c"}, "p12_src", "not p12_src and p12_path."),
        ({"p12_content": "QUJD"}, "src", "p12_content needs the JSON key as well: set src (a file on the controller)"),
    ],
)
def test_option_errors(loader, args, field, message):
    with pytest.raises(ks.KeySourceError) as excinfo:
        ks.load_key(FakeAction(loader), args)
    assert excinfo.value.field == field
    assert excinfo.value.reason == "bad_field"
    assert message in excinfo.value.msg


def test_options_the_module_does_not_take_are_refused(loader):
    controller_only = FakeAction(loader, key_option_names=key_option_names(p12=True, node=False))
    with pytest.raises(ks.KeySourceError) as excinfo:
        ks.load_key(controller_only, {"path": "/on/the/node", "p12_path": "/on/the/node.p12"})
    assert excinfo.value.msg == (
        "nupoint.gworkspace.some_module takes the key as src or content; remove path, p12_path."
    )
    assert excinfo.value.field == "path"


def test_not_required_returns_none(loader):
    assert ks.load_key(FakeAction(loader), {"path": "/on/the/node"}, required=False) is None
    assert ks.load_key(FakeAction(loader), {}, required=False) is None
    with pytest.raises(ks.KeySourceError):
        ks.load_key(FakeAction(loader), {"p12_src": "x"}, required=False)
    with pytest.raises(ks.KeySourceError, match="checked together on the controller"):
        ks.load_key(FakeAction(loader), {"path": "/on/the/node", "p12_content": "QUJD"})


def test_module_args_carry_content_not_paths(loader, files):
    _key, paths = files
    task_args = {"src": paths["json"], "p12_src": paths["p12"], "p12_password": "notasecret", "backup": True}
    key = ks.load_key(FakeAction(loader), task_args)
    module_args = ks.module_args_with_key(task_args, key)
    # Validated here: the node has no use for the P12 password.
    assert set(module_args) == {"content", "p12_content", "backup"}
    assert base64.b64decode(module_args["p12_content"]) == key.p12


def test_read_key_reads_controller_files_and_leaves_node_files(loader, files):
    _key, paths = files
    action = FakeAction(loader)
    material = ks.read_key(action, {"src": paths["vault_json"], "p12_src": paths["vault_p12"]})
    with open(paths["json"]) as handle:
        assert material.content == handle.read()
    with open(paths["p12"], "rb") as handle:
        assert material.p12 == handle.read()
    assert "PRIVATE KEY" not in repr(material)
    on_node = ks.read_key(action, {"path": "/n/sa.json", "p12_path": "/n/sa.p12"})
    assert (on_node.content, on_node.p12, on_node.source) == (None, None, None)
    with pytest.raises(ks.KeySourceError) as excinfo:
        ks.read_key(action, {"content": "{}", "p12_content": "not base64!"})
    assert (excinfo.value.reason, excinfo.value.field) == ("p12_invalid", "p12_content")


def test_key_info_action_reads_src_and_lets_the_module_validate(loader, files):
    _key, paths = files
    action = FakeAction(loader, key_option_names=KeyInfoAction.KEY_OPTION_NAMES)
    task_args = {"src": paths["vault_json"], "p12_src": paths["vault_p12"], "p12_password": "pw"}
    module_args = KeyInfoAction.build_module_args(action, task_args)
    with open(paths["p12"], "rb") as handle:
        p12 = base64.b64encode(handle.read()).decode()
    with open(paths["json"]) as handle:
        assert module_args == {"content": handle.read(), "p12_content": p12, "p12_password": "pw"}
    mixed = {"content": {"type": "service_account"}, "p12_path": "/n/sa.p12"}
    assert KeyInfoAction.build_module_args(action, mixed) == {
        "content": '{"type": "service_account"}',
        "p12_path": "/n/sa.p12",
    }
    on_node = {"path": "/n/sa.json", "p12_path": "/n/sa.p12"}
    assert KeyInfoAction.build_module_args(action, on_node) == on_node


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
    KEY_OPTION_NAMES = GoogleApiActionBase.KEY_OPTION_NAMES
    signing_requests = DelegationAction.signing_requests


class FakeApiAction(FakeAction):
    MODULE_NAME = "nupoint.gworkspace.gmail_imap_settings"
    KEY_OPTION_NAMES = GoogleApiActionBase.KEY_OPTION_NAMES
    signing_requests = GoogleApiActionBase.signing_requests


def test_google_api_actions_refuse_p12_and_two_key_sources(loader, files):
    _key, paths = files
    action = FakeKeyAction(loader)
    with pytest.raises(ks.KeySourceError, match="remove p12_src") as excinfo:
        GoogleApiActionBase.build_module_args(action, {"src": paths["json"], "p12_src": paths["p12"]})
    assert excinfo.value.as_result() == {
        "failed": True,
        "msg": "nupoint.gworkspace.delegation_check takes the key as src, content or path; remove p12_src.",
        "reason": "bad_field",
        "field": "p12_src",
    }
    with pytest.raises(ks.KeySourceError, match="not src and path") as excinfo:
        GoogleApiActionBase.build_module_args(action, {"src": paths["json"], "path": "/on/the/node"})
    assert excinfo.value.field == "src"


def test_google_api_actions_hand_over_content_or_leave_path(loader, files):
    _key, paths = files
    action = FakeApiAction(loader)
    from_src = GoogleApiActionBase.build_module_args(action, {"src": paths["json"], "users": ["a@example.test"]})
    with open(paths["json"]) as handle:
        assert from_src == {"content": handle.read(), "users": ["a@example.test"]}
    on_node = {"path": "/var/lib/nupoint/oauth/service-account.json", "subjects": ["a@example.test"]}
    assert GoogleApiActionBase.build_module_args(FakeKeyAction(loader), on_node) == on_node


def test_signing_actions_hand_over_assertions_not_the_key(loader, files):
    key, paths = files
    action = FakeKeyAction(loader)
    task_args = {
        "src": paths["json"],
        "subjects": [" a@example.test", "B@example.test", ""],
        "scopes": ["https://mail.google.com/", "https://www.googleapis.com/auth/gmail.settings.basic"],
        "token_uri": "https://127.0.0.1:1/token",
    }
    module_args = GoogleApiActionBase.build_module_args(action, task_args)
    assert "content" not in module_args and "src" not in module_args
    presigned = json.loads(module_args["presigned"])
    assert presigned["identity"]["token_uri"] == "https://127.0.0.1:1/token"
    assert sorted(presigned["assertions"]) == [
        "a@example.test https://mail.google.com/",
        "a@example.test https://www.googleapis.com/auth/gmail.settings.basic",
        "b@example.test https://mail.google.com/",
        "b@example.test https://www.googleapis.com/auth/gmail.settings.basic",
    ]
    dumped = json.dumps(module_args)
    assert not [marker for marker in kf.secret_markers(key) if marker in dumped]


def test_msl_credentials_action_refuses_an_unexpected_key_before_msl(loader, files):
    _key, paths = files
    with pytest.raises(ks.KeySourceError) as excinfo:
        MslCredentialsAction.build_module_args(
            FakeAction(loader, key_option_names=MslCredentialsAction.KEY_OPTION_NAMES),
            {"src": paths["json"], "expected_client_id": "1234567"},
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


# --------------------------------------------------------------------------- KeyActionBase.run and async


class RecordingAction(ks.KeyActionBase):
    """A KeyActionBase whose node side is a recorder: what _execute_module got, which tmp dir was removed."""

    MODULE_NAME = "nupoint.gworkspace.imap_check"
    KEY_OPTION_NAMES = GoogleApiActionBase.KEY_OPTION_NAMES

    def build_module_args(self, task_args):
        return GoogleApiActionBase.build_module_args(self, task_args)

    signing_requests = ImapCheckAction.signing_requests

    def _execute_module(self, **kwargs):
        self.executed = kwargs
        module_args = dict(kwargs["module_args"], content="VALUE_SPECIFIED_IN_NO_LOG_PARAMETER")
        return {"changed": False, "invocation": {"module_args": module_args}}

    def _remove_tmp_path(self, tmp_path, force=False):
        self.removed.append(tmp_path)


def recording_action(loader, args, async_val=0, native_async=False):
    task = MagicMock(args=args, async_val=async_val, check_mode=False, action="nupoint.gworkspace.imap_check")
    connection = MagicMock(has_native_async=native_async)
    connection._shell.tmpdir = "/remote/tmp/ansible-tmp-1"
    action = RecordingAction(task, connection, MagicMock(), loader, MagicMock(), MagicMock())
    action.removed = []
    return action


def test_every_key_reading_action_plugin_supports_async():
    for action_class in (KeyInfoAction, MslCredentialsAction, GoogleApiActionBase, ks.KeyActionBase):
        assert action_class._supports_async is True, action_class


@pytest.mark.parametrize(
    ("async_val", "native_async", "wrap_async"),
    [(0, False, False), (600, False, True), (600, True, False)],
)
def test_run_wraps_async_like_the_normal_action(loader, files, async_val, native_async, wrap_async):
    _key, paths = files
    action = recording_action(loader, {"src": paths["json"], "users": ["a@example.test"]}, async_val, native_async)
    result = action.run(task_vars={})
    assert action.executed["wrap_async"] is wrap_async
    assert action.executed["module_name"] == "nupoint.gworkspace.imap_check"
    assert list(json.loads(action.executed["module_args"]["presigned"])["assertions"]) == [
        "a@example.test https://mail.google.com/"
    ]
    assert "content" not in action.executed["module_args"]
    # The async wrapper removes its own tmp dir when the job ends; otherwise the action does, as `normal` does.
    assert action.removed == ([] if wrap_async else ["/remote/tmp/ansible-tmp-1"])
    assert result["invocation"]["module_args"] == {"src": paths["json"], "users": ["a@example.test"]}


def test_run_with_a_bad_key_source_fails_before_the_node_even_with_async(loader):
    action = recording_action(loader, {"src": "a.json", "content": "{}"}, async_val=600)
    result = action.run(task_vars={})
    assert result["failed"] is True
    assert result["field"] == "src"
    assert not hasattr(action, "executed")
