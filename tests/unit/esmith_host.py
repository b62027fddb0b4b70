"""A throw-away emulated MSL host for unit tests: the lab's e-smith ``db`` and ``signal-event`` in a temp dir.

The tools are the lab's stdlib emulation (tests/lab/esmith.py), run as real programs, so the credential
store and the modules are tested against the same db semantics as in the lab (``setprop`` exit codes,
record format), without starting the lab.
"""

import os
import subprocess
import sys
from pathlib import Path

from tests.lab import esmith

DB_NAME = "configuration"


class EsmithHost:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.db_command = str(root / "sbin" / "e-smith" / "db")
        self.signal_event_command = str(root / "sbin" / "e-smith" / "signal-event")
        self.credential_dir = str(root / "var" / "lib" / "nupoint" / "oauth")
        source = Path(esmith.__file__).read_text()
        for target in (self.db_command, self.signal_event_command):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w") as handle:
                handle.write("#!%s\n%s" % (sys.executable, source))
            os.chmod(target, 0o755)  # noqa: S103 - an executable tool
        os.makedirs(root / "var" / "log", exist_ok=True)
        os.makedirs(root / "var" / "lib" / "nupoint", exist_ok=True)

    def run_command(self, argv, *args, **kwargs):
        """``AnsibleModule.run_command``'s contract: (rc, stdout, stderr)."""
        proc = subprocess.run([str(arg) for arg in argv], capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def db(self, *args: str) -> str:
        return self.run_command([self.db_command, DB_NAME, *args])[1]

    def events(self) -> list[str]:
        log = self.root / "var" / "log" / "signal-event.log"
        if not log.exists():
            return []
        return [line.split()[1] for line in log.read_text().splitlines() if line.strip()]

    def module_args(self) -> dict[str, str]:
        return {
            "db_command": self.db_command,
            "signal_event_command": self.signal_event_command,
            "credential_dir": self.credential_dir,
        }

    def snapshot(self) -> dict[str, object]:
        """Everything a credential change could touch: the db file and the credential dir (names, modes, bytes)."""
        files = {}
        if os.path.isdir(self.credential_dir):
            for name in sorted(os.listdir(self.credential_dir)):
                path = os.path.join(self.credential_dir, name)
                with open(path, "rb") as handle:
                    files[name] = (oct(os.stat(path).st_mode & 0o7777), handle.read())
        db_file = Path(esmith.db_path(str(self.root), DB_NAME))
        return {"db": db_file.read_text() if db_file.exists() else "", "files": files, "events": self.events()}
