"""A run cut off between writing the record and signalling the apply event: the next run signals it.

Found by tests/integration/test_faults.py (SSH dropped while signal-event ran): the key and the record were the
new ones, so a rerun saw nothing to change and never signalled ``nupoint-oauth-update``; NuPoint kept the old key.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils import msl
from tests.unit import keyfactory as kf
from tests.unit.esmith_host import EsmithHost


@pytest.fixture
def host(tmp_path):
    return EsmithHost(tmp_path / "msl1")


def params(host, content, state="present"):
    return {
        "content": content.decode(),
        "p12_content": None,
        "state": state,
        "expected_client_id": None,
        "expected_client_email": None,
        "expected_fingerprint": None,
        "backup": False,
        "credential_event": "nupoint-oauth-update",
        "signal_event_command": host.signal_event_command,
    }


def run(host, content, check_mode=False, state="present"):
    store = msl.CredentialStore(msl.ConfigDb(host.run_command, host.db_command), host.credential_dir)
    action = msl.install_credentials if state == "present" else msl.remove_credentials
    return store, action(store, params(host, content, state), host.run_command, check_mode, False)


class Cut(Exception):
    """The SSH session dropped."""


def test_a_run_cut_before_the_event_is_finished_by_the_next_run(host, monkeypatch):
    content = kf.key_json(kf.rsa_key(index=0), private_key_id="%040x" % 1).encode()

    def dropped(*_args, **_kwargs):
        raise Cut()

    monkeypatch.setattr(msl, "signal_event", dropped)
    with pytest.raises(Cut):
        run(host, content)
    monkeypatch.undo()
    store = msl.CredentialStore(msl.ConfigDb(host.run_command, host.db_command), host.credential_dir)
    state = store.inspect()
    assert state["fingerprint_sha256"] == msl.credential_key_metadata(content)["fingerprint_sha256"]  # the new key...
    assert host.events() == []  # ...but NuPoint was never told, and the info module says so
    assert store.apply_pending() is True
    assert state["apply_pending"] is True and state["consistent"] is False
    assert any("signalled the apply event" in problem for problem in state["problems"])

    _store, checked = run(host, content, check_mode=True)
    assert (checked["changed"], checked["changes"]) == (True, ["apply_event"])
    assert host.events() == [] and store.apply_pending() is True

    _store, repaired = run(host, content)
    assert (repaired["changed"], repaired["changes"]) == (True, ["apply_event"])
    assert host.events() == ["nupoint-oauth-update"]
    assert store.apply_pending() is False

    assert store.inspect()["consistent"] is True and store.inspect()["apply_pending"] is False
    _store, again = run(host, content)
    assert (again["changed"], again["changes"]) == (False, [])
    assert host.events() == ["nupoint-oauth-update"]


def test_a_complete_run_leaves_no_marker(host):
    content = kf.key_json(kf.rsa_key(index=0), private_key_id="%040x" % 1).encode()
    store, result = run(host, content)
    assert result["changed"] is True and "apply_event" not in result["changes"]
    assert host.events() == ["nupoint-oauth-update"]
    assert not os.path.lexists(store.apply_pending_path)
    # Beside the credential directory, with the lock: nothing new inside it.
    assert os.path.dirname(store.apply_pending_path) == os.path.dirname(store.lock_path)
    assert sorted(os.listdir(host.credential_dir)) == ["service-account.json"]
    store, removed = run(host, content, state="absent")
    assert removed["changed"] is True and not store.apply_pending()
