#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: msl_time_sync
short_description: Keep Mitel Standard Linux on network time and prove the clock is right
version_added: 0.1.0
description:
  - Enables (or disables) network time in the MSL config db the way the Server Manager's Date and Time panel does,
    then B(measures) the real clock offset by SNTP against the NTP servers, because configuring NTP does not prove
    that the clock is right.
  - "Why time matters: NuPoint Unified Messaging logs in to every Advanced UM mailbox with an OAuth 2.0 service
    account. For each user it signs a JWT whose C(iat) (issued at) is this host's current time and whose C(exp) is
    C(iat) plus one hour, and trades it at Google's token endpoint for an access token. Google refuses a JWT whose
    times do not fit its own clock with the error C(invalid_grant) and the text 'Invalid JWT: Token must be a
    short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.' When that happens no mailbox
    syncs, for every user at once, and nothing on MSL says why."
  - Reads the O(ntp_record) record. When its O(ntp_status_property) or O(ntp_server_property) differs from what is
    asked, sets them, verifies each with C(getprop) (the real C(setprop) exits 0 even when it wrote nothing), and
    signals O(ntp_event) once. When the record does not exist it is created with type V(service).
  - "MSL's panel keeps B(one) NTP server: the first of O(servers) is stored in O(ntp_server_property). The others are
    measured too: the offset is the median over all servers that answer (so one wrong server among three is
    outvoted), a server that does not answer is reported and does not fail the task as long as another one answers,
    and a step is taken against the answering server closest to that median, falling back to the next one when the
    step command fails."
  - "Google's NTP servers (C(time.google.com), C(time1-4.google.com)) smear leap seconds over 24 hours; other servers
    step them. Listing both kinds in O(servers) gives a warning (Google Public NTP, Leap Smear: do not mix them)."
  - "Each server is asked O(samples) times on fresh sockets, O(sample_interval) seconds apart; its offset is the
    median of the good replies. A reply is refused when it does not answer our request (originate timestamp), has a
    bad length or mode, says the server is not synchronized itself (leap indicator 3, stratum 16), carries a
    kiss-of-death (stratum 0 with a code such as C(RATE), C(DENY) or C(RSTR); the server is then not asked again), or
    when its root distance (root delay and dispersion) exceeds 1.5 seconds."
  - "When the offset exceeds O(max_offset), O(on_excess_offset) decides: V(fail) fails the task with the offset in the
    message (nothing is changed on the clock); V(warn) returns a warning and succeeds with RV(synchronized=false);
    V(step) runs O(step_command) to set the clock at once, measures again, and fails if the clock is still off."
  - With O(manage=false) the config db is not read or written at all and the module only measures (and steps, when
    asked to). To only measure, on MSL or any other Linux host, use M(nupoint.gworkspace.clock_offset_info).
author:
  - nupoint.gworkspace maintainers (@nupoint)
extends_documentation_fragment:
  - nupoint.gworkspace.attributes
  - nupoint.gworkspace.msl
  - nupoint.gworkspace.msl.TIME
  - nupoint.gworkspace.clock
attributes:
  check_mode:
    support: full
    details:
      - The offset is measured in check mode too (it only reads the network); the record is not written, no event is
        signalled and the clock is not stepped. A step that would be taken is reported as a change.
  diff_mode:
    support: full
    details:
      - The diff shows the O(ntp_record) record (type and properties) before and after.
  idempotent:
    support: full
    details:
      - The record is only written when it differs. A clock step is a change and is only taken while the clock is off.
options:
  servers:
    description:
      - NTP servers, host names or IPv4 addresses as the MSL panel accepts them (letters, digits, dots and hyphens).
      - The first one is stored in the MSL config db; all of them are measured. See the description.
      - Required when O(state=enabled) or O(manage=false). With O(state=disabled) the offset is measured only when
        servers are given.
    type: list
    elements: str
    default: []
  state:
    description:
      - V(enabled) turns network time on with the first of O(servers) (C(status=enabled) and the server in
        O(ntp_server_property)).
      - V(disabled) turns it off the way the Server Manager's Date and Time panel does, which MSL inherits from SME
        Server's panel code (C(disable_ntp)) - it clears the server and leaves C(status=enabled), unless the record's
        C(SyncToHWClockSupported) is C(no), which makes it C(status=disabled). So C(status=enabled) alone does not
        mean network time is on; RV(network_time) says whether it is.
      - Ignored when O(manage=false).
    type: str
    choices: [enabled, disabled]
    default: enabled
  manage:
    description:
      - Whether to manage the MSL config db record. V(false) leaves the db alone and only measures (and steps, with
        O(on_excess_offset=step)). M(nupoint.gworkspace.clock_offset_info) is the module that only measures.
    type: bool
    default: true
  on_excess_offset:
    description:
      - What to do when the measured offset is larger than O(max_offset).
      - V(fail) fails the task; the message names the offset, the server and why OAuth breaks.
      - V(warn) succeeds with a warning and RV(synchronized=false).
      - V(step) sets the clock with O(step_command), measures again, and fails when it is still off. Stepping makes
        time jump, which can upset running programs; prefer it on a host that is about to have its services
        restarted anyway.
    type: str
    choices: [fail, step, warn]
    default: fail
  step_command:
    description:
      - Command that steps the clock to an NTP server's time, as a list of arguments or a string split like a shell
        would (it is never run through a shell). C({server}) is replaced with the server's name and C({port}) with
        O(ntp_port).
      - "The default suits MSL's ntpd-based releases: C(ntpdate -u) uses an unprivileged source port so it works while
        ntpd runs, C(-b) steps instead of slewing. On chrony-based hosts use V(chronyc makestep) (it steps to chronyd's
        own estimate and ignores the server)."
    type: raw
    default: [ntpdate, -u, -b, "{server}"]
notes:
  - Offsets are I(server minus this host), so a positive RV(offset_seconds) means this host's clock is behind.
  - The module runs on the MSL host and needs only its system Python 3 (3.6 or later).
seealso:
  - name: RFC 4330, Simple Network Time Protocol (SNTP) version 4
    description: The client side of the measurement.
    link: https://www.rfc-editor.org/rfc/rfc4330
  - name: Using OAuth 2.0 for server to server applications
    description: Google's description of the JWT C(iat) and C(exp) claims a service account signs.
    link: https://developers.google.com/identity/protocols/oauth2/service-account
  - module: nupoint.gworkspace.clock_offset_info
  - module: nupoint.gworkspace.service_account_key_info
"""

EXAMPLES = r"""
- name: Network time on, against three servers; fail when the clock is more than 5 s off
  nupoint.gworkspace.msl_time_sync:
    servers:
      - ntp1.example.com
      - ntp2.example.com
      - time.google.com

- name: Step the clock when it is off, with a second opinion from Google's token endpoint
  nupoint.gworkspace.msl_time_sync:
    servers: [ntp1.example.com]
    on_excess_offset: step
    http_date_url: https://oauth2.googleapis.com/token

- name: Leave the db alone, step a chrony host's clock when it is off
  nupoint.gworkspace.msl_time_sync:
    manage: false
    servers: [ntp1.example.com]
    on_excess_offset: step
    step_command: chronyc makestep
  register: clock

- name: Show the offset
  ansible.builtin.debug:
    msg: "Offset {{ clock.offset_seconds }} s, synchronized: {{ clock.synchronized }}"
"""

RETURN = r"""
offset_seconds:
  description:
    - Measured offset in seconds, NTP server time minus this host's time (positive = this host is behind); the median
      over the servers that answered. V(null) when nothing was measured (O(state=disabled) without O(servers)).
    - When the clock was stepped, this is the offset before the step; see RV(offset_after_step_seconds).
  returned: always
  type: float
  sample: -0.004211
spread_seconds:
  description: Largest minus smallest offset among the servers that answered; a large spread means they disagree.
  returned: when measured
  type: float
  sample: 0.0021
selected_server:
  description: The answering server closest to the median offset (a step is taken against it first).
  returned: when measured
  type: str
  sample: ntp1.example.com
server_results:
  description: One entry per server in O(servers), in that order.
  returned: always
  type: list
  elements: dict
  contains:
    server:
      description: The server as given.
      type: str
    address:
      description: The address it resolved to.
      type: str
    status:
      description:
        - V(ok), V(dns), V(connect) (nothing listens, port unreachable), V(timeout), V(bad_reply),
          V(kiss_of_death) or V(unsynchronized) (leap indicator 3, stratum 16 or root distance too large).
      type: str
    msg:
      description: What happened, for people.
      type: str
    offset_seconds:
      description: Median offset of the good samples, V(null) unless RV(server_results[].status=ok).
      type: float
    delay_seconds:
      description: Round-trip delay of the best sample.
      type: float
    root_delay_seconds:
      description: The server's root delay (to its primary reference).
      type: float
    root_dispersion_seconds:
      description: The server's root dispersion.
      type: float
    root_distance_seconds:
      description: Error bound of the best sample, root delay and delay halved plus root dispersion.
      type: float
    stratum:
      description: The server's stratum.
      type: int
    reference_id:
      description: The server's reference (a code for stratum 1, an IPv4 address above).
      type: str
    samples_sent:
      description: Requests sent.
      type: int
    samples_ok:
      description: Good replies.
      type: int
  sample:
    - server: ntp1.example.com
      address: 192.0.2.10
      status: ok
      msg: "ntp1.example.com: offset -0.004 s (median of 4 samples), stratum 2"
      offset_seconds: -0.004211
      delay_seconds: 0.0012
      stratum: 2
      samples_sent: 4
      samples_ok: 4
http_date:
  description:
    - The second opinion from O(http_date_url); V(null) when not asked for.
    - Its C(status) is V(ok), V(dns), V(connect), V(tls), V(timeout), V(bad_reply) or V(bad_url).
  returned: always
  type: dict
  sample:
    url: https://oauth2.googleapis.com/token
    status: ok
    offset_seconds: 0.3
    uncertainty_seconds: 0.55
    date: Mon, 01 Jan 2024 12:00:00 GMT
    http_status: 405
synchronized:
  description:
    - V(true) when the clock is within O(max_offset) (after a step, when one was taken); V(null) when nothing was
      measured.
  returned: always
  type: bool
  sample: true
stepped:
  description: V(true) when the step command ran and succeeded.
  returned: always
  type: bool
  sample: false
step_command:
  description: The step command that ran (or, in check mode, would run), as a list of arguments.
  returned: when a step was taken or would be taken
  type: list
  elements: str
  sample: [ntpdate, -u, -b, ntp1.example.com]
offset_after_step_seconds:
  description: The offset measured again after the step.
  returned: when stepped
  type: float
  sample: 0.001
record_before:
  description: The O(ntp_record) record before the task (V(null) when it did not exist or O(manage=false)).
  returned: always
  type: dict
  sample:
    key: ntpd
    type: service
    props:
      NTPServer: ""
      status: disabled
record_after:
  description: The record after the task (in check mode, as it would be).
  returned: always
  type: dict
  sample:
    key: ntpd
    type: service
    props:
      NTPServer: ntp1.example.com
      status: enabled
network_time_before:
  description:
    - Whether network time was on before the task - C(status=enabled) B(and) a server in O(ntp_server_property), as the
      panel shows it. V(null) with O(manage=false).
  returned: always
  type: bool
  sample: false
network_time:
  description: Whether network time is on after the task (in check mode, would be). V(null) with O(manage=false).
  returned: always
  type: bool
  sample: true
reason:
  description:
    - Machine-readable cause of a failure. One of V(invalid_server), V(msl_db), V(no_server), V(offset_exceeded),
      V(step_failed), V(invalid_step_command), V(offset_after_step), V(invalid_option).
  returned: failure
  type: str
  sample: offset_exceeded
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nupoint.gworkspace.plugins.module_utils.msl import module_run_command, msl_time_argument_spec
from ansible_collections.nupoint.gworkspace.plugins.module_utils.time_sync import (
    DEFAULT_STEP_COMMAND,
    ON_EXCESS_OFFSET,
    TIME_ERRORS,
    TimeSync,
    failure_details,
    measurement_argument_spec,
)


def argument_spec():
    spec = msl_time_argument_spec()
    spec.update(measurement_argument_spec())
    spec.update(
        servers=dict(type="list", elements="str", default=[]),
        state=dict(type="str", choices=["enabled", "disabled"], default="enabled"),
        manage=dict(type="bool", default=True),
        on_excess_offset=dict(type="str", choices=list(ON_EXCESS_OFFSET), default="fail"),
        step_command=dict(type="raw", default=list(DEFAULT_STEP_COMMAND)),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    sync = TimeSync(module.params, module_run_command(module), check_mode=module.check_mode)
    failure = None
    try:
        sync.run()
    except TIME_ERRORS as exc:
        failure = exc
    for warning in sync.warnings:
        module.warn(warning)
    result = dict(sync.result)
    if module._diff and module.params["manage"]:
        result["diff"] = sync.diff()
    if failure is not None:
        result.update(failure_details(failure))
        module.fail_json(msg=failure.msg, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
