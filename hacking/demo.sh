#!/usr/bin/env bash
# make demo: the collection end to end on the embedded lab, as an administrator would run it.
#
# A lab of its own (NUPOINT_LAB_DIR, default .build/demo-lab; ports from NUPOINT_LAB_PORT_BASE, default 19400) with
# 500 Advanced UM users, two of them deliberately broken: IMAP is off in one user's Gmail settings, and the users
# list still names someone Google does not know. Then: provision.yml on both MSL hosts, an MSL restore of msl1,
# verify.yml (read-only: it finds what the restore broke), post_restore.yml on msl1, and a recap of the playbooks'
# summaries. The lab is stopped at the end, also on failure or Ctrl-C. Exit 0 when every step did what it should;
# the two broken users are reported, tolerated by the playbooks' fail thresholds.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export NUPOINT_LAB_DIR=${NUPOINT_LAB_DIR:-$repo/.build/demo-lab}
export NUPOINT_LAB_PORT_BASE=${NUPOINT_LAB_PORT_BASE:-19400}
export PATH=$repo/.venv/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$repo/.build/collections}
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
export PYTHONPATH=$repo/.build/collections:$repo${PYTHONPATH:+:$PYTHONPATH}
# Output for people: no skipped tasks, results as YAML, no colours in logs.
export ANSIBLE_DISPLAY_SKIPPED_HOSTS=false
export ANSIBLE_CALLBACK_RESULT_FORMAT=yaml
export ANSIBLE_HOST_KEY_CHECKING=false
export ANSIBLE_NOCOLOR=${ANSIBLE_NOCOLOR:-1}

python=$repo/.venv/bin/python
users_count=500
imap_off_user=user0042@example.test
unknown_user=former.employee@example.test
work=$repo/.build/demo
inventory=$NUPOINT_LAB_DIR/inventory.yml
users_file=$work/advanced-um-users.txt
started=$SECONDS
step=0

banner() {
    step=$((step + 1))
    printf '\n%s\n== %d. %s\n%s\n' "$(printf '=%.0s' {1..100})" "$step" "$1" "$(printf '=%.0s' {1..100})"
    if [ $# -gt 1 ]; then printf '%s\n' "${@:2}" | sed 's/^/   /'; fi
    printf '\n'
}

stop_lab() {
    local rc=$?
    trap - EXIT INT TERM
    printf '\n== Stopping the lab (%s)\n' "$NUPOINT_LAB_DIR"
    "$python" -m tests.lab down || rc=1
    if [ "$rc" -eq 0 ]; then
        printf '\nmake demo: done in %d s.\n' $((SECONDS - started))
    else
        printf '\nmake demo: FAILED (exit %d) after %d s; logs in %s\n' "$rc" $((SECONDS - started)) "$work" >&2
    fi
    exit "$rc"
}
trap stop_lab EXIT
trap 'exit 130' INT TERM

# Runs a playbook, shows its output and keeps it in $work/<name>.log.
playbook() {
    local name=$1
    shift
    set +e
    ansible-playbook -i "$inventory" "$@" 2>&1 | tee "$work/$name.log"
    local rc=${PIPESTATUS[0]}
    set -e
    return "$rc"
}

# The messages of a playbook log's "Summary" tasks (YAML result format), one block per host.
summaries() {
    "$python" - "$1" <<'PY'
import re
import sys
import textwrap

import yaml

lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
in_summary, host, block = False, None, []


def flush():
    if host and block:
        messages = yaml.safe_load(textwrap.dedent("\n".join(block)))["msg"]
        for message in messages if isinstance(messages, list) else [messages]:
            print("  " + " ".join(str(message).split()) if not str(message).startswith("  ") else "    " + str(message).strip())
        print()


for line in lines:
    if line.startswith("TASK [") or line.startswith("PLAY RECAP"):
        flush()
        in_summary, host, block = bool(re.match(r"TASK \[(.* : )?Summary\]", line)), None, []
    elif in_summary and re.match(r"(ok|fatal): \[", line):
        flush()
        host, block = line, []
    elif in_summary and host and line.startswith("    "):
        block.append(line)
flush()
PY
}

mkdir -p "$work"

banner "Start the lab: emulated Google Workspace, Dovecot as Gmail's IMAP, chrony, two MSL hosts over SSH" \
    "state in $NUPOINT_LAB_DIR, ports $NUPOINT_LAB_PORT_BASE..$((NUPOINT_LAB_PORT_BASE + 11)) on 127.0.0.1"
# A lab left running by an interrupted demo is stopped first, so this one starts fresh.
"$python" -m tests.lab down >/dev/null 2>&1 || true
ulimit -n 20000 2>/dev/null || true
"$python" -m tests.lab up
"$python" -m tests.lab users "$users_count"

banner "Break two users on purpose" \
    "- $imap_off_user: IMAP switched off in the user's Gmail settings (lab control API)" \
    "- $unknown_user: left the company, deleted in Google, still in NuPoint's Advanced UM list" \
    "The playbooks tolerate exactly these two (gworkspace_imap_fail_threshold=2, post_restore_imap_fail_threshold=2)" \
    "and report them; any other failure fails the demo."
"$python" - "$imap_off_user" <<'PY'
import sys
from tests.lab.api import Lab
lab = Lab.load()
lab.google.set_user_imap(sys.argv[1], False)
PY
{ cat "$NUPOINT_LAB_DIR/users.txt"; echo "$unknown_user"; } > "$users_file"
echo "Advanced UM users list: $users_file ($(wc -l < "$users_file") addresses)"

common_vars=(-e "gworkspace_um_users=$users_file" -e time_sync_sample_interval=0.5)

banner "Provision both MSL hosts: ansible-playbook nupoint.gworkspace.provision" \
    "time -> key (validated on the controller, installed on MSL) -> delegation -> IMAP login as every user"
playbook provision nupoint.gworkspace.provision "${common_vars[@]}" -e gworkspace_imap_fail_threshold=2

banner "Simulate an MSL restore of msl1 (backups do not contain the OAuth data)" \
    "python -m tests.lab restore-msl msl1: key files and config db record gone, config db back from the backup"
"$python" -m tests.lab restore-msl msl1

banner "Daily health check: ansible-playbook nupoint.gworkspace.verify (read-only)" \
    "Expected: it FAILS - msl1 lost its key and network time in the restore, and both hosts report the two broken users."
if playbook verify nupoint.gworkspace.verify "${common_vars[@]}"; then
    echo "make demo: verify.yml passed, but the restore of msl1 should have broken it" >&2
    exit 1
fi
for expected in "verify on msl1: PROBLEMS" "no OAuth key on MSL" "failed user: $imap_off_user" "failed user: $unknown_user"; do
    if ! grep -qF -- "$expected" "$work/verify.log"; then
        echo "make demo: verify.yml failed, but not as expected (no \"$expected\"); see $work/verify.log" >&2
        exit 1
    fi
done
echo
echo ">> As expected: verify.yml found the restored msl1 and the two broken users (exit code non-zero)."

banner "Recover msl1: ansible-playbook nupoint.gworkspace.post_restore --limit msl1" \
    "found -> repaired (key from the controller's escrow, network time) -> verified (clock, delegation, IMAP)"
playbook post_restore nupoint.gworkspace.post_restore "${common_vars[@]}" -e post_restore_imap_fail_threshold=2 --limit msl1

banner "Recap: the playbooks' own summaries"
echo "provision.yml:"
summaries "$work/provision.log"
echo
echo "verify.yml after the restore of msl1:"
summaries "$work/verify.log"
echo
echo "post_restore.yml on msl1:"
summaries "$work/post_restore.log"
echo
echo "Deliberately broken, reported and tolerated: $imap_off_user (imap_disabled), $unknown_user (token_invalid_user)."
echo "Logs: $work/{provision,verify,post_restore}.log"
