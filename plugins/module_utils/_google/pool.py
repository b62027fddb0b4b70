# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one bounded per-user runner: concurrency, per-user deadlines, backoff, and a circuit breaker.

Every module that does something per user (``delegation_check`` per subject and scope, ``imap_check``
per login, ``gmail_imap_settings`` per settings update) runs its work through :func:`run_per_user`::

    results = run_per_user(users, check_one, concurrency=16, breaker=Breaker(40, unreachable), skip=not_tried)

Why it is built this way:

- One thread pool of ``concurrency`` workers for the whole run (no thread or process per user); results
  come back in input order whatever order they finish in.
- Or, instead of a number, an :class:`AdaptiveConcurrency`: the run finds its own level, growing while
  the rate of finished items grows (capped) and shrinking when the servers push back. What is right on
  a LAN (the CPU is the limit) is far too little 40 ms away from the servers (round trips are).
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
    from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, TypeVar, Union  # noqa: F401  # novermin

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


# --------------------------------------------------------------------------- adaptive concurrency

#: Where an adaptive run starts, the most it grows to, and the least it shrinks to.
ADAPTIVE_START = 16
ADAPTIVE_CAP = 64
ADAPTIVE_MIN = 4
#: A step up is kept only when the completion rate grew by at least this fraction.
ADAPTIVE_GAIN = 0.15
#: Results in a measurement window: twice the level, and at least this many.
ADAPTIVE_MIN_WINDOW = 16


class AdaptiveConcurrency:
    """How many items a run works on at a time, found by the run: grows while throughput grows, capped.

    A fixed number is right for one network and wrong for another: 16 at a time keeps two cores busy on
    a LAN, while 40 ms away from the servers each worker waits on round trips most of the time and 64
    check four times as fast. So the run measures itself (:meth:`record` is given every result):

    - It starts at ``start``. After each change it lets ``limit`` results go by (the new workers get
      going), then measures the completion rate over the next ``2 * limit`` results (at least
      :data:`ADAPTIVE_MIN_WINDOW`).
    - A rate at least ``gain`` above the best measured so far keeps the level and, below ``cap``, raises
      it by half. A rate that is not: back to the best level, and there it stays (a busy CPU or a
      server at its limit; more workers would only queue).
    - A result ``pushback(result)`` says the servers pushed back on (for example a login that had to be
      retried, or a refused connection) halves the level (not below ``minimum``), and there it stays;
      further push-back within the next ``limit`` results is the same burst and halves nothing more.

    Deterministic given ``clock`` (tests pass a fake one). Thread-safe: :attr:`limit` is a plain int to
    read; :meth:`record` takes a lock. :attr:`levels` is the history of levels, for the run's summary.
    """

    def __init__(
        self,
        start=ADAPTIVE_START,
        cap=ADAPTIVE_CAP,
        minimum=ADAPTIVE_MIN,
        pushback=None,
        gain=ADAPTIVE_GAIN,
        clock=monotonic,
    ):  # type: (int, int, int, Optional[Callable[[Mapping[str, Any]], bool]], float, Callable[[], float]) -> None
        self.cap = max(1, min(int(cap), MAX_CONCURRENCY))
        self.minimum = max(1, min(int(minimum), self.cap))
        self.start = max(self.minimum, min(int(start), self.cap))
        self.limit = self.start
        self.levels = [self.start]  # type: List[int]
        self.settled = False
        self._pushback = pushback
        self._gain = float(gain)
        self._clock = clock
        self._lock = threading.Lock()
        self._best_rate = None  # type: Optional[float]
        self._best_limit = self.start
        self._calm = 0  # results during which push-back halves nothing more
        self._skip = 0
        self._window = 0
        self._count = 0
        self._window_start = 0.0
        self._begin()

    @property
    def peak(self):  # type: () -> int
        return max(self.levels)

    def _begin(self):  # type: () -> None
        self._skip = self.limit
        self._window = max(ADAPTIVE_MIN_WINDOW, 2 * self.limit)
        self._count = 0

    def _set(self, limit):  # type: (int) -> None
        if limit != self.limit:
            self.limit = limit
            self.levels.append(limit)
        self._begin()

    def record(self, result):  # type: (Mapping[str, Any]) -> int
        """Take one finished item's result into account; the level from now on."""
        with self._lock:
            if self._calm:
                self._calm -= 1
            elif self._pushback is not None and self._pushback(result):
                self.settled = True
                self._set(max(self.minimum, self.limit // 2))
                self._calm = self.limit
                return self.limit
            if self.settled:
                return self.limit
            if self._skip:
                self._skip -= 1
                if not self._skip:
                    self._window_start = self._clock()
                return self.limit
            self._count += 1
            if self._count < self._window:
                return self.limit
            elapsed = self._clock() - self._window_start
            rate = self._count / elapsed if elapsed > 0 else float("inf")
            if self._best_rate is None or rate >= self._best_rate * (1.0 + self._gain):
                self._best_rate, self._best_limit = rate, self.limit
                if self.limit >= self.cap:
                    self.settled = True
                else:
                    self._set(min(self.cap, max(self.limit + 1, self.limit * 3 // 2)))
            else:
                self.settled = True
                self._set(self._best_limit)
            return self.limit

    def __repr__(self):  # type: () -> str
        return "AdaptiveConcurrency(limit=%d, levels=%r, settled=%r)" % (self.limit, self.levels, self.settled)


# --------------------------------------------------------------------------- the runner


def workers_for(concurrency, count):  # type: (Union[int, AdaptiveConcurrency], int) -> int
    """How many threads a run of ``count`` items at ``concurrency`` uses (1 to :data:`MAX_CONCURRENCY`).

    For an :class:`AdaptiveConcurrency`, the most it may grow to.
    """
    if isinstance(concurrency, AdaptiveConcurrency):
        concurrency = concurrency.cap
    return max(1, min(int(concurrency), MAX_CONCURRENCY, count or 1))


def _run_threads(one, indexes, workers, name, adaptive=None):
    # type: (Callable[[int], None], List[int], int, str, Optional[AdaptiveConcurrency]) -> None
    """``one(index)`` for every index on ``workers`` threads that take the next index as they finish one.

    Plain ``threading`` (``concurrent.futures`` is not in Python 2.7's standard library). With
    ``adaptive``, the number of workers follows ``adaptive.limit``: a worker that finds more workers
    running than the limit ends, and after each item a worker starts new ones up to the limit while
    indexes are left. The first exception a worker meets stops every worker from taking more work and
    is raised here after all of them have ended, so no thread outlives the call.
    """
    lock = threading.Lock()
    finished = threading.Condition(lock)
    state = {"next": 0, "running": 0}
    threads = []  # type: List[threading.Thread]
    errors = []  # type: List[BaseException]

    def start_workers(count):  # type: (int) -> None
        # Called with the lock held.
        for _number in range(count):
            thread = threading.Thread(target=worker, name="%s-%d" % (name, len(threads)))
            thread.daemon = True
            threads.append(thread)
            state["running"] += 1
            thread.start()

    def take():  # type: () -> Optional[int]
        with lock:
            wanted = adaptive.limit if adaptive is not None else workers
            if errors or state["next"] >= len(indexes) or state["running"] > wanted:
                state["running"] -= 1
                finished.notify_all()
                return None
            index = indexes[state["next"]]
            state["next"] += 1
            if state["running"] < wanted:
                start_workers(min(wanted - state["running"], len(indexes) - state["next"]))
            return index

    def worker():  # type: () -> None
        while True:
            index = take()
            if index is None:
                return
            try:
                one(index)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread below
                with lock:
                    errors.append(exc)

    with lock:
        start_workers(min(workers, len(indexes)))
        while state["running"]:
            finished.wait()
        started = list(threads)
    for thread in started:
        thread.join()
    if errors:
        raise errors[0]


def run_per_user(
    items,  # type: Sequence[Item]
    work,  # type: Callable[[Item], Result]
    concurrency=DEFAULT_CONCURRENCY,  # type: Union[int, AdaptiveConcurrency]
    breaker=None,  # type: Optional[Breaker]
    skip=None,  # type: Optional[Callable[[Item, Result], Result]]
    probe_first=False,  # type: bool
    name="per_user",  # type: str
    on_result=None,  # type: Optional[Callable[[Result], None]]
):
    # type: (...) -> List[Result]
    """``work(item)`` for every item, at most ``concurrency`` at a time; the results in input order.

    ``concurrency``: a number, or an :class:`AdaptiveConcurrency` that is given every result of ``work``
    and says how many workers to run from then on (between 1 and its cap).

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
            if adaptive is not None:
                adaptive.record(result)
        results[index] = result
        if on_result is not None:
            on_result(result)

    adaptive = concurrency if isinstance(concurrency, AdaptiveConcurrency) else None
    indexes = list(range(len(items)))
    if probe_first and indexes:
        one(indexes.pop(0))
    workers = workers_for(concurrency, len(indexes))
    if workers == 1:
        for index in indexes:
            one(index)
    else:
        _run_threads(one, indexes, min(workers, adaptive.limit) if adaptive is not None else workers, name, adaptive)
    return [result for result in results if result is not None]
