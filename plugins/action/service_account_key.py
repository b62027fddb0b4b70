# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for service_account_key: the admin credential read on the controller (or none: ADC), the
controller's key file ``dest`` read (vault-aware) to learn which key it holds, and a created key written to
``dest`` here, vault-encrypted when a vault secret is configured.

Why the controller writes ``dest``: ansible-vault's secrets live in the controller process only. The module
hands the created key back in one private result field (``key_handover``), which this plugin removes from the
result before anything else sees it, encrypts, and writes 0600 atomically. Without a vault secret the module
writes ``dest`` itself (0600) where it runs, which is the controller (``delegate_to: localhost``).
"""

import json
import os
from typing import Any

from ansible.module_utils.common.text.converters import to_text
from ansible.parsing.vault import VaultLib, is_encrypted, match_encrypt_secret

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import iam
from ansible_collections.nupoint.gworkspace.plugins.module_utils.files import atomic_write
from ansible_collections.nupoint.gworkspace.plugins.module_utils.service_account import (
    DEFAULT_P12_PASSWORD,
    P12_SAME_KEY_PAIR,
    KeyValidationError,
    derive_p12,
    inspect_key,
)
from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.google_api_action import AdminCredentialActionBase
from ansible_collections.nupoint.gworkspace.plugins.plugin_utils.key_source import (
    KeySourceError,
    read_controller_file,
    scrub_invocation,
)


def held_key(action: Any, dest: str, account: str) -> tuple[str | None, bool]:
    """``(private_key_id, vault_encrypted)`` of the key file at ``dest`` on the controller, or ``(None, False)``."""
    path = os.path.expanduser(dest)
    if not os.path.exists(path):
        return None, False
    with open(path, "rb") as handle:
        encrypted = is_encrypted(handle.read())
    try:
        data = json.loads(read_controller_file(action, path, "dest", "dest", find=False).decode("utf-8-sig"))
    except ValueError:
        raise KeySourceError(
            "dest %s is not a JSON key file; refusing to overwrite it." % dest, "not_json", "dest"
        ) from None
    if not isinstance(data, dict) or str(data.get("client_email", "")).lower() != account.lower():
        raise KeySourceError(
            "dest %s holds a key of %s, not of %s; refusing to overwrite it."
            % (dest, data.get("client_email") if isinstance(data, dict) else "?", account),
            "wrong_account",
            "dest",
        )
    return str(data.get("private_key_id") or "") or None, encrypted


class ActionModule(AdminCredentialActionBase):
    MODULE_NAME = "nupoint.gworkspace.service_account_key"
    _secret: tuple[str, Any] | None = None

    def _vault_secret(self, task_args: dict[str, Any]) -> tuple[str, Any] | None:
        secrets = list(getattr(getattr(self._loader, "_vault", None), "secrets", None) or [])
        if not secrets:
            return None
        found = match_encrypt_secret(secrets, task_args.get("vault_id"))
        return found

    def build_module_args(self, task_args: dict[str, Any]) -> dict[str, Any]:
        module_args = super().build_module_args(task_args)
        self._secret = None
        creating = task_args.get("state", "present") == "present" and task_args.get("key_id") is None
        dest = task_args.get("dest")
        if not creating or not dest:
            return module_args
        module_args["dest"] = os.path.abspath(os.path.expanduser(to_text(dest)))
        key_id, _encrypted = held_key(self, module_args["dest"], to_text(task_args.get("service_account", "")))
        if key_id:
            module_args["dest_key_id"] = key_id
        encrypt = task_args.get("encrypt", "auto")
        secret = self._vault_secret(task_args) if encrypt != "none" else None
        if encrypt == "vault" and secret is None:
            raise KeySourceError(
                "encrypt=vault needs a vault secret: run with --ask-vault-pass or --vault-id.",
                "no_vault_secret",
                "encrypt",
            )
        if secret is not None:
            if self._task.async_val:
                raise KeySourceError(
                    "service_account_key cannot create a vault-encrypted key under async: the job's result file would "
                    "hold the key unencrypted.",
                    "async",
                    "dest",
                )
            module_args["key_handover"] = True
            self._secret = secret
        return module_args

    def run(self, tmp=None, task_vars=None):
        self._secret = None
        result = super().run(tmp, task_vars)
        key_file = result.pop(iam.HANDOVER_FIELD, None)
        task_args = dict(self._task.args)
        if key_file is None:
            if result.get("created") and not result.get("failed") and result.get("vault_encrypted") is False:
                result.setdefault("warnings", []).append(
                    "The new key was written to %s unencrypted (mode 0600): no vault secret is configured. Encrypt it "
                    "with ansible-vault encrypt, or run with --ask-vault-pass." % result.get("dest")
                )
        else:
            try:
                atomic_write(result["dest"], self._encrypted(key_file.encode("utf-8")))
            except Exception as exc:  # noqa: BLE001 - the key exists at Google and only here: say so
                scrub_invocation(result, task_args)
                result.update(
                    failed=True,
                    msg="Google created key %s but it could not be written to %s (%s); delete that key "
                    "(service_account_key state=absent) and try again."
                    % (result.get("key", {}).get("key_id"), result.get("dest"), to_text(exc)),
                )
                return result
            result["vault_encrypted"] = True
        if task_args.get("p12_dest") and not result.get("failed"):
            self._keep_p12(result, task_args, key_file)
        del key_file
        return result

    def _encrypted(self, data: bytes) -> bytes:
        """``data`` encrypted with the configured vault secret (run() asked for one: key_handover)."""
        if self._secret is None:  # pragma: no cover - run() sets it whenever a handover is asked for
            raise ValueError("no vault secret")
        vault_id, secret = self._secret
        return VaultLib(secrets=[(vault_id, secret)]).encrypt(data, secret=secret, vault_id=vault_id)

    def _keep_p12(self, result: dict[str, Any], task_args: dict[str, Any], key_file: str | None) -> None:
        """Keep ``p12_dest`` a P12 of the key pair at ``dest``: derived here, written like ``dest``, only when it differs."""
        p12_dest = os.path.abspath(os.path.expanduser(to_text(task_args["p12_dest"])))
        password = DEFAULT_P12_PASSWORD  # Google's, fixed: what NuPoint expects of a P12 file
        result["p12_dest"] = p12_dest
        if self._task.check_mode and result.get("created"):
            result.update(p12_changed=True, changed=True)
            return
        try:
            text = key_file if key_file is not None else self._read_private(result.get("dest") or task_args["dest"])
            current = self._read_private(p12_dest, binary=True) if os.path.exists(p12_dest) else None
            key = inspect_key(text)
            if current is not None:
                try:
                    if inspect_key(text, current, password).p12_same_account == P12_SAME_KEY_PAIR:
                        result["p12_changed"] = False
                        return
                except KeyValidationError:
                    pass  # another key pair, another password, not a P12: replaced below
            result.update(p12_changed=True, changed=True)
            if self._task.check_mode:
                return
            p12 = derive_p12(key, password)
            encrypted = self._secret is not None and task_args.get("encrypt", "auto") != "none"
            atomic_write(p12_dest, self._encrypted(p12) if encrypted else p12)
            result["p12_vault_encrypted"] = encrypted
            if not encrypted:
                result.setdefault("warnings", []).append(
                    "The P12 file %s was written unencrypted (mode 0600): no vault secret is configured. Encrypt it "
                    "with ansible-vault encrypt, or run with --ask-vault-pass." % p12_dest
                )
        except (KeyValidationError, KeySourceError, OSError, ValueError) as exc:
            scrub_invocation(result, task_args)
            result.update(
                failed=True,
                msg="The key at %s is in place, but the P12 file %s could not be derived from it: %s"
                % (result.get("dest") or task_args["dest"], p12_dest, getattr(exc, "msg", None) or to_text(exc)),
            )

    def _read_private(self, path: str, binary: bool = False) -> Any:
        """A controller file's content, decrypted when vaulted (bytes with ``binary``)."""
        data = read_controller_file(self, path, "file", "p12_dest", find=False)
        return data if binary else data.decode("utf-8-sig")
