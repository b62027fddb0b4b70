#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: imap_check_fleet_report
short_description: Write one HTML index page over the imap_check reports of several MSL hosts
version_added: 0.2.0
description:
  - Reads the JSON reports that M(nupoint.gworkspace.imap_check) wrote on several hosts (fetched to one machine, as the
    C(nupoint.gworkspace.imap_access) role does) and writes one self-contained HTML page - the fleet's users per
    failure class (an inline SVG chart) and one row per host with its counts, failure classes, key ID and a link to
    the host's own HTML report.
  - Every text from a report is escaped; the page loads nothing from anywhere (no external assets).
  - Written atomically with mode C(0600), because the linked reports list users.
author:
  - nupoint.gworkspace maintainers (@nupoint)
extends_documentation_fragment:
  - nupoint.gworkspace.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - The page depends only on the reports; it is rewritten only when its content changes.
options:
  reports:
    description:
      - One entry per host, in the order the page lists them.
    type: list
    elements: dict
    required: true
    suboptions:
      host:
        description: The host's name on the page (the inventory name).
        type: str
        required: true
      json:
        description: Path of the host's JSON report.
        type: path
        required: true
      html:
        description: Path of the host's HTML report, linked from the page (relative to O(dest)) when it exists.
        type: path
  dest:
    description: Path of the page to write.
    type: path
    required: true
"""

EXAMPLES = r"""
- name: One page for every MSL host's IMAP check
  nupoint.gworkspace.imap_check_fleet_report:
    reports:
      - host: msl1
        json: reports/msl1/nupoint-imap-check.json
        html: reports/msl1/nupoint-imap-check.html
      - host: msl2
        json: reports/msl2/nupoint-imap-check.json
        html: reports/msl2/nupoint-imap-check.html
    dest: reports/index.html
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
dest:
  description: Path of the page.
  returned: always
  type: str
  sample: /home/admin/playbooks/imap-check-reports/index.html
hosts:
  description: Hosts on the page, with their user and failed-user counts.
  returned: always
  type: list
  elements: dict
  sample: [{"host": "msl1", "total": 2500, "failed": 3}]
reason:
  description: Machine-readable cause of a failure, V(read_error) (a report) or V(write_error) (O(dest)).
  returned: failure
  type: str
  sample: read_error
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import report_html
from ansible_collections.nupoint.gworkspace.plugins.module_utils.files import atomic_write


def main():
    module = AnsibleModule(
        argument_spec=dict(
            reports=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    host=dict(type="str", required=True),
                    json=dict(type="path", required=True),
                    html=dict(type="path"),
                ),
            ),
            dest=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    dest = module.params["dest"]
    try:
        entries = report_html.fleet_entries(module.params["reports"], dest)
    except (OSError, ValueError) as exc:
        module.fail_json(
            msg="Cannot read a report: %s. List in reports the JSON reports imap_check wrote (report_path), fetched "
            "to this machine." % exc,
            reason="read_error",
            changed=False,
        )
    page = report_html.fleet_index(entries).encode("utf-8")
    try:
        with open(dest, "rb") as handle:
            changed = handle.read() != page
    except OSError:
        changed = True
    if changed and not module.check_mode:
        try:
            atomic_write(dest, page)
        except OSError as exc:
            module.fail_json(
                msg="Cannot write %s: %s. Choose a dest in a directory that exists and is writable." % (dest, exc),
                reason="write_error",
                changed=False,
            )
    elif os.path.exists(dest) and not module.check_mode and (os.stat(dest).st_mode & 0o777) != 0o600:
        os.chmod(dest, 0o600)
        changed = True
    hosts = [
        dict(
            host=entry["host"],
            total=int(entry["document"].get("summary", {}).get("total", 0)),
            failed=int(entry["document"].get("summary", {}).get("failed", 0)),
        )
        for entry in entries
    ]
    module.exit_json(changed=changed, dest=dest, hosts=hosts)


if __name__ == "__main__":
    main()
