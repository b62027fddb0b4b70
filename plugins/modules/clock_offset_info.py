#!/usr/bin/python
# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: clock_offset_info
short_description: Measure how far this host's clock is from network time, changing nothing
version_added: 0.1.0
description:
  - Measures the clock offset of the host it runs on by SNTP against O(servers), optionally with a second opinion from
    an HTTP(S) C(Date) header, and says whether it is within O(max_offset). It never configures a time service and
    never sets the clock.
  - "Why it matters: NuPoint Unified Messaging signs an OAuth 2.0 JWT with this host's clock for every Advanced UM
    mailbox (C(iat) = now, C(exp) = now + 1 hour). Google refuses a JWT whose times do not fit its own clock with
    C(invalid_grant) ('Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe'),
    and no mailbox syncs. A configured NTP daemon does not prove the clock is right; a measurement does."
  - "Each server is asked O(samples) times on fresh sockets, O(sample_interval) seconds apart; its offset is the
    median of the good replies, and the host's offset is the median over the servers that answered (one wrong server
    among three is outvoted). A reply is refused when it does not answer our request, has a bad length or mode, says
    the server is not synchronized itself (leap indicator 3, stratum 16, root distance above 1.5 seconds) or carries a
    kiss-of-death (C(RATE), C(DENY), C(RSTR), ...). The measurement is the one M(nupoint.gworkspace.msl_time_sync)
    makes."
  - When the offset exceeds O(max_offset) the task still succeeds, with RV(synchronized=false), the reason in
    RV(excess_offset) and a warning; use C(failed_when) or M(ansible.builtin.assert) to stop a play. The task fails
    only when the offset cannot be measured (no server gave usable time) or an option is invalid.
  - Runs on any Linux host with Python 3.6 or later and its standard library (MSL included). To also keep MSL on
    network time, use M(nupoint.gworkspace.msl_time_sync); to configure chrony on another host and then measure, use
    the C(nupoint.gworkspace.time_sync) role.
author:
  - nupoint.gworkspace maintainers (@nupoint)
extends_documentation_fragment:
  - nupoint.gworkspace.attributes
  - nupoint.gworkspace.clock
attributes:
  check_mode:
    support: full
    details:
      - The offset is measured in check mode too; the module only reads the network.
  diff_mode:
    support: none
    details:
      - Nothing is changed, so there is nothing to show.
  idempotent:
    support: full
    details:
      - Nothing is changed; C(changed) is always V(false).
options:
  servers:
    description:
      - NTP servers to measure against, host names or IPv4 addresses (letters, digits, dots and hyphens; no ports or
        URLs, O(ntp_port) sets the port).
      - Three or more let one wrong server be outvoted.
    type: list
    elements: str
    required: true
notes:
  - Offsets are I(server minus this host), so a positive RV(offset_seconds) means this host's clock is behind.
seealso:
  - module: nupoint.gworkspace.msl_time_sync
  - name: RFC 4330, Simple Network Time Protocol (SNTP) version 4
    description: The client side of the measurement.
    link: https://www.rfc-editor.org/rfc/rfc4330
"""

EXAMPLES = r"""
- name: Measure the clock against three servers
  nupoint.gworkspace.clock_offset_info:
    servers: [ntp1.example.com, ntp2.example.com, time.google.com]
  register: clock

- name: Stop when the clock would make Google refuse the OAuth tokens
  ansible.builtin.assert:
    that: clock.synchronized
    fail_msg: "{{ clock.excess_offset.msg | default('') }}"
    quiet: true

- name: Measure against NTP and against the Date header of Google's token endpoint, within 2 s
  nupoint.gworkspace.clock_offset_info:
    servers: [time.google.com]
    max_offset: 2
    http_date_url: https://oauth2.googleapis.com/token
  register: clock
  failed_when: not clock.synchronized
"""

RETURN = r"""
offset_seconds:
  description:
    - Measured offset in seconds, NTP server time minus this host's time (positive = this host is behind); the median
      over the servers that answered.
  returned: success
  type: float
  sample: -0.004211
spread_seconds:
  description: Largest minus smallest offset among the servers that answered; a large spread means they disagree.
  returned: success
  type: float
  sample: 0.0021
selected_server:
  description: The answering server closest to the median offset.
  returned: success
  type: str
  sample: ntp1.example.com
synchronized:
  description:
    - V(true) when the offset is within O(max_offset) (and the O(http_date_url) second opinion, when asked for and
      reachable, agrees within its uncertainty).
  returned: success
  type: bool
  sample: true
excess_offset:
  description:
    - Why the clock counts as off; V(null) when RV(synchronized=true).
  returned: success
  type: dict
  contains:
    source:
      description: V(ntp), or V(http_date) when NTP agreed but the O(http_date_url) second opinion did not.
      type: str
    offset_seconds:
      description: The offset that exceeded O(max_offset).
      type: float
    server:
      description: The NTP server or the URL the offset was measured against.
      type: str
    msg:
      description: The offset, its direction and what a wrong clock does to OAuth, for people (also a warning).
      type: str
  sample:
    source: ntp
    offset_seconds: 120.004
    server: ntp1.example.com
    msg: "This host's clock is 120.004 s behind network time (NTP server ntp1.example.com), more than max_offset 5 s ..."
server_results:
  description: One entry per server in O(servers), in that order; also returned when the task fails with V(no_server).
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
  returned: success
  type: dict
  sample:
    url: https://oauth2.googleapis.com/token
    status: ok
    offset_seconds: 0.3
    uncertainty_seconds: 0.55
    date: Mon, 01 Jan 2024 12:00:00 GMT
    http_status: 405
reason:
  description:
    - Machine-readable cause of a failure. One of V(invalid_server), V(invalid_option), V(no_server).
  returned: failure
  type: str
  sample: no_server
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nupoint.gworkspace.plugins.module_utils.time_sync import (
    TIME_ERRORS,
    failure_details,
    measure_clock,
    measurement_argument_spec,
)


def argument_spec():
    spec = measurement_argument_spec()
    spec.update(servers=dict(type="list", elements="str", required=True))
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        result = measure_clock(module.params, module.warn)
    except TIME_ERRORS as exc:
        module.fail_json(msg=exc.msg, **failure_details(exc))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
