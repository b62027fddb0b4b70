# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The few standard-library names that differ between Python 2.7 and Python 3, in one place.

The modules that run on Mitel Standard Linux use the system Python: 2.7 on releases built on
Enterprise Linux 7, 3.6 on later ones (README, "Supported MSL hosts"). Nothing from PyPI is there, so
this file is what ``six`` does for the names the collection needs and ``six`` (shipped with
ansible-core as ``ansible.module_utils.six``) does not cover. ``make vermin`` checks every file under
``plugins/module_utils`` and every module that runs on MSL for Python 2.7 and 3.6.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import calendar
import datetime
import email.utils
import errno
import math
import os
import socket
import time

from ansible.module_utils.six.moves import http_client
from ansible.module_utils.six.moves.urllib.parse import (
    quote,
    unquote,
    urlencode,
    urlparse,
    urlsplit,
)

__all__ = [
    "RemoteDisconnected",
    "html_escape",
    "http_client",
    "http_date_epoch",
    "int_from_bytes",
    "int_to_bytes",
    "is_stale_connection_error",
    "isfinite",
    "monotonic",
    "quote",
    "raise_from",
    "replace",
    "unquote",
    "urlencode",
    "urlparse",
    "urlsplit",
]

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import NoReturn, Optional  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass

#: A clock that never goes backwards: ``time.monotonic`` (3.3+); on Python 2.7 ``time.time``, which a
#: clock step can move (measured offsets on 2.7 are then as good as the step allows; README says so).
monotonic = getattr(time, "monotonic", time.time)

#: ``os.replace`` (3.3+) is ``os.rename`` on POSIX, atomic within one file system, which is what MSL is.
replace = getattr(os, "replace", os.rename)

#: http.client.RemoteDisconnected (3.5+) is a BadStatusLine: the server closed a kept-alive connection.
RemoteDisconnected = getattr(http_client, "RemoteDisconnected", http_client.BadStatusLine)

#: The errnos of a connection the peer dropped: Python 3 raises ConnectionResetError, BrokenPipeError or
#: ConnectionAbortedError for them, Python 2.7 a socket.error carrying the errno.
STALE_CONNECTION_ERRNOS = (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED)


def is_stale_connection_error(exc):  # type: (BaseException) -> bool
    """True for a reset, broken pipe or aborted connection, on both Pythons."""
    if type(exc).__name__ in ("ConnectionResetError", "BrokenPipeError", "ConnectionAbortedError"):
        return True
    return isinstance(exc, (socket.error, OSError)) and getattr(exc, "errno", None) in STALE_CONNECTION_ERRNOS


def int_from_bytes(data):  # type: (bytes) -> int
    """``int.from_bytes(data, "big")`` (3.2+)."""
    return int(binascii.hexlify(data), 16) if data else 0


def int_to_bytes(number, size):  # type: (int, int) -> bytes
    """``number.to_bytes(size, "big")`` (3.2+)."""
    return binascii.unhexlify("%0*x" % (2 * size, number))


def isfinite(number):  # type: (float) -> bool
    """``math.isfinite`` (3.2+)."""
    return not (math.isinf(number) or math.isnan(number))


def http_date_epoch(value):  # type: (str) -> Optional[float]
    """Seconds since the epoch of an HTTP ``Date`` (RFC 7231 IMF-fixdate and the obsolete forms), or None."""
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    datetime.datetime(*parsed[:6])  # ValueError for a date that does not exist (31 Feb)
    if parsed[9] is None:
        # No zone: HTTP dates are GMT by definition.
        return float(calendar.timegm(parsed[:9]))
    return float(email.utils.mktime_tz(parsed))


def html_escape(text):  # type: (str) -> str
    """``html.escape(text, quote=True)`` (3.2+): &, <, >, " and ' as character references."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )


def raise_from(value, cause):  # type: (BaseException, Optional[BaseException]) -> NoReturn
    """``raise value from cause`` (Python 3 syntax): the cause is kept, the implicit context not shown."""
    value.__cause__ = cause
    value.__suppress_context__ = True
    raise value
