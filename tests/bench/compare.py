#!/usr/bin/env python3
"""Side-by-side network benchmark: Linux bridge vs Open vSwitch (AF_XDP) vs xsw.

For each switch the script builds the same throw-away topology, measures it
and tears it down; it does so for every switch in each of --runs interleaved
rounds, and prints one table with the median of each metric over the runs
and ratios of those medians against the Linux bridge:

    ns A (eth0 198.18.5.1/24) <-veth-> ns S (pa) [switch] (pb) <-veth-> ns B (eth0 198.18.5.2/24)

veth pairs have one rx and one tx queue on both ends. Switches:

  bridge  Linux bridge br0 in S (kernel; no process)
  ovs     private ovsdb-server + ovs-vswitchd in S, bridge datapath_type=netdev,
          ports type=afxdp options:xdp-mode=best-effort
  xsw     xswd --config FILE in S (AF_XDP ports + XDP; --xswd, --xswd-arg)

Host offloads (--offloads, default "default,off": both, each its own set of
columns in the one table):

  default  the main configuration: A's and B's eth0 keep the veth defaults,
           no ethtool at all (tx checksum offload, TSO and GSO on, so TCP and
           UDP leave A with partial checksums: the bridge passes the kernel's
           checksum state along, xsw completes them in software on veth and
           tap ports; through OVS's afxdp ports they arrive unfinished and B
           drops them, which a failed cell reports as B's checksum errors).
  off      ethtool -K eth0 tx off in A and in B (checksums computed by the
           hosts' stacks; TSO goes off with it): the columns headed
           "offloads off". Only the TCP rows run in this configuration;
           64-byte UDP, ping and idle CPU run with default offloads only.

CPU pinning (the switch on its own core, as OVS pins its PMD thread).
SW = --switch-cpus (default: the last CPU this process may use), GEN =
--gen-cpus (default: all the others); on a 2-CPU machine SW = 1, GEN = 0:

  xsw     xswd (all its threads) runs under taskset -c SW.
  ovs     ovs-vswitchd (all its threads) and ovsdb-server run under
          taskset -c SW, and other_config:pmd-cpu-mask is SW's mask (0x2
          for CPU 1), so the PMD thread polls on SW.
  bridge  no process: the kernel forwards in softirq context on the CPU that
          transmits, in practice GEN.
  hosts   everything run in A and B: the iperf3 client (A) and server (B),
          tcpreplay (A) and ping (A) run under taskset -c GEN.
Only processes are pinned; kernel work (veth transmit, XDP programs,
softirq receive) runs wherever the kernel raises it. --no-pin runs all of it
unpinned and leaves OVS's PMD mask at its default.

Rounds (--runs N, default 3): round r measures every switch once in each
offload configuration, each time on a fresh topology (namespaces, veths,
switch process); the switch order rotates from round to round (bridge,ovs,xsw
then ovs,xsw,bridge then xsw,bridge,ovs...), so no switch always runs first
or last. Within a measurement the switch is started once at MTU 1500 and
once more at MTU 9000.

Measurements (each switch, round and offload configuration):
  * TCP throughput A->B with iperf3 at MTU 1500 and at MTU 9000 (all four
    veth ends; OVS also gets mtu_request), Gbit/s as received by B.
  * 64-byte UDP (default offloads only): 60-byte frames (64 on the wire
    with FCS) sent as fast as the generator can: tcpreplay (looping a
    preloaded pcap: -K --loop=0 -t) when installed, else iperf3 -u -b 0
    -l 18. Offered pps, delivered pps (counted at B's eth0) and loss %.
    Then, with tcpreplay, the same at a fixed rate every switch's generator
    can reach (--udp-rate, default 150000 pps) for loss at equal load:
    0.000 there means no frame was lost.
  * Ping A->B latency p50 / p99 in microseconds (ping -i 0.005; default
    offloads only).
  * The switch process's CPU use while idle (utime+stime from /proc/PID/stat
    over a few seconds, % of one core; default offloads only); the bridge is
    in the kernel: 0. OVS's PMD busy-polls, so about 100.

The table (stdout): one row per metric; per offload configuration one column
per switch (the median over the runs that succeeded) and one per ratio
"ovs/bridge", "xsw/bridge" (median over median: 1.23x; throughput higher is
better, latency lower is better; none for loss and CPU). A cell that failed
in every run shows fail[n], the note [n] below says why; a median over fewer
runs than asked is marked [n] with a note saying how many failed. "-" means
not measured. Below the table: the per-run TCP and UDP figures in run order,
where the UDP frames were lost, and notes. --json FILE writes every run's raw
figures (iperf3 and tcpreplay results, veth counters, switch CPU during each
run, xswd counters, OVS XDP modes and PMD placement), the per-run values and
the medians.

Cleanup: progress goes to stderr, the table to stdout. Everything (network
namespaces xcmp<pid>-*, processes, stopped by PID, /tmp/xcmp-*) is removed at
the end, also on errors and Ctrl-C; the machine's own interfaces are never
touched. Numbers from a 2-core machine are noisy: hence the medians and the
per-run figures.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
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
OFFLOADS = ("default", "off")
OFFLOAD_LABEL = {"default": "default offloads (no ethtool)",
                 "off": "offloads off (ethtool -K tx off)"}
OFFLOAD_SHORT = {"default": "default offloads", "off": "offloads off"}
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


# ---------------------------------------------------------------- CPU pinning

def parse_cpulist(text):
    """'1', '0,2-3' -> [0, 2, 3] (taskset -c syntax); ValueError when malformed."""
    cpus = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        lo, hi = int(lo), int(hi or lo)
        if lo < 0 or hi < lo:
            raise ValueError(f"bad CPU range {part!r}")
        cpus.update(range(lo, hi + 1))
    if not cpus:
        raise ValueError("empty CPU list")
    return sorted(cpus)


def cpulist(cpus):
    """[0, 2, 3] -> '0,2-3'."""
    out, cpus = [], sorted(cpus)
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)


class Pin:
    """Where the switch and the hosts' programs run (set from the options)."""
    on = False
    switch = []  # CPUs of xswd / ovs-vswitchd (+ OVS's PMD mask)
    gen = []     # CPUs of iperf3, tcpreplay and ping in A and B

    @classmethod
    def sw(cls, cmd):
        return ["taskset", "-c", cpulist(cls.switch), *cmd] if cls.on else list(cmd)

    @classmethod
    def host(cls, cmd):
        return ["taskset", "-c", cpulist(cls.gen), *cmd] if cls.on else list(cmd)

    @classmethod
    def pmd_mask(cls):
        return hex(sum(1 << c for c in cls.switch))


# ---------------------------------------------------------------- topology

class Topo:
    """Namespaces A, B, S and the two veth pairs, unique to this run."""

    def __init__(self, tag):
        base = f"xcmp{os.getpid()}-{tag}"
        self.a, self.b, self.s = f"{base}-a", f"{base}-b", f"{base}-s"
        self.created = []

    def ns_exec(self, ns, *cmd):
        return ["ip", "netns", "exec", ns, *cmd]

    def host_exec(self, ns, *cmd):
        """A traffic program in host A or B, pinned to the generator CPUs."""
        return self.ns_exec(ns, *Pin.host(cmd))

    def create(self, offloads):
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
            if offloads == "off":  # the labelled offloads-off columns only
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

    def features(self):
        """A's eth0 offloads as the kernel has them now (XDP on the peer changes them)."""
        r = run(self.ns_exec(self.a, "ethtool", "-k", "eth0"), timeout=10, check=False)
        want = ("tx-checksumming", "tcp-segmentation-offload", "generic-segmentation-offload",
                "generic-receive-offload")
        out = {}
        for ln in r.stdout.splitlines():
            k, _, v = ln.partition(":")
            if k.strip() in want:
                out[k.strip()] = v.strip()
        return out

    def csum_errors(self):
        """B's stack: TCP and UDP segments dropped for a bad checksum (/proc/net/snmp)."""
        text = read_ns(self.b, "/proc/net/snmp")
        out = {}
        rows = {}
        for ln in text.splitlines():
            proto, _, rest = ln.partition(":")
            rows.setdefault(proto, []).append(rest.split())
        for proto in ("Tcp", "Udp"):
            r = rows.get(proto, [])
            if len(r) >= 2 and "InCsumErrors" in r[0]:
                out[proto.lower()] = int(r[1][r[0].index("InCsumErrors")])
        return out

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
        self.pmd_by_mtu = {}
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
            self.t.ns_exec(self.t.s, *Pin.sw([
                "ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock",
                f"--pidfile={d}/ovsdb-server.pid", f"--unixctl={d}/ovsdb-server.ctl",
                f"--log-file={d}/ovsdb-server.log", "-vconsole:off"])),
            env=self.env, stdout=subprocess.DEVNULL, stderr=open(d / "ovsdb-server.err", "w"))
        deadline = time.monotonic() + 15
        while not (d / "db.sock").exists():
            if self.db.poll() is not None or time.monotonic() > deadline:
                raise Fail(f"ovsdb-server did not start: {(d / 'ovsdb-server.err').read_text()[-500:]}")
            time.sleep(0.1)
        self.vsctl("--no-wait", "init")
        if Pin.on:
            self.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                       f"other_config:pmd-cpu-mask={Pin.pmd_mask()}")
        self.vsd = PROCS.start(
            self.t.ns_exec(self.t.s, *Pin.sw([
                "ovs-vswitchd", self.sock, f"--pidfile={d}/ovs-vswitchd.pid",
                f"--unixctl={d}/ovs-vswitchd.ctl", f"--log-file={d}/ovs-vswitchd.log",
                "-vconsole:off"])),
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
        cores = self.pmd_cores()
        self.pmd_by_mtu[mtu] = cores
        log(f"ovs: XDP modes {self.modes or '?'}; PMD threads on cores {cores or '?'}")
        if Pin.on and cores and not set(cores) <= set(Pin.switch):
            self.notes.append(f"PMD threads on cores {cores}, asked {cpulist(Pin.switch)}")
        if problems:
            raise Fail("; ".join(problems))

    def pmd_cores(self):
        """The cores OVS's PMD threads poll on (dpif-netdev/pmd-rxq-show)."""
        r = run(["ovs-appctl", "-t", f"{self.dir}/ovs-vswitchd.ctl", "--timeout=10",
                 "dpif-netdev/pmd-rxq-show"], timeout=15, check=False, env=self.env)
        return sorted({int(c) for c in re.findall(r"core_id (\d+)", r.stdout)})

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
        return {"xdp_modes": self.modes_by_mtu, "pmd_cores": self.pmd_by_mtu,
                "pmd_cpu_mask": Pin.pmd_mask() if Pin.on else "default", "dirs": self.logdirs}

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
            self.t.ns_exec(self.t.s, *Pin.sw([
                str(self.xswd), "--config", str(cfg), "--no-state",
                "--socket", str(self.work / "xswd.sock"),
                "--stats-file", str(self.statsfile), *self.extra])),
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
        r = run(t.host_exec(t.a, "ping", "-n", "-c", "1", "-W", "1", IP_B), timeout=5, check=False)
        if r.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise Fail(f"A cannot ping B through the switch within {secs}s")
    # B talks too, so every switch has learned both MACs.
    run(t.host_exec(t.b, "ping", "-n", "-c", "1", "-W", "1", IP_A), timeout=5, check=False)
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
    r = run(t.host_exec(t.a, "ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1",
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
    r = run(t.host_exec(t.a, "ping", "-n", "-c", str(count), "-i", str(interval), "-W", "1", IP_B),
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
    p = PROCS.start(t.host_exec(t.b, "iperf3", "-s", "-1", "-p", str(IPERF_PORT)),
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
        r = run(t.host_exec(t.a, "iperf3", "-c", IP_B, "-p", str(IPERF_PORT), "-t", str(dur),
                          "-J", "--connect-timeout", "3000", *extra),
                timeout=dur + 30, check=False)
        try:
            res = json.loads(r.stdout)
        except ValueError:
            raise Fail(f"iperf3: {(r.stderr or r.stdout).strip()[-300:]}")
        if "error" in res:
            raise Fail(f"iperf3: {res['error']}")
        return res
    except Interrupted:
        PROCS.stop(srv)  # at once: no waiting for the server to finish
        raise
    finally:
        if srv.poll() is None:
            try:
                srv.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            PROCS.stop(srv)


def iperf_checked(t, dur, extra):
    """iperf_client, and B's checksum errors over it: a failure says when B counted some."""
    e0 = t.csum_errors()
    try:
        res = iperf_client(t, dur, extra)
    except Fail as e:
        bad = {k: v - e0.get(k, 0) for k, v in t.csum_errors().items() if v - e0.get(k, 0)}
        if bad:
            raise Fail(f"{e}; B's stack dropped "
                       + ", ".join(f"{v} {k.upper()} segments" for k, v in bad.items())
                       + " for bad checksums (checksums left unfinished on the way?)") from e
        raise
    return res, {k: v - e0.get(k, 0) for k, v in t.csum_errors().items()}


def measure_tcp(t, sw, dur):
    c0 = t.counters()
    cpu = CpuMeter(sw)
    res, csum = iperf_checked(t, dur, [])
    sw_cpu = cpu.done()
    veth = t.delta(c0, t.counters())
    e = res["end"]
    gbps = e["sum_received"]["bits_per_second"] / 1e9
    if gbps <= 0:
        raise Fail("no TCP data delivered")
    return {"value": gbps, "sent_gbps": e["sum_sent"]["bits_per_second"] / 1e9,
            "retransmits": e["sum_sent"].get("retransmits"),
            "seconds": e["sum_received"]["seconds"], "switch_cpu_pct": sw_cpu,
            "veth_counters": veth, "b_csum_errors": csum}


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
    r = run(t.host_exec(t.a, "tcpreplay", "-i", "eth0", *rate, "-K", "--loop=0",
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
    res, csum = iperf_checked(t, dur, ["-u", "-b", "0", "-l", "18"])
    sw_cpu = cpu.done()
    veth = t.delta(c0, t.counters())
    e = res["end"]
    sent, rcv = e["sum_sent"], e["sum_received"]
    got = rcv["packets"] - rcv["lost_packets"]
    return {"generator": "iperf3", "offered_pps": sent["packets"] / sent["seconds"],
            "delivered_pps": got / rcv["seconds"],
            "loss_pct": max(0.0, (sent["packets"] - got) / sent["packets"] * 100.0),
            "sent": sent["packets"], "delivered": got, "seconds": sent["seconds"],
            "veth_counters": veth, "switch_cpu_pct": sw_cpu, "b_csum_errors": csum}


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
FMT = {k: f for k, _, f in METRICS}
LABEL = {k: lab for k, lab, _ in METRICS}
NO_RATIO = ("udp_loss", "udpfix_loss", "idle_cpu")
# The offloads-off configuration measures the TCP rows only.
OFF_METRICS = ("tcp1500", "tcp9000")
# Per-run figures printed under the table.
PER_RUN_METRICS = ("tcp1500", "tcp9000", "udp_delivered", "udpfix_loss", "ping_p50")


def attempt(cells, key, fn, *a):
    """Runs one measurement; records its result or its failure in `cells`."""
    try:
        cells[key] = fn(*a)
    except (Fail, OSError, KeyError, ValueError, TypeError, ZeroDivisionError) as e:
        why = str(e) if isinstance(e, Fail) else f"{type(e).__name__}: {e}"
        log(f"  {key}: fail: {why}")
        cells[key] = {"fail": why}


def unit_keys(offloads, mtu, args):
    """What one switch measures at `mtu` in one offload configuration."""
    if mtu != 1500:
        return ["tcp9000"]
    keys = ["tcp1500"]
    if offloads == "default":
        keys += ["idle_cpu", "ping"]
        if not args.skip_udp:
            keys += ["udp"] + (["udpfix"] if args.udp_gen == "tcpreplay" else [])
    return keys


def bench_unit(kind, offloads, rnd, args, work):
    """One switch in one offload configuration in one round, on its own fresh topology."""
    t = Topo(f"{kind}-r{rnd}-{offloads}")
    sw = {"bridge": Bridge, "ovs": Ovs, "xsw": Xsw}[kind](t, work, args)
    cells = {}
    raw = {"namespaces": [t.a, t.b, t.s], "a_eth0_features": {}}
    tag = f"{kind} r{rnd} {offloads}"
    log(f"== {tag}: topology {t.a}, {t.b}, {t.s}")
    try:
        t.create(offloads)
        for mtu in (1500, 9000):
            keys = unit_keys(offloads, mtu, args)
            try:
                t.set_mtu(mtu)
                log(f"{tag}: start (MTU {mtu})")
                sw.start(mtu)
                wait_connectivity(t, mtu)
            except Fail as e:
                why = str(e) + sw.explain()
                log(f"{tag}: cannot run at MTU {mtu}: {why}")
                for k in keys:
                    cells[k] = {"fail": why}
                sw.stop()
                t.detach_xdp()
                continue
            raw["a_eth0_features"][f"mtu{mtu}"] = t.features()
            if "idle_cpu" in keys:
                time.sleep(1)
                log(f"{tag}: idle CPU over {args.idle_seconds}s")
                attempt(cells, "idle_cpu", measure_idle_cpu, sw, args.idle_seconds)
            if "ping" in keys:
                log(f"{tag}: ping x{args.pings} every {args.ping_interval}s")
                attempt(cells, "ping", measure_ping, t, args.pings, args.ping_interval)
                pg = cells["ping"]
                if "fail" not in pg and pg["received"] < pg["sent"]:
                    sw.notes.append(f"ping: {pg['sent'] - pg['received']} of {pg['sent']} lost")
            log(f"{tag}: TCP MTU {mtu}, {args.duration}s")
            attempt(cells, f"tcp{mtu}", measure_tcp, t, sw, args.duration)
            if "udp" in keys:
                log(f"{tag}: UDP 64B ({args.udp_gen}), {args.duration}s")
                if args.udp_gen == "tcpreplay":
                    attempt(cells, "udp", measure_udp_tcpreplay, t, sw, args.duration, work)
                    log(f"{tag}: UDP 64B at {args.udp_rate} pps, {args.duration}s")
                    attempt(cells, "udpfix", measure_udp_tcpreplay, t, sw, args.duration, work,
                            args.udp_rate)
                else:
                    attempt(cells, "udp", measure_udp_iperf, t, sw, args.duration)
            if not sw.alive():
                sw.notes.append(f"the {kind} process died during the MTU {mtu} runs")
            log(f"{tag}: stop")
            sw.stop()
            t.detach_xdp()
    finally:
        with signals_deferred():
            try:
                sw.stop()
            except Fail as e:
                log(f"{tag}: stop: {e}")
            if args.keep:
                KEPT.extend(t.created)
                log(f"{tag}: --keep: leaving namespaces {t.a} {t.b} {t.s}")
            else:
                t.destroy()
    raw.update(sw.info())
    raw["notes"] = sw.notes
    for n in sw.notes:
        log(f"{tag}: note: {n}")
    return cells, raw


def flatten(cells):
    """Table values (number, ('fail', reason) or None) of one measurement."""
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


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Summary:
    """Per-run values, medians and ratios for every (offloads, switch, metric)."""

    def __init__(self, per, offloads, order):
        self.offloads, self.order = offloads, order
        # runs[off][kind][metric] = [value of round 1, round 2, ...]
        self.runs = {off: {k: {m: [flatten(c)[m] for c in per[off][k]] for m in FMT}
                           for k in order} for off in offloads}

    def median(self, off, kind, m):
        nums = [v for v in self.runs[off][kind][m] if is_num(v)]
        return statistics.median(nums) if nums else None

    def ratio(self, off, kind, m):
        if m in NO_RATIO or "bridge" not in self.order:
            return None
        a, b = self.median(off, kind, m), self.median(off, "bridge", m)
        return a / b if a is not None and b else None

    def ratio_cols(self):
        return [k for k in ("ovs", "xsw") if k in self.order and "bridge" in self.order]

    def as_json(self):
        def j(v):
            return "fail: " + v[1] if isinstance(v, tuple) else v
        return {
            "per_run": {off: {k: {m: [j(v) for v in vs] for m, vs in ms.items()}
                              for k, ms in ks.items()} for off, ks in self.runs.items()},
            "median": {off: {k: {m: self.median(off, k, m) for m in FMT} for k in self.order}
                       for off in self.offloads},
            "ratio_vs_bridge": {off: {k: {m: self.ratio(off, k, m) for m in FMT}
                                      for k in self.ratio_cols()} for off in self.offloads},
        }


def table(sm, nruns):
    notes = []

    def note(text):
        if text not in notes:
            notes.append(text)
        return notes.index(text) + 1

    def cell(off, kind, m):
        vals = sm.runs[off][kind][m]
        nums = [v for v in vals if is_num(v)]
        fails = []
        for v in vals:
            if isinstance(v, tuple) and v[1] not in fails:
                fails.append(v[1])
        nfail = sum(isinstance(v, tuple) for v in vals)
        if not nums:
            return f"fail[{note(' | '.join(fails))}]" if fails else "-"
        if m == "idle_cpu" and kind == "bridge":
            text = "0 (kernel)"
        else:
            text = FMT[m].format(statistics.median(nums))
        if nfail:
            text += f" [{note(f'{nfail} of {len(vals)} runs failed: ' + ' | '.join(fails))}]"
        return text

    ratio_cols = sm.ratio_cols()
    groups = []  # (offloads, [column header], [cell function])
    for off in sm.offloads:
        heads = list(sm.order) + [f"{k}/bridge" for k in ratio_cols]
        fns = [(lambda m, off=off, k=k: cell(off, k, m)) for k in sm.order]
        fns += [(lambda m, off=off, k=k: (lambda r: "-" if r is None else f"{r:.2f}x")(
            sm.ratio(off, k, m))) for k in ratio_cols]
        groups.append((off, heads, fns))
    rows = []
    for key, label, _ in METRICS:
        row = [label]
        for off, heads, fns in groups:
            if off == "off" and key not in OFF_METRICS:
                row += ["-"] * len(heads)
            else:
                row += [f(key) for f in fns]
        if any(c != "-" for c in row[1:]):
            rows.append(row)
    head = ["metric"] + [h for _, heads, _ in groups for h in heads]
    n = len(head)
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(n)]
    sep = "  "
    # Group labels over their columns, a "|" between groups.
    spans, i = [], 1
    for off, heads, _ in groups:
        spans.append((i, i + len(heads), OFFLOAD_LABEL[off]))
        i += len(heads)
    for a, b, lab in spans[:-1]:  # widen a group whose label is longer (the last may overflow)
        w = sum(widths[a:b]) + len(sep) * (b - a - 1)
        for j in range(max(0, len(lab) - w)):
            widths[a + j % (b - a)] += 1

    def line(cells):
        out = []
        for j, c in enumerate(cells):
            s = c.ljust(widths[j]) if j == 0 else c.rjust(widths[j])
            if j > 1 and any(j == a for a, _, _ in spans):
                s = "| " + s
            out.append(s)
        return sep.join(out)

    top = [" " * widths[0]]
    for a, b, lab in spans:
        w = sum(widths[a:b]) + len(sep) * (b - a - 1)
        top.append(("| " if a > 1 else "") + (lab.center(w) if len(lab) <= w else lab))
    lines = [sep.join(top).rstrip(), line(head),
             line(["-" * w for w in widths])]
    lines += [line(r) for r in rows]
    lines.append(f"medians over {nruns} run{'s' if nruns != 1 else ''} (rounds interleaved, switch "
                 "order rotated each round)" + (
                     "; ratios: median / bridge's median (throughput: higher is better; latency: "
                     "lower is better)" if ratio_cols else "") + ".")
    if "off" in sm.offloads:
        lines.append("offloads off: ethtool -K eth0 tx off in A and B; TCP rows only (64-byte UDP, "
                     "ping and idle CPU are measured with default offloads only).")
    if any(r[0] == LABEL["udp_offered"] for r in rows):
        lines.append("UDP offered is what the generator reached next to that switch" + (
            "; the fixed-rate run offers every switch the same rate (--udp-rate); loss 0.000: "
            "no frame lost" if any(r[0] == LABEL["udpfix_loss"] for r in rows) else "") + ".")
    for i, n in enumerate(notes):
        lines.append(f"[{i + 1}] {n}")
    return "\n".join(lines)


def per_run_lines(sm):
    """The noisy bits: per-run values of the main metrics, in round order."""
    out = []
    for off in sm.offloads:
        for m in PER_RUN_METRICS:
            if off == "off" and m not in OFF_METRICS:
                continue
            parts = []
            for k in sm.order:
                vals = sm.runs[off][k][m]
                if all(v is None for v in vals):
                    continue
                parts.append(k + " " + " ".join(
                    "fail" if isinstance(v, tuple) else "-" if v is None else FMT[m].format(v)
                    for v in vals))
            if parts:
                out.append(f"  {LABEL[m]}, {OFFLOAD_SHORT[off]}: " + " | ".join(parts))
    return (["per run (round 1, 2, ...):"] + out) if out else []


INFO_COUNTERS = ("rx_csum_completed",)  # xswd backend counters that are not losses


def loss_notes(per, raw, order):
    """Where the 64-byte UDP frames were lost (default offloads, all runs summed)."""
    lines = []
    for k in order:
        runs = [c.get("udp") for c in per.get("default", {}).get(k, [])]
        runs = [u for u in runs if u and "fail" not in u]
        if not runs:
            continue
        sent = sum(u["sent"] for u in runs)
        lost = sum(u["sent"] - u["delivered"] for u in runs)
        moved = {}
        for u in runs:
            for dev, c in u.get("veth_counters", {}).items():
                for name, v in c.items():
                    if v and name.endswith(("dropped", "errors")):
                        moved[f"{dev} {name}"] = moved.get(f"{dev} {name}", 0) + v
        line = (f"UDP loss ({k}, {len(runs)} run{'s' if len(runs) != 1 else ''}): {lost} of {sent} "
                "frames; veth drop counters: "
                + (", ".join(f"{n}={v}" for n, v in moved.items()) or "none moved"))
        bad, have_stats = {}, False
        for d in raw.get("default", {}).get(k, []):
            stats = d.get("stats_at_exit", {}).get("mtu1500")
            if not stats:
                continue
            have_stats = True
            bridges = stats.get("bridges", []) if isinstance(stats, dict) else stats
            for br in bridges:
                for port in br.get("ports", []):
                    for n, v in port.get("backend", {}).items():
                        if isinstance(v, int) and v and n not in INFO_COUNTERS:
                            bad[f"port {port['name']} {n}"] = bad.get(f"port {port['name']} {n}", 0) + v
                    for n, v in port.get("stats", {}).get("drops", {}).items():
                        if v:
                            nm = f"port {port['name']} drop {n}"
                            bad[nm] = bad.get(nm, 0) + v
        if have_stats:
            line += ("; xswd counters (whole MTU 1500 runs): "
                     + (", ".join(f"{n}={v}" for n, v in bad.items()) or "none"))
        lines.append(line)
    return lines


EXAMPLES = """\
examples (as root; progress on stderr, the table on stdout):
  /usr/bin/python3 tests/bench/compare.py                # everything: 3 rounds x 3 switches x
                                                         # 2 offload configurations, ~7 min
  /usr/bin/python3 tests/bench/compare.py --runs 1 --duration 2 --pings 50    # a look, ~1.5 min
  /usr/bin/python3 tests/bench/compare.py --offloads default --only bridge,xsw  # ~3 min
  /usr/bin/python3 tests/bench/compare.py --only xsw --xswd-arg=--busy-poll-us=0
  /usr/bin/python3 tests/bench/compare.py --switch-cpus 3 --gen-cpus 0-2   # a 4-CPU machine
  /usr/bin/python3 tests/bench/compare.py --no-pin       # nothing pinned, OVS's default PMD mask
  /usr/bin/python3 tests/bench/compare.py --json /tmp/bench.json   # every run's raw figures

how long: at --duration 5, per round and switch 25-37 s with default offloads (two switch
starts, idle CPU, 500 pings, TCP at two MTUs, two UDP runs) and 11-15 s with offloads off (TCP
only): a round takes about 2.2 min, the full default run (3 rounds) about 6.6 min on 2 CPUs.
The script logs its own estimate at the start and the time taken in the table's heading.

needs: root; ip, ethtool, ping, ss, taskset, iperf3; openvswitch-switch for ovs; tcpreplay is
used when installed (tests/setup-debian.sh installs them); xswd built beforehand
(cargo build --release -p xsw-control --bin xswd) or given with --xswd.
"""


def parse_args():
    allowed = sorted(os.sched_getaffinity(0))
    ap = argparse.ArgumentParser(
        prog="compare.py", description=__doc__, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, metavar="N",
                    help="interleaved rounds; the table shows the median over them (default 3)")
    ap.add_argument("--offloads", default=",".join(OFFLOADS), metavar="LIST",
                    help="host offload configurations, comma-separated, in column order: default "
                         "(veth defaults, no ethtool), off (ethtool -K eth0 tx off in A and B; "
                         "TCP only) (default: default,off)")
    ap.add_argument("--only", default=",".join(SWITCHES), metavar="LIST",
                    help="comma-separated switches to run: bridge,ovs,xsw (default all)")
    ap.add_argument("--duration", type=float, default=5, metavar="S",
                    help="seconds per traffic run (TCP, UDP; default 5)")
    ap.add_argument("--switch-cpus", metavar="LIST",
                    help="CPUs of xswd and ovs-vswitchd/ovsdb-server (taskset -c syntax) and of "
                         "OVS's PMD (pmd-cpu-mask) (default: the last CPU, here "
                         f"{allowed[-1]})")
    ap.add_argument("--gen-cpus", metavar="LIST",
                    help="CPUs of iperf3 (client and server), tcpreplay and ping in the hosts "
                         "(default: every CPU not in --switch-cpus)")
    ap.add_argument("--no-pin", action="store_true",
                    help="pin nothing (no taskset) and leave OVS's PMD mask at its default")
    ap.add_argument("--skip-udp", action="store_true", help="skip the 64-byte UDP tests")
    ap.add_argument("--pings", type=int, default=500, metavar="N",
                    help="pings for the latency test (default 500)")
    ap.add_argument("--ping-interval", type=float, default=0.005, metavar="S",
                    help="seconds between pings (default 0.005)")
    ap.add_argument("--idle-seconds", type=float, default=5, metavar="S",
                    help="idle CPU window (default 5)")
    ap.add_argument("--udp-gen", choices=("auto", "tcpreplay", "iperf3"), default="auto",
                    help="64-byte UDP generator (auto: tcpreplay if installed, else iperf3)")
    ap.add_argument("--udp-rate", type=int, default=150000, metavar="PPS",
                    help="rate of the fixed-rate 64-byte UDP run, packets/s (default 150000; "
                         "tcpreplay only)")
    ap.add_argument("--xswd", type=Path, default=DEFAULT_XSWD, metavar="PATH",
                    help=f"xswd binary (default {DEFAULT_XSWD})")
    ap.add_argument("--xswd-arg", action="append", metavar="ARG",
                    help="extra argument for xswd (repeatable), e.g. --xswd-arg=--busy-poll-us=0")
    ap.add_argument("--json", type=Path, metavar="FILE",
                    help="write every run's raw figures, the per-run values and the medians here")
    ap.add_argument("--keep", action="store_true",
                    help="leave the namespaces and the work dir (logs, configs) for debugging "
                         "(switch processes are always stopped)")
    a = ap.parse_args()
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [s for s in a.only if s not in SWITCHES]
    if bad or not a.only:
        ap.error(f"--only: unknown switch {bad}; choose from {','.join(SWITCHES)}")
    a.only = [s for s in SWITCHES if s in a.only]
    offs = [s.strip() for s in a.offloads.split(",") if s.strip()]
    bad = [s for s in offs if s not in OFFLOADS]
    if bad or not offs or len(set(offs)) != len(offs):
        ap.error(f"--offloads {a.offloads!r}: a comma-separated list of {' and '.join(OFFLOADS)}, "
                 "each at most once")
    a.offloads = offs
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    if a.pings < 1 or a.ping_interval <= 0 or a.idle_seconds <= 0 or a.udp_rate < 1:
        ap.error("--pings, --ping-interval, --idle-seconds and --udp-rate must be positive")
    a.xswd_run = a.xswd
    a.duration = max(1, int(round(a.duration)))
    if a.udp_gen == "auto":
        a.udp_gen = "tcpreplay" if shutil.which("tcpreplay") else "iperf3"
    # CPU pinning.
    try:
        sw = parse_cpulist(a.switch_cpus) if a.switch_cpus else [allowed[-1]]
        gen = (parse_cpulist(a.gen_cpus) if a.gen_cpus
               else [c for c in allowed if c not in sw] or list(sw))
    except ValueError as e:
        ap.error(f"--switch-cpus/--gen-cpus: {e} (taskset -c syntax: 1 or 0,2-3)")
    outside = [c for c in sw + gen if c not in allowed]
    if outside:
        ap.error(f"CPU {cpulist(outside)} not usable here (this process may run on "
                 f"{cpulist(allowed)})")
    a.switch_cpus, a.gen_cpus = cpulist(sw), cpulist(gen)
    a.pin_overlap = bool(set(sw) & set(gen))
    Pin.on, Pin.switch, Pin.gen = not a.no_pin, sw, gen
    return a


def estimate_seconds(args):
    """Rough wall time of the whole invocation (calibrated on a 2-CPU machine)."""
    d = args.duration
    start = {"bridge": 0.5, "xsw": 1.0, "ovs": 2.5}  # per switch start (two per measurement)
    tcp = d + 0.3
    total = 0.0
    for kind in args.only:
        for off in args.offloads:
            t = 2 * start[kind] + 2 * tcp
            if off == "default":
                t += args.pings * (args.ping_interval + 0.0008) + 0.3
                if kind != "bridge":
                    t += 1 + args.idle_seconds
                if not args.skip_udp:
                    t += (d + 0.8) * (2 if args.udp_gen == "tcpreplay" else 1)
            total += t
    return total * args.runs


def preflight(args):
    if os.geteuid() != 0:
        sys.exit("compare.py: needs root (network namespaces, XDP, AF_XDP)")
    need = ["ip", "ping", "iperf3", "ss"]
    if "off" in args.offloads:
        need.append("ethtool")
    if not args.no_pin:
        need.append("taskset")
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
            "cpus_allowed": cpulist(os.sched_getaffinity(0)),
            "iperf3": ver(["iperf3", "--version"])}
    if "ovs" in args.only:
        info["ovs"] = ver(["ovs-vswitchd", "--version"])
    if "xsw" in args.only:
        info["xswd"] = ver([str(args.xswd), "--version"])
        info["xswd_path"] = str(args.xswd)
    if args.udp_gen == "tcpreplay":
        info["tcpreplay"] = ver(["tcpreplay", "--version"])
    return info


def pin_text(args):
    if args.no_pin:
        return "nothing pinned (--no-pin)"
    return (f"switch on CPU {args.switch_cpus} (xswd; ovs-vswitchd, ovsdb-server, "
            f"pmd-cpu-mask={Pin.pmd_mask()}), iperf3/tcpreplay/ping on CPU {args.gen_cpus}")


def sweep_namespaces():
    """Deletes any namespace of this run still there (xcmp<pid>-*) except --keep's."""
    r = run(["ip", "netns", "list"], timeout=10, check=False)
    prefix = f"xcmp{os.getpid()}-"
    for ln in r.stdout.splitlines():
        name = ln.split()[0] if ln.split() else ""
        if name.startswith(prefix) and name not in KEPT:
            log(f"removing leftover namespace {name}")
            run(["ip", "netns", "del", name], check=False)


def main():
    args = parse_args()
    preflight(args)
    work = Path(tempfile.mkdtemp(prefix=f"xcmp-{os.getpid()}-", dir="/tmp"))
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    per = {off: {k: [] for k in args.only} for off in args.offloads}  # cells per round
    raw = {off: {k: [] for k in args.only} for off in args.offloads}
    runs = []
    rc = 0
    started = time.monotonic()
    try:
        info = env_info(args)
        if "xsw" in args.only:
            # A private copy: a concurrent `cargo build` may replace the binary mid-run.
            args.xswd_run = work / "xswd"
            shutil.copy2(args.xswd, args.xswd_run)
            st = args.xswd.stat()
            info["xswd_mtime"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime))
        if args.pin_overlap and not args.no_pin:
            log(f"warning: switch CPUs {args.switch_cpus} and generator CPUs {args.gen_cpus} "
                "overlap")
        est = estimate_seconds(args)
        log(f"work dir {work}; switches {','.join(args.only)}; offloads {','.join(args.offloads)}; "
            f"{args.runs} round(s); {args.duration}s per traffic run; UDP generator "
            f"{args.udp_gen}; {pin_text(args)}; expect about {est / 60:.0f} min")
        for rnd in range(1, args.runs + 1):
            shift = (rnd - 1) % len(args.only)
            order = args.only[shift:] + args.only[:shift]
            log(f"=== round {rnd} of {args.runs}: {','.join(order)}")
            for off in args.offloads:
                for pos, kind in enumerate(order, 1):
                    d = work / f"{kind}-r{rnd}-{off}"
                    d.mkdir()
                    try:
                        cells, details = bench_unit(kind, off, rnd, args, d)
                    except Fail as e:
                        log(f"{kind} r{rnd} {off}: failed: {e}")
                        keys = unit_keys(off, 1500, args) + unit_keys(off, 9000, args)
                        cells, details = {k: {"fail": str(e)} for k in keys}, {"error": str(e)}
                    per[off][kind].append(cells)
                    raw[off][kind].append(details)
                    runs.append({"round": rnd, "offloads": off, "switch": kind,
                                 "position_in_round": pos, "results": cells, "details": details})
        elapsed = time.monotonic() - started
        sm = Summary(per, args.offloads, args.only)
        print(f"\nxsw benchmark: {info['kernel']}, {info['cpus']} CPUs, {args.runs} round"
              f"{'s' if args.runs != 1 else ''}, {args.duration}s per traffic run, {args.pings} "
              f"pings, UDP generator {args.udp_gen}; {pin_text(args)}; took {elapsed / 60:.1f} min")
        print(table(sm, args.runs))
        for line in per_run_lines(sm) + loss_notes(per, raw, args.only):
            print(line)
        seen = {}
        for r in runs:
            for n in r["details"].get("notes", []):
                seen.setdefault((r["switch"], r["offloads"], n), []).append(str(r["round"]))
        for (k, off, n), rounds in seen.items():
            print(f"note ({k}, {OFFLOAD_SHORT[off]}, round {','.join(rounds)}): {n}")
        if args.json:
            doc = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   "env": info, "pinning": {"on": not args.no_pin, "switch_cpus": args.switch_cpus,
                                            "gen_cpus": args.gen_cpus,
                                            "ovs_pmd_cpu_mask": None if args.no_pin
                                            else Pin.pmd_mask()},
                   "elapsed_seconds": elapsed, "runs": runs, **sm.as_json()}
            args.json.write_text(json.dumps(doc, indent=2) + "\n")
            log(f"wrote {args.json}")
    except Interrupted as e:
        log(f"interrupted ({e}); cleaning up")
        rc = 130
    finally:
        _Sig.deferring = True
        PROCS.stop_all()
        sweep_namespaces()
        if args.keep:
            log(f"--keep: work dir {work} left; remove everything with: "
                f"for n in {' '.join(KEPT)}; do ip netns del $n; done; rm -r {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
