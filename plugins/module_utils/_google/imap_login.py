# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logging in over IMAP as each user, the way NuPoint Advanced UM does, classified and timed.

::

    source = new_token_source(key_info, SCOPE_MAIL, ca_path=ca_path, concurrency=16)
    checker = ImapChecker(source, "imap.gmail.com", 993, ssl_context=ssl_context_for(ca_path or True))
    results, summary = checker.run(users, concurrency=16)
    results[0]    # {"user": ..., "failure_class": "ok" | "imap_disabled" | ..., "phase": ..., "latency_ms": {...}}

Per user (:meth:`ImapChecker.check`): mint a delegated access token (nothing is shared across users but
the loaded key / signer inside the token source), open a TLS connection that verifies the server's
certificate, ``AUTHENTICATE XOAUTH2`` (``imap.ImapConnection``), optionally ``EXAMINE`` a mailbox
(read-only, so NuPoint's view of ``\\Recent`` is left alone), ``LOGOUT``. Each phase is timed.

Why it is built this way:

- The run goes through ``pool.run_per_user``: one thread pool for the whole run, one
  ``ssl.SSLContext`` (the CA bundle is parsed once), one lean keep-alive HTTP session to the token
  endpoint (:func:`new_token_source`). Nothing is formatted or logged per user.
- Unless told a number, the run finds its own concurrency (``pool.AdaptiveConcurrency``, from 16 up to
  64 while the rate of checked users grows; halved when logins have to be retried): a LAN and a WAN
  link 40 ms long need very different numbers, and the administrator knows neither.
- Each check waits for as few round trips as IMAP allows (``imap.ImapConnection``): the TCP handshake
  runs while the token is minted, ``AUTHENTICATE`` leaves with the TLS handshake once the run knows the
  server takes SASL-IR, ``EXAMINE`` and ``LOGOUT`` go out together.
- Every user has a deadline (``user_timeout``): socket timeouts are cut to what is left of it before
  each phase, and the token source's backoff sleeps go through ``pool.deadline_sleep``.
- Only what can succeed on a second try is retried (``pool.backoff_delay``): Gmail's
  ``Too many simultaneous connections``, ``[UNAVAILABLE]``, reset connections, timeouts. Refusals never are.
- When the first users in a row all fail with one network class before logging in, the servers are
  plainly unreachable and the rest are not tried (``pool.Breaker``).
- Every outcome is one class of ``failures.FAILURE_CLASSES``. Results carry the server's text and ids,
  never a token.

Parses as Python 3.6: standard library plus google-auth/requests (through ``token``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import os
import random
import ssl  # noqa: F401 - named in type comments
import time

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass


from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import monotonic, raise_from
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import failures, report
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import (
    ENDPOINT_IMAP,
    IMAP_PHASE_WORDS,
    NETWORK_FAILURE_CLASSES,
    ImapFailure,
    TokenError,
    classify_imap_failure,
    hint,
    shorten,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.imap import (
    ImapConnection,
    ServerProfile,
    XOAuth2Exchange,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.pool import (
    ADAPTIVE_CAP,
    AdaptiveConcurrency,
    Breaker,
    backoff_delay,
    deadline_sleep,
    run_per_user,
    user_deadline,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.session import ssl_context_for
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.token import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DelegatedTokenSource,
)

DEFAULT_IMAP_HOST = "imap.gmail.com"
DEFAULT_IMAP_PORT = 993
DEFAULT_MAILBOX = "INBOX"
DEFAULT_USER_TIMEOUT = 60.0
PHASES = ("token", "connect", "auth", "select")


# How a run of checks mints tokens: over the lean keep-alive session, with backoff sleeps that give up
# rather than pass the current user's deadline. The module (GoogleModule.token_source) uses the same.
RUN_SOURCE_OPTIONS = {"sleep": deadline_sleep, "lean": True}  # type: Dict[str, Any]


def new_token_source(
    key_info,
    scope,
    token_uri=None,
    ca_path=None,
    timeout=DEFAULT_TIMEOUT,
    retries=DEFAULT_RETRIES,
    concurrency=None,
):  # type: (Any, str, Optional[str], Optional[str], float, int, Optional[int]) -> DelegatedTokenSource
    """A token source set up for a run of checks (:data:`RUN_SOURCE_OPTIONS`), one connection per worker.

    ``concurrency``: the run's, None for an adaptive one (:func:`most_workers`). Raises ``TokenError``."""
    options = dict(RUN_SOURCE_OPTIONS, token_uri=token_uri, ca_path=ca_path, timeout=timeout, retries=retries)
    return DelegatedTokenSource(key_info, [scope], max_connections=most_workers(concurrency), **options)


def most_workers(concurrency, users=None):  # type: (Optional[int], Optional[int]) -> int
    """The most users a run at ``concurrency`` (None: adaptive) checks at a time, within ``users`` if given."""
    most = ADAPTIVE_CAP if concurrency is None else int(concurrency)
    return max(1, min(most, users)) if users is not None else most


def _ms(seconds):  # type: (float) -> float
    return round(seconds * 1000.0, 1)


class ImapChecker:
    """Checks users' IMAP logins; thread-safe, reusable across runs.

    ``token_source``: anything with ``token(subject, scopes=None) -> (access_token, expiry)`` raising
    ``TokenError`` (:func:`new_token_source`). ``ssl_context``: from ``session.ssl_context_for``. ``timeout``: seconds
    per network operation; ``user_timeout``: seconds for one user, retries included. ``retries``: extra
    attempts for retryable IMAP failures. ``select_mailbox``: mailbox to ``EXAMINE``, empty to skip.
    ``client_factory(host, port, ssl_context, timeout)``: returns the IMAP client (default
    ``imap.ImapConnection``; bench/imap_check.py passes an imapclient one, tests a fake). Only the
    built-in client saves round trips: its TCP handshake starts before the token is minted, and what the
    first greetings say about the server (``imap.ServerProfile``) is shared by the checker's connections.
    """

    def __init__(
        self,
        token_source,  # type: Any
        host=DEFAULT_IMAP_HOST,  # type: str
        port=DEFAULT_IMAP_PORT,  # type: int
        ssl_context=None,  # type: Optional[ssl.SSLContext]
        timeout=DEFAULT_TIMEOUT,  # type: float
        user_timeout=DEFAULT_USER_TIMEOUT,  # type: float
        retries=DEFAULT_RETRIES,  # type: int
        select_mailbox=DEFAULT_MAILBOX,  # type: Optional[str]
        scopes=None,  # type: Optional[Sequence[str]]
        backoff_base=1.0,  # type: float
        backoff_max=16.0,  # type: float
        client_factory=None,  # type: Optional[Callable[..., Any]]
        clock=monotonic,  # type: Callable[[], float]
        sleep=time.sleep,  # type: Callable[[float], None]
        rng=random.random,  # type: Callable[[], float]
    ):
        # type: (...) -> None
        if client_factory is None:
            client_factory = ImapConnection
        # The built-in client's round-trip savings (imap.ImapConnection): a factory without them gets none.
        self._start_connect = getattr(client_factory, "start_connect", None)
        self._profile = ServerProfile()
        self.token_source = token_source
        self.host = host
        self.port = int(port)
        self.ssl_context = ssl_context if ssl_context is not None else ssl_context_for(True)
        self.timeout = float(timeout)
        self.user_timeout = float(user_timeout)
        self.retries = max(0, int(retries))
        self.select_mailbox = select_mailbox or None
        self.scopes = list(scopes) if scopes else None
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self._client_factory = client_factory
        self._clock = clock
        self._sleep = sleep
        self._rng = rng

    # ------------------------------------------------------------------ one user

    def check(self, user):  # type: (str) -> Dict[str, Any]
        """Check one user; never raises.

        Returns ``{"user", "failure_class", "phase", "message", "attempts", "latency_ms"}`` (plus
        ``google_error`` when Google refused the token): ``phase`` is where it failed (None when ok),
        ``latency_ms`` has ``token``, ``connect``, ``auth``, ``select`` (each phase that ran) and ``total``.
        """
        started = self._clock()
        deadline = started + self.user_timeout
        latency = {}  # type: Dict[str, float]
        attempts = 0
        token = None  # type: Optional[str]
        early = None  # the IMAP connection begun while the token is minted
        try:
            with user_deadline(deadline):
                while True:
                    attempts += 1
                    try:
                        if token is None:
                            if self._start_connect is not None:
                                early = self._start_connect(self.host, self.port)
                            phase_start = self._clock()
                            token = self._mint(user)
                            latency["token"] = _ms(self._clock() - phase_start)
                        sock, early = early, None
                        self._imap_session(user, token, deadline, latency, sock)
                        return self._result(user, "ok", None, "", attempts, latency, started)
                    except TokenError as exc:
                        # The token source retried what it could; a refusal is final.
                        return self._result(
                            user,
                            exc.failure_class,
                            "token",
                            exc.msg,
                            max(attempts, exc.attempts),
                            latency,
                            started,
                            google_error=exc.google_error,
                        )
                    except ImapFailure as exc:
                        wait = backoff_delay(attempts, self.backoff_base, self.backoff_max, self._rng)
                        if exc.retryable and attempts <= self.retries and self._clock() + wait < deadline:
                            self._sleep(wait)
                            continue
                        return self._result(user, exc.failure_class, exc.phase, exc.msg, attempts, latency, started)
        except Exception as exc:  # noqa: BLE001 - one user's surprise must not end the run
            return self._result(
                user,
                "imap_other",
                None,
                "The check failed unexpectedly (%s: %s)."
                % (type(exc).__name__, shorten(str(exc) or type(exc).__name__)),
                attempts,
                latency,
                started,
            )
        finally:
            if early is not None:  # the token was refused: the connection is not needed
                early.close()

    def _mint(self, user):  # type: (str) -> str
        if self.scopes is None:
            return self.token_source.token(user)[0]
        return self.token_source.token(user, self.scopes)[0]

    def _remaining(self, deadline, phase):  # type: (float, str) -> float
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise ImapFailure(
                "timeout",
                "This user's time limit (user_timeout=%g s) ran out before %s. %s"
                % (self.user_timeout, IMAP_PHASE_WORDS.get(phase, phase), hint("timeout", ENDPOINT_IMAP)),
                False,
                phase,
            )
        return min(self.timeout, remaining)

    def _imap_session(self, user, token, deadline, latency, sock=None):  # type: (str, str, float, Dict[str, float], Any) -> None
        client = None
        phase = "connect"
        try:
            phase_start = self._clock()
            if self._start_connect is not None:
                client = self._client_factory(
                    self.host,
                    self.port,
                    self.ssl_context,
                    self._remaining(deadline, phase),
                    profile=self._profile,
                    sock=sock,
                )
            else:
                client = self._client_factory(self.host, self.port, self.ssl_context, self._remaining(deadline, phase))
            sock = None
            latency["connect"] = _ms(self._clock() - phase_start)

            phase = "auth"
            client.socket().settimeout(self._remaining(deadline, phase))
            phase_start = self._clock()
            exchange = XOAuth2Exchange(user, token)
            try:
                _authenticate(client, exchange, user, token)
            except Exception as exc:  # noqa: BLE001 - classified below, with the XOAUTH2 error if any
                # The built-in client may read the greeting after sending AUTHENTICATE: its failure is the connection's.
                failure = classify_imap_failure(exc, phase if getattr(client, "greeted", True) else "connect")
                if exchange.error_details:
                    failure.msg = "%s (XOAUTH2 error: %s)" % (
                        failure.msg,
                        ", ".join("%s %s" % item for item in sorted(exchange.error_details.items())),
                    )
                raise_from(failure, None)
            latency["auth"] = _ms(self._clock() - phase_start)

            if self.select_mailbox:
                phase = "select"
                client.socket().settimeout(self._remaining(deadline, phase))
                phase_start = self._clock()
                select_and_logout = getattr(client, "select_and_logout", None)
                if select_and_logout is not None:
                    # EXAMINE and LOGOUT in one round trip; the client closes the connection either way.
                    done, client = client, None
                    done.select_and_logout(self.select_mailbox, readonly=True)
                    latency["select"] = _ms(self._clock() - phase_start)
                    return
                client.select_folder(self.select_mailbox, readonly=True)
                latency["select"] = _ms(self._clock() - phase_start)

            phase = "logout"
            done, client = client, None
            _logout_quietly(done, self.timeout)
        except ImapFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - every transport or protocol failure is classified
            raise_from(classify_imap_failure(exc, phase), None)
        finally:
            if client is not None:
                _shutdown_quietly(client)
            if sock is not None:  # the client was never made
                sock.close()

    def _result(
        self,
        user,
        failure_class,
        phase,
        message,
        attempts,
        latency,
        started,
        google_error=None,
    ):  # type: (str, str, Optional[str], str, int, Dict[str, float], float, Optional[str]) -> Dict[str, Any]
        latency = dict(latency)
        latency["total"] = _ms(self._clock() - started)
        result = {
            "user": user,
            "failure_class": failure_class,
            "phase": phase,
            "message": message,
            "attempts": attempts,
            "latency_ms": latency,
        }
        if google_error:
            result["google_error"] = google_error
        return result

    # ------------------------------------------------------------------ many users

    def run(
        self,
        users,  # type: Sequence[str]
        concurrency=None,  # type: Optional[int]
        on_result=None,  # type: Optional[Callable[[Dict[str, Any]], None]]
    ):
        # type: (...) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]
        """Check ``users`` with at most ``concurrency`` at a time; ``(results in input order, summary)``.

        ``concurrency`` None: adaptive (``pool.AdaptiveConcurrency``: from 16, up to 64 while the rate of
        checked users grows, halved when logins had to be retried or timed out); the summary's
        ``concurrency`` is then the most users checked at a time, and ``concurrency_levels`` the levels
        the run went through.

        ``on_result`` is called after each user (``report.ProgressFile.record``: see ``pool.run_per_user``).

        When the servers cannot be reached at all (the first ``max(20, 2 * concurrency)`` users in a row
        failed with the same network class before logging in; adaptive: the concurrency it starts with,
        16), the remaining users are not tried: each
        gets that class and a message saying so (``attempts`` 0). A firewall that drops packets would
        otherwise cost ``user_timeout`` per user.
        """
        started = self._clock()
        workers = most_workers(concurrency, len(users))
        adaptive = None if concurrency is not None else AdaptiveConcurrency(pushback=_pushed_back, clock=self._clock)
        level = workers if adaptive is None else adaptive  # type: Union[int, AdaptiveConcurrency]
        # The streak that trips the breaker: twice the users checked at a time when the run starts.
        breaker = Breaker(max(20, 2 * min(workers, workers if adaptive is None else adaptive.limit)), _unreachable)
        results = run_per_user(
            users, self.check, level, breaker, _not_tried(breaker), name="imap_check", on_result=on_result
        )
        summary = summarize(results, self._clock() - started, workers)
        if adaptive is not None:
            summary.update(concurrency=min(adaptive.peak, workers), concurrency_levels=list(adaptive.levels))
        return results, summary


def _pushed_back(result):  # type: (Mapping[str, Any]) -> bool
    """The servers pushed back on this check: it needed a second attempt, or it ran out of time."""
    return result.get("attempts", 1) > 1 or result["failure_class"] == "timeout"


def _unreachable(result):  # type: (Mapping[str, Any]) -> Optional[str]
    """The network class of a failure before the login (the server was never reached), else None."""
    failure_class = result["failure_class"]
    if failure_class in NETWORK_FAILURE_CLASSES and result.get("phase") in ("token", "connect"):
        return str(failure_class)
    return None


def _not_tried(breaker):  # type: (Breaker) -> Callable[[str, Mapping[str, Any]], Dict[str, Any]]
    def skip(user, cause):  # type: (str, Mapping[str, Any]) -> Dict[str, Any]
        return {
            "user": user,
            "failure_class": cause["failure_class"],
            "phase": cause["phase"],
            "message": "Not tried: the previous %d users all failed with %s before logging in, so this one would "
            "too. Last error: %s" % (breaker.threshold, cause["failure_class"], cause["message"]),
            "attempts": 0,
            "latency_ms": {"total": 0.0},
        }

    return skip


def _authenticate(client, exchange, user, token):  # type: (Any, XOAuth2Exchange, str, str) -> None
    sasl_login = getattr(client, "sasl_login", None)
    if sasl_login is not None:
        sasl_login("XOAUTH2", exchange)
    else:  # imapclient < 3 has no sasl_login
        client.oauth2_login(user, token)


def _logout_quietly(client, timeout):  # type: (Any, float) -> None
    # The verdict is in; a server that drops the connection at LOGOUT changes nothing.
    try:
        client.socket().settimeout(min(timeout, 5.0))
        client.logout()
    except Exception:  # noqa: BLE001
        _shutdown_quietly(client)


def _shutdown_quietly(client):  # type: (Any) -> None
    try:
        client.shutdown()
    except Exception:  # noqa: BLE001, S110 - the connection is being abandoned anyway
        pass


def _percentile(sorted_values, fraction):  # type: (Sequence[float], float) -> float
    if not sorted_values:
        return 0.0
    index = max(0, min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def summarize(results, duration, concurrency):  # type: (Sequence[Mapping[str, Any]], float, int) -> Dict[str, Any]
    """``failures.summarize`` plus the concurrency and per-phase latency percentiles (p50, p95, max)."""
    samples = {phase: [] for phase in tuple(PHASES) + ("total",)}  # type: Dict[str, List[float]]
    for result in results:
        for phase, value in result.get("latency_ms", {}).items():
            if phase in samples:
                samples[phase].append(value)
    latency = {}
    for phase, values in samples.items():
        if values:
            values.sort()
            latency[phase] = {
                "p50": _percentile(values, 0.5),
                "p95": _percentile(values, 0.95),
                "max": values[-1],
            }
    summary = failures.summarize(results, duration)
    summary.update(concurrency=concurrency, latency_ms=latency)
    return summary


def summary_message(summary, threshold_text, exceeded):  # type: (Mapping[str, Any], str, bool) -> str
    """The task's ``msg``: how many logins worked, how fast, and what failed against ``fail_threshold``."""
    text = "IMAP login ok for %d of %d users in %.1f s (%.0f users/s)" % (
        summary["ok"],
        summary["total"],
        summary["duration_seconds"],
        summary["users_per_second"],
    )
    if not summary["failed"]:
        return text + "."
    text += "; %d failed: %s" % (summary["failed"], failures.class_counts_text(summary["by_class"]))
    if exceeded:
        text += ". More than the fail_threshold (%s) allows." % threshold_text
    else:
        text += ", within fail_threshold (%s)." % threshold_text
    return text + " See failed_users; docs/imap-check.md explains each class."


def run_check(source, users, params, write_report):  # type: (Any, Sequence[str], Mapping[str, Any], bool) -> Dict[str, Any]
    """The ``imap_check`` module's run over clean ``users``: its result without ``msg`` and ``failed``.

    ``source``: a token source as :func:`new_token_source` makes it (closed here). ``params``: the
    module's options. The report is written when ``write_report`` and ``report_path`` are set; when it
    cannot be, ``report_error`` says why (and ``report`` is absent). Then progress also goes to
    ``report_path`` + ``.progress`` while the users are checked (``report.ProgressFile``).
    ``params["report_meta"]`` (optional) adds known facts to the report's header (host, clock offset, key
    fingerprint). Raises ``GoogleFailure`` (``tls``) for an unusable ``ca_path``. ``params["concurrency"]``
    None: the run finds its own (:meth:`ImapChecker.run`).
    """
    concurrency = params["concurrency"]
    if concurrency is not None:
        concurrency = most_workers(concurrency, len(users))
    try:
        ssl_context = ssl_context_for(params["ca_path"] or True)
    except (IOError, OSError, ValueError) as exc:
        source.close()
        raise_from(failures.GoogleFailure("tls", "Cannot load ca_path %s: %s." % (params["ca_path"], exc)), None)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    progress = None
    if params["report_path"] and write_report:
        progress = report.ProgressFile(report.progress_path(params["report_path"]), len(users))
    try:
        checker = ImapChecker(
            source,
            params["imap_host"],
            params["imap_port"],
            ssl_context=ssl_context,
            timeout=params["timeout"],
            user_timeout=params["user_timeout"],
            retries=params["retries"],
            select_mailbox=params["select_mailbox"],
        )
        results, summary = checker.run(users, concurrency, progress.record if progress is not None else None)
    finally:
        source.close()
        if progress is not None:
            progress.close()
    result = dict(
        summary=summary,
        failed_users=failures.failed_users(results),
        client_id=source.client_id,
        client_email=source.client_email,
    )  # type: Dict[str, Any]
    if params["return_results"]:
        result["results"] = results
    if params["report_path"] and write_report:
        meta = dict(
            started_at=started_at,
            imap_host=params["imap_host"],
            imap_port=params["imap_port"],
            select_mailbox=params["select_mailbox"],
            client_id=source.client_id,
            client_email=source.client_email,
            private_key_id=getattr(source, "private_key_id", "") or "",
            node=os.uname()[1],
        )
        meta.update(report.header_meta(params.get("report_meta")))
        try:
            result["report"] = report.write_report(params["report_path"], results, summary, meta)
        except (IOError, OSError) as exc:
            result["report_error"] = " The report could not be written to %s: %s." % (params["report_path"], exc)
    return result
