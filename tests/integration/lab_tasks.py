"""Task builders shared by the integration tests that run modules against the lab."""

from typing import Any


def imap_check_task(name: str, **args: Any) -> dict[str, Any]:
    """An imap_check task against the lab's Dovecot, key, token URI and CA (play variables ``key_file``,
    ``token_uri``, ``ca_path``, ``imap_port``); ``args`` override or add module options."""
    module_args = {
        "src": "{{ key_file }}",
        "token_uri": "{{ token_uri }}",
        "ca_path": "{{ ca_path }}",
        "imap_host": "127.0.0.1",
        "imap_port": "{{ imap_port }}",
        "timeout": 5,
        "retries": 3,
        "fail_threshold": "100%",
    }
    module_args.update(args)
    return {"name": name, "nupoint.gworkspace.imap_check": module_args, "register": "imap"}
