# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service-account key as action plugins see it: found and read on the controller, validated there.

Action plugins of modules that need the key (``msl_oauth_credentials``, ``delegation_check``, later
``imap_check``) share this so that every one of them:

- finds ``src`` / ``p12_src`` like ``copy`` does (``files/`` of the role or playbook, then the path as
  given) and reads it through the data loader, so ansible-vault encrypted files are decrypted (the P12
  is binary: it is read as bytes, never as text);
- accepts the key as ``content`` instead (e.g. a vault variable); a JSON key that templating turned
  into a dict is serialised back to one string, because ``no_log`` masks a dict leaf by leaf and the
  PEM slipped through at ``-vvv`` that way (see ``plugins/action/service_account_key_info.py``);
- validates it with ``module_utils.service_account.inspect_key`` (cryptography is on the controller,
  the managed node may not have it) before anything reaches the node;
- hands the module one ``content`` string and a base64 ``p12_content``, and puts the task's own
  arguments back into ``invocation.module_args`` so the key never appears in a result.

API::

    key = load_key(self, task_args, required=False)    # ControllerKey, or None when no key option is given
    key = require_key(self, task_args)                 # ControllerKey, or KeySourceError
    module_args = module_args_with_key(task_args, key)
    result.update(self._execute_module(module_args=module_args, task_vars=task_vars))
    scrub_invocation(result, task_args)

:class:`KeyActionBase` is that sequence as an action plugin: subclasses set ``MODULE_NAME`` and turn the
task's arguments into the module's in ``build_module_args()``.

Errors are :class:`KeySourceError` (``msg``, ``reason``, ``field`` as in service_account_key_info).
"""

import base64
import json
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.nupoint.gworkspace.plugins.module_utils.service_account import (
    DEFAULT_P12_PASSWORD,
    KeyValidationError,
    ServiceAccountKey,
    decode_p12_content,
    inspect_key,
)

# Options that carry the key (or where to find it) on the controller; none of them goes to the node as given.
KEY_SOURCE_OPTIONS = ("src", "content", "p12_src", "p12_content", "p12_password")
# What the module receives instead.
MODULE_KEY_OPTIONS = ("content", "p12_content")
NO_LOG_PLACEHOLDER = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


class KeySourceError(Exception):
    """The key cannot be found, read or used; ``reason`` is one of service_account.REASONS."""

    def __init__(self, msg: str, reason: str = "read_error", field: str | None = None, **details: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.reason = reason
        self.field = field
        # Public facts for the result (ids, fingerprints), never key material.
        self.details = details

    def as_result(self) -> dict[str, Any]:
        result = {"failed": True, "msg": self.msg, "reason": self.reason}
        if self.field is not None:
            result["field"] = self.field
        result.update(self.details)
        return result


class ControllerKey:
    """A validated key read on the controller. Renders no key material in repr."""

    def __init__(self, content: str, p12: bytes | None, key: ServiceAccountKey, source: str) -> None:
        self.content = content
        self.p12 = p12
        self.key = key
        self.source = source

    @property
    def metadata(self) -> dict[str, str]:
        """The public facts, in the shape module_utils.key_format.expected_mismatches() takes."""
        return {
            "client_id": self.key.client_id,
            "client_email": self.key.client_email,
            "private_key_id": self.key.private_key_id,
            "project_id": self.key.project_id,
            "fingerprint_sha256": self.key.fingerprint_sha256,
        }

    def p12_base64(self) -> str | None:
        return base64.b64encode(self.p12).decode("ascii") if self.p12 is not None else None

    def __repr__(self) -> str:
        return "ControllerKey(source=%r, client_email=%r, private_key_id=%r)" % (
            self.source,
            self.key.client_email,
            self.key.private_key_id,
        )


def read_controller_file(action: Any, path: str, what: str, field: str) -> bytes:
    """Bytes of a controller file found like ``copy``'s ``src``, ansible-vault decrypted when encrypted."""
    try:
        found = action._find_needle("files", path)
    except AnsibleError as exc:
        raise KeySourceError(
            "Cannot find the %s %s on the controller (looked in files/ and as given): %s"
            % (what, path, to_text(exc.message if hasattr(exc, "message") else exc)),
            "read_error",
            field,
        ) from None
    try:
        real_path = action._loader.get_real_file(found, decrypt=True)
    except AnsibleError as exc:
        # Typically a vault-encrypted file without the vault password (--ask-vault-pass / --vault-id).
        raise KeySourceError(
            "Cannot read the %s %s: %s" % (what, found, to_text(exc.message if hasattr(exc, "message") else exc)),
            "read_error",
            field,
        ) from None
    try:
        with open(real_path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise KeySourceError(
            "Cannot read the %s %s: %s. Check its permissions." % (what, found, exc.strerror), "read_error", field
        ) from None
    finally:
        action._loader.cleanup_tmp_file(real_path)


def _content_text(content: Any) -> str:
    if isinstance(content, Mapping):
        return json.dumps(dict(content))
    if isinstance(content, bytes):
        return content.decode("utf-8-sig")
    return to_text(content)


def load_key(action: Any, task_args: dict[str, Any], required: bool = True) -> ControllerKey | None:
    """Find, read and validate the key named by ``src``/``content`` (+ ``p12_src``/``p12_content``).

    Returns None when neither ``src`` nor ``content`` is given and ``required`` is false (the module
    then reads a key on the node). Raises :class:`KeySourceError`.
    """
    src, content = task_args.get("src"), task_args.get("content")
    p12_src, p12_content = task_args.get("p12_src"), task_args.get("p12_content")
    if src is not None and content is not None:
        raise KeySourceError("Give the key as src or as content, not both.", "bad_field", "src")
    if p12_src is not None and p12_content is not None:
        raise KeySourceError("Give the P12 file as p12_src or as p12_content, not both.", "bad_field", "p12_src")
    if src is None and content is None:
        if required:
            raise KeySourceError(
                "The key is required: set src (a file on the controller) or content.", "bad_field", "src"
            )
        if p12_src is not None or p12_content is not None:
            raise KeySourceError("p12_src/p12_content need the JSON key in src or content.", "bad_field", "p12_src")
        return None
    if src is not None:
        source = to_text(src)
        text = _content_text(read_controller_file(action, source, "key file", "src"))
    else:
        source = "content"
        text = _content_text(content)
    p12: bytes | None = None
    try:
        if p12_src is not None:
            p12 = read_controller_file(action, to_text(p12_src), "P12 file", "p12_src")
        elif p12_content is not None:
            p12 = decode_p12_content(to_text(p12_content))
        password = task_args.get("p12_password")
        key = inspect_key(text, p12, to_text(password) if password is not None else DEFAULT_P12_PASSWORD)
    except KeyValidationError as exc:
        raise KeySourceError(exc.msg, exc.reason, exc.field) from None
    return ControllerKey(text, p12, key, source)


def require_key(action: Any, task_args: dict[str, Any]) -> ControllerKey:
    """:func:`load_key` for modules that always need the key on the controller."""
    key = load_key(action, task_args, required=True)
    if key is None:  # pragma: no cover - load_key(required=True) raises instead
        raise KeySourceError("The key is required: set src or content.", "bad_field", "src")
    return key


def module_args_with_key(task_args: dict[str, Any], key: ControllerKey | None) -> dict[str, Any]:
    """The module's arguments: the task's, with the key options replaced by ``content`` / ``p12_content``."""
    module_args = {name: value for name, value in task_args.items() if name not in KEY_SOURCE_OPTIONS}
    if key is not None:
        module_args["content"] = key.content
        p12 = key.p12_base64()
        if p12 is not None:
            module_args["p12_content"] = p12
    return module_args


def scrub_invocation(result: dict[str, Any], task_args: dict[str, Any]) -> None:
    """Show the task's key options in ``invocation.module_args`` instead of what the module was handed.

    The module already masks ``content`` (``no_log``); this also drops what the action plugin added and
    puts back ``src`` / ``p12_src`` as the user wrote them, with inline key material masked.
    """
    invocation = result.get("invocation")
    if not isinstance(invocation, dict):
        return
    module_args = dict(invocation.get("module_args") or {})
    for name in KEY_SOURCE_OPTIONS:
        module_args.pop(name, None)
        value = task_args.get(name)
        if value is not None:
            module_args[name] = NO_LOG_PLACEHOLDER if name in ("content", "p12_content", "p12_password") else value
    invocation["module_args"] = module_args


class KeyActionBase(ActionBase):
    """Runs ``MODULE_NAME`` with the arguments :meth:`build_module_args` makes of the task's, key read on the controller.

    A :class:`KeySourceError` from :meth:`build_module_args` fails the task before the node is contacted; the
    result's ``invocation`` shows the task's own key options (:func:`scrub_invocation`).
    """

    TRANSFERS_FILES = False
    MODULE_NAME = ""

    def build_module_args(self, task_args: dict[str, Any]) -> dict[str, Any]:
        """The module's arguments for ``task_args``; raises :class:`KeySourceError`."""
        raise NotImplementedError

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        task_args = dict(self._task.args)
        try:
            module_args = self.build_module_args(task_args)
        except KeySourceError as exc:
            result.update(exc.as_result(), changed=False)
            return result
        result.update(self._execute_module(module_name=self.MODULE_NAME, module_args=module_args, task_vars=task_vars))
        scrub_invocation(result, task_args)
        return result
