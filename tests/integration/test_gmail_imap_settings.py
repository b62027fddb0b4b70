"""gmail_imap_settings through ansible-playbook against the lab's emulated Gmail API.

The connection options come once per play through ``module_defaults`` for the action group, the way
users are told to set them.
"""

import json
from typing import Any

import pytest

from tests.integration.playbook import run_playbook

pytestmark = [pytest.mark.lab]

SCOPE = "https://www.googleapis.com/auth/gmail.settings.basic"
MODULE = "nupoint.gworkspace.gmail_imap_settings"


def play(lab: Any, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": "gmail imap settings",
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {
                "group/nupoint.gworkspace.gworkspace": {
                    "token_uri": lab.token_uri,
                    "ca_path": lab.ca_path,
                    "api_base_url": lab.google_base_url,
                }
            },
            "tasks": tasks,
        }
    ]


def task(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, MODULE: args, "register": "out"}


@pytest.fixture
def gmail_lab(lab_reset):
    lab_reset.google.authorize_scopes(lab_reset.client_id, [SCOPE])
    return lab_reset


def disabled_users(lab: Any) -> list[str]:
    return list(lab.google.state()["imap"]["disabled_users"])


def test_enable_disabled_users_four_steps(gmail_lab):
    lab = gmail_lab
    users = lab.users[:5]
    for user in users[:3]:
        lab.google.set_user_imap(user, False)
    plays = play(lab, [task("enable", src=lab.key_file, users=users)])

    check = run_playbook(plays, check=True, diff=True)
    assert check.rc == 0, check.stdout + check.stderr
    result = check.result("enable")
    assert result["changed"] is True
    assert result["summary"]["changed"] == 3 and result["summary"]["unchanged"] == 2
    assert sorted(disabled_users(lab)) == sorted(users[:3])  # check mode wrote nothing
    assert "enabled: false" in check.stdout or '"enabled": false' in check.stdout  # the diff is shown

    real = run_playbook(plays)
    assert real.rc == 0, real.stdout + real.stderr
    result = real.result("enable")
    assert result["changed"] is True
    assert [entry["user"] for entry in result["results"] if entry["changed"]] == users[:3]
    assert all(entry["after"]["enabled"] for entry in result["results"])
    assert disabled_users(lab) == []

    for check_mode in (True, False):
        again = run_playbook(plays, check=check_mode)
        assert again.rc == 0, again.stdout + again.stderr
        assert again.result("enable")["changed"] is False
        assert again.result("enable")["summary"]["unchanged"] == 5


def test_other_fields_are_preserved(gmail_lab):
    lab = gmail_lab
    user = lab.users[0]
    run = run_playbook(
        play(
            lab,
            [
                task(
                    "prepare",
                    src=lab.key_file,
                    users=[user],
                    enabled=False,
                    max_folder_size=1000,
                    expunge_behavior="trash",
                ),
                task("enable only", src=lab.key_file, users=[user]),
                task("auto expunge only", src=lab.key_file, users=[user], auto_expunge=False),
            ],
        )
    )
    assert run.rc == 0, run.stdout + run.stderr
    prepared = run.result("prepare")["results"][0]
    assert prepared["after"] == {
        "enabled": False,
        "auto_expunge": True,
        "expunge_behavior": "trash",
        "max_folder_size": 1000,
    }
    enabled = run.result("enable only")["results"][0]
    assert enabled["changed_settings"] == ["enabled"]
    assert enabled["after"] == dict(prepared["after"], enabled=True)
    final = run.result("auto expunge only")["results"][0]
    assert final["after"] == {
        "enabled": True,
        "auto_expunge": False,
        "expunge_behavior": "trash",
        "max_folder_size": 1000,
    }


@pytest.fixture
def many_users(gmail_lab):
    """300 users for one test, back to the lab's own count afterwards."""
    lab = gmail_lab
    original = lab.users_count
    users = lab.set_users(300)
    try:
        yield lab, users
    finally:
        lab.set_users(original)


def test_many_users_from_a_file_in_one_task(many_users, tmp_path):
    lab, users = many_users
    for user in users[::3]:
        lab.google.set_user_imap(user, False)
    users_csv = tmp_path / "um-users.csv"
    users_csv.write_text(
        "email,extension\n"
        + "".join("%s,%d\n" % (user, 2000 + index) for index, user in enumerate(users))
        + users[0].upper()
        + ",9999\nnot-an-address,1\n"
    )
    run = run_playbook(
        play(lab, [task("all users", src=lab.key_file, users_file=str(users_csv), concurrency=16, duplicates="warn")])
    )
    assert run.rc == 0, run.stdout + run.stderr
    result = run.result("all users")
    summary = result["summary"]
    assert summary["total"] == 300
    assert summary["changed"] == 100
    assert summary["failed"] == 0
    assert [entry["user"] for entry in result["results"]] == users
    assert any("not e-mail addresses" in warning for warning in result["warnings"])
    assert any("duplicate" in warning for warning in result["warnings"])
    assert disabled_users(lab) == []
    stats = lab.google.stats()["endpoints"]
    assert stats["token"]["total"] == 300  # one token per user, reused for GET and PUT
    assert stats["gmail.settings.updateImap"]["total"] == 100


def test_unknown_user_fails_the_task_but_others_are_enabled(gmail_lab):
    lab = gmail_lab
    users = lab.users[:3]
    lab.google.set_user_imap(users[1], False)
    ghost = "ghost@" + lab.domain
    run = run_playbook(play(lab, [task("enable", src=lab.key_file, users=[*users, ghost])]))
    assert run.rc != 0
    result = run.result("enable")
    assert result["failed"] is True
    assert result["failed_users"] == [
        {"user": ghost, "failure_class": "token_invalid_user", "message": result["failed_users"][0]["message"]}
    ]
    assert "Google does not know this user" in result["failed_users"][0]["message"]
    assert result["summary"]["changed"] == 1
    assert disabled_users(lab) == []
    tolerated = run_playbook(play(lab, [task("enable", src=lab.key_file, users=[*users, ghost], fail_threshold=1)]))
    assert tolerated.rc == 0, tolerated.stdout
    assert tolerated.result("enable")["summary"]["failed"] == 1


def test_scope_not_authorised_names_the_admin_console_link(lab_reset):
    lab = lab_reset  # gmail.settings.basic is not authorised at the lab's start
    users = lab.users[:4]
    run = run_playbook(play(lab, [task("enable", src=lab.key_file, users=users)]))
    assert run.rc != 0
    result = run.result("enable")
    assert {name: count for name, count in result["summary"]["by_class"].items() if count} == {
        "token_unauthorized_scope": 4
    }
    assert result["summary"]["skipped"] == 3  # the first refusal holds for every user
    url = result["admin_console_url"]
    assert "clientIdToAdd=%s" % lab.client_id in url
    assert SCOPE in url and "https://mail.google.com/" in url
    assert url in result["msg"]
    assert lab.google.stats()["endpoints"]["token"]["total"] == 1


def test_key_on_the_node_and_per_user_settings(gmail_lab):
    lab = gmail_lab
    first, second = lab.users[:2]
    run = run_playbook(
        play(
            lab,
            [task("per user", path=lab.key_file, users=[{"user": first, "enabled": False}, second])],
        )
    )
    assert run.rc == 0, run.stdout + run.stderr
    assert disabled_users(lab) == [first]


def test_no_key_or_token_in_verbose_output(gmail_lab):
    lab = gmail_lab
    with open(lab.key_file) as handle:
        key_json = handle.read()
    private_key = json.loads(key_json)["private_key"]
    body = [line for line in private_key.splitlines() if line and not line.startswith("-----")]
    lab.google.set_user_imap(lab.users[0], False)
    run = run_playbook(
        play(
            lab,
            [
                task("from src", src=lab.key_file, users=lab.users[:2]),
                task("from content", content=key_json, users=[*lab.users[:2], "ghost@" + lab.domain], fail_threshold=1),
            ],
        ),
        verbosity=3,
        diff=True,
    )
    assert run.rc == 0, run.stdout + run.stderr
    output = run.stdout + run.stderr
    assert "ya29." not in output
    for marker in ("PRIVATE KEY-----", body[1], body[-2]):
        assert marker not in output
    assert "Bearer" not in output
    # The task's own key option is shown as given (src) or masked (content).
    assert lab.key_file in output
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in output
