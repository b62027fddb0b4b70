"""``python -m tests.lab.google --config PATH``: run the emulated Google until SIGTERM/SIGINT.

Prints one line (address and pid, nothing secret) once it listens, so the orchestrator's log shows it;
readiness is best checked with ``GET /_lab/health``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from .server import load_config, make_server


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the server, and stop it cleanly on SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m tests.lab.google", description=__doc__)
    parser.add_argument("--config", required=True, help="path of the lab's google/config.json")
    parser.add_argument("--debug", action="store_true", help="log every request (never tokens)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    server = make_server(load_config(args.config))

    def stop(signum: int, _frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return, so it must not run on the serving thread.
        logging.getLogger("tests.lab.google").info("signal %d: stopping", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(
        f"emulated google listening on https://{server.state.host}:{server.state.port} (pid {os.getpid()})", flush=True
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
