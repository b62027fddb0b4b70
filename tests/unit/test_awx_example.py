"""examples/awx/verify-job-template.yml describes a scheduled, read-only verify job that can work."""

import os

import yaml

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def _load(*parts):
    with open(os.path.join(EXAMPLES, *parts), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def test_the_schedule_runs_the_verify_template_with_vault_credentials_and_the_inventory():
    config = _load("awx", "verify-job-template.yml")
    (template,) = config["controller_templates"]
    (schedule,) = config["controller_schedules"]
    assert schedule["unified_job_template"] == template["name"]
    assert "RRULE:FREQ=" in schedule["rrule"] and schedule["enabled"] is True

    project = _load("awx", "project", template["playbook"])
    assert project[0]["ansible.builtin.import_playbook"] == "nupoint.gworkspace.verify"
    assert template["job_type"] == "run"

    credentials = {credential["name"]: credential for credential in config["controller_credentials"]}
    used = [credentials[name] for name in template["credentials"]]
    vault_ids = {c["inputs"]["vault_id"] for c in used if c["credential_type"] == "Vault"}
    assert vault_ids, "the inventory's keys are vault-encrypted: the job needs a vault credential"
    assert any(c["credential_type"] == "Machine" for c in used)

    assert template["inventory"] in {inventory["name"] for inventory in config["controller_inventories"]}
    (source,) = config["controller_inventory_sources"]
    assert source["inventory"] == template["inventory"] and source["source_project"] == template["project"]
    assert template["project"] in {project["name"] for project in config["controller_projects"]}
    assert template["execution_environment"] in {ee["name"] for ee in config["controller_execution_environments"]}


def test_the_vault_ids_are_the_example_inventorys():
    config = _load("awx", "verify-job-template.yml")
    vault_ids = {c["inputs"]["vault_id"] for c in config["controller_credentials"] if c["credential_type"] == "Vault"}
    text = ""
    for root, _dirs, files in os.walk(os.path.join(EXAMPLES, "inventory")):
        for name in files:
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as handle:
                text += handle.read()
    for vault_id in vault_ids:
        assert vault_id in text, vault_id
