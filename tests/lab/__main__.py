"""``python -m tests.lab COMMAND`` (from the repository root): run the local lab.

  up                  start everything not yet running (idempotent; < 60 s from scratch)
  down                stop every lab process by PID and check none is left
  status              per-service up/down, PIDs and ports (exit 0 only when all are up)
  users N             set the number of users (1..3000): Google, users.txt, lab.json
  backup-msl HOST     take an "MSL backup" of HOST's config db (msl1, msl2)
  restore-msl HOST    do to HOST what an MSL restore does (OAuth data gone, db from the backup)
  skew SECONDS        set the skewed SNTP responder's offset (float, may be negative)

State directory: $NUPOINT_LAB_DIR (default .lab); ports from $NUPOINT_LAB_PORT_BASE (default 18400).
"""

from __future__ import annotations

import argparse
import sys

from tests.lab import config as labconfig
from tests.lab import orchestrator, sntp
from tests.lab.config import LabConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("up", help="start the lab")
    commands.add_parser("down", help="stop the lab")
    commands.add_parser("status", help="show what runs")
    users = commands.add_parser("users", help="set the number of users")
    users.add_argument("count", type=int)
    for name in ("backup-msl", "restore-msl"):
        host = commands.add_parser(name, help=f"{name.split('-', maxsplit=1)[0]} an MSL host")
        host.add_argument("host", choices=labconfig.MSL_HOSTS)
    skew = commands.add_parser("skew", help="set the skewed SNTP responder's offset")
    skew.add_argument("seconds", type=float)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg = LabConfig.from_env()
    try:
        if args.command == "up":
            orchestrator.up(cfg, owner="cli")
            return 0
        if args.command == "down":
            return 1 if orchestrator.down(cfg) else 0
        if args.command == "status":
            all_up, lines = orchestrator.status(cfg)
            print("\n".join(lines))
            return 0 if all_up else 3
        if args.command == "skew":
            sntp.write_offset(cfg.sntp_offset_file, args.seconds)
            print(f"skewed SNTP responder on 127.0.0.1:{cfg.skewed_ntp_port} now {args.seconds:+g}s off")
            return 0
        # The rest needs a lab that was set up (it may be stopped).
        from tests.lab.api import Lab

        lab = Lab.load(cfg)
        if args.command == "users":
            lab.set_users(args.count)
            print(f"{args.count} users ({lab.users_file})")
        elif args.command == "backup-msl":
            print(f"{args.host}: backup in {lab.backup_msl(args.host)}")
        elif args.command == "restore-msl":
            lab.restore_msl(args.host)
            print(f"{args.host}: restored (OAuth credentials and '{labconfig.MSL_CREDENTIAL_RECORD}' record gone)")
        return 0
    except (orchestrator.LabError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"lab {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
