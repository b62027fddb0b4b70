"""Emulated Google for the lab: OAuth token endpoint, tokeninfo, Gmail, IAM, Directory, Cloud Identity.

Kept import-light on purpose: ``tests.lab.google.client`` (stdlib only) can be used by the orchestrator
without pulling in the server and ``cryptography``. Run the server with
``python -m tests.lab.google --config <state>/google/config.json``.
"""
