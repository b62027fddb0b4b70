"""Client for the emulated Google's control API (``/_lab/``), stdlib only.

Why stdlib: the orchestrator, the pytest plugin and ad-hoc scripts all drive the lab, and none of them
should need ``requests`` or the server's dependencies just to flip a switch. TLS is verified against the
lab CA like any other client would.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any


class GoogleControlError(RuntimeError):
    """A control call failed; ``status`` is the HTTP status (0 when the server was unreachable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


class GoogleControl:
    """One method per control action of the emulated Google."""

    def __init__(self, base_url: str, ca_path: str | None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        context = ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()
        # No proxies: the lab is on loopback and *_proxy variables must not divert control calls.
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )

    def _call(self, method: str, action: str, payload: dict[str, Any] | None = None) -> Any:
        data = json.dumps(payload).encode("utf-8") if payload is not None else None
        request = urllib.request.Request(
            f"{self.base_url}/_lab/{action}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise GoogleControlError(exc.code, exc.read().decode("utf-8", "replace")) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise GoogleControlError(0, f"{self.base_url} unreachable: {exc}") from exc

    def _post(self, action: str, payload: dict[str, Any] | None = None) -> Any:
        return self._call("POST", action, payload or {})

    # -- read
    def health(self) -> dict[str, Any]:
        """``{"ok": true, "pid": N}`` once the server answers."""
        return self._call("GET", "health")

    def wait_ready(self, timeout: float = 15.0) -> dict[str, Any]:
        """Poll ``health`` until the server answers (e.g. right after spawning it)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.health()
            except GoogleControlError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def state(self) -> dict[str, Any]:
        """Summary of users, service accounts, keys, scopes, IMAP, clock, faults and latency."""
        return self._call("GET", "state")

    def users(self) -> list[str]:
        """All user addresses of the domain, sorted."""
        return list(self._call("GET", "users")["users"])

    def stats(self) -> dict[str, Any]:
        """``{"endpoints": {name: {"total": n, "<status>": n}}, "total": n, "faults_served": n}``.

        Counts since the start or the last :meth:`reset_stats` / :meth:`reset`; :meth:`requests` lists them.
        """
        return self._call("GET", "stats")

    # -- whole state
    def reset(self) -> None:
        """Back to the config the server started with (users, keys, scopes, IMAP, clock, faults, tokens, stats)."""
        self._post("reset")

    # -- users
    def add_users(self, users: Iterable[str]) -> int:
        """Add addresses; returns the user count."""
        return int(self._post("users/add", {"users": list(users)})["user_count"])

    def remove_users(self, users: Iterable[str]) -> int:
        """Remove addresses (their tokens stop working); returns the user count."""
        return int(self._post("users/remove", {"users": list(users)})["user_count"])

    def set_users(self, users: Iterable[str], keep_admin: bool = True) -> int:
        """Replace the user list (the admin stays unless ``keep_admin`` is false)."""
        return int(self._post("users/set", {"users": list(users), "keep_admin": keep_admin})["user_count"])

    # -- domain-wide delegation
    def authorize_scopes(self, client_id: str, scopes: Iterable[str]) -> list[str]:
        """Add scopes to the client id's domain-wide delegation grant; returns the grant."""
        return list(self._post("scopes/authorize", {"client_id": client_id, "scopes": list(scopes)})["scopes"])

    def revoke_scopes(self, client_id: str, scopes: Iterable[str] | None = None) -> list[str]:
        """Remove scopes (all when ``scopes`` is None); returns what is left."""
        payload: dict[str, Any] = {"client_id": client_id, "scopes": None if scopes is None else list(scopes)}
        return list(self._post("scopes/revoke", payload)["scopes"])

    def set_scopes(self, client_id: str, scopes: Iterable[str]) -> list[str]:
        """Replace the client id's grant."""
        return list(self._post("scopes/set", {"client_id": client_id, "scopes": list(scopes)})["scopes"])

    # -- IMAP
    def set_user_imap(self, user: str, enabled: bool) -> None:
        """Gmail's per-user IMAP switch (also what users.settings.imap reports)."""
        self._post("imap/user", {"user": user, "enabled": enabled})

    def set_domain_imap(self, enabled: bool) -> None:
        """The Admin console's domain-wide IMAP switch (also the Cloud Identity policy value)."""
        self._post("imap/domain", {"enabled": enabled})

    def set_suspended(self, users: Iterable[str], suspended: bool = True) -> list[str]:
        """Suspend users (or restore them, ``suspended=False``) as the Admin console does; returns the suspended."""
        payload = {"users": list(users), "suspended": suspended}
        return list(self._post("users/suspend", payload)["suspended_users"])

    # -- service accounts and keys
    def add_service_account(self, email: str, client_id: str, project_id: str) -> None:
        """Create another service account (no keys yet)."""
        self._post("service-accounts/add", {"email": email, "client_id": client_id, "project_id": project_id})

    def disable_service_account(self, email: str) -> None:
        """Disable: new grants fail with "account not found" and issued tokens stop working."""
        self._post("service-accounts/disable", {"email": email})

    def enable_service_account(self, email: str) -> None:
        """Re-enable a disabled service account."""
        self._post("service-accounts/enable", {"email": email})

    def register_key(self, email: str, private_key_id: str, public_key_pem: str) -> None:
        """Make Google know a (public) key for the service account under ``private_key_id``."""
        self._post(
            "keys/register", {"email": email, "private_key_id": private_key_id, "public_key_pem": public_key_pem}
        )

    def delete_key(self, private_key_id: str) -> bool:
        """Forget a key: JWTs signed with it then fail with "Invalid JWT Signature."."""
        return bool(self._post("keys/delete", {"private_key_id": private_key_id})["deleted"])

    def set_key_disabled(self, private_key_id: str, disabled: bool = True) -> None:
        """Disable (or enable) a key as IAM's keys.disable does: JWTs signed with it are refused while disabled."""
        self._post("keys/disable" if disabled else "keys/enable", {"private_key_id": private_key_id})

    # -- projects, Service Usage, organisation policy, IAM permissions
    def add_project(self, project_id: str, services: Iterable[str] = (), admins: Iterable[str] = ()) -> dict[str, Any]:
        """A project with only ``services`` enabled; ``admins`` (service-account e-mails) may administer it."""
        return dict(
            self._post("projects/add", {"project_id": project_id, "services": list(services), "admins": list(admins)})
        )

    def set_services(self, project_id: str, services: Iterable[str], enabled: bool) -> list[str]:
        """Enable or disable APIs of a project (calls from its service accounts then get SERVICE_DISABLED)."""
        payload = {"project_id": project_id, "services": list(services), "enabled": enabled}
        return list(self._post("projects/services", payload)["services"])

    def set_key_creation_policy(self, project_id: str, disabled: bool) -> None:
        """Apply (or lift) iam.disableServiceAccountKeyCreation to the project: keys.create then fails."""
        self._post("projects/org-policy", {"project_id": project_id, "disable_key_creation": disabled})

    def deny_permissions(self, permissions: Iterable[str]) -> None:
        """IAM permissions every caller but the super admin lacks from now on (replaces the list; [] clears it)."""
        self._post("iam/deny", {"permissions": list(permissions)})

    # -- clock
    def set_clock(
        self, tolerance_seconds: float | None = None, offset_seconds: float | None = None
    ) -> dict[str, float]:
        """JWT iat/exp tolerance and the server clock's offset from real time (Date header, expiry)."""
        return dict(self._post("clock", {"tolerance_seconds": tolerance_seconds, "offset_seconds": offset_seconds}))

    # -- faults and latency
    def inject_fault(
        self, path_prefix: str, status: int, count: int = 1, body: Any = None, retry_after: float | str | None = None
    ) -> None:
        """Answer the next ``count`` requests under ``path_prefix`` with ``status`` and Google's body for it.

        ``retry_after``: seconds (a number) or an HTTP date (text) sent as a ``Retry-After`` header with each.
        """
        payload: dict[str, Any] = {"path_prefix": path_prefix, "status": status, "count": count}
        if body is not None:
            payload["body"] = body
        if retry_after is not None:
            payload["retry_after"] = retry_after
        self._post("faults", payload)

    def reset_faults(self) -> None:
        """Drop all pending faults."""
        self._post("faults/reset")

    def set_latency(self, path_prefix: str, ms: float) -> None:
        """Delay requests under ``path_prefix`` (longest prefix wins); ``ms=0`` removes the rule."""
        self._post("latency", {"path_prefix": path_prefix, "ms": ms})

    def reset_latency(self) -> None:
        """Remove all latency rules."""
        self._post("latency/reset")

    def reset_stats(self) -> None:
        """Zero the request counters and empty the request log."""
        self._post("stats/reset")

    def requests(self, path_prefix: str = "") -> list[dict[str, Any]]:
        """The request log, oldest first (the last 20,000 API requests, control calls excluded).

        Each entry: ``method``, ``path`` (no query string), ``endpoint`` (the stats name, e.g. ``token``),
        ``status``, ``fault`` (an injected fault answered it), ``received_at`` and ``answered_at`` (Unix time,
        the server's real clock, not the offset one; latency rules sleep between the two).
        """
        query = "?" + urllib.parse.urlencode({"path_prefix": path_prefix}) if path_prefix else ""
        return list(self._call("GET", "requests" + query)["requests"])

    # -- tokens
    def issued_tokens(self) -> dict[str, Any]:
        """What the token endpoint minted since the start or the last :meth:`reset`, oldest first.

        ``{"issued": [{access_token, assertion, jti, account, subject, issued_at}], "capacity": n, "dropped": n}``:
        each access token with the full JWT assertion it was exchanged for (``jti`` is the assertion's claim, usually
        ``None``: google-auth sets none). Only accepted assertions are listed. ``dropped`` counts entries pushed out
        past ``capacity`` (20,000); a secret sweep needs it to be 0. For tests that search output for each string.
        """
        return dict(self._call("GET", "issued"))

    def expire_tokens(self, subject: str | None = None) -> int:
        """Invalidate issued access tokens (all, or those of one user / service account); returns how many."""
        return int(self._post("tokens/expire", {"subject": subject})["expired"])
