#!/usr/bin/env python3
"""Side-by-side network benchmark: Linux bridge vs Open vSwitch (AF_XDP) vs xsw.

For each switch the script builds the same throw-away topology, measures it,
tears it down, and at the end prints one table with ratios against the Linux
bridge:

    ns A (eth0 198.18.5.1/24) <-veth-> ns S (pa) [switch] (pb) <-veth-> ns B (eth0 198.18.5.2/24)

veth pairs have one rx and one tx queue on both ends; tx checksum offload is
off in A and B (frames through AF_XDP carry no offload state; the bridge gets
the same treatment so the comparison is fair). Switches:

  bridge  Linux bridge br0 in S (kernel; no process)
  ovs     private ovsdb-server + ovs-vswitchd in S, bridge datapath_type=netdev,
          ports type=afxdp options:xdp-mode=best-effort (default PMD mask)
  xsw     target/release/xswd --config FILE in S (AF_XDP ports + XDP)

Measurements (per switch):
  * TCP throughput A->B with iperf3 at MTU 1500 and at MTU 9000 (all four
    veth ends; OVS also gets mtu_request), Gbit/s as received by B.
  * 64-byte UDP: 60-byte frames (64 on the wire with FCS) sent as fast as the
    generator can: tcpreplay (looping a preloaded pcap) when installed, else
    iperf3 -u -b 0 -l 18. Offered pps, delivered pps (counted at B's eth0)
    and loss %. Then the same at a fixed rate every switch's generator can
    reach (--udp-rate, default 150000 pps; tcpreplay only), for loss at
    equal load.
  * Ping A->B latency p50 / p99 in microseconds (ping -i 0.005).
  * The switch process's CPU use while idle (utime+stime from /proc/PID/stat
    over a few seconds, % of one core); the bridge is in the kernel: 0.

Run (root; needs iperf3 and openvswitch-switch, installed by
tests/setup-debian.sh; tcpreplay is used when present; xswd must already be
built: cargo build --release -p xsw-control --bin xswd):

    /usr/bin/python3 tests/bench/compare.py                 # all three, ~75 s
    /usr/bin/python3 tests/bench/compare.py --duration 2 --pings 100 --only xsw
    /usr/bin/python3 tests/bench/compare.py --json /tmp/bench.json

Options: --duration S (seconds per traffic run, default 5), --only LIST
(bridge,ovs,xsw), --skip-udp, --pings N, --idle-seconds S, --udp-gen
auto|tcpreplay|iperf3, --xswd PATH, --json FILE, --keep (leave the namespaces
and the work directory with logs and configs; switch processes are always
stopped). Progress goes to stderr, the table to stdout. Everything (network
namespaces xcmp<pid>-<switch>-{a,b,s}, processes, /tmp/xcmp-*) is removed at
the end, also on errors and Ctrl-C; the machine's own interfaces are never
touched. A cell that cannot be measured shows "fail" with a numbered reason.
Numbers from a 2-core machine are noisy: the generator, the receiver and the
switch share the cores (OVS's PMD thread busy-polls one core by itself).
"""

import argparse
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_XSWD = REPO / "target" / "release" / "xswd"
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
SWITCHES = ("bridge", "ovs", "xsw")
IP_A, IP_B, PREFIX = "198.18.5.1", "198.18.5.2", 24
IPERF_PORT = 5201
T0 = time.monotonic()


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGHUP: stop measuring, clean up (not caught as an error)."""


class Fail(Exception):
    """A measurement (or a switch) failed; the message says why."""


def log(msg):
    print(f"[compare {time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


class _Sig:
    deferring = False  # while cleaning up: remember the signal, act after
    pending = None


def on_signal(signum, _frame):
    name = signal.Signals(signum).name
    if _Sig.deferring:
        _Sig.pending = _Sig.pending or name
        log(f"{name}: finishing cleanup first")
        return
    raise Interrupted(name)


class signals_deferred:
    """Cleanup that a Ctrl-C must not cut short; the signal acts afterwards."""

    def __enter__(self):
        self.outer = _Sig.deferring
        _Sig.deferring = True

    def __exit__(self, exc_type, exc, tb):
        _Sig.deferring = self.outer
        if not self.outer and _Sig.pending:
            name, _Sig.pending = _Sig.pending, None
            if exc_type is None:  # else: already on the way out
                raise Interrupted(name)
        return False


# ---------------------------------------------------------------- processes

class Procs:
    """Every long-lived process this script started, stopped by PID."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    @staticmethod
    def stop(p, sig=signal.SIGTERM, wait=10.0):
        """Signals `p` (ours, by PID), waits, then SIGKILLs. Returns the exit code."""
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                log(f"pid {p.pid} ({' '.join(map(str, p.args[:6]))}) ignored {sig.name}; SIGKILL")
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    log(f"pid {p.pid} did not die")
        return p.returncode

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)
        self.procs = []


PROCS = Procs()
KEPT = []  # namespaces left by --keep


def run(cmd, timeout=30, check=True, env=None):
    """Runs `cmd` (list) to completion with a timeout; returns CompletedProcess."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    except subprocess.TimeoutExpired as e:
        raise Fail(f"timed out after {timeout}s: {' '.join(cmd)}") from e
    except FileNotFoundError as e:
        raise Fail(f"not found: {cmd[0]}") from e
    if check and r.returncode != 0:
        raise Fail(f"{' '.join(cmd)} failed ({r.returncode}): {(r.stderr or r.stdout).strip()}")
    return r


def cpu_ticks(pid):
    """utime+stime (clock ticks, all threads) of `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- topology

class Topo:
    """Namespaces A, B, S and the two veth pairs, unique to this run."""

    def __init__(self, tag):
        base = f"xcmp{os.getpid()}-{tag}"
        self.a, self.b, self.s = f"{base}-a", f"{base}-b", f"{base}-s"
        self.created = []

    def ns_exec(self, ns, *cmd):
        return ["ip", "netns", "exec", ns, *cmd]

    def create(self):
        for ns in (self.a, self.b, self.s):
            run(["ip", "netns", "add", ns])
            self.created.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            # No IPv6 chatter (router solicitations, MLD) in the counters.
            run(self.ns_exec(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                             "net.ipv6.conf.default.disable_ipv6=1"), check=False)
        q = ["numrxqueues", "1", "numtxqueues", "1"]
        for host, port in ((self.a, "pa"), (self.b, "pb")):
            run(["ip", "-n", host, "link", "add", "eth0", *q, "type", "veth",
                 "peer", "name", port, "netns", self.s, *q])
        run(["ip", "-n", self.a, "addr", "add", f"{IP_A}/{PREFIX}", "dev", "eth0"])
        run(["ip", "-n", self.b, "addr", "add", f"{IP_B}/{PREFIX}", "dev", "eth0"])
        for ns in (self.a, self.b):
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(self.ns_exec(ns, "ethtool", "-K", "eth0", "tx", "off"))
        for port in ("pa", "pb"):
            run(["ip", "-n", self.s, "link", "set", port, "up"])

    def set_mtu(self, mtu):
        for ns, dev in ((self.s, "pa"), (self.s, "pb"), (self.a, "eth0"), (self.b, "eth0")):
            run(["ip", "-n", ns, "link", "set", dev, "mtu", str(mtu)])

    def xdp_attached(self):
        """Switch ports that still have an XDP program attached."""
        out = []
        for port in ("pa", "pb"):
            r = run(["ip", "-n", self.s, "-d", "link", "show", port], check=False)
            if "prog/xdp" in r.stdout:
                out.append(port)
        return out

    def detach_xdp(self):
        for port in ("pa", "pb"):
            for mode in ("xdpgeneric", "xdpdrv"):
                run(["ip", "-n", self.s, "link", "set", "dev", port, mode, "off"], check=False)

    def mac(self, ns):
        return read_ns(ns, "/sys/class/net/eth0/address").strip()

    def counters(self):
        """rx/tx packets and drops of the four veth ends, e.g. out["B:eth0"]["rx_packets"]."""
        out = {}
        for tag, ns, devs in (("A", self.a, ("eth0",)), ("S", self.s, ("pa", "pb")),
                              ("B", self.b, ("eth0",))):
            for link in json.loads(run(["ip", "-n", ns, "-j", "-s", "link", "show"],
                                       timeout=10).stdout):
                if link.get("ifname") in devs:
                    st = link.get("stats64", {})
                    out[f"{tag}:{link['ifname']}"] = {
                        f"{d}_{k}": st.get(d, {}).get(k, 0)
                        for d in ("rx", "tx") for k in ("packets", "dropped", "errors")}
        return out

    @staticmethod
    def delta(before, after):
        return {dev: {k: v - before.get(dev, {}).get(k, 0) for k, v in c.items()}
                for dev, c in after.items()}

    def destroy(self):
        for ns in reversed(self.created):
            run(["ip", "netns", "del", ns], check=False)
        self.created = []


def read_ns(ns, path):
    # sysfs inside `ip netns exec` shows the namespace's devices.
    return run(["ip", "netns", "exec", ns, "cat", path], timeout=10).stdout


# ---------------------------------------------------------------- switches

class Bridge:
    name = "bridge"

    def __init__(self, topo, work, args):
        self.t = topo
        self.pid = None
        self.notes = []

    def start(self, mtu):
        s = self.t.s
        run(["ip", "-n", s, "link", "add", "br0", "type", "bridge"])
        for p in ("pa", "pb"):
            run(["ip", "-n", s, "link", "set", p, "master", "br0"])
        run(["ip", "-n", s, "link", "set", "br0", "up"])

    def stop(self):
        run(["ip", "-n", self.t.s, "link", "del", "br0"], check=False)

    def explain(self):
        return ""

    def alive(self):
        return True

    def info(self):
        return {}


class Ovs:
    name = "ovs"

    def __init__(self, topo, work, args):
        self.t = topo
        self.work = work
        self.db = None
        self.vsd = None
        self.pid = None
        self.notes = []
        self.modes = {}
        self.modes_by_mtu = {}
        self.logdirs = []
        self.set_dir(work / "run")

    def set_dir(self, d):
        """A fresh OVS instance's private db, sockets, pid and log files."""
        self.dir = d
        self.env = dict(os.environ, OVS_RUNDIR=str(d), OVS_DBDIR=str(d), OVS_LOGDIR=str(d),
                        OVS_SYSCONFDIR=str(d), OVS_PKGDATADIR="/usr/share/openvswitch")
        self.sock = f"unix:{d}/db.sock"

    def vsctl(self, *a, timeout=30, check=True):
        return run(["ovs-vsctl", f"--db={self.sock}", f"--timeout={timeout}", *a],
                   timeout=timeout + 5, env=self.env, check=check)

    def start(self, mtu):
        self.set_dir(self.work / f"ovs-mtu{mtu}")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.logdirs.append(str(self.dir))
        d = self.dir
        run(["ovsdb-tool", "create", f"{d}/conf.db", OVS_SCHEMA], env=self.env)
        self.db = PROCS.start(
            self.t.ns_exec(self.t.s, "ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock",
                           f"--pidfile={d}/ovsdb-server.pid", f"--unixctl={d}/ovsdb-server.ctl",
                           f"--log-file={d}/ovsdb-server.log", "-vconsole:off"),
            env=self.env, stdout=subprocess.DEVNULL, stderr=open(d / "ovsdb-server.err", "w"))
        deadline = time.monotonic() + 15
        while not (d / "db.sock").exists():
            if self.db.poll() is not None or time.monotonic() > deadline:
                raise Fail(f"ovsdb-server did not start: {(d / 'ovsdb-server.err').read_text()[-500:]}")
            time.sleep(0.1)
        self.vsctl("--no-wait", "init")
        self.vsd = PROCS.start(
            self.t.ns_exec(self.t.s, "ovs-vswitchd", self.sock, f"--pidfile={d}/ovs-vswitchd.pid",
                           f"--unixctl={d}/ovs-vswitchd.ctl", f"--log-file={d}/ovs-vswitchd.log",
                           "-vconsole:off"),
            env=self.env, stdout=subprocess.DEVNULL, stderr=open(d / "ovs-vswitchd.err", "w"))
        self.pid = self.vsd.pid
        self.vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev")
        for p in ("pa", "pb"):
            extra = ["--", "set", "interface", p, f"mtu_request={mtu}"] if mtu != 1500 else []
            self.vsctl("add-port", "br0", p, "--", "set", "interface", p, "type=afxdp",
                       "options:xdp-mode=best-effort", *extra)
        problems = []
        for p in ("pa", "pb"):
            ofport = self.vsctl("get", "interface", p, "ofport").stdout.strip()
            err = self.vsctl("get", "interface", p, "error").stdout.strip()
            got = self.vsctl("get", "interface", p, "mtu").stdout.strip()
            if ofport in ("-1", "[]") or err not in ("[]", ""):
                problems.append(f"port {p}: ofport {ofport}, error {err}")
            elif got != str(mtu):
                problems.append(f"port {p}: mtu {got} (asked {mtu})")
        self.modes = self.xdp_modes()
        self.modes_by_mtu[mtu] = self.modes
        log(f"ovs: XDP modes {self.modes or '?'}")
        if problems:
            raise Fail("; ".join(problems))

    def xdp_modes(self):
        modes = {}
        try:
            text = (self.dir / "ovs-vswitchd.log").read_text(errors="replace")
        except OSError:
            return modes
        for m in re.finditer(r"\|(\w+): (\S+ XDP mode) will be in use", text):
            modes[m.group(1)] = m.group(2)
        return modes

    def explain(self):
        """Why OVS might not forward: its XDP modes and the log's warnings."""
        modes = ", ".join(f"{p} {m}" for p, m in sorted(self.modes.items()))
        return f"; OVS: {modes or 'XDP mode unknown'}" + self.log_hint()

    def log_hint(self, n=3):
        try:
            lines = (self.dir / "ovs-vswitchd.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        bad = []
        for ln in lines:
            if "|ERR|" in ln or "|WARN|" in ln:
                msg = ln.split("|", 4)[-1]
                # RLIMIT_MEMLOCK: harmless here (root has CAP_IPC_LOCK).
                if "RLIMIT_MEMLOCK" not in msg and msg not in bad:
                    bad.append(msg)
        return (" (ovs-vswitchd log: " + " / ".join(bad[-n:]) + ")") if bad else ""

    def stop(self):
        d = self.dir
        if self.vsd is not None and self.vsd.poll() is None:
            # exit --cleanup deletes the datapath and its ports (detaching XDP).
            run(["ovs-appctl", "-t", f"{d}/ovs-vswitchd.ctl", "--timeout=10", "exit", "--cleanup"],
                timeout=15, check=False, env=self.env)
            try:
                self.vsd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            PROCS.stop(self.vsd)
        if self.db is not None:
            PROCS.stop(self.db)
        self.vsd = self.db = None

    def info(self):
        return {"xdp_modes": self.modes_by_mtu, "dirs": self.logdirs}

    def alive(self):
        return self.vsd is not None and self.vsd.poll() is None


class Xsw:
    name = "xsw"

    def __init__(self, topo, work, args):
        self.t = topo
        self.work = work
        self.xswd = args.xswd_run
        self.extra = list(args.xswd_arg or [])
        self.proc = None
        self.pid = None
        self.log_lines = []
        self.ready = threading.Event()
        self.notes = []
        self.stats = {}
        self.mtu = None

    def config(self, mtu, with_mtu):
        lines = ['[[bridge]]', 'name = "br0"']
        for name, ofport, iface in (("a", 1, "pa"), ("b", 2, "pb")):
            lines += ['', '[[bridge.port]]', f'name = "{name}"', f'ofport = {ofport}',
                      f'interface = "{iface}"']
            if with_mtu:
                lines.append(f"mtu = {mtu}")
        return "\n".join(lines) + "\n"

    def _reader(self, stream, sink):
        for line in stream:
            line = line.rstrip("\n")
            sink.append(line)
            if line.rstrip().endswith(" ready"):
                self.ready.set()
        self.ready.set()

    def start(self, mtu):
        self.mtu = mtu
        cfg = self.work / "xswd.toml"
        # A port's `mtu` is optional (no limit when absent); not needed here.
        cfg.write_text(self.config(mtu, with_mtu=False))
        self.statsfile = self.work / "xswd-stats.json"
        self.log_lines = []
        self.ready = threading.Event()
        self.proc = PROCS.start(
            self.t.ns_exec(self.t.s, str(self.xswd), "--config", str(cfg),
                           "--no-state", "--socket", str(self.work / "xswd.sock"),
                           "--stats-file", str(self.statsfile), *self.extra),
            env=dict(os.environ, NO_COLOR="1"), stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, errors="replace")
        self.pid = self.proc.pid
        threading.Thread(target=self._reader, args=(self.proc.stderr, self.log_lines),
                         daemon=True).start()
        if not self.ready.wait(20) or self.proc.poll() is not None:
            rc = PROCS.stop(self.proc)
            self.proc = None
            raise Fail(f"xswd did not become ready (exit status {rc}): "
                       + " / ".join(self.log_lines[-5:]))
        for ln in self.log_lines:
            if "port" in ln and "afxdp" in ln:
                log("xsw: " + ln.split("INFO", 1)[-1].strip())

    def stop(self):
        if self.proc is None:
            return
        rc = PROCS.stop(self.proc, signal.SIGTERM, wait=10)
        time.sleep(0.2)
        if rc not in (0, None):
            self.note(f"xswd exited with status {rc} (MTU {self.mtu} run)")
        if not any("XDP programs detached" in ln for ln in self.log_lines):
            self.note("xswd did not log 'XDP programs detached' on SIGTERM")
        left = self.t.xdp_attached()
        if left:
            self.note(f"XDP program still attached to {','.join(left)} after xswd exit")
        for ln in self.log_lines:
            if re.search(r"\b(WARN|ERROR)\b", ln) or "panicked" in ln:
                self.note("xswd log: " + ln.strip()[-200:])
        try:
            self.stats[f"mtu{self.mtu}"] = json.loads(self.statsfile.read_text())
        except (OSError, ValueError):
            pass
        self.proc = None

    def info(self):
        return {"xswd": str(self.xswd), "log": self.log_lines[-40:], "stats_at_exit": self.stats}

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    def explain(self):
        tail = [ln for ln in self.log_lines if re.search(r"\b(WARN|ERROR)\b", ln)]
        return ("; xswd log: " + " / ".join(tail[-3:])) if tail else ""


# ---------------------------------------------------------------- measurements

def wait_connectivity(t, mtu, secs=15):
    """Pings B from A until it answers (switch ready, MACs learned)."""
    deadline = time.monotonic() + secs
    while True:
        r = run(t.ns_exec(t.a, "ping", "-n", "-c", "1", "-W", "1", IP_B), timeout=5, check=False)
        if r.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise Fail(f"A cannot ping B through the switch within {secs}s")
    # B talks too, so every switch has learned both MACs.
    run(t.ns_exec(t.b, "ping", "-n", "-c", "1", "-W", "1", IP_A), timeout=5, check=False)
    if mtu > 1500:
        size = mtu - 28
        if not ping_ok(t, size, count=3):
            # Find the largest ICMP payload that does get through (bisection).
            lo, hi = 1472, size
            while hi - lo > 16:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if ping_ok(t, mid) else (lo, mid)
            raise Fail(f"{mtu}-byte IP packets are not forwarded (ping -M do -s {size} lost; "
                       f"largest payload that passes: about {lo} bytes)")


def ping_ok(t, size, count=1):
    r = run(t.ns_exec(t.a, "ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1",
                      "-M", "do", "-s", str(size), IP_B), timeout=count + 10, check=False)
    return r.returncode == 0 and " 0 received" not in r.stdout


def measure_idle_cpu(sw, secs):
    if sw.pid is None:
        return {"value": 0.0, "note": "kernel"}
    t0, w0 = cpu_ticks(sw.pid), time.monotonic()
    time.sleep(secs)
    t1, w1 = cpu_ticks(sw.pid), time.monotonic()
    return {"value": (t1 - t0) / CLK_TCK / (w1 - w0) * 100.0, "seconds": w1 - w0}


class CpuMeter:
    """The switch process's CPU % over a traffic run (None for the bridge)."""

    def __init__(self, sw):
        self.pid = sw.pid
        if self.pid:
            self.t0, self.w0 = cpu_ticks(self.pid), time.monotonic()

    def done(self):
        if not self.pid:
            return None
        try:
            t1 = cpu_ticks(self.pid)
        except OSError:
            return None
        return (t1 - self.t0) / CLK_TCK / (time.monotonic() - self.w0) * 100.0


def measure_ping(t, count, interval):
    r = run(t.ns_exec(t.a, "ping", "-n", "-c", str(count), "-i", str(interval), "-W", "1", IP_B),
            timeout=count * interval + 20, check=False)
    rtts = sorted(float(m) * 1000.0 for m in re.findall(r"time=([\d.]+) ms", r.stdout))
    if not rtts:
        raise Fail(f"no ping replies: {r.stdout.strip()[-200:]} {r.stderr.strip()[-200:]}")

    def pct(p):  # nearest rank
        return rtts[max(0, min(len(rtts) - 1, int(-(-p * len(rtts) // 100)) - 1))]

    return {"p50": pct(50), "p99": pct(99), "min": rtts[0], "max": rtts[-1],
            "sent": count, "received": len(rtts)}


def iperf_server(t):
    """A one-shot iperf3 server in B; returns once it listens."""
    p = PROCS.start(t.ns_exec(t.b, "iperf3", "-s", "-1", "-p", str(IPERF_PORT)),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = run(t.ns_exec(t.b, "ss", "-Hltnu", "sport", "=", f":{IPERF_PORT}"),
                timeout=5, check=False)
        if r.stdout.strip():
            return p
        if p.poll() is not None:
            break
        time.sleep(0.1)
    PROCS.stop(p)
    raise Fail("iperf3 server did not start")


def iperf_client(t, dur, extra):
    srv = iperf_server(t)
    try:
        r = run(t.ns_exec(t.a, "iperf3", "-c", IP_B, "-p", str(IPERF_PORT), "-t", str(dur),
                          "-J", "--connect-timeout", "3000", *extra),
                timeout=dur + 30, check=False)
        try:
            res = json.loads(r.stdout)
        except ValueError:
            raise Fail(f"iperf3: {(r.stderr or r.stdout).strip()[-300:]}")
        if "error" in res:
            raise Fail(f"iperf3: {res['error']}")
        return res
    finally:
        try:
            srv.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        PROCS.stop(srv)


def measure_tcp(t, sw, dur):
    c0 = t.counters()
    cpu = CpuMeter(sw)
    res = iperf_client(t, dur, [])
    sw_cpu = cpu.done()
    veth = t.delta(c0, t.counters())
    e = res["end"]
    gbps = e["sum_received"]["bits_per_second"] / 1e9
    if gbps <= 0:
        raise Fail("no TCP data delivered")
    return {"value": gbps, "sent_gbps": e["sum_sent"]["bits_per_second"] / 1e9,
            "retransmits": e["sum_sent"].get("retransmits"),
            "seconds": e["sum_received"]["seconds"], "switch_cpu_pct": sw_cpu,
            "veth_counters": veth}


def udp_pcap(path, dst_mac, src_mac, copies=1000):
    """A pcap of `copies` 60-byte UDP frames A->B (port 9 = discard)."""
    def csum(b):
        s = sum(struct.unpack(f"!{len(b) // 2}H", b))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        return ~s & 0xFFFF
    payload = bytes(18)
    udp = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     bytes(map(int, IP_A.split("."))), bytes(map(int, IP_B.split("."))))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    frame = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) \
        + b"\x08\x00" + ip + udp
    assert len(frame) == 60
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(copies):
            f.write(struct.pack("<IIII", 0, i, len(frame), len(frame)) + frame)


def measure_udp_tcpreplay(t, sw, dur, work, pps=None):
    """64-byte UDP from A to B: as fast as tcpreplay can, or at `pps`."""
    pcap = work / "udp64.pcap"
    udp_pcap(pcap, t.mac(t.b), t.mac(t.a))
    c0 = t.counters()
    cpu = CpuMeter(sw)
    rate = [f"--pps={pps}"] if pps else ["-t"]
    r = run(t.ns_exec(t.a, "tcpreplay", "-i", "eth0", *rate, "-K", "--loop=0",
                      f"--duration={dur}", str(pcap)), timeout=dur + 30, check=False)
    sw_cpu = cpu.done()
    time.sleep(0.5)  # let the switch drain
    veth = t.delta(c0, t.counters())
    m = re.search(r"Actual: (\d+) packets .* sent in ([\d.]+) seconds", r.stdout)
    ok = re.search(r"Successful packets:\s+(\d+)", r.stdout)
    if not m or not ok:
        raise Fail(f"tcpreplay: {(r.stderr or r.stdout).strip()[-300:]}")
    secs = float(m.group(2))
    sent = int(ok.group(1))
    # Delivered: frames that reached B's stack (its eth0 rx counter).
    got = veth["B:eth0"]["rx_packets"]
    return {"generator": "tcpreplay", "offered_pps": sent / secs, "delivered_pps": got / secs,
            "loss_pct": max(0.0, (sent - got) / sent * 100.0) if sent else None,
            "sent": sent, "delivered": got, "seconds": secs,
            "veth_counters": veth, "switch_cpu_pct": sw_cpu}


def measure_udp_iperf(t, sw, dur):
    c0 = t.counters()
    cpu = CpuMeter(sw)
    res = iperf_client(t, dur, ["-u", "-b", "0", "-l", "18"])
    sw_cpu = cpu.done()
    veth = t.delta(c0, t.counters())
    e = res["end"]
    sent, rcv = e["sum_sent"], e["sum_received"]
    got = rcv["packets"] - rcv["lost_packets"]
    return {"generator": "iperf3", "offered_pps": sent["packets"] / sent["seconds"],
            "delivered_pps": got / rcv["seconds"],
            "loss_pct": max(0.0, (sent["packets"] - got) / sent["packets"] * 100.0),
            "sent": sent["packets"], "delivered": got, "seconds": sent["seconds"],
            "veth_counters": veth, "switch_cpu_pct": sw_cpu}


# ---------------------------------------------------------------- driver

METRICS = [
    # key, label, format
    ("tcp1500", "TCP MTU 1500 (Gbit/s)", "{:.2f}"),
    ("tcp9000", "TCP MTU 9000 (Gbit/s)", "{:.2f}"),
    ("udp_offered", "UDP 64B offered (kpps)", "{:.0f}"),
    ("udp_delivered", "UDP 64B delivered (kpps)", "{:.0f}"),
    ("udp_loss", "UDP 64B loss (%)", "{:.2f}"),
    ("udpfix_delivered", "UDP 64B fixed rate: delivered (kpps)", "{:.0f}"),
    ("udpfix_loss", "UDP 64B fixed rate: loss (%)", "{:.3f}"),
    ("ping_p50", "ping p50 (us)", "{:.0f}"),
    ("ping_p99", "ping p99 (us)", "{:.0f}"),
    ("idle_cpu", "idle CPU (% of a core)", "{:.1f}"),
]


def attempt(cells, key, fn, *a):
    """Runs one measurement; records its result or its failure in `cells`."""
    try:
        cells[key] = fn(*a)
    except (Fail, OSError, KeyError, ValueError, TypeError, ZeroDivisionError) as e:
        why = str(e) if isinstance(e, Fail) else f"{type(e).__name__}: {e}"
        log(f"  {key}: fail: {why}")
        cells[key] = {"fail": why}


def bench_switch(kind, args, work):
    t = Topo(kind)
    sw = {"bridge": Bridge, "ovs": Ovs, "xsw": Xsw}[kind](t, work, args)
    cells = {}
    raw = {"namespaces": [t.a, t.b, t.s]}
    log(f"== {kind}: topology {t.a}, {t.b}, {t.s}")
    try:
        t.create()
        for mtu in (1500, 9000):
            keys = ["tcp1500", "idle_cpu", "ping", "udp"] if mtu == 1500 else ["tcp9000"]
            if args.skip_udp and "udp" in keys:
                keys.remove("udp")
            try:
                t.set_mtu(mtu)
                log(f"{kind}: start (MTU {mtu})")
                sw.start(mtu)
                wait_connectivity(t, mtu)
            except Fail as e:
                why = str(e) + sw.explain()
                log(f"{kind}: cannot run at MTU {mtu}: {why}")
                for k in keys:
                    cells[k] = {"fail": why}
                sw.stop()
                t.detach_xdp()
                continue
            if mtu == 1500:
                time.sleep(1)
                log(f"{kind}: idle CPU over {args.idle_seconds}s")
                attempt(cells, "idle_cpu", measure_idle_cpu, sw, args.idle_seconds)
                log(f"{kind}: ping x{args.pings} every {args.ping_interval}s")
                attempt(cells, "ping", measure_ping, t, args.pings, args.ping_interval)
                pg = cells["ping"]
                if "fail" not in pg and pg["received"] < pg["sent"]:
                    sw.notes.append(f"ping: {pg['sent'] - pg['received']} of {pg['sent']} lost")
            log(f"{kind}: TCP MTU {mtu}, {args.duration}s")
            attempt(cells, f"tcp{mtu}", measure_tcp, t, sw, args.duration)
            if "udp" in keys:
                log(f"{kind}: UDP 64B ({args.udp_gen}), {args.duration}s")
                if args.udp_gen == "tcpreplay":
                    attempt(cells, "udp", measure_udp_tcpreplay, t, sw, args.duration, work)
                    log(f"{kind}: UDP 64B at {args.udp_rate} pps, {args.duration}s")
                    attempt(cells, "udpfix", measure_udp_tcpreplay, t, sw, args.duration, work,
                            args.udp_rate)
                else:
                    attempt(cells, "udp", measure_udp_iperf, t, sw, args.duration)
            if not sw.alive():
                sw.notes.append(f"the {kind} process died during the MTU {mtu} runs")
            log(f"{kind}: stop")
            sw.stop()
            t.detach_xdp()
    finally:
        with signals_deferred():
            try:
                sw.stop()
            except Fail as e:
                log(f"{kind}: stop: {e}")
            if args.keep:
                KEPT.extend(t.created)
                log(f"{kind}: --keep: leaving namespaces {t.a} {t.b} {t.s}")
            else:
                t.destroy()
    raw.update(sw.info())
    raw["notes"] = sw.notes
    for n in sw.notes:
        log(f"{kind}: note: {n}")
    return cells, raw


def flatten(cells):
    """Table values (number, 'fail' reason or None) for one switch."""
    out = {}

    def get(key, sub, scale=1.0):
        c = cells.get(key)
        if c is None:
            return None
        if "fail" in c:
            return ("fail", c["fail"])
        v = c.get(sub)
        return None if v is None else v * scale

    out["tcp1500"] = get("tcp1500", "value")
    out["tcp9000"] = get("tcp9000", "value")
    out["udp_offered"] = get("udp", "offered_pps", 1e-3)
    out["udp_delivered"] = get("udp", "delivered_pps", 1e-3)
    out["udp_loss"] = get("udp", "loss_pct")
    out["udpfix_delivered"] = get("udpfix", "delivered_pps", 1e-3)
    out["udpfix_loss"] = get("udpfix", "loss_pct")
    out["ping_p50"] = get("ping", "p50")
    out["ping_p99"] = get("ping", "p99")
    out["idle_cpu"] = get("idle_cpu", "value")
    return out


def table(results, order):
    notes = []

    def cell(v, fmt):
        if v is None:
            return "-"
        if isinstance(v, tuple):
            if v[1] not in notes:
                notes.append(v[1])
            return f"fail[{notes.index(v[1]) + 1}]"
        return fmt.format(v)

    flat = {k: flatten(results[k]) for k in order}
    cols = list(order)
    ratio_cols = [r for r in ("xsw", "ovs") if r in order and "bridge" in order]
    head = ["metric"] + cols + [f"{r}/bridge" for r in ratio_cols]
    rows = []
    for key, label, fmt in METRICS:
        row = [label]
        for k in cols:
            v = flat[k][key]
            if key == "idle_cpu" and k == "bridge" and isinstance(v, float):
                row.append("0 (kernel)")
            else:
                row.append(cell(v, fmt))
        for r in ratio_cols:
            a, b = flat[r][key], flat["bridge"][key]
            if isinstance(a, float) and isinstance(b, float) and b > 0 and key not in (
                    "udp_loss", "udpfix_loss", "idle_cpu"):
                row.append(f"{a / b:.2f}x")
            else:
                row.append("-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in
                       enumerate(zip(head, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                               enumerate(zip(r, widths))))
    if ratio_cols:
        lines.append("ratios: switch / bridge (throughput: higher is better; latency: lower is "
                     "better). UDP offered is what the generator reached next to that switch;"
                     " the fixed-rate run offers every switch the same rate (--udp-rate).")
    for i, n in enumerate(notes):
        lines.append(f"[{i + 1}] {n}")
    return "\n".join(lines)


def loss_notes(results, raw, order):
    """Where the 64-byte UDP frames were lost, from the counters."""
    lines = []
    for k in order:
        u = results.get(k, {}).get("udp")
        if not u or "fail" in u:
            continue
        lost = u["sent"] - u["delivered"]
        moved = [f"{dev} {name}={v}" for dev, c in u.get("veth_counters", {}).items()
                 for name, v in c.items() if v and name.endswith(("dropped", "errors"))]
        line = (f"UDP loss ({k}): {lost} of {u['sent']} frames; veth drop counters: "
                + (", ".join(moved) or "none moved"))
        stats = raw.get(k, {}).get("stats_at_exit", {}).get("mtu1500")
        if stats:
            bad = []
            bridges = stats.get("bridges", []) if isinstance(stats, dict) else stats
            for br in bridges:
                for port in br.get("ports", []):
                    be = port.get("backend", {})
                    bad += [f"port {port['name']} {n}={v}" for n, v in be.items()
                            if isinstance(v, int) and v]
                    bad += [f"port {port['name']} drop {n}={v}"
                            for n, v in port.get("stats", {}).get("drops", {}).items() if v]
            line += ("; xswd counters (whole MTU 1500 run): " + (", ".join(bad) or "none"))
        lines.append(line)
    return lines


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (head of this file) for details.")
    ap.add_argument("--duration", type=float, default=5, help="seconds per traffic run (default 5)")
    ap.add_argument("--only", default=",".join(SWITCHES),
                    help="comma-separated switches to run: bridge,ovs,xsw (default all)")
    ap.add_argument("--skip-udp", action="store_true", help="skip the 64-byte UDP test")
    ap.add_argument("--pings", type=int, default=500, help="pings for the latency test (default 500)")
    ap.add_argument("--ping-interval", type=float, default=0.005, help="seconds between pings")
    ap.add_argument("--idle-seconds", type=float, default=5, help="idle CPU window (default 5)")
    ap.add_argument("--udp-gen", choices=("auto", "tcpreplay", "iperf3"), default="auto",
                    help="64-byte UDP generator (auto: tcpreplay if installed, else iperf3)")
    ap.add_argument("--xswd", type=Path, default=DEFAULT_XSWD, help=f"xswd binary ({DEFAULT_XSWD})")
    ap.add_argument("--udp-rate", type=int, default=150000, metavar="PPS",
                    help="rate of the fixed-rate 64-byte UDP run, packets/s (default 150000; "
                         "tcpreplay only)")
    ap.add_argument("--xswd-arg", action="append", metavar="ARG",
                    help="extra argument for xswd (repeatable), e.g. --xswd-arg=--busy-poll-us=0")
    ap.add_argument("--json", type=Path, help="write all raw numbers to this file")
    ap.add_argument("--keep", action="store_true",
                    help="leave the namespaces and the work dir (logs, configs) for debugging")
    a = ap.parse_args()
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [s for s in a.only if s not in SWITCHES]
    if bad or not a.only:
        ap.error(f"--only: unknown switch {bad}; choose from {','.join(SWITCHES)}")
    a.only = [s for s in SWITCHES if s in a.only]
    a.xswd_run = a.xswd
    a.duration = max(1, int(round(a.duration)))
    if a.udp_gen == "auto":
        a.udp_gen = "tcpreplay" if shutil.which("tcpreplay") else "iperf3"
    return a


def preflight(args):
    if os.geteuid() != 0:
        sys.exit("compare.py: needs root (network namespaces, XDP, AF_XDP)")
    need = ["ip", "ethtool", "ping", "iperf3", "ss"]
    if "ovs" in args.only:
        need += ["ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl"]
    if args.udp_gen == "tcpreplay" and not args.skip_udp:
        need.append("tcpreplay")
    missing = [c for c in need if not shutil.which(c)]
    if missing:
        sys.exit(f"compare.py: missing {', '.join(missing)} (tests/setup-debian.sh installs them)")
    if "ovs" in args.only and not Path(OVS_SCHEMA).exists():
        sys.exit(f"compare.py: {OVS_SCHEMA} not found (openvswitch-switch)")
    if "xsw" in args.only and not os.access(args.xswd, os.X_OK):
        sys.exit(f"compare.py: {args.xswd} not found: build it first "
                 "(cargo build --release -p xsw-control --bin xswd) or pass --xswd")


def env_info(args):
    def ver(cmd):
        try:
            r = run(cmd, timeout=10, check=False)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (Fail, IndexError):
            return None
    info = {"kernel": os.uname().release, "cpus": os.cpu_count(),
            "iperf3": ver(["iperf3", "--version"])}
    if "ovs" in args.only:
        info["ovs"] = ver(["ovs-vswitchd", "--version"])
    if "xsw" in args.only:
        info["xswd"] = ver([str(args.xswd), "--version"])
        info["xswd_path"] = str(args.xswd)
    if args.udp_gen == "tcpreplay":
        info["tcpreplay"] = ver(["tcpreplay", "--version"])
    return info


def main():
    args = parse_args()
    preflight(args)
    work = Path(tempfile.mkdtemp(prefix=f"xcmp-{os.getpid()}-", dir="/tmp"))
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    results, raw = {}, {}
    rc = 0
    try:
        info = env_info(args)
        if "xsw" in args.only:
            # A private copy: a concurrent `cargo build` may replace the binary
            # between the MTU 1500 and MTU 9000 runs.
            args.xswd_run = work / "xswd"
            shutil.copy2(args.xswd, args.xswd_run)
            st = args.xswd.stat()
            info["xswd_mtime"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime))
        log(f"work dir {work}; switches {','.join(args.only)}; {args.duration}s per run; "
            f"UDP generator {args.udp_gen}")
        for kind in args.only:
            d = work / kind
            d.mkdir()
            try:
                results[kind], raw[kind] = bench_switch(kind, args, d)
            except Fail as e:
                log(f"{kind}: failed: {e}")
                results[kind] = {k: {"fail": str(e)} for k in ("tcp1500", "tcp9000", "udp",
                                                                 "ping", "idle_cpu")}
                raw[kind] = {"error": str(e)}
        print(f"\nxsw benchmark: {info['kernel']}, {info['cpus']} CPUs, {args.duration}s per "
              f"traffic run, {args.pings} pings, UDP generator {args.udp_gen}")
        print(table(results, args.only))
        for line in loss_notes(results, raw, args.only):
            print(line)
        notes = [(k, n) for k in args.only for n in raw.get(k, {}).get("notes", [])]
        for k, n in notes:
            print(f"note ({k}): {n}")
        if args.json:
            doc = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   "env": info, "results": results, "details": raw,
                   "table": {k: {m: (v if not isinstance(v, tuple) else "fail: " + v[1])
                                 for m, v in flatten(results[k]).items()} for k in args.only}}
            args.json.write_text(json.dumps(doc, indent=2) + "\n")
            log(f"wrote {args.json}")
    except Interrupted as e:
        log(f"interrupted ({e}); cleaning up")
        rc = 130
    finally:
        _Sig.deferring = True
        PROCS.stop_all()
        if args.keep:
            log(f"--keep: work dir {work} left; remove everything with: "
                f"for n in {' '.join(KEPT)}; do ip netns del $n; done; rm -r {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
