# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service-account key as action plugins see it: found and read on the controller, checked there.

Action plugins of modules that read the key (``msl_oauth_credentials``, ``service_account_key_info`` and the
Google modules) share this so that every one of them:

- takes the key options named once in ``module_utils/key_source.py`` (``src``, ``content``, ``path``,
  ``p12_src``, ``p12_content``, ``p12_path``, ``p12_password``; each action plugin accepts the subset its
  module documents, :attr:`KeyActionBase.KEY_OPTION_NAMES`) and checks here, before the node is contacted,
  that exactly one JSON key source (and at most one P12 source) is given: the only place on the controller;
- finds ``src`` / ``p12_src`` like ``copy`` does (``files/`` of the role or playbook, then the path as
  given) and reads it through the data loader, so ansible-vault encrypted files are decrypted (the P12
  is binary: it is read as bytes, never as text);
- accepts the key as ``content`` instead (e.g. a vault variable); a JSON key that templating turned
  into a dict is serialised back to one string, because ``no_log`` masks a dict leaf by leaf and the
  PEM slipped through at ``-vvv`` that way;
- validates it with ``module_utils.service_account.inspect_key`` (cryptography is on the controller,
  the managed node may not have it) when the module relies on that (:func:`load_key`), or only reads it
  when the module validates it itself (:func:`read_key`, ``service_account_key_info``);
- hands the module one ``content`` string and a base64 ``p12_content``, and puts the task's own
  arguments back into ``invocation.module_args`` so the key never appears in a result.

API::

    key = load_key(self, task_args, required=False)    # ControllerKey, or None when the node reads the key (path)
    key = require_key(self, task_args)                 # ControllerKey, or KeySourceError
    material = read_key(self, task_args)               # KeyMaterial: read, not validated
    module_args = module_args_with_key(task_args, key)
    result.update(self._execute_module(module_args=module_args, task_vars=task_vars))
    scrub_invocation(result, task_args)

``self`` is a :class:`KeyActionBase`: that sequence as an action plugin, ``async``-capable. Subclasses set
``MODULE_NAME`` (and ``KEY_OPTION_NAMES``) and turn the task's arguments into the module's in
``build_module_args()``.

Errors are :class:`KeySourceError` (``msg``, ``reason``, ``field`` as in service_account_key_info).
"""

import base64
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.parsing.vault import AnsibleVaultError
from ansible.plugins.action import ActionBase

from ansible_collections.nupoint.gworkspace.plugins.module_utils.key_source import (
    CONTROLLER_OPTIONS,
    JSON_KEY_OPTIONS,
    KEY_OPTIONS,
    P12_KEY_OPTIONS,
    SECRET_OPTIONS,
    key_option_names,
)
from ansible_collections.nupoint.gworkspace.plugins.module_utils.service_account import (
    DEFAULT_P12_PASSWORD,
    KeyValidationError,
    ServiceAccountKey,
    decode_p12_content,
    inspect_key,
    parse_json_key,
)

NO_LOG_PLACEHOLDER = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
# What the action plugin hands the module in place of the task's key options.
_HANDED_OVER = ("content", "p12_content")
_WHERE = {"src": "src (a file on the controller)", "path": "path (a file on the node)"}


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


class KeyMaterial:
    """What the controller read: the JSON key text and the P12 bytes, not validated.

    ``content`` is None when the module reads the key on the node (``path``) or no key was given; ``p12``
    is None without ``p12_src``/``p12_content``. Renders no key material in repr.
    """

    def __init__(self, content: str | None, p12: bytes | None, source: str | None) -> None:
        self.content = content
        self.p12 = p12
        self.source = source

    def p12_base64(self) -> str | None:
        return base64.b64encode(self.p12).decode("ascii") if self.p12 is not None else None

    def __repr__(self) -> str:
        return "KeyMaterial(source=%r, p12=%s)" % (self.source, self.p12 is not None)


class ControllerKey(KeyMaterial):
    """A key read and validated on the controller. Renders no key material in repr."""

    def __init__(self, content: str, p12: bytes | None, key: ServiceAccountKey, source: str) -> None:
        super().__init__(content, p12, source)
        self.content: str = content
        self.key = key

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

    def __repr__(self) -> str:
        return "ControllerKey(source=%r, client_email=%r, private_key_id=%r)" % (
            self.source,
            self.key.client_email,
            self.key.private_key_id,
        )


def read_controller_file(action: Any, path: str, what: str, field: str, find: bool = True) -> bytes:
    """Bytes of a controller file, ansible-vault decrypted when encrypted.

    With ``find`` the file is found like ``copy``'s ``src`` (``files/`` of the role or play first); without,
    ``path`` is the file (a ``dest`` the task writes).
    """
    try:
        found = action._find_needle("files", path) if find else os.path.expanduser(path)
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
        # Typically a vault-encrypted file without the vault password, or with another one.
        fix = (
            " It is ansible-vault encrypted: run with the vault password that encrypted it (--ask-vault-pass, "
            "--vault-id or --vault-password-file)."
            if isinstance(exc, AnsibleVaultError)
            else ""
        )
        raise KeySourceError(
            "Cannot read the %s %s: %s.%s"
            % (what, found, to_text(exc.message if hasattr(exc, "message") else exc).rstrip("."), fix),
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
        try:
            return content.decode("utf-8-sig")
        except UnicodeDecodeError:
            # Not text (a P12 or other binary file given as the JSON key): the key checks say so, in their words.
            try:
                parse_json_key(content)
            except KeyValidationError as exc:
                raise KeySourceError(exc.msg, exc.reason, exc.field) from None
            raise  # pragma: no cover - parse_json_key refuses what is not UTF-8
    return to_text(content)


def _one_of(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else "%s or %s" % (", ".join(names[:-1]), names[-1])


def check_key_options(task_args: Mapping[str, Any], accepted: Sequence[str], required: bool, module_name: str) -> None:
    """Exactly one JSON key source (at most one without ``required``), at most one P12 source, only ``accepted``.

    The one place on the controller that enforces it; raises :class:`KeySourceError`.
    """
    given = [name for name in KEY_OPTIONS if task_args.get(name) is not None]
    unsupported = [name for name in given if name not in accepted]
    if unsupported:
        raise KeySourceError(
            "%s takes the key as %s; remove %s."
            % (
                module_name or "This module",
                _one_of([n for n in JSON_KEY_OPTIONS if n in accepted]),
                ", ".join(unsupported),
            ),
            "bad_field",
            unsupported[0],
        )
    json_sources = [name for name in JSON_KEY_OPTIONS if name in given]
    p12_sources = [name for name in P12_KEY_OPTIONS if name in given]
    json_names = [name for name in JSON_KEY_OPTIONS if name in accepted]
    if len(json_sources) > 1:
        raise KeySourceError(
            "Give the key as one of %s, not %s." % (_one_of(json_names), " and ".join(json_sources)),
            "bad_field",
            json_sources[0],
        )
    if len(p12_sources) > 1:
        raise KeySourceError(
            "Give the P12 file as one of %s, not %s."
            % (_one_of([n for n in P12_KEY_OPTIONS if n in accepted]), " and ".join(p12_sources)),
            "bad_field",
            p12_sources[0],
        )
    if not json_sources and (required or p12_sources):
        needs = "%s needs the JSON key as well" % p12_sources[0] if p12_sources else "The key is required"
        raise KeySourceError(
            "%s: set %s." % (needs, _one_of([_WHERE.get(name, name) for name in json_names])),
            "bad_field",
            json_names[0],
        )


def read_key(action: Any, task_args: Mapping[str, Any], required: bool = True) -> KeyMaterial:
    """Check the key options (:func:`check_key_options` with ``action.KEY_OPTION_NAMES``) and read what the controller reads.

    ``src`` / ``content`` give the text, ``p12_src`` / ``p12_content`` the P12 bytes; ``path`` and ``p12_path``
    are left to the module. Raises :class:`KeySourceError`.
    """
    check_key_options(task_args, action.KEY_OPTION_NAMES, required, getattr(action, "MODULE_NAME", ""))
    src, content = task_args.get("src"), task_args.get("content")
    p12_src, p12_content = task_args.get("p12_src"), task_args.get("p12_content")
    text: str | None = None
    source: str | None = None
    if src is not None:
        source = to_text(src)
        text = _content_text(read_controller_file(action, source, "key file", "src"))
    elif content is not None:
        source = "content"
        text = _content_text(content)
    p12: bytes | None = None
    if p12_src is not None:
        p12 = read_controller_file(action, to_text(p12_src), "P12 file", "p12_src")
    elif p12_content is not None:
        try:
            p12 = decode_p12_content(to_text(p12_content))
        except KeyValidationError as exc:
            raise KeySourceError(exc.msg, exc.reason, exc.field) from None
    return KeyMaterial(text, p12, source)


def load_key(action: Any, task_args: Mapping[str, Any], required: bool = True) -> ControllerKey | None:
    """:func:`read_key`, then validate the key (and P12) on the controller.

    Returns None when the JSON key is left to the module (``path``), or none is given and ``required`` is
    false. Raises :class:`KeySourceError`.
    """
    material = read_key(action, task_args, required)
    if material.content is None or material.source is None:
        if material.p12 is not None:
            raise KeySourceError(
                "p12_src/p12_content need the JSON key in src or content: both are checked together on the controller.",
                "bad_field",
                "p12_src",
            )
        return None
    password = task_args.get("p12_password")
    try:
        key = inspect_key(
            material.content, material.p12, to_text(password) if password is not None else DEFAULT_P12_PASSWORD
        )
    except KeyValidationError as exc:
        raise KeySourceError(exc.msg, exc.reason, exc.field) from None
    return ControllerKey(material.content, material.p12, key, material.source)


def require_key(action: Any, task_args: Mapping[str, Any]) -> ControllerKey:
    """:func:`load_key` for modules that always need the key on the controller."""
    key = load_key(action, task_args, required=True)
    if key is None:  # pragma: no cover - load_key(required=True) raises instead
        raise KeySourceError("The key is required: set src or content.", "bad_field", "src")
    return key


def module_args_with_key(task_args: Mapping[str, Any], key: KeyMaterial | None) -> dict[str, Any]:
    """The module's arguments: the task's, with what the controller read handed over as ``content`` / ``p12_content``.

    ``src`` / ``p12_src`` never reach the node. ``p12_password`` does only when the module validates the key
    itself (``key`` is not a :class:`ControllerKey`); ``path`` / ``p12_path`` always do.
    """
    dropped = CONTROLLER_OPTIONS + _HANDED_OVER + (("p12_password",) if isinstance(key, ControllerKey) else ())
    module_args = {name: value for name, value in task_args.items() if name not in dropped}
    if key is not None:
        if key.content is not None:
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
    # What the action plugin signed for the node (google_api_action) is its own, not the task's.
    module_args.pop("presigned", None)
    for name in KEY_OPTIONS:
        module_args.pop(name, None)
        value = task_args.get(name)
        if value is not None:
            module_args[name] = NO_LOG_PLACEHOLDER if name in SECRET_OPTIONS else value
    invocation["module_args"] = module_args


class KeyActionBase(ActionBase):
    """Runs ``MODULE_NAME`` with the arguments :meth:`build_module_args` makes of the task's, key read on the controller.

    A :class:`KeySourceError` from :meth:`build_module_args` fails the task before the node is contacted; the
    result's ``invocation`` shows the task's own key options (:func:`scrub_invocation`).

    ``async:`` works as for a plain module (ansible.builtin's ``normal`` action): the module runs under the async
    wrapper with the arguments built here, so the key is read and checked on the controller before the job
    starts. The job's result file (and what ``async_status`` returns) is the module's own result: ``content``
    is ``no_log`` there, and ``invocation`` shows ``content`` masked instead of the task's ``src``, because
    results fetched by ``async_status`` never pass through this plugin.
    """

    TRANSFERS_FILES = False
    _supports_async = True
    MODULE_NAME = ""
    # The key options the module documents; the default suits a module whose key always comes from the controller.
    KEY_OPTION_NAMES: tuple[str, ...] = key_option_names(p12=True, node=False)

    def build_module_args(self, task_args: dict[str, Any]) -> dict[str, Any]:
        """The module's arguments for ``task_args``; raises :class:`KeySourceError`."""
        raise NotImplementedError

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        task_args = dict(self._task.args)
        # For subclasses that run a helper module (slurp) while they build the arguments.
        self._task_vars = task_vars
        try:
            module_args = self.build_module_args(task_args)
        except KeySourceError as exc:
            result.update(exc.as_result(), changed=False)
            return result
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        result.update(
            self._execute_module(
                module_name=self.MODULE_NAME, module_args=module_args, task_vars=task_vars, wrap_async=wrap_async
            )
        )
        scrub_invocation(result, task_args)
        if not wrap_async:
            # The async wrapper removes the job's tmp dir itself when it finishes.
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
