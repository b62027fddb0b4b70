# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MSL adapter options: every path, db, record and event the collection uses on MSL.

Defaults mirror ``plugins/module_utils/msl.py`` DEFAULTS; docs/msl-assumptions.md says which are
known facts of MSL/SME Server and which are assumptions to confirm on a real NuPoint server.
"""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  db_command:
    description:
      - The e-smith db tool. MSL inherits it from SME Server.
    type: path
    default: /sbin/e-smith/db
  db_name:
    description:
      - The db that holds the settings, as passed to O(db_command).
    type: str
    default: configuration
  signal_event_command:
    description:
      - The tool that applies configuration changes by running an event's actions.
    type: path
    default: /sbin/e-smith/signal-event
"""

    CREDENTIALS = r"""
options:
  credential_dir:
    description:
      - Directory on MSL that holds NuPoint's service-account key files.
      - B(Assumption) to confirm on your NuPoint release; see C(docs/msl-assumptions.md).
    type: path
    default: /var/lib/nupoint/oauth
  credential_key_file:
    description:
      - Name of the JSON key file in O(credential_dir).
      - B(Assumption) to confirm on your NuPoint release.
    type: str
    default: service-account.json
  credential_p12_file:
    description:
      - Name of the P12 key file in O(credential_dir), for NuPoint releases that still read it.
      - B(Assumption) to confirm on your NuPoint release.
    type: str
    default: service-account.p12
  credential_record:
    description:
      - Record in the O(db_name) db where the installed key's client ID, e-mail, fingerprint and install time
        are kept.
      - B(Assumption) to confirm on your NuPoint release.
    type: str
    default: nupoint-oauth
  credential_event:
    description:
      - Event signalled after the credentials changed, so NuPoint picks up the new key.
      - B(Assumption) to confirm on your NuPoint release.
    type: str
    default: nupoint-oauth-update
"""

    TIME = r"""
options:
  ntp_record:
    description:
      - Record of the network time service in the O(db_name) db (what the Server Manager's Date and Time
        panel edits).
    type: str
    default: ntpd
  ntp_status_property:
    description:
      - Property of O(ntp_record) that enables network time (V(enabled) or V(disabled)).
    type: str
    default: status
  ntp_server_property:
    description:
      - Property of O(ntp_record) that holds the NTP server name.
    type: str
    default: NTPServer
  ntp_event:
    description:
      - Event signalled after the time settings changed.
    type: str
    default: timeserver-update
"""
