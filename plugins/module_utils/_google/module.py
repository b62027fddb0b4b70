# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``GoogleModule``: the AnsibleModule every Google-facing module is (community.hashi_vault's HashiVaultModule idea).

It does once what each Google-facing module did by hand::

    def main():
        module = GoogleModule(argument_spec=dict(subjects=dict(type="list", elements="str", required=True)))
        module.run(lambda: check_delegation(module.token_source(scopes), ...))

- merges the shared argument spec: the key source (``key_source.key_source_argument_spec``) and the
  Google connection options (:func:`google_argument_spec`: token URI, CA bundle, timeout, retries,
  API base URL), with "at most one key source" among the mutually exclusive groups;
- checks the libraries once (google-auth and requests, unless the controller signed) and fails with
  ``missing_required_lib``;
- reads the key (``content`` from the action plugin, or ``path`` on the node), or takes the assertions
  the controller signed (``presigned``, set by the action plugin), and builds the token source or API
  client on one shared session (:meth:`token_source`, :meth:`api_client`);
- :meth:`run` maps every collection exception to ``fail_json`` in one place: ``failures.GoogleFailure``
  (with its class), ``service_account.KeyValidationError`` (with its reason and field),
  ``users.UsersError``, and anything unexpected with its traceback.

Parses as Python 3.6.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import traceback

try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Callable, Dict, List, Optional, Sequence  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import iam
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.api import GoogleApiClient
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.failures import GoogleFailure
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.session import new_session
from ansible_collections.nupoint.gworkspace.plugins.module_utils._google.token import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DelegatedTokenSource,
    PresignedAssertions,
    missing_google_library,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.key_source import (
    key_source_argument_spec,
    key_source_mutually_exclusive,
    no_key_message,
    read_key_text,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.service_account import (
    KeyValidationError,
    token_uri_allowed,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.users import UsersError


def google_argument_spec():  # type: () -> Dict[str, Dict[str, Any]]
    """Options of every module that talks to Google (doc fragment ``nupoint.gworkspace.google``)."""
    return dict(
        token_uri=dict(type="str", no_log=False),  # a URL; "token" in the name only looks secret
        ca_path=dict(type="path"),
        timeout=dict(type="float", default=DEFAULT_TIMEOUT),
        retries=dict(type="int", default=DEFAULT_RETRIES),
        api_base_url=dict(type="str"),
        # Set by the action plugin, not by hand: JWT assertions the controller signed with the key, so a
        # node without google-auth (a stock MSL host) only exchanges them (token.PresignedAssertions).
        # One JSON string, not a dict: no_log masks every value of a dict wherever it appears (the
        # client ID, each user's address), but a string only where the whole string appears.
        presigned=dict(type="str", no_log=True),
    )


class GoogleModule(AnsibleModule):
    """An AnsibleModule with the key source and Google connection options, libraries checked, errors mapped.

    ``argument_spec``: the module's own options (merged over the shared ones); ``mutually_exclusive``:
    the module's own groups (the key-source group is added). Check mode is supported by default: every
    Google-facing module either reads or computes its change before making it.
    """

    def __init__(self, argument_spec, mutually_exclusive=None, supports_check_mode=True, **kwargs):
        # type: (Dict[str, Dict[str, Any]], Optional[Sequence[Sequence[str]]], bool, **Any) -> None
        spec = key_source_argument_spec()
        spec.update(google_argument_spec())
        spec.update(argument_spec)
        exclusive = list(key_source_mutually_exclusive())  # type: List[Sequence[str]]
        exclusive.extend(mutually_exclusive or [])
        super(GoogleModule, self).__init__(
            argument_spec=spec, mutually_exclusive=exclusive, supports_check_mode=supports_check_mode, **kwargs
        )
        missing = missing_google_library(signing=self.params["presigned"] is None)
        if missing is not None:
            self.fail_json(msg=missing_required_lib(missing[0]), exception=missing[1])
        if self.params["timeout"] <= 0:
            self.fail_option("timeout must be more than 0 seconds, not %s." % self.params["timeout"], "timeout")
        if self.params["retries"] < 0:
            self.fail_option("retries must be 0 or more, not %d." % self.params["retries"], "retries")
        token_uri = self.params["token_uri"]
        if token_uri and not token_uri_allowed(token_uri):
            # The assertions sent there are signed with the service account's key: never in clear over a network.
            self.fail_option(
                "token_uri %r must be an https:// URL (Google's is https://oauth2.googleapis.com/token); plain http is "
                "accepted only for a loopback test server. Leave token_uri unset to use the key's." % token_uri,
                "token_uri",
            )

    def fail_option(self, msg, option):  # type: (str, str) -> None
        """Fail on an option no run can use, before anything is done: ``reason`` invalid_option, ``field`` the option."""
        self.fail_json(msg=msg, reason="invalid_option", field=option, changed=False)

    # ------------------------------------------------------------------ the key, tokens, API clients

    def key_text(self):  # type: () -> str
        """The JSON key (from the action plugin, or the node's ``path``); raises ``KeyValidationError``."""
        return read_key_text(self.params)

    def _connection(self):  # type: () -> Dict[str, Any]
        """The connection options every token source and API client of the task shares."""
        return {name: self.params[name] for name in ("ca_path", "timeout", "retries")}

    def token_source(self, scopes, max_connections=10, **kwargs):  # type: (Sequence[str], int, **Any) -> DelegatedTokenSource
        """A token source over the task's key (or the controller's assertions) and connection options.

        ``kwargs`` go to the source as they are (``lean=True`` for the standard-library session).
        """
        options = self._connection()
        options.update(kwargs)
        if self.params["presigned"] is not None:
            options["signer"] = PresignedAssertions(json.loads(self.params["presigned"]))
            return DelegatedTokenSource(scopes=scopes, max_connections=max_connections, **options)
        return DelegatedTokenSource(
            self.key_text(), scopes, token_uri=self.params["token_uri"], max_connections=max_connections, **options
        )

    def api_client(self, scopes, max_connections=10):  # type: (Sequence[str], int) -> GoogleApiClient
        """A REST client whose token source shares its one pooled session."""
        session = new_session(self.params["ca_path"], max_connections)
        source = self.token_source(scopes, max_connections, session=session)
        return GoogleApiClient(source, api_base_url=self.params["api_base_url"], session=session, **self._connection())

    def admin_api_client(self):  # type: () -> GoogleApiClient
        """A REST client acting as an administrator's own credential (IAM, Service Usage): the task's key when
        one is given, else the controller's Application Default Credentials."""
        key_text = None if no_key_message(self.params) else self.key_text()
        return iam.admin_api_client(
            key_text, self.params["token_uri"], self.params["api_base_url"], **self._connection()
        )

    # ------------------------------------------------------------------ running the module

    def run(self, body):  # type: (Callable[[], Dict[str, Any]]) -> None
        """Call ``body()`` and exit with its result: failed when the result says ``failed``.

        Every collection exception becomes one ``fail_json`` with its message and its public details.
        """
        try:
            result = body()
        except GoogleFailure as exc:
            self.fail_json(msg=exc.msg, changed=False, **exc.as_result())
        except KeyValidationError as exc:
            # In the vocabulary of per-user results, a key that cannot be used is the key's failure.
            self.fail_json(msg=exc.msg, changed=False, failure_class="token_invalid_key", **exc.as_result())
        except UsersError as exc:
            self.fail_json(msg=exc.msg, changed=False, reason=exc.reason)
        except Exception as exc:  # noqa: BLE001 - an unexpected error still reports, with its traceback
            self.fail_json(
                msg="The task failed unexpectedly (%s: %s); please report it." % (type(exc).__name__, exc),
                exception=traceback.format_exc(),
            )
        result.setdefault("changed", False)
        if result.pop("failed", False):
            self.fail_json(**result)
        self.exit_json(**result)
