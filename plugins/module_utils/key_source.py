# Copyright: contributors to nupoint.gworkspace
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service-account key options: one set of names for every module that reads a key, and the node-side reader.

The names, chosen once (doc fragments ``nupoint.gworkspace.google.KEY_SOURCE`` and ``.KEY_SOURCE_P12``):

- ``src``: the JSON key file on the controller (may be ansible-vault encrypted), read by the action plugin;
- ``content``: the JSON key text (``no_log``);
- ``path``: the JSON key file on the node that runs the module, read by the module;
- ``p12_src`` / ``p12_content`` (base64, ``no_log``) / ``p12_path``: the P12 file of the same key, likewise;
- ``p12_password``: the P12 file's password (``no_log``).

The action plugins (``plugins/plugin_utils/key_source.py``) read ``src``/``p12_src`` and hand the module
``content``/``p12_content`` instead, so a module only ever reads ``content``, ``path``, ``p12_content`` and
``p12_path``. Every module that had a key option before already used these names with these meanings, so none
is renamed and no alias is needed (a rename would keep the old name in ``aliases`` for one release).

"Exactly one key source" is enforced once on the controller (plugin_utils) and once on the node, here: the
groups of :func:`key_source_mutually_exclusive` for "at most one" and :func:`read_key_text` for "at least one".

Runs on MSL: parses as Python 3.6 and imports only the standard library at import time
(``service_account`` is imported inside the functions that need it).

API::

    spec = key_source_argument_spec(p12=False, node=True)    # merge into the module's argument_spec
    module = AnsibleModule(spec, mutually_exclusive=key_source_mutually_exclusive(p12=False, node=True))
    text = read_key_text(module.params)                        # str, or service_account.KeyValidationError
    p12 = read_p12(module.params)                              # bytes or None, same error
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


try:  # Python 2.7 has no typing module; the names serve the type comments (mypy)
    from typing import Any, Dict, List, Mapping, Optional, Tuple  # noqa: F401  # novermin
except ImportError:  # pragma: no cover
    pass

from ansible_collections.nupoint.gworkspace.plugins.module_utils._compat import raise_from

JSON_KEY_OPTIONS = ("src", "content", "path")
P12_KEY_OPTIONS = ("p12_src", "p12_content", "p12_path")
P12_OPTIONS = P12_KEY_OPTIONS + ("p12_password",)
KEY_OPTIONS = JSON_KEY_OPTIONS + P12_OPTIONS
# Read on the controller by the action plugin and never sent to the node as given.
CONTROLLER_OPTIONS = ("src", "p12_src")
# Read on the node by the module.
NODE_OPTIONS = ("path", "p12_path")
# Key material: masked wherever the task's arguments are shown.
SECRET_OPTIONS = ("content", "p12_content", "p12_password")


def key_option_names(p12=False, node=True):  # type: (bool, bool) -> Tuple[str, ...]
    """The key options of a module: the JSON key ones, the P12 ones with ``p12``, without path/p12_path unless ``node``."""
    names = JSON_KEY_OPTIONS + (P12_OPTIONS if p12 else ())
    return tuple(name for name in names if node or name not in NODE_OPTIONS)


def key_source_argument_spec(p12=False, node=True):  # type: (bool, bool) -> Dict[str, Dict[str, Any]]
    """Argument spec of :func:`key_option_names`; use with :func:`key_source_mutually_exclusive` (same arguments)."""
    from ansible_collections.nupoint.gworkspace.plugins.module_utils.service_account import DEFAULT_P12_PASSWORD

    types = {
        "src": dict(type="path"),
        "content": dict(type="str", no_log=True),
        "path": dict(type="path"),
        "p12_src": dict(type="path"),
        "p12_content": dict(type="str", no_log=True),
        "p12_path": dict(type="path"),
        "p12_password": dict(type="str", no_log=True, default=DEFAULT_P12_PASSWORD),
    }  # type: Dict[str, Dict[str, Any]]
    return {name: types[name] for name in key_option_names(p12, node)}


def key_source_mutually_exclusive(p12=False, node=True):  # type: (bool, bool) -> List[List[str]]
    """At most one JSON key source and at most one P12 source, for ``AnsibleModule(mutually_exclusive=...)``."""
    names = key_option_names(p12, node)
    groups = [[name for name in JSON_KEY_OPTIONS if name in names]]
    if p12:
        groups.append([name for name in P12_KEY_OPTIONS if name in names])
    return groups


def no_key_message(params):  # type: (Mapping[str, Any]) -> Optional[str]
    """Why no key reached the module (neither ``content`` nor ``path``), or None when one did."""
    if params.get("content") is not None or params.get("path"):
        return None
    if params.get("src") is not None:
        return (
            "No key reached the module: src is read on the controller by the action plugin. Set src, content or "
            "path (a key file on this node)."
        )
    return (
        "No service-account key: set src (a file on the controller, read by the action plugin), content "
        "(the key itself, e.g. a vault variable) or path (a file on the node that runs the module)."
    )


def _read_node_file(path, what, field):  # type: (Any, str, str) -> bytes
    from ansible_collections.nupoint.gworkspace.plugins.module_utils.service_account import KeyValidationError

    try:
        with open(str(path), "rb") as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        raise_from(
            KeyValidationError(
                "read_error",
                "Cannot read the %s %s on the node: %s. Check the path and its permissions."
                % (what, path, exc.strerror),
                field,
            ),
            None,
        )


def read_key_text(params):  # type: (Mapping[str, Any]) -> str
    """The JSON key handed over by the action plugin (``content``) or read from ``path`` on the node.

    Checked for structure (``service_account.parse_json_key``) so a wrong file fails with the same
    reasons as ``service_account_key_info``. Raises ``KeyValidationError``.
    """
    from ansible_collections.nupoint.gworkspace.plugins.module_utils.service_account import (
        KeyValidationError,
        parse_json_key,
    )

    missing = no_key_message(params)
    if missing is not None:
        raise KeyValidationError("read_error", missing, "src")
    text = params.get("content")
    if text is None:
        raw = _read_node_file(params["path"], "key file", "path")
        # Checked as bytes first: a file that is not UTF-8 (a P12 given as the JSON key) is named as such.
        parse_json_key(raw)
        return raw.decode("utf-8-sig")
    parse_json_key(text)
    return text


def read_p12(params):  # type: (Mapping[str, Any]) -> Optional[bytes]
    """The P12 file from ``p12_content`` (base64, as the action plugin hands ``p12_src`` over) or ``p12_path``.

    None when neither is given. Raises ``KeyValidationError``.
    """
    from ansible_collections.nupoint.gworkspace.plugins.module_utils.service_account import decode_p12_content

    if params.get("p12_content") is not None:
        return decode_p12_content(params["p12_content"])
    if params.get("p12_path"):
        return _read_node_file(params["p12_path"], "P12 file", "p12_path")
    return None
