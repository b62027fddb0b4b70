"""Every option that can carry a secret is no_log, in every module, and no option is masked that is not one.

The list of secret options is written out here on purpose: a new secret option fails this test until it
is added (with no_log), and a new option whose name looks secret must be named here as secret or public.
"""

import re

import pytest

from tests.unit.test_collection_metadata import module_argument_spec, module_names

# Options that carry key material, a password, or something that yields a token.
SECRET_OPTIONS = {"content", "p12_content", "p12_password", "presigned"}
# Options whose names look secret but are not: they name where a secret is, or a public URL.
PUBLIC_LOOKALIKES = {
    "token_uri",  # a URL
    "key_id",  # a key's public ID
    "dest_key_id",
    "key_types",  # user- or system-managed
    "key_handover",  # a flag: the new key goes back to the action plugin to be vault-encrypted
    "max_age_days",
    "key_fingerprint_sha256",  # a public-key fingerprint (service_account_keys_info p12_pair)
}
LOOKS_SECRET = re.compile(r"content|password|secret|token|presigned|key|credential|assertion", re.IGNORECASE)


def all_options(spec, prefix=""):
    for name, option in spec.items():
        yield prefix + name, option
        if option.get("options"):
            yield from all_options(option["options"], prefix + name + ".")


@pytest.mark.parametrize("module", module_names())
def test_secret_options_are_no_log_and_lookalikes_are_named(module, monkeypatch):
    spec = module_argument_spec(module, monkeypatch)
    for name, option in all_options(spec):
        leaf = name.rsplit(".", 1)[-1]
        if leaf in SECRET_OPTIONS:
            assert option.get("no_log") is True, "%s: %s carries a secret and must be no_log" % (module, name)
        elif LOOKS_SECRET.search(leaf):
            # expected_* are public ids and fingerprints; credential_* name MSL paths, records and events.
            public = leaf in PUBLIC_LOOKALIKES or leaf.startswith(("expected_", "credential_"))
            assert public, "%s: is %s a secret? name it in SECRET_OPTIONS (and no_log it) or PUBLIC_LOOKALIKES" % (
                module,
                name,
            )
            assert option.get("no_log") is not True, "%s: %s is masked but public (it would hide ids)" % (module, name)
