# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of the modules that measure the clock offset (``msl_time_sync``, ``clock_offset_info``).

The argument spec is ``module_utils/time_sync.py`` ``measurement_argument_spec()``; ``servers`` is
documented by each module, because only ``msl_time_sync`` stores one of them on MSL.
"""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  max_offset:
    description:
      - Largest acceptable clock offset, in seconds. Google tolerates only a small skew on a JWT's times; the
        default stays well inside it and leaves room for the clock to drift between runs.
    type: float
    default: 5
  ntp_port:
    description:
      - UDP port of the NTP servers. Only tests need anything but the standard port.
    type: int
    default: 123
  samples:
    description:
      - Requests sent to each server. More samples smooth out network jitter.
    type: int
    default: 4
  sample_interval:
    description:
      - Seconds between two requests to the same server. Public servers answer requests less than 2 seconds apart
        with a C(RATE) kiss-of-death. Servers are asked in parallel.
    type: float
    default: 2
  timeout:
    description:
      - Seconds to wait for each reply (NTP) or for the HTTP server.
    type: float
    default: 2
  http_date_url:
    description:
      - An HTTP or HTTPS URL whose C(Date) header gives a second opinion, for example V(https://oauth2.googleapis.com/token)
        (the clock of the service that judges the JWT). Its resolution is one second.
      - When it disagrees with O(max_offset) beyond its uncertainty, the clock counts as off even if NTP agrees. When it
        cannot be reached, a warning is returned and NTP alone decides.
    type: str
  ca_path:
    description:
      - CA bundle (PEM) to verify O(http_date_url) with, instead of the system's trust store.
    type: path
"""
