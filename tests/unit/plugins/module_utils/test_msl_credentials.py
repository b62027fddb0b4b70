"""The MSL credential store (module_utils.msl, stdlib only): atomic writes, permissions, idempotence."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils import files, msl
from ansible_collections.nupoint.gworkspace.plugins.module_utils import service_account as sa
from ansible_collections.nupoint.gworkspace.plugins.module_utils.key_format import credential_key_metadata
from tests.unit import keyfactory as kf
from tests.unit.esmith_host import EsmithHost


@pytest.fixture
def host(tmp_path):
    return EsmithHost(tmp_path / "msl1")


@pytest.fixture
def store(host):
    db = msl.ConfigDb(host.run_command, host.db_command)
    return msl.CredentialStore(db, host.credential_dir)


def key_bytes(index=0):
    key = kf.rsa_key(index=index)
    return key, kf.key_json(key, private_key_id="%040x" % (index + 1)).encode()


def install(store, content, p12=None, backup=False):
    meta = credential_key_metadata(content)
    plan = store.plan_install(content, p12, meta)
    if plan["changes"]:
        store.install(content, p12, meta, plan, backup=backup)
        store.set_apply_pending(False)  # what install_credentials does once it has signalled the apply event
    return plan


# --------------------------------------------------------------------------- install / idempotence


def test_first_install_writes_files_record_and_modes(host, store):
    key, content = key_bytes()
    plan = install(store, content, p12=b"\x30p12")
    assert plan["changes"] == ["key_file", "p12_file", "record", "directory_mode"]
    assert plan["before"] == {"present": False}
    with open(store.json_path, "rb") as handle:
        assert handle.read() == content
    assert stat.S_IMODE(os.stat(host.credential_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.json_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.p12_path).st_mode) == 0o600
    record = store.db.get("nupoint-oauth")
    assert record.type == "service"
    assert record.props["ClientId"] == kf.CLIENT_ID
    assert record.props["ClientEmail"] == kf.CLIENT_EMAIL
    assert record.props["Fingerprint"] == sa.public_key_fingerprint_sha256(key.public_key())
    assert record.props["KeyFile"] == store.json_path
    assert record.props["P12File"] == store.p12_path
    assert record.props["InstalledAt"].endswith("Z")
    state = store.inspect()
    assert state["present"] is True
    assert state["consistent"] is True, state["problems"]
    assert not any(name.endswith(".tmp") for name in os.listdir(host.credential_dir))


def test_same_key_again_changes_nothing(host, store):
    _key, content = key_bytes()
    install(store, content)
    before = host.snapshot()
    plan = install(store, content)
    assert plan["changes"] == []
    assert plan["key_changed"] is False
    assert host.snapshot() == before


def test_wrong_modes_are_reported_and_fixed_without_rewriting(host, store):
    _key, content = key_bytes()
    install(store, content)
    installed_at = store.db.getprop("nupoint-oauth", "InstalledAt")
    os.chmod(store.json_path, 0o644)
    os.chmod(host.credential_dir, 0o755)  # noqa: S103 - the fault under test
    assert any("mode 0644" in problem for problem in store.inspect()["permission_problems"])
    plan = install(store, content)
    assert plan["changes"] == ["directory_mode", "file_mode"]
    assert plan["key_changed"] is False
    assert stat.S_IMODE(os.stat(store.json_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(host.credential_dir).st_mode) == 0o700
    assert store.db.getprop("nupoint-oauth", "InstalledAt") == installed_at


def test_rotation_replaces_key_and_drops_stale_p12_with_backups(host, store):
    _old, old_content = key_bytes(0)
    install(store, old_content, p12=b"\x30old-p12")
    _new, new_content = key_bytes(1)
    meta = credential_key_metadata(new_content)
    plan = store.plan_install(new_content, None, meta)
    assert plan["changes"] == ["key_file", "p12_file", "record"]
    assert plan["before"]["private_key_id"] == "%040x" % 1
    assert plan["after"]["private_key_id"] == "%040x" % 2
    outcome = store.install(new_content, None, meta, plan, backup=True)
    store.set_apply_pending(False)  # install_credentials clears it once the apply event is signalled
    with open(outcome["backup_file"], "rb") as handle:
        assert handle.read() == old_content
    with open(outcome["p12_backup_file"], "rb") as handle:
        assert handle.read() == b"\x30old-p12"
    assert stat.S_IMODE(os.stat(outcome["backup_file"]).st_mode) == 0o600
    assert not os.path.exists(store.p12_path)
    state = store.inspect()
    assert state["private_key_id"] == "%040x" % 2
    assert state["p12_path"] is None
    assert state["consistent"] is True, state["problems"]


def test_failure_between_temp_write_and_rename_keeps_old_key(host, store, monkeypatch):
    _old, old_content = key_bytes(0)
    install(store, old_content, p12=b"\x30old-p12")
    before = host.snapshot()
    _new, new_content = key_bytes(1)
    meta = credential_key_metadata(new_content)
    plan = store.plan_install(new_content, b"\x30new-p12", meta)

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(msl, "replace", failing_replace)
    with pytest.raises(OSError):
        store.install(new_content, b"\x30new-p12", meta, plan)
    assert host.snapshot() == before  # old files, old record, no temp files, no event
    assert store.inspect()["consistent"] is True


def test_failure_while_staging_second_file_keeps_old_key(host, store, monkeypatch):
    _old, old_content = key_bytes(0)
    install(store, old_content, p12=b"\x30old-p12")
    before = host.snapshot()
    _new, new_content = key_bytes(1)
    meta = credential_key_metadata(new_content)
    plan = store.plan_install(new_content, b"\x30new-p12", meta)
    real_stage = msl.stage_file

    def stage_then_fail(directory, name, data, mode=0o600):
        if name == msl.CREDENTIAL_P12_NAME:
            raise OSError(5, "Input/output error")
        return real_stage(directory, name, data, mode)

    monkeypatch.setattr(msl, "stage_file", stage_then_fail)
    with pytest.raises(OSError):
        store.install(new_content, b"\x30new-p12", meta, plan)
    assert host.snapshot() == before


def test_atomic_write_failure_leaves_target_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "file"
    target.write_bytes(b"old")

    def failing_replace(src, dst):
        raise OSError(1, "nope")

    monkeypatch.setattr(files, "replace", failing_replace)
    with pytest.raises(OSError):
        msl.atomic_write(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file"]


def test_atomic_write_sets_mode_even_with_permissive_umask(tmp_path):
    old_umask = os.umask(0)
    try:
        msl.atomic_write(str(tmp_path / "key"), b"secret")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(tmp_path / "key").st_mode) == 0o600


# --------------------------------------------------------------------------- inspect / remove


def test_inspect_empty_host(store):
    state = store.inspect()
    assert state["present"] is False
    assert state["consistent"] is True
    assert state["record"] is None
    assert state["permission_problems"] == []


def test_inspect_finds_disagreements(host, store):
    _key, content = key_bytes(0)
    install(store, content)
    store.db.setprop("nupoint-oauth", {"Fingerprint": "00:11:22"})
    problems = store.inspect()["problems"]
    assert any("Fingerprint" in problem for problem in problems)
    _other, other_content = key_bytes(1)
    with open(store.json_path, "wb") as handle:
        handle.write(other_content)
    state = store.inspect()
    assert state["consistent"] is False
    assert any("PrivateKeyId" in problem for problem in state["problems"])


def test_inspect_record_without_files(store):
    _key, content = key_bytes()
    install(store, content)
    os.unlink(store.json_path)
    state = store.inspect()
    assert state["present"] is True
    assert state["consistent"] is False
    assert "is missing" in state["problems"][0]


def test_inspect_damaged_key_file(store):
    _key, content = key_bytes()
    install(store, content)
    with open(store.json_path, "w") as handle:
        handle.write(content.decode()[:300])
    state = store.inspect()
    assert state["consistent"] is False
    assert "no usable key" in state["problems"][0]


def test_remove_with_backup_then_nothing_left(host, store):
    _key, content = key_bytes()
    install(store, content, p12=b"\x30p12")
    plan = store.plan_remove()
    assert plan["changes"] == ["key_file", "p12_file", "record"]
    outcome = store.remove(backup=True)
    assert os.path.exists(outcome["backup_file"])
    assert os.path.exists(outcome["p12_backup_file"])
    assert not os.path.exists(store.json_path)
    assert store.db.get("nupoint-oauth") is None
    assert store.plan_remove()["changes"] == []
    assert store.inspect()["present"] is False


def test_no_key_material_in_views(store):
    key, content = key_bytes()
    plan = install(store, content)
    rendered = json.dumps([plan, store.inspect()])
    for marker in kf.secret_markers(key):
        assert marker not in rendered


def test_custom_file_names(host):
    db = msl.ConfigDb(host.run_command, host.db_command)
    store = msl.CredentialStore(db, host.credential_dir, key_file="nupoint.json", p12_file="nupoint.p12")
    _key, content = key_bytes()
    install(store, content, p12=b"\x30p12")
    assert sorted(os.listdir(host.credential_dir)) == ["nupoint.json", "nupoint.p12"]
    assert store.db.getprop("nupoint-oauth", "KeyFile") == os.path.join(host.credential_dir, "nupoint.json")
    assert store.inspect()["consistent"] is True


@pytest.mark.parametrize(
    ("key_file", "p12_file"), [("../x.json", "a.p12"), ("a/b.json", "a.p12"), ("", "a.p12"), ("same", "same")]
)
def test_file_names_must_be_plain_and_distinct(host, key_file, p12_file):
    db = msl.ConfigDb(host.run_command, host.db_command)
    with pytest.raises(msl.CredentialInputError) as caught:
        msl.CredentialStore(db, host.credential_dir, key_file=key_file, p12_file=p12_file)
    assert caught.value.reason == "invalid_option"
    assert caught.value.field in ("credential_key_file", "credential_p12_file")


def test_a_writable_credential_dir_is_refused_before_the_lock_file_is_made(host, tmp_path):
    """A directory others may write to may hold their files already: refused, not chmod'ed and used."""
    os.makedirs(host.credential_dir)
    os.chmod(host.credential_dir, 0o777)  # noqa: S103 - the unsafe directory this test is about
    parent = os.path.dirname(host.credential_dir)
    before = sorted(os.listdir(parent))
    store = msl.CredentialStore(msl.ConfigDb(host.run_command, host.db_command), host.credential_dir)
    params = {"content": key_bytes()[1].decode(), "p12_content": None}
    with pytest.raises(msl.CredentialInputError) as caught:
        msl.install_credentials(store, params, host.run_command, check_mode=False, diff=False)
    assert caught.value.reason == "unsafe_path"
    assert "may be written by other users (mode 0777)" in caught.value.msg
    assert sorted(os.listdir(parent)) == before
    assert os.listdir(host.credential_dir) == []
    assert stat.S_IMODE(os.stat(host.credential_dir).st_mode) == 0o777


# --------------------------------------------------------------------------- where the key may go


@pytest.mark.parametrize("kind", ["symlink", "file", "writable_parent"])
def test_unsafe_credential_dir_is_refused_before_anything_changes(host, kind, tmp_path):
    directory = host.credential_dir
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if kind == "symlink":
        os.symlink(str(elsewhere), directory)
    elif kind == "file":
        with open(directory, "w") as handle:
            handle.write("not a directory")
    else:
        os.chmod(parent, 0o777)  # noqa: S103 - the unsafe parent this test is about
    before = sorted(os.listdir(parent)), sorted(os.listdir(str(elsewhere)))
    db = msl.ConfigDb(host.run_command, host.db_command)
    store = msl.CredentialStore(db, directory)
    content = key_bytes()[1]
    with pytest.raises(msl.CredentialInputError) as caught:
        install(store, content)
    assert caught.value.reason == "unsafe_path"
    assert {"symlink": "symbolic link", "file": "not a directory", "writable_parent": "written by other users"}[
        kind
    ] in caught.value.msg
    assert (sorted(os.listdir(parent)), sorted(os.listdir(str(elsewhere)))) == before
    assert db.get("nupoint-oauth") is None


def test_install_takes_turns_under_the_store_lock(store):
    # The same process cannot take it twice through another descriptor: a second run would wait.
    with (
        store.locked(),
        pytest.raises(files.LockTimeout),
        files.exclusive_lock(store.lock_path, timeout=0.3, poll=0.05),
    ):
        pass
    assert os.path.dirname(store.lock_path) == os.path.dirname(os.path.normpath(store.directory))
