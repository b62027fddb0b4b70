# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one bounded per-user runner: concurrency, per-user deadlines, backoff, and a circuit breaker.

Every module that does something per user (``delegation_check`` per subject and scope, ``imap_check``
per login, ``gmail_imap_settings`` per settings update) runs its work through :func:`run_per_user`::

    results = run_per_user(users, check_one, concurrency=16, breaker=Breaker(40, unreachable), skip=not_tried)

Why it is built this way:

- One thread pool of ``concurrency`` workers for the whole run (no thread or process per user); results
  come back in input order whatever order they finish in.
- A :class:`Breaker` stops a run early when its answers say every remaining user would fail the same
  way (the network is down, the client ID is not authorised): without it a firewall that drops
  packets costs ``user_timeout`` per user, 2,500 times.
- A per-user deadline (:func:`user_deadline`) that retry loops honour through :func:`deadline_sleep`, so a
  slow user holds one worker, never the run.
- One backoff policy (:func:`backoff_delay`, :func:`retry_after_seconds`) for every retry loop of the
  collection: token requests, API calls and IMAP logins.

Standard library only; parses as Python 3.6.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
import threading
import time
from contextlib import contextmanager

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, TypeVar  # noqa: F401  # novermin

    # Type aliases for the type comments.
    Item = TypeVar("Item")
    Result = Dict[str, Any]
except ImportError:  # pragma: no cover
    pass

from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import monotonic
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import TokenError, hint
from ansible_collections.nupoint.gworkspace.plugins.module_utils.clock import parse_http_date

DEFAULT_CONCURRENCY = 16
MAX_CONCURRENCY = 256
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_MAX = 32.0


_local = threading.local()


# --------------------------------------------------------------------------- backoff


def backoff_delay(
    retry_number,
    base=DEFAULT_BACKOFF_BASE,
    cap=DEFAULT_BACKOFF_MAX,
    rng=random.random,
):  # type: (int, float, float, Callable[[], float]) -> float
    """Seconds to wait before retry ``retry_number`` (1-based): ``base * 2**(n-1)``, capped, +-50 % jitter."""
    delay = min(cap, base * (2 ** (retry_number - 1)))
    return delay * (0.5 + rng())


def retry_after_seconds(value, cap=DEFAULT_BACKOFF_MAX):  # type: (Optional[str], float) -> Optional[float]
    """A ``Retry-After`` header in seconds (delta-seconds or HTTP date), capped; None when absent or odd."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(cap, float(value))
    when = parse_http_date(value)
    if when is None:
        return None
    return max(0.0, min(cap, when - time.time()))


# --------------------------------------------------------------------------- deadlines


def current_deadline():  # type: () -> Optional[float]
    """This thread's per-user deadline (a ``time.monotonic()`` value) while one is set, else None."""
    return getattr(_local, "deadline", None)


@contextmanager
def user_deadline(at):  # type: (float) -> Iterator[None]
    """Within the block, :func:`deadline_sleep` on this thread will not sleep past ``at`` (monotonic)."""
    previous = current_deadline()
    _local.deadline = at
    try:
        yield
    finally:
        _local.deadline = previous


def deadline_sleep(seconds):  # type: (float) -> None
    """``time.sleep`` that will not sleep past the current user's deadline: it raises ``TokenError(timeout)``.

    The token source's backoff sleeps go through it when it serves a per-user run. Outside a
    :func:`user_deadline` block it is plain ``time.sleep``.
    """
    until = current_deadline()
    if until is not None and monotonic() + seconds > until:
        raise TokenError(
            "timeout",
            "The token endpoint kept failing and the next retry would pass this user's time limit (user_timeout). %s"
            % hint("timeout"),
            retryable=True,
        )
    time.sleep(seconds)


# --------------------------------------------------------------------------- the breaker


class Breaker:
    """Trips when ``threshold`` results in a row share the same non-None ``reason(result)``.

    ``reason`` says why a result would repeat for every other user (for example its failure class when
    that class is a network failure before login), or None when it says nothing about the others. Once
    tripped, :attr:`cause` is the result that tripped it. Thread-safe.
    """

    def __init__(self, threshold, reason):  # type: (int, Callable[[Mapping[str, Any]], Optional[str]]) -> None
        self.threshold = max(1, int(threshold))
        self.cause = None  # type: Optional[Result]
        self._reason = reason
        self._streak = 0
        self._last = None  # type: Optional[str]
        self._lock = threading.Lock()

    def record(self, result):  # type: (Mapping[str, Any]) -> None
        why = self._reason(result)
        with self._lock:
            if why is not None and why == self._last:
                self._streak += 1
            elif why is not None:
                self._streak, self._last = 1, why
            else:
                self._streak, self._last = 0, None
            if self._streak >= self.threshold and self.cause is None:
                self.cause = dict(result)


# --------------------------------------------------------------------------- the runner


def workers_for(concurrency, count):  # type: (int, int) -> int
    """How many threads a run of ``count`` items at ``concurrency`` uses (1 to :data:`MAX_CONCURRENCY`)."""
    return max(1, min(int(concurrency), MAX_CONCURRENCY, count or 1))


def _run_threads(one, indexes, workers, name):  # type: (Callable[[int], None], List[int], int, str) -> None
    """``one(index)`` for every index on ``workers`` threads that take the next index as they finish one.

    Plain ``threading`` (``concurrent.futures`` is not in Python 2.7's standard library). The first
    exception a worker meets stops every worker from taking more work and is raised here after all of
    them have ended, so no thread outlives the call.
    """
    pending = iter(indexes)
    lock = threading.Lock()
    errors = []  # type: List[BaseException]

    def worker():  # type: () -> None
        while True:
            with lock:
                if errors:
                    return
                index = next(pending, None)
            if index is None:
                return
            try:
                one(index)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread below
                with lock:
                    errors.append(exc)
                return

    threads = [threading.Thread(target=worker, name="%s-%d" % (name, number)) for number in range(workers)]
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def run_per_user(
    items,
    work,
    concurrency=DEFAULT_CONCURRENCY,
    breaker=None,
    skip=None,
    probe_first=False,
    name="per_user",
    on_result=None,
):  # type: (Sequence[Item], Callable[[Item], Result], int, Optional[Breaker], Optional[Callable[[Item, Result], Result]], bool, str, Optional[Callable[[Result], None]]) -> List[Result]
    """``work(item)`` for every item, at most ``concurrency`` at a time; the results in input order.

    ``work`` must not raise (each per-user function turns its failures into a result). With a
    ``breaker``, every result is recorded and, once it has tripped, the items not yet started get
    ``skip(item, breaker.cause)`` instead of ``work(item)``. ``probe_first`` runs the first item alone
    before the others start, so a failure that holds for everyone is met once, not ``concurrency`` times.
    ``on_result(result)`` is called on the worker's thread after each item, skipped ones included (for
    progress: it must be cheap and thread-safe, and must not raise).
    """
    results = [None] * len(items)  # type: List[Optional[Result]]

    def one(index):  # type: (int) -> None
        item = items[index]
        cause = breaker.cause if breaker is not None else None
        if cause is not None and skip is not None:
            result = skip(item, cause)
        else:
            result = work(item)
            if breaker is not None:
                breaker.record(result)
        results[index] = result
        if on_result is not None:
            on_result(result)

    indexes = list(range(len(items)))
    if probe_first and indexes:
        one(indexes.pop(0))
    workers = workers_for(concurrency, len(indexes))
    if workers == 1:
        for index in indexes:
            one(index)
    else:
        _run_threads(one, indexes, workers, name)
    return [result for result in results if result is not None]
