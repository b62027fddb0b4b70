"""Benchmark imap_check against the lab with 2,500 users; prints one JSON document.

    NUPOINT_LAB_DIR=/tmp/lab-bench NUPOINT_LAB_PORT_BASE=22400 .venv/bin/python bench/imap_check.py

Two regimes, each figure measured in the same run as its baseline:

- ``local``: the lab as it is (Dovecot, the emulated Google and the client share the machine's cores, so
  client CPU costs wall time). Baseline: the *floor*, raw concurrent TLS + XOAUTH2 (SASL-IR) logins with
  tokens minted beforehand, EXAMINE INBOX, LOGOUT, nothing else, same concurrency and users. imap_check
  is the real module (``python plugins/modules/imap_check.py ARGS``, as Ansible runs it, minus the
  AnsiballZ packaging), in a child process: its wall time, CPU (``wait4`` rusage: everything, imports
  and key loading included) and peak RSS are the client's. The same checks with imapclient instead of the
  module's built-in IMAP client run alongside (``imapclient_variant``), to show what that choice is worth.
- ``wan``: ``bench/latency_proxy.py`` (a child process) adds a 40 ms round trip in front of the IMAP
  port (B+4) and of the token endpoint (B+5). Baselines: a sequential ``curl --oauth2-bearer TOKEN
  --login-options AUTH=XOAUTH2 imaps://...`` loop with tokens minted beforehand (100 users, extrapolated
  to all), and an Ansible ``loop:`` running imap_check for one user per iteration (20 users,
  extrapolated). imap_check runs at the module's default settings (``concurrency`` not given) and at
  ``--wan-concurrency``. The proxy counts the round trips each client waited for (TCP handshakes, TLS
  flights, IMAP commands, token requests: see bench/latency_proxy.py), printed per user. The assertions
  the module trades carry the lab's own token URI as audience and are sent through the proxy (Google
  checks the audience against its own URIs, whatever address the request went to). The Ansible loop signs
  on the controller with the task's ``token_uri``, so its token requests go to the lab directly, which
  delays each by one round trip (``set_latency``): that spares the loop the TCP and TLS handshakes of its
  token connection, so the loop's figures, and the speedups against it, are on the loop's side.

Both regimes print ``cpu_ratio_to_floor``: imap_check's client CPU per user over the floor's, same run.
imap_check's includes everything its process does (start-up, imports, token requests, reports); the
floor's only its logins, with tokens minted beforehand.

The lab is used if it is up; otherwise it is brought up and taken down again. The user count is raised
for the run and put back. Every child process is stopped by PID, every loop is bounded.
"""

import argparse
import base64
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
for entry in (COLLECTIONS, REPO):
    if entry not in sys.path:
        sys.path.insert(0, entry)

MODULE = os.path.join(REPO, "plugins", "modules", "imap_check.py")
PROXY = os.path.join(REPO, "bench", "latency_proxy.py")
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
SCOPE = "https://mail.google.com/"
CHILD_TIMEOUT = 900


# --------------------------------------------------------------------------- the floor (child process)


def _read_tagged(reader, tag):
    """Lines up to the tagged response; answers an XOAUTH2 error challenge with an empty line."""
    for _line_number in range(1000):
        line = reader.readline()
        if not line:
            raise ConnectionError("EOF")
        if line.startswith(b"+"):
            return line
        if line.startswith(tag + b" "):
            return line
    raise ConnectionError("too many lines")


def floor_login(host, port, context, user, token, mailbox, timeout):
    """One raw login: TLS, AUTHENTICATE XOAUTH2 with SASL-IR, EXAMINE, LOGOUT. True when logged in."""
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        reader = tls.makefile("rb")
        reader.readline()  # greeting
        initial = base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01" % (user, token)).encode())
        tls.sendall(b"a1 AUTHENTICATE XOAUTH2 " + initial + b"\r\n")
        line = _read_tagged(reader, b"a1")
        if line.startswith(b"+"):
            tls.sendall(b"\r\n")
            line = _read_tagged(reader, b"a1")
        ok = line.startswith(b"a1 OK")
        if ok and mailbox:
            tls.sendall(b"a2 EXAMINE " + mailbox.encode() + b"\r\n")
            _read_tagged(reader, b"a2")
        tls.sendall(b"a3 LOGOUT\r\n")
        _read_tagged(reader, b"a3")
        reader.close()
        return ok


def child_inputs(args):
    """The users and a token source (key loaded once), as every measured child starts."""
    from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import imap_login

    with open(args.users_file) as handle:
        users = [line.strip() for line in handle if line.strip()]
    with open(args.key_file) as handle:
        key = handle.read()
    source = imap_login.new_token_source(
        key, SCOPE, token_uri=args.token_uri, ca_path=args.ca_path, concurrency=args.concurrency
    )
    return users, source


def child_floor(args):

    users, source = child_inputs(args)
    with ThreadPoolExecutor(args.concurrency) as pool:
        tokens = list(pool.map(lambda user: source.token(user)[0], users))
    source.close()
    context = ssl.create_default_context(cafile=args.ca_path)

    def login(pair):
        try:
            return floor_login(args.host, args.port, context, pair[0], pair[1], args.mailbox, 30)
        except OSError:
            return False

    cpu_before, wall_before = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        outcomes = list(pool.map(login, zip(users, tokens, strict=True)))
    wall, cpu = time.perf_counter() - wall_before, time.process_time() - cpu_before
    print(json.dumps({"users": len(users), "ok": sum(outcomes), "wall_seconds": wall, "cpu_seconds": cpu}))
    return 0


def imapclient_factory(host, port, ssl_context, timeout):
    """An imapclient ``IMAPClient`` as ``ImapChecker``'s ``client_factory``: what the built-in client is measured against.

    It lives here, not in module_utils, because nothing that ships to MSL uses it.
    """
    import imapclient

    client = imapclient.IMAPClient(host, port=port, ssl=True, ssl_context=ssl_context, timeout=timeout)
    # imapclient switches imaplib's protocol trace on (debug 5) and formats every line it sends or
    # receives, only for its logger to drop them. Off: less CPU per user, and no trace to leak.
    inner = getattr(client, "_imap", None)
    if inner is not None:
        inner.debug = 0
    return client


def child_imapclient(args):
    """imap_check's checker with imapclient instead of the built-in client (the comparison behind that choice)."""
    from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import imap_login

    users, source = child_inputs(args)
    checker = imap_login.ImapChecker(
        source,
        args.host,
        args.port,
        ssl_context=ssl.create_default_context(cafile=args.ca_path),
        client_factory=imapclient_factory,
    )
    results, summary = checker.run(users, args.concurrency)
    del results
    print(json.dumps({"summary": summary}))
    return 0


# --------------------------------------------------------------------------- helpers


def run_child(cmd, env=None, timeout=CHILD_TIMEOUT, cwd=None):
    """Run ``cmd``; ``(returncode, stdout, stderr, wall seconds, rusage)`` with the child's own rusage."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read().decode(), err.read().decode(), wall, usage


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([COLLECTIONS, REPO])
    return env


def spread(values):
    values = [value for value in values if value is not None]
    if not values:
        return None
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def child_command(mode, lab, users_file, concurrency, port, token_uri):
    # token_uri: where the child mints its tokens, before anything is measured.
    """This script re-run as a measured child (``--child-floor`` / ``--child-imapclient``) for one regime."""
    return [
        sys.executable,
        os.path.abspath(__file__),
        mode,
        "--users-file",
        users_file,
        "--key-file",
        lab.key_file,
        "--token-uri",
        token_uri,
        "--ca-path",
        lab.ca_path,
        "--host",
        lab.host,
        "--port",
        str(port),
        "--concurrency",
        str(concurrency),
    ]


def run_floor(lab, users_file, concurrency, port):
    cmd = child_command("--child-floor", lab, users_file, concurrency, port, lab.token_uri)
    rc, out, err, _wall, _usage = run_child(cmd, env=child_env())
    if rc != 0:
        raise RuntimeError("floor child failed: %s" % err[-2000:])
    data = json.loads(out.strip().splitlines()[-1])
    return {
        "users": data["users"],
        "ok": data["ok"],
        "seconds": round(data["wall_seconds"], 2),
        "users_per_second": round(data["users"] / data["wall_seconds"], 1),
        "client_cpu_ms_per_user": round(data["cpu_seconds"] * 1000 / data["users"], 2),
    }


def run_imapclient_variant(lab, users_file, concurrency, port, token_uri):
    cmd = child_command("--child-imapclient", lab, users_file, concurrency, port, token_uri)
    rc, out, err, wall, usage = run_child(cmd, env=child_env())
    if rc != 0:
        raise RuntimeError("imapclient variant failed: %s" % err[-2000:])
    summary = json.loads(out.strip().splitlines()[-1])["summary"]
    return {
        "users": summary["total"],
        "ok": summary["ok"],
        "seconds": summary["duration_seconds"],
        "process_seconds": round(wall, 2),
        "users_per_second": summary["users_per_second"],
        "client_cpu_ms_per_user": round((usage.ru_utime + usage.ru_stime) * 1000 / summary["total"], 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1),
    }


def presign(lab, users_file, token_uri):
    """What imap_check's action plugin does on the controller: one signed assertion per user.

    Signed for the lab's own token URI (the audience it checks), traded at ``token_uri`` (the proxy's).
    """
    from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import token

    with open(users_file) as handle:
        users = [line.strip() for line in handle if line.strip()]
    with open(lab.key_file) as handle:
        key = handle.read()
    started = time.perf_counter()
    signer = token.KeySigner(key, token_uri=lab.token_uri)
    presigned = token.sign_assertions(signer, [(user, [SCOPE]) for user in users])
    seconds = time.perf_counter() - started
    presigned["identity"]["token_uri"] = token_uri
    return presigned, {"sign_seconds": round(seconds, 3), "payload_bytes": len(json.dumps(presigned))}


def run_module(lab, users_file, concurrency, port, token_uri, workdir):
    """imap_check as a stock MSL runs it: the controller signed (timed apart), the module only exchanges and logs in.

    ``concurrency`` None: the module's default (the option is not given).
    """
    presigned, signing = presign(lab, users_file, token_uri)
    args = {
        "ANSIBLE_MODULE_ARGS": {
            "presigned": json.dumps(presigned),
            "users_file": users_file,
            "token_uri": token_uri,
            "ca_path": lab.ca_path,
            "imap_host": lab.host,
            "imap_port": port,
            "return_results": False,
            "report_path": os.path.join(workdir, "imap-check.json"),
            "_ansible_tmpdir": workdir,
            "_ansible_remote_tmp": workdir,
        }
    }
    if concurrency is not None:
        args["ANSIBLE_MODULE_ARGS"]["concurrency"] = concurrency
    args_path = os.path.join(workdir, "args.json")
    with open(args_path, "w") as handle:
        json.dump(args, handle)
    rc, out, err, wall, usage = run_child([sys.executable, MODULE, args_path], env=child_env(), cwd=workdir)
    try:
        result = json.loads(out)
    except ValueError:
        raise RuntimeError("imap_check failed (rc %d): %s %s" % (rc, out[-1000:], err[-2000:])) from None
    summary = result.get("summary") or {}
    if rc != 0 and not summary:
        raise RuntimeError("imap_check failed: %s" % result.get("msg"))
    users = summary["total"]
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "users": users,
        "ok": summary["ok"],
        "by_class": {name: count for name, count in summary["by_class"].items() if count},
        "seconds": summary["duration_seconds"],
        "process_seconds": round(wall, 2),
        "users_per_second": summary["users_per_second"],
        "concurrency": summary.get("concurrency"),
        "concurrency_levels": summary.get("concurrency_levels"),
        "client_cpu_ms_per_user": round(cpu * 1000 / users, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1),
        "latency_ms_p50": {phase: values["p50"] for phase, values in summary["latency_ms"].items()},
        "controller_signing": signing,
    }


# --------------------------------------------------------------------------- regimes


def local_regime(lab, users_file, users_count, concurrency, floor_concurrency, repeat, workdir, compare_imapclient):
    runs = []
    for number in range(repeat):
        names = ["floor", "imap_check"] + (["imapclient_variant"] if compare_imapclient else [])
        shift = number % len(names)
        order = tuple(names[shift:] + names[:shift])
        measured = {}
        for name in order:
            if name == "floor":
                measured[name] = run_floor(lab, users_file, floor_concurrency, lab.imap_port)
            elif name == "imap_check":
                measured[name] = run_module(lab, users_file, concurrency, lab.imap_port, lab.token_uri, workdir)
            else:
                measured[name] = run_imapclient_variant(
                    lab, users_file, floor_concurrency, lab.imap_port, lab.token_uri
                )
            lab.reset_google()  # drop the issued tokens between runs
        ratio = measured["imap_check"]["seconds"] / measured["floor"]["seconds"]
        if "imapclient_variant" in measured:
            variant = measured["imapclient_variant"]
            variant["ratio_to_floor"] = round(variant["seconds"] / measured["floor"]["seconds"], 3)
        runs.append(
            {
                "order": list(order),
                "floor": measured["floor"],
                "imap_check": measured["imap_check"],
                "imapclient_variant": measured.get("imapclient_variant"),
                "ratio_to_floor": round(ratio, 3),
                "cpu_ratio_to_floor": cpu_ratio(measured["imap_check"], measured["floor"]),
                "process_ratio_to_floor": round(
                    measured["imap_check"]["process_seconds"] / measured["floor"]["seconds"], 3
                ),
            }
        )
    ratios = [run["ratio_to_floor"] for run in runs]
    cpu_ratios = [run["cpu_ratio_to_floor"] for run in runs]
    cpu = [run["imap_check"]["client_cpu_ms_per_user"] for run in runs]
    rss = [run["imap_check"]["peak_rss_mb"] for run in runs]
    return {
        "users": users_count,
        "concurrency": concurrency if concurrency is not None else "module default",
        "floor_concurrency": floor_concurrency,
        "runs": runs,
        "spread": {
            "ratio_to_floor": spread(ratios),
            "cpu_ratio_to_floor": spread(cpu_ratios),
            "floor_seconds": spread([run["floor"]["seconds"] for run in runs]),
            "imap_check_seconds": spread([run["imap_check"]["seconds"] for run in runs]),
            "imap_check_users_per_second": spread([run["imap_check"]["users_per_second"] for run in runs]),
            "client_cpu_ms_per_user": spread(cpu),
            "floor_client_cpu_ms_per_user": spread([run["floor"]["client_cpu_ms_per_user"] for run in runs]),
            "peak_rss_mb": spread(rss),
            "imapclient_variant_ratio_to_floor": spread(
                [run["imapclient_variant"]["ratio_to_floor"] for run in runs if run["imapclient_variant"]]
            ),
            "imapclient_variant_client_cpu_ms_per_user": spread(
                [run["imapclient_variant"]["client_cpu_ms_per_user"] for run in runs if run["imapclient_variant"]]
            ),
        },
        "targets": {
            "ratio_to_floor_max": 1.25,
            "client_cpu_ms_per_user_max": 5.0,
            "cpu_ratio_to_floor_max": CPU_RATIO_MAX,
            "peak_rss_mb_max": 150,
            "met_by_median": statistics.median(ratios) <= 1.25 and statistics.median(cpu) <= 5.0 and max(rss) < 150,
            "cpu_ratio_met_by_median": statistics.median(cpu_ratios) <= CPU_RATIO_MAX,
        },
    }


CPU_RATIO_MAX = 1.5


def cpu_ratio(check, floor):
    """imap_check's client CPU per user over the floor's (same run)."""
    if not floor["client_cpu_ms_per_user"]:
        return None
    return round(check["client_cpu_ms_per_user"] / floor["client_cpu_ms_per_user"], 2)


class ProxyStats:
    """The latency proxy's counts since the last read (SIGUSR1 makes it write and reset them)."""

    def __init__(self, proxy, path):
        self.proxy, self.path = proxy, path

    def read(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.proxy.send_signal(signal.SIGUSR1)
        for _attempt in range(500):
            if os.path.exists(self.path):
                with open(self.path) as handle:
                    return json.load(handle)
            time.sleep(0.01)
        raise RuntimeError("the latency proxy wrote no statistics")


def round_trips(counts, ports, users):
    """Round trips per user through ``ports`` (the proxy's counts), and connections per user."""
    trips = sum(counts[str(port)]["round_trips"] for port in ports)
    connections = sum(counts[str(port)]["connections"] for port in ports)
    by_port = {str(port): round(counts[str(port)]["round_trips"] / float(users), 2) for port in ports}
    return {
        "per_user": round(trips / float(users), 2),
        "by_port": by_port,
        "connections_per_user": round(connections / float(users), 3),
    }


def curl_loop(lab, users, tokens, port):
    curl = shutil.which("curl")
    if curl is None:
        return {"skipped": "curl not installed"}
    failures = 0
    started = time.perf_counter()
    for user, token in zip(users, tokens, strict=True):
        cmd = [
            curl,
            "-sS",
            "--max-time",
            "30",
            "--cacert",
            lab.ca_path,
            "--oauth2-bearer",
            token,
            "--login-options",
            "AUTH=XOAUTH2",
            "-u",
            user + ":",
            "-X",
            "EXAMINE INBOX",
            "imaps://%s:%d/" % (lab.host, port),
        ]
        if subprocess.run(cmd, capture_output=True, timeout=60, check=False).returncode != 0:
            failures += 1
    seconds = time.perf_counter() - started
    return {
        "users": len(users),
        "failed": failures,
        "seconds": round(seconds, 2),
        "seconds_per_user": seconds / len(users),
    }


LOOP_PLAYBOOK = """
- name: One user per loop iteration
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Start
      ansible.builtin.set_fact:
        bench_started: "{{ lookup('ansible.builtin.pipe', 'date +%s.%N') }}"
    - name: Check one user per iteration
      nupoint.gworkspace.imap_check:
        src: "{{ key_file }}"
        users: ["{{ item }}"]
        token_uri: "{{ token_uri }}"
        ca_path: "{{ ca_path }}"
        imap_host: "{{ imap_host }}"
        imap_port: "{{ imap_port }}"
      loop: "{{ bench_users }}"
      # An iteration that fails (a busy shared machine) is counted, not the end of the measurement.
      ignore_errors: true
    - name: Report
      ansible.builtin.debug:
        msg: "BENCH_LOOP_SECONDS={{ lookup('ansible.builtin.pipe', 'date +%s.%N') | float - bench_started | float }}"
"""


def ansible_loop(lab, users, port, token_uri, workdir, rtt_ms):
    playbook = os.path.join(workdir, "loop.yml")
    with open(playbook, "w") as handle:
        handle.write(LOOP_PLAYBOOK)
    inventory = os.path.join(workdir, "hosts")
    with open(inventory, "w") as handle:
        handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    extra = {
        "key_file": lab.key_file,
        "token_uri": token_uri,
        "ca_path": lab.ca_path,
        "imap_host": lab.host,
        "imap_port": port,
        "bench_users": users,
    }
    extra_path = os.path.join(workdir, "loop-vars.json")
    with open(extra_path, "w") as handle:
        json.dump(extra, handle)
    env = dict(child_env(), ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_LOCAL_TEMP"] = os.path.join(workdir, "ansible-tmp")
    cmd = [ANSIBLE_PLAYBOOK, "-i", inventory, playbook, "-e", "@" + extra_path]
    lab.google.set_latency("/token", rtt_ms)  # one round trip per token request (see the docstring)
    try:
        rc, out, err, wall, _usage = run_child(cmd, env=env, cwd=workdir, timeout=600)
    finally:
        lab.google.set_latency("/token", 0)
    seconds = None
    for line in out.splitlines():
        if "BENCH_LOOP_SECONDS=" in line:
            seconds = float(line.split("BENCH_LOOP_SECONDS=")[1].strip().strip('"'))
    if rc != 0 or seconds is None:
        raise RuntimeError("ansible loop failed (rc %d): %s %s" % (rc, out[-2000:], err[-1000:]))
    return {
        "users": len(users),
        "failed_iterations": out.count("failed: [localhost] (item="),
        "seconds": round(seconds, 2),
        "playbook_seconds": round(wall, 2),
        "seconds_per_user": seconds / len(users),
    }


def start_proxy(lab, rtt_ms, pairs, stats_file):
    cmd = [sys.executable, PROXY, "--rtt-ms", str(rtt_ms), "--stats-file", stats_file]
    cmd += ["%d:%d" % pair for pair in pairs]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    line = proc.stdout.readline().decode().strip() if proc.stdout else ""
    if line != "ready":
        stop_child(proc)
        raise RuntimeError("latency proxy did not start: %s" % (proc.stderr.read().decode() if proc.stderr else ""))
    return proc


def stop_child(proc):
    """SIGTERM (SIGKILL after 10 s) and reap; returns the child's CPU seconds."""
    if proc.returncode is not None:
        return None
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def wan_regime(
    lab, users, users_file, users_count, concurrency, wan_concurrency, rtt_ms, curl_users, loop_users, workdir
):
    from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import imap_login

    imap_proxy, token_proxy = lab.port_base + 4, lab.port_base + 5
    stats = os.path.join(workdir, "proxy-stats.json")
    proxy = start_proxy(lab, rtt_ms, [(imap_proxy, lab.imap_port), (token_proxy, lab.google_port)], stats)
    counts = ProxyStats(proxy, stats)
    proxied_token_uri = "https://%s:%d/token" % (lab.host, token_proxy)
    both = (imap_proxy, token_proxy)
    try:
        with open(lab.key_file) as handle:
            source = imap_login.new_token_source(handle.read(), SCOPE, token_uri=lab.token_uri, ca_path=lab.ca_path)
        curl_tokens = [source.token(user)[0] for user in users[:curl_users]]
        source.close()
        counts.read()
        curl = curl_loop(lab, users[:curl_users], curl_tokens, imap_proxy)
        curl["round_trips"] = round_trips(counts.read(), [imap_proxy], curl_users)
        loop = ansible_loop(lab, users[:loop_users], imap_proxy, lab.token_uri, workdir, rtt_ms)
        loop["round_trips"] = round_trips(counts.read(), [imap_proxy], loop_users)
        loop["round_trips"]["not_counted"] = "token requests: sent to the lab directly, delayed one round trip each"
        lab.reset_google()
        checks = {}
        for level in (concurrency, wan_concurrency):
            name = "default" if level is None else str(level)
            if name in checks:
                continue
            checks[name] = run_module(lab, users_file, level, imap_proxy, proxied_token_uri, workdir)
            checks[name]["round_trips"] = round_trips(counts.read(), both, users_count)
            lab.reset_google()
        floor = run_floor(lab, users_file, wan_concurrency, imap_proxy)
        floor["round_trips"] = round_trips(counts.read(), both, users_count)
        lab.reset_google()
    finally:
        proxy_cpu = stop_child(proxy)
    curl_total = curl["seconds_per_user"] * users_count
    loop_total = loop["seconds_per_user"] * users_count
    for result in checks.values():
        result["speedup_vs_curl_loop"] = round(curl_total / result["seconds"], 1)
        result["speedup_vs_ansible_loop"] = round(loop_total / result["seconds"], 1)
        result["cpu_ratio_to_floor"] = cpu_ratio(result, floor)
    best = checks[str(wan_concurrency)]
    default = checks["default" if concurrency is None else str(concurrency)]
    curl["extrapolated_seconds_for_%d" % users_count] = round(curl_total, 1)
    curl["seconds_per_user"] = round(curl["seconds_per_user"], 4)
    loop["extrapolated_seconds_for_%d" % users_count] = round(loop_total, 1)
    loop["seconds_per_user"] = round(loop["seconds_per_user"], 4)
    return {
        "rtt_ms": rtt_ms,
        "proxy_ports": {"imap": imap_proxy, "token": token_proxy},
        "proxy_cpu_seconds": round(proxy_cpu, 1) if proxy_cpu is not None else None,
        "users": users_count,
        "curl_loop": curl,
        "ansible_loop": loop,
        "imap_check_by_concurrency": checks,
        "floor_at_wan_concurrency": floor,
        "targets": {
            "speedup_vs_curl_loop_min": 15,
            "speedup_vs_ansible_loop_min": 100,
            "met_at_concurrency": {
                level: result["speedup_vs_curl_loop"] >= 15 and result["speedup_vs_ansible_loop"] >= 100
                for level, result in checks.items()
            },
            "best": {
                "concurrency": wan_concurrency,
                "speedup_vs_curl_loop": best["speedup_vs_curl_loop"],
                "speedup_vs_ansible_loop": best["speedup_vs_ansible_loop"],
            },
            "at_default": {
                "concurrency": default["concurrency"],
                "speedup_vs_curl_loop": default["speedup_vs_curl_loop"],
                "speedup_vs_ansible_loop": default["speedup_vs_ansible_loop"],
                "round_trips_per_user": default["round_trips"]["per_user"],
                "cpu_ratio_to_floor": default["cpu_ratio_to_floor"],
                "met": default["speedup_vs_curl_loop"] >= 15
                and default["speedup_vs_ansible_loop"] >= 100
                and (default["cpu_ratio_to_floor"] or 0) <= CPU_RATIO_MAX,
            },
        },
    }


# --------------------------------------------------------------------------- lab handling


def maildirs(lab):
    home = os.path.join(lab.state_dir, "dovecot", "home")
    return len(os.listdir(home)) if os.path.isdir(home) else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2500)
    parser.add_argument("--regime", choices=("local", "wan", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=1, help="local regime repetitions (order alternates)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="imap_check's concurrency (default: the module's default)"
    )
    parser.add_argument("--floor-concurrency", type=int, default=16, help="the local floor's concurrency")
    parser.add_argument("--wan-concurrency", type=int, default=64)
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--curl-users", type=int, default=100)
    parser.add_argument("--loop-users", type=int, default=20)
    parser.add_argument(
        "--no-imapclient", action="store_true", help="skip the local regime's imapclient variant (needs imapclient)"
    )
    # Internal: the floor client, run in a child process.
    parser.add_argument("--child-floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-imapclient", action="store_true", help=argparse.SUPPRESS)
    for name in ("--users-file", "--key-file", "--token-uri", "--ca-path", "--host", "--mailbox"):
        parser.add_argument(name, help=argparse.SUPPRESS, default="INBOX" if name == "--mailbox" else None)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_floor:
        return child_floor(args)
    if args.child_imapclient:
        return child_imapclient(args)

    from tests.lab import orchestrator
    from tests.lab.api import Lab
    from tests.lab.config import LabConfig

    cfg = LabConfig.from_env()
    state = orchestrator.load_state(cfg)
    running_before = set(orchestrator.running_services(state))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 20000)), hard))
    orchestrator.up(cfg, owner="bench", log=lambda message: print(message, file=sys.stderr))
    started = [name for name in orchestrator.SERVICES if name not in running_before]
    lab = Lab.load(cfg)
    users_before = lab.users_count
    workdir = tempfile.mkdtemp(prefix="bench-imap-")
    report = {
        "benchmark": "imap_check",
        "lab": {"state_dir": lab.state_dir, "port_base": lab.port_base, "started_services": started},
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": [round(value, 2) for value in os.getloadavg()]},
        "users": args.users,
    }
    try:
        if users_before < args.users:
            lab.set_users(args.users)
        lab.reset_google()
        users = lab.users[: args.users]
        users_file = os.path.join(workdir, "users.txt")
        with open(users_file, "w") as handle:
            handle.write("\n".join(users) + "\n")
        if maildirs(lab) < len(users):
            # Dovecot creates each mailbox at its first EXAMINE: do that once, untimed, for every regime.
            report["warmup"] = run_floor(lab, users_file, args.floor_concurrency, lab.imap_port)
            lab.reset_google()
        if args.regime in ("local", "both"):
            report["local"] = local_regime(
                lab,
                users_file,
                len(users),
                args.concurrency,
                args.floor_concurrency,
                args.repeat,
                workdir,
                not args.no_imapclient,
            )
        if args.regime in ("wan", "both"):
            report["wan"] = wan_regime(
                lab,
                users,
                users_file,
                len(users),
                args.concurrency,
                args.wan_concurrency,
                args.rtt_ms,
                args.curl_users,
                args.loop_users,
                workdir,
            )
    finally:
        report["machine"]["loadavg_at_end"] = [round(value, 2) for value in os.getloadavg()]
        shutil.rmtree(workdir, ignore_errors=True)
        if users_before < args.users:
            lab.set_users(users_before)
        if running_before:
            for name in started:
                orchestrator.stop_service(cfg, name)
        else:
            orchestrator.down(cfg, log=lambda message: print(message, file=sys.stderr))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
