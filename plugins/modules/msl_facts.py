#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: msl_facts
short_description: Find out what an MSL host is and where NuPoint keeps the Google service account
version_added: 0.2.0
description:
  - Reads, on an MSL server, the MSL release, the Python interpreters present, whether NuPoint is installed and
    which version, and - given O(client_id) and/or O(client_email) - every config-db record and every file that
    mentions the service account. Nothing is changed on the host, except the snapshot file when O(snapshot_path)
    is set.
  - The MSL release is the first line of the first file that exists among C(/etc/e-smith-release),
    C(/etc/mitel-release), C(/etc/redhat-release), C(/etc/centos-release), C(/etc/system-release) and
    C(/etc/os-release) (RV(release.file) names it), plus the config db's C(sysconfig) record.
  - Python interpreters are looked for at C(/usr/bin/python*), C(/bin/python*), C(/usr/local/bin/python*),
    C(/opt/rh/*/root/usr/bin/python*) (Software Collections) and C(/usr/libexec/platform-python*); each is run
    with C(-V) under O(python_timeout).
  - NuPoint is looked for with C(rpm -qa) (any package whose name contains C(nupoint); Mitel does not publish the
    package names) and in C(/opt/nupoint), C(/usr/nupoint), C(/var/nupoint), C(/etc/nupoint), C(/home/nupoint).
    Without rpm, RV(nupoint.present) is V(null) and RV(nupoint.version) V(unknown).
  - Records are read from every db in C(/home/e-smith/db) through O(db_command) C(show). Files are searched under
    O(search_paths), without following symbolic links or leaving each path's file system, down to O(max_depth),
    reading files up to O(max_file_size) (binary files only up to O(max_binary_size)), at most O(max_files) files
    and O(max_total_size) bytes in all;
    RV(search.truncated) says when a limit cut the search short. A matching file is reported by path, size, mode,
    owner, mtime, SHA-256 and which identifier matched; its content is never returned. Record values named like a
    password, secret or token, or shaped like a key, are shown as V((redacted\)).
  - With O(snapshot_path), writes a snapshot (mode 0600) of every db record and of the metadata of every file
    under the search paths. With O(compare_with), compares this run with an earlier snapshot and returns
    RV(differences) and RV(learned) - the "learn" procedure of C(docs/msl-assumptions.md) (playbook
    C(nupoint.gworkspace.learn_msl)) takes a snapshot, the administrator uploads the key once in the Server
    Manager, a second snapshot follows, and the module says which credential directory, key file names, db record
    and event NuPoint used, as the options of M(nupoint.gworkspace.msl_oauth_credentials) to set.
  - Runs on MSL with the Python standard library only (Python 2.7 or 3.6 and later).
author:
  - nupoint.gworkspace maintainers (@nupoint)
extends_documentation_fragment:
  - nupoint.gworkspace.attributes
  - nupoint.gworkspace.msl
attributes:
  check_mode:
    support: full
    details: In check mode the snapshot is not written; everything else is reported as in a real run.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A snapshot file is rewritten only when what it records changed.
options:
  root:
    description:
      - Prefix of every location the module looks at (release files, interpreters, rpm, db directory, event logs,
        O(search_paths)). V(/) on a real host; a directory for a copy of a host's tree or an emulated host.
      - Paths in the results include the prefix.
    type: path
    default: /
  client_id:
    description:
      - The service account's client ID (its numeric unique ID). Records and files that contain it are reported.
    type: str
  client_email:
    description:
      - The service account's e-mail. Records and files that contain it (in any case) are reported.
    type: str
  search_paths:
    description:
      - Directories searched for files (under O(root)).
    type: list
    elements: path
    default: [/etc, /home, /opt, /root, /srv, /usr/local, /var/lib, /var/opt, /var/spool]
  max_depth:
    description: How many directory levels below each search path are entered.
    type: int
    default: 12
  max_file_size:
    description: Files larger than this (bytes) are listed in the snapshot by size and time but not read.
    type: int
    default: 1048576
  max_binary_size:
    description: Binary files (a NUL byte in their first 8 KiB) larger than this (bytes) are not read further.
    type: int
    default: 65536
  max_files:
    description: The search stops after this many files (RV(search.truncated_by) then lists V(max_files)).
    type: int
    default: 50000
  max_total_size:
    description:
      - How many bytes one run reads in all, a bound on the disk and CPU time it takes from the MSL host. A file that
        would go past it is listed by size and time but not read (RV(search.truncated_by) then lists
        V(max_total_size)); smaller files after it are still read while they fit.
    type: int
    default: 268435456
  event_logs:
    description:
      - Logs that name the events C(signal-event) runs (under O(root)). With O(compare_with), the event names
        (directories of C(/etc/e-smith/events)) that appear in the lines added since the earlier snapshot are the
        events signalled between the two runs.
    type: list
    elements: path
    default: [/var/log/messages]
  python_timeout:
    description: Seconds each interpreter has to answer C(-V).
    type: float
    default: 10
  snapshot_path:
    description:
      - Write the snapshot to this file on the MSL host (mode 0600, created with its directory). It must lie
        outside O(search_paths), for example under C(/var/tmp).
    type: path
  compare_with:
    description:
      - An earlier snapshot (written by this module with O(snapshot_path)) to compare this run with; RV(differences)
        and RV(learned) are returned. Give the same O(client_id) and O(client_email) as for the earlier run.
    type: path
seealso:
  - module: nupoint.gworkspace.msl_oauth_credentials
  - module: nupoint.gworkspace.msl_oauth_credentials_info
notes:
  - O(signal_event_command) is accepted so that C(module_defaults) for the C(gworkspace_msl) group apply; this
    module signals nothing.
"""

EXAMPLES = r"""
- name: What is this MSL host, and where is the service account mentioned?
  nupoint.gworkspace.msl_facts:
    client_id: "110123456789012345678"
    client_email: nupoint-um@example-project.iam.gserviceaccount.com
  register: msl

- name: Say it
  ansible.builtin.debug:
    msg: >-
      {{ msl.release.name }} ({{ msl.release.file }}); NuPoint {{ msl.nupoint.version }};
      Pythons {{ msl.pythons | map(attribute='version') | list }};
      files {{ msl.files | map(attribute='path') | list }}

# The learn procedure (playbooks/learn_msl.yml does this): before, an upload in the Server Manager, after.
- name: Snapshot before the upload
  nupoint.gworkspace.msl_facts:
    client_email: nupoint-um@example-project.iam.gserviceaccount.com
    snapshot_path: /var/tmp/nupoint-learn/before.json

- name: Snapshot after the upload, compared with the one before
  nupoint.gworkspace.msl_facts:
    client_email: nupoint-um@example-project.iam.gserviceaccount.com
    snapshot_path: /var/tmp/nupoint-learn/after.json
    compare_with: /var/tmp/nupoint-learn/before.json
  register: learned

- name: Print what to set
  ansible.builtin.debug:
    msg: "{{ learned.learned.text }}"
"""

RETURN = r"""
root:
  description: The prefix the locations were read under.
  returned: always
  type: str
  sample: /
release:
  description: The MSL release.
  returned: always
  type: dict
  contains:
    name:
      description: First line of the release file (C(PRETTY_NAME) of C(os-release)), V(null) when none exists.
      type: str
      sample: Mitel Standard Linux release 11.0
    file:
      description: The file that answered, V(null) when none did.
      type: str
      sample: /etc/e-smith-release
    checked:
      description: The files looked at, in order.
      type: list
      elements: str
    sysconfig:
      description: C(ProductName), C(ReleaseVersion) (and C(Version), C(Release) when set) of the config db's
        C(sysconfig) record; V(null) without it.
      type: dict
      sample: {"ProductName": "Mitel Standard Linux", "ReleaseVersion": "11.0"}
pythons:
  description: Interpreters found, each with C(path), C(resolves_to), C(version) (V(null) when C(-V) failed) and
    C(error).
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/usr/bin/python2.7", "resolves_to": "/usr/bin/python2.7", "version": "2.7.5", "error": null}]
nupoint:
  description: NuPoint's installation as far as it can be told.
  returned: always
  type: dict
  contains:
    present:
      description: V(true) when rpm lists a package whose name contains C(nupoint), V(false) when rpm lists none,
        V(null) (unknown) without a working rpm.
      type: bool
    version:
      description: Version-release of the first NuPoint package, else V(unknown).
      type: str
      sample: 22.0.1.6-1
    packages:
      description: The NuPoint packages (C(name), C(version)).
      type: list
      elements: dict
    directories:
      description: The candidate NuPoint directories that exist.
      type: list
      elements: str
    db_records:
      description: Records of the configuration db whose key contains C(nupoint).
      type: list
      elements: str
    source:
      description: V(rpm) when rpm answered, else V(null).
      type: str
    note:
      description: Why the answer is incomplete, in words; V(null) when rpm answered and found NuPoint.
      type: str
events:
  description: The events this host can signal (directories of C(/etc/e-smith/events)).
  returned: always
  type: list
  elements: str
dbs:
  description: The dbs read from C(/home/e-smith/db).
  returned: always
  type: list
  elements: str
  sample: [accounts, configuration, domains, hosts, networks]
records:
  description:
    - Records that mention O(client_id) or O(client_email), each with C(db), C(key), C(type), C(props) (secrets redacted)
      and C(matched_props) (property -> identifiers it contains). Empty without identifiers.
  returned: always
  type: list
  elements: dict
  sample: [{"db": "configuration", "key": "gapps", "type": "service", "props": {"ClientId": "110123456789012345678"},
            "matched_props": {"ClientId": ["client_id"]}}]
files:
  description:
    - Files that mention O(client_id) or O(client_email), each with C(path), C(size), C(mode), C(owner), C(group), C(uid),
      C(gid), C(mtime) (UTC), C(sha256), C(binary) and C(matched) (the identifiers found). Never the content.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/var/lib/nupoint/oauth/service-account.json", "size": 2345, "mode": "0600", "owner": "root",
            "group": "root", "uid": 0, "gid": 0, "mtime": "2024-05-01T09:30:00Z", "sha256": "9f2c...",
            "binary": false, "matched": ["client_id", "client_email"]}]
search:
  description: What the file search covered.
  returned: always
  type: dict
  contains:
    roots:
      description: The directories searched (O(search_paths) under O(root)).
      type: list
      elements: str
    limits:
      description: >-
        The limits applied (C(max_depth), C(max_file_size), C(max_binary_size), C(max_files), C(max_total_size)).
      type: dict
    files_examined:
      description: Regular files looked at.
      type: int
    skipped_too_large:
      description: Files larger than O(max_file_size), listed but not read.
      type: int
    skipped_binary:
      description: Binary files larger than O(max_binary_size), not read further.
      type: int
    skipped_total_size:
      description: Files not read because O(max_total_size) would have been passed, listed by metadata.
      type: int
    bytes_read:
      description: Bytes read from the files in all.
      type: int
    skipped_unreadable:
      description: Files that could not be read.
      type: int
    skipped_other_filesystem:
      description: Directories on another file system, not entered.
      type: int
    directories_beyond_max_depth:
      description: Directories deeper than O(max_depth), not entered.
      type: int
    missing_roots:
      description: Search paths that do not exist (or are not directories).
      type: list
      elements: str
    truncated:
      description: V(true) when a limit left something out.
      type: bool
    truncated_by:
      description: >-
        The limits that left something out (V(max_depth), V(max_file_size), V(max_files), V(max_total_size)).
      type: list
      elements: str
snapshot_path:
  description: O(snapshot_path).
  returned: always
  type: str
snapshot_written:
  description: V(true) when the snapshot file was written (not in check mode, and not when it already held the same).
  returned: always
  type: bool
differences:
  description:
    - With O(compare_with), what changed since that snapshot - C(files) (C(added), C(removed), C(changed), at most
      200 each; C(file_counts) has the totals), C(records) (C(added), C(removed), C(changed) with
      C(changed_props)), C(events) (signalled between the two runs) and C(search_truncated).
  returned: when O(compare_with) is set
  type: dict
learned:
  description:
    - With O(compare_with), what the collection should be pointed at.
    - C(options) - options of M(nupoint.gworkspace.msl_oauth_credentials) and
      M(nupoint.gworkspace.msl_oauth_credentials_info) (C(credential_dir), C(credential_key_file),
      C(credential_p12_file), C(credential_record), C(db_name), C(credential_event)) - only what was learned.
    - C(inventory) - role variables (C(gworkspace_msl_credential_dir)).
    - C(differs_from_defaults) - the learned options whose value is not the collection's default.
    - C(record) - NuPoint's record (C(db), C(key), C(type), C(props), C(holds) - property -> what it holds -,
      C(compatible) - whether the collection can write it without dropping NuPoint's properties).
    - C(notes) - what could not be told, and why.
    - C(text) - all of it as YAML to paste into host_vars and plays.
  returned: when O(compare_with) is set
  type: dict
  sample:
    options: {"credential_dir": "/opt/mitel/gapps", "credential_key_file": "gapps-sa.json",
              "credential_record": "gapps-oauth", "credential_event": "gapps-oauth-update"}
    inventory: {"gworkspace_msl_credential_dir": "/opt/mitel/gapps"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nupoint.gworkspace.plugins.module_utils.msl import MslError, msl_argument_spec
from ansible_collections.nupoint.gworkspace.plugins.module_utils.msl_discovery import (
    EVENT_LOGS,
    LIMITS,
    PYTHON_VERSION_TIMEOUT,
    SEARCH_PATHS,
    DiscoveryError,
    discover,
    timed_run_command,
)


def argument_spec():
    spec = msl_argument_spec()
    spec.update(
        root={"type": "path", "default": "/"},
        client_id={"type": "str"},
        client_email={"type": "str"},
        search_paths={"type": "list", "elements": "path", "default": list(SEARCH_PATHS)},
        max_depth={"type": "int", "default": LIMITS["max_depth"]},
        max_file_size={"type": "int", "default": LIMITS["max_file_size"]},
        max_binary_size={"type": "int", "default": LIMITS["max_binary_size"]},
        max_files={"type": "int", "default": LIMITS["max_files"]},
        max_total_size={"type": "int", "default": LIMITS["max_total_size"]},
        event_logs={"type": "list", "elements": "path", "default": list(EVENT_LOGS)},
        python_timeout={"type": "float", "default": PYTHON_VERSION_TIMEOUT},
        snapshot_path={"type": "path"},
        compare_with={"type": "path"},
    )
    return spec


def run_module():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = dict(module.params)
    for name in ("max_depth", "max_file_size", "max_binary_size", "max_files", "max_total_size", "python_timeout"):
        if params[name] <= 0:
            module.fail_json(
                msg="%s must be greater than 0, got %s. Nothing was read or written." % (name, params[name]),
                reason="invalid_option",
                changed=False,
            )
    for name in ("search_paths", "event_logs"):
        relative = [path for path in params[name] if not path.startswith("/")]
        if relative:
            module.fail_json(
                msg="%s must be absolute paths (they are read under root), got %s." % (name, ", ".join(relative)),
                reason="invalid_option",
                changed=False,
            )
    params["_write"] = not module.check_mode
    try:
        result = discover(params, timed_run_command(module))
    except DiscoveryError as exc:
        module.fail_json(msg=exc.msg, reason=exc.reason, changed=False)
    except MslError as exc:
        module.fail_json(msg=exc.msg, reason="msl_db", changed=False, **exc.as_result())
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


def main():
    run_module()


if __name__ == "__main__":
    main()
