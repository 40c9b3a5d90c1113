#!/usr/bin/env python3
"""OVS oracle for xsw scenario directories (stdlib only, Python >= 3.11).

Runs one scenario through a private, throw-away Open vSwitch instance
(ovsdb-server + ovs-vswitchd with the userspace *dummy* datapath) and writes
the frames OVS transmits on every port to OUT/<port>.pcap.

Usage:
    oracle.py SCENARIO_DIR --out OUT_DIR [--keep] [-v] [--force]
    oracle.py --compare DIR_A DIR_B [--missing-as-empty]

Scenario directory:
    scenario.toml   [[port]] name, ofport, vlan_mode, tag, trunks, mtu;
                    optional [check] ovs (default true), note, unordered
                    (--compare with DIR_A = SCENARIO/expected compares these
                    ports' frames as a multiset, as `xsw test` does).
    flows.txt       optional; ovs-ofctl flow syntax, '#' comments.  When
                    present all flows are deleted and exactly these installed.
    in/<port>.pcap  optional input frames per port (classic pcap in either
                    byte order, us or ns resolution; pcapng also accepted).

How it works (details in the notes at the end of this file):
  * everything (db, sockets, pid and log files) lives in a fresh temp dir
    (OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR point there); the system OVS is never
    touched.  ovs-vswitchd runs with --enable-dummy --disable-system.
  * other_config:flow-limit=0, so OVS never caches a datapath flow: every
    frame is an upcall translated against the *current* OpenFlow tables and
    MAC table (no stale megaflows, stats/MAC refresh exact per frame).
  * OVS's monotonic clock is stopped (time/stop) and advanced with time/warp
    so that OVS time follows the pcap timestamps (ms granularity); OVS's
    second boundaries are aligned to the pcap's integer seconds.
  * every unixctl command is sent on a NEW unix-socket connection; OVS only
    accepts new connections at the start of unixctl_server_run(), i.e. after
    bridge_run() has processed the previously received frame.  That gives
    strict one-frame-at-a-time processing.  (Measured: reusing one
    connection, even waiting for each reply, let 74 of 300 "B to A" frames
    overtake "A learned" frames; fresh connections: 0 of 3x2000.)
  * flows.txt goes through ovs-ofctl's default OpenFlow 1.0+NXM session
    (OVS's classic semantics: mod_vlan_vid pushes a tag on untagged frames;
    goto_table:N is accepted and stored as resubmit(,N)); only lines that
    need OF1.1+ (push_vlan, write_actions, clear_actions, meter, group) go
    over OpenFlow 1.3.  ovs-ofctl warnings (e.g. "normalization changed
    ofp_match" = a match field was silently dropped) are echoed.

Output: OUT/<port>.pcap for every port (header-only if nothing was sent),
classic pcap, microsecond, wall-clock timestamps (compare bytes only).
Frames shorter than 14 bytes cannot be injected (netdev-dummy/receive
rejects them); they are skipped with a warning.
Exit status: 0 ok (also when skipped: [check] ovs = false writes OUT/SKIPPED
and no pcaps, unless --force), 1 --compare found differences, 2 error.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

try:
    import tomllib
except ImportError:  # pragma: no cover
    tomllib = None

SCHEMA_CANDIDATES = [
    os.environ.get("OVS_SCHEMA", ""),
    "/usr/share/openvswitch/vswitch.ovsschema",
    "/usr/local/share/openvswitch/vswitch.ovsschema",
]

VERBOSE = False
T_START = time.monotonic()


def log(msg):
    if VERBOSE:
        sys.stderr.write("[oracle %7.3fs] %s\n" % (time.monotonic() - T_START, msg))


class OracleError(Exception):
    def __init__(self, msg, quiet=False):
        super().__init__(msg)
        self.quiet = quiet  # True: no need to show the OVS log


# --------------------------------------------------------------------------
# pcap / pcapng reading and writing
# --------------------------------------------------------------------------

LINKTYPE_ETHERNET = 1


def read_pcap(path):
    """Returns a list of (timestamp_ns, frame_bytes).  Classic pcap (LE/BE,
    us/ns magic) and pcapng (SHB/IDB/EPB/SPB/OPB) are supported."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        if len(data) == 0:
            return []
        raise OracleError("%s: file too short to be a pcap" % path)
    magic = data[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        return _read_pcapng(path, data)
    for endian in ("<", ">"):
        (m,) = struct.unpack(endian + "I", magic)
        if m in (0xA1B2C3D4, 0xA1B23C4D):
            return _read_classic(path, data, endian, m == 0xA1B23C4D)
    raise OracleError("%s: unknown pcap magic %s" % (path, magic.hex()))


def _read_classic(path, data, e, nsec):
    if len(data) < 24:
        raise OracleError("%s: truncated pcap header" % path)
    _, _vmaj, _vmin, _zone, _sig, _snap, linktype = struct.unpack(e + "IHHiIII", data[:24])
    linktype &= 0xFFFF  # upper bits may carry FCS info
    if linktype != LINKTYPE_ETHERNET:
        raise OracleError("%s: linktype %d is not Ethernet (1)" % (path, linktype))
    out = []
    off = 24
    while off < len(data):
        if off + 16 > len(data):
            raise OracleError("%s: truncated record header at offset %d" % (path, off))
        sec, frac, incl, orig = struct.unpack(e + "IIII", data[off:off + 16])
        off += 16
        if off + incl > len(data):
            raise OracleError("%s: truncated record at offset %d" % (path, off))
        frame = data[off:off + incl]
        off += incl
        if incl < orig:
            sys.stderr.write("oracle: warning: %s: frame %d captured %d of %d bytes; "
                             "injecting the captured bytes only\n" % (path, len(out) + 1, incl, orig))
        ts = sec * 1_000_000_000 + (frac if nsec else frac * 1000)
        out.append((ts, frame))
    return out


def _read_pcapng(path, data):
    out = []
    off = 0
    e = "<"
    ifaces = []  # list of (linktype, ticks_per_second, offset_seconds)
    last_ts = 0
    while off < len(data):
        if off + 12 > len(data):
            raise OracleError("%s: truncated pcapng block at %d" % (path, off))
        btype_raw = data[off:off + 4]
        if btype_raw == b"\x0a\x0d\x0d\x0a":
            bom = data[off + 8:off + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                e = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                e = ">"
            else:
                raise OracleError("%s: bad pcapng byte-order magic" % path)
            ifaces = []
        (btype, blen) = struct.unpack(e + "II", data[off:off + 8])
        if blen < 12 or off + blen > len(data):
            raise OracleError("%s: bad pcapng block length %d at %d" % (path, blen, off))
        body = data[off + 8:off + blen - 4]
        if btype == 0x00000001:  # IDB
            linktype, _res, _snap = struct.unpack(e + "HHI", body[:8])
            tps, tsoff = 1_000_000, 0
            opt = 8
            while opt + 4 <= len(body):
                code, olen = struct.unpack(e + "HH", body[opt:opt + 4])
                val = body[opt + 4:opt + 4 + olen]
                if code == 0:
                    break
                if code == 9 and olen >= 1:  # if_tsresol
                    r = val[0]
                    tps = (2 ** (r & 0x7F)) if (r & 0x80) else (10 ** r)
                elif code == 14 and olen >= 8:  # if_tsoffset
                    (tsoff,) = struct.unpack(e + "q", val[:8])
                opt += 4 + ((olen + 3) & ~3)
            ifaces.append((linktype, tps, tsoff))
        elif btype in (0x00000006, 0x00000002):  # EPB, obsolete PB
            if btype == 6:
                ifid, tsh, tsl, caplen, origlen = struct.unpack(e + "IIIII", body[:20])
            else:
                ifid, _drops, tsh, tsl, caplen, origlen = struct.unpack(e + "HHIIII", body[:20])
            if ifid >= len(ifaces):
                raise OracleError("%s: packet refers to unknown interface %d" % (path, ifid))
            linktype, tps, tsoff = ifaces[ifid]
            if linktype != LINKTYPE_ETHERNET:
                raise OracleError("%s: linktype %d is not Ethernet (1)" % (path, linktype))
            ticks = (tsh << 32) | tsl
            ts = (ticks * 1_000_000_000) // tps + tsoff * 1_000_000_000
            frame = body[20:20 + caplen]
            if caplen < origlen:
                sys.stderr.write("oracle: warning: %s: frame %d truncated in capture\n"
                                 % (path, len(out) + 1))
            out.append((ts, frame))
            last_ts = ts
        elif btype == 0x00000003:  # SPB: no timestamp, reuse the previous one
            (origlen,) = struct.unpack(e + "I", body[:4])
            if not ifaces or ifaces[0][0] != LINKTYPE_ETHERNET:
                raise OracleError("%s: SPB without Ethernet interface" % path)
            out.append((last_ts, body[4:4 + origlen]))
        off += blen
    return out


def write_empty_pcap(path):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, LINKTYPE_ETHERNET))


# --------------------------------------------------------------------------
# unixctl (JSON-RPC over a unix socket), one connection per command
# --------------------------------------------------------------------------

class UnixctlError(OracleError):
    pass


class Unixctl:
    def __init__(self, path, timeout=60.0):
        self.path = path
        self.timeout = timeout
        self.next_id = 0
        self.n_calls = 0

    def call(self, method, *params, timeout=None):
        # A fresh connection per command is what guarantees ordering: see the
        # notes at the end of this file.
        self.next_id += 1
        self.n_calls += 1
        req = json.dumps({"method": method, "params": [str(p) for p in params],
                          "id": self.next_id}).encode()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout if timeout is None else timeout)
        try:
            try:
                s.connect(self.path)
            except OSError as ex:
                raise UnixctlError("cannot connect to %s (%s) for %s: did ovs-vswitchd die?"
                                   % (self.path, ex, method))
            try:
                s.sendall(req)
            except OSError as ex:
                raise UnixctlError("error sending %s: %s" % (method, ex))
            buf = b""
            dec = json.JSONDecoder()
            while True:
                try:
                    chunk = s.recv(1 << 16)
                except socket.timeout:
                    raise UnixctlError("timeout waiting for reply to %s %s" % (method, params))
                except OSError as ex:
                    raise UnixctlError("error reading reply to %s: %s" % (method, ex))
                if not chunk:
                    raise UnixctlError("connection closed waiting for reply to %s" % method)
                buf += chunk
                try:
                    obj, _ = dec.raw_decode(buf.decode("utf-8", "replace"))
                    break
                except ValueError:
                    continue
        finally:
            s.close()
        if obj.get("error") is not None:
            raise UnixctlError("%s %s: %s" % (method, " ".join(map(str, params))[:200],
                                              str(obj["error"]).strip()))
        return obj.get("result") or ""


# --------------------------------------------------------------------------
# scenario
# --------------------------------------------------------------------------

VLAN_MODES = ("access", "trunk", "native-untagged", "native-tagged")
PORT_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def load_scenario(sdir):
    path = os.path.join(sdir, "scenario.toml")
    if not os.path.isfile(path):
        raise OracleError("%s: no scenario.toml" % sdir)
    if tomllib is None:
        raise OracleError("Python >= 3.11 (tomllib) required")
    with open(path, "rb") as f:
        try:
            sc = tomllib.load(f)
        except tomllib.TOMLDecodeError as ex:
            raise OracleError("%s: %s" % (path, ex))
    ports = sc.get("port", [])
    if not isinstance(ports, list) or not ports:
        raise OracleError("%s: at least one [[port]] required" % path)
    names, ofports = set(), set()
    for p in ports:
        name = p.get("name")
        ofp = p.get("ofport")
        if not isinstance(name, str) or not PORT_NAME_RE.match(name) or name == "br0":
            raise OracleError("%s: bad port name %r" % (path, name))
        if not isinstance(ofp, int) or not 1 <= ofp <= 0xfeff:
            raise OracleError("%s: port %s: bad ofport %r" % (path, name, ofp))
        if name in names or ofp in ofports:
            raise OracleError("%s: duplicate port name/ofport %s/%d" % (path, name, ofp))
        names.add(name)
        ofports.add(ofp)
        vm = p.get("vlan_mode")
        if vm is not None and vm not in VLAN_MODES:
            raise OracleError("%s: port %s: bad vlan_mode %r" % (path, name, vm))
        tag = p.get("tag")
        if tag is not None and (not isinstance(tag, int) or not 0 <= tag <= 4095):
            raise OracleError("%s: port %s: bad tag %r" % (path, name, tag))
        trunks = p.get("trunks")
        if trunks is not None and (not isinstance(trunks, list)
                                   or not all(isinstance(t, int) and 0 <= t <= 4095 for t in trunks)):
            raise OracleError("%s: port %s: bad trunks %r" % (path, name, trunks))
        mtu = p.get("mtu")
        if mtu is not None and (not isinstance(mtu, int) or mtu < 68):
            raise OracleError("%s: port %s: bad mtu %r" % (path, name, mtu))
        unknown = set(p) - {"name", "ofport", "vlan_mode", "tag", "trunks", "mtu"}
        if unknown:
            sys.stderr.write("oracle: warning: port %s: ignoring keys %s\n"
                             % (name, ", ".join(sorted(unknown))))
    check = sc.get("check", {}) or {}
    bridge = sc.get("bridge", {}) or {}
    aging = bridge.get("mac_aging", 300)
    size = bridge.get("mac_table_size", 8192)
    if not isinstance(aging, int) or aging < 1 or not isinstance(size, int) or size < 1:
        raise OracleError("%s: bad [bridge] mac_aging / mac_table_size" % path)
    return {"ports": ports, "check": check, "mac_aging": aging, "mac_table_size": size}


def load_frames(sdir, ports):
    """Returns [(ts_ns, ofport, index, name, bytes)] in injection order:
    by timestamp, then lower ofport, then file order."""
    indir = os.path.join(sdir, "in")
    by_name = {p["name"]: p for p in ports}
    frames = []
    if os.path.isdir(indir):
        for fn in sorted(os.listdir(indir)):
            base, ext = os.path.splitext(fn)
            if ext not in (".pcap", ".pcapng", ".cap"):
                continue
            if base not in by_name:
                raise OracleError("%s: no port named %r in scenario.toml" % (os.path.join(indir, fn), base))
            for i, (ts, fr) in enumerate(read_pcap(os.path.join(indir, fn))):
                frames.append((ts, by_name[base]["ofport"], i, base, fr))
    frames.sort(key=lambda x: (x[0], x[1], x[2]))
    return frames


# Lines that OpenFlow 1.0 (+NXM) cannot carry.  In an OF1.0 session
# ovs-ofctl silently turns write_actions(...)/clear_actions into "drop"
# instead of failing, so these must be routed to OF1.3 explicitly.
OF13_ONLY_RE = re.compile(r"\b(push_vlan|write_actions|clear_actions|meter|group)\b")
VLAN_SET_RE = re.compile(r"\b(mod_vlan_vid|mod_vlan_pcp|set_vlan_vid|set_vlan_pcp)\b")


def load_flows(sdir):
    """Returns [(flows.txt line number, text)] or None if there's no flows.txt.

    Protocol choice (see install_flows): every line goes over ovs-ofctl's
    default OpenFlow 1.0 + NXM session unless it needs OF1.1+, so actions keep
    OVS's OF1.0/Nicira meaning -- mod_vlan_vid / mod_vlan_pcp push a tag
    onto an untagged frame and rewrite the outer tag of a tagged one.  (Sent
    over OF1.1+, ovs-ofctl encodes them as push_vlan+set_field whenever the
    match doesn't require a tag, which pushes a second tag onto tagged
    frames.)  goto_table:N is accepted in OF1.0 sessions: ovs-ofctl checks it
    (must be last, N > table) and OVS stores it as resubmit(,N) -- identical
    translation when it is the last action; table miss drops either way
    since no controller is connected."""
    path = os.path.join(sdir, "flows.txt")
    if not os.path.isfile(path):
        return None
    lines = []
    with open(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if line and not line.startswith("#"):
                lines.append((lineno, line))
    return lines


def install_flows(sb, lines):
    """Deletes all flows of br0 and installs 'lines'.  Returns the OVS
    warnings printed while parsing (e.g. 'normalization changed ofp_match',
    which means OVS silently dropped match fields lacking prerequisites)."""
    of10 = [l for l in lines if not OF13_ONLY_RE.search(l[1])]
    of13 = [l for l in lines if OF13_ONLY_RE.search(l[1])]
    warnings = []

    def add(group, proto_args, tag):
        fp = sb.p("flows-%s.txt" % tag)
        with open(fp, "w") as f:
            f.write("".join(text + "\n" for _, text in group))
        return sb.run(["ovs-ofctl"] + proto_args + ["add-flows", "br0", fp], check=False)

    def fail(r, group):
        msg = (r.stderr or r.stdout).strip()
        m = re.search(r"flows-\w+\.txt:(\d+): ", msg)
        where = ""
        if m and 0 < int(m.group(1)) <= len(group):
            lineno, text = group[int(m.group(1)) - 1]
            where = "flows.txt line %d: %s\n" % (lineno, text)
        raise OracleError("OVS rejected flows.txt:\n%s%s" % (where, msg), quiet=True)

    sb.ofctl("del-flows", "br0")
    if of10:
        r = add(of10, [], "of10")
        if r.returncode != 0 and "none of the usable flow formats" in r.stderr:
            # Some line needs OF1.1+ for a reason the regex didn't catch:
            # find it line by line (slow path) and move it to the OF1.3 set.
            sb.ofctl("del-flows", "br0")
            keep = []
            for l in of10:
                rr = sb.run(["ovs-ofctl", "parse-flow", l[1]], check=False)
                (of13 if "none of the usable flow formats" in rr.stderr else keep).append(l)
            of10 = keep
            r = add(of10, [], "of10") if of10 else None
        if r is not None:
            if r.returncode != 0:
                fail(r, of10)
            warnings += [w for w in r.stderr.splitlines() if w.strip()]
    if of13:
        for lineno, text in of13:
            acts = text.split("actions=", 1)[-1]
            m_set, m_push = VLAN_SET_RE.search(acts), re.search(r"\bpush_vlan\b", acts)
            if m_set and (not m_push or m_set.start() < m_push.start()):
                warnings.append("flows.txt line %d needs OpenFlow 1.1+; there OVS encodes "
                                "mod_vlan_vid/mod_vlan_pcp as push_vlan+set_field unless the "
                                "match requires a tag (static, not per packet): %s" % (lineno, text))
        r = add(of13, ["-O", "OpenFlow13"], "of13")
        if r.returncode != 0:
            fail(r, of13)
        warnings += [w for w in r.stderr.splitlines() if w.strip()]
    return warnings


# --------------------------------------------------------------------------
# OVS sandbox
# --------------------------------------------------------------------------

class Sandbox:
    def __init__(self, keep=False):
        self.dir = tempfile.mkdtemp(prefix="xsw-ovs-")
        self.keep = keep
        self.env = dict(os.environ)
        for var in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"):
            self.env[var] = self.dir
        self.db_sock = os.path.join(self.dir, "db.sock")
        self.vs_ctl_path = os.path.join(self.dir, "ovs-vswitchd.ctl")
        self.db_ctl_path = os.path.join(self.dir, "ovsdb-server.ctl")
        self.pids = {}
        self.vs = None

    def p(self, name):
        return os.path.join(self.dir, name)

    def run(self, argv, check=True, input=None):
        log("$ " + " ".join(argv))
        r = subprocess.run(argv, env=self.env, cwd=self.dir, capture_output=True,
                           text=True, input=input)
        if check and r.returncode != 0:
            raise OracleError("command failed (exit %d): %s\n%s%s"
                              % (r.returncode, " ".join(argv), r.stdout, r.stderr))
        return r

    def vsctl(self, *args, wait=True):
        argv = ["ovs-vsctl", "--db=unix:" + self.db_sock, "--timeout=30"]
        if not wait:
            argv.append("--no-wait")
        return self.run(argv + list(args))

    def start(self):
        for tool in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl"):
            if not shutil.which(tool, path=self.env.get("PATH", "") + ":/usr/sbin:/sbin"):
                raise OracleError("%s not found (install openvswitch-switch)" % tool)
        schema = next((s for s in SCHEMA_CANDIDATES if s and os.path.isfile(s)), None)
        if not schema:
            raise OracleError("vswitch.ovsschema not found (set OVS_SCHEMA)")
        self.env["PATH"] = self.env.get("PATH", "") + ":/usr/sbin:/sbin"
        self.run(["ovsdb-tool", "create", self.p("conf.db"), schema])
        self.run(["ovsdb-server", self.p("conf.db"), "--remote=punix:" + self.db_sock,
                  "--unixctl=" + self.db_ctl_path, "--pidfile=" + self.p("ovsdb-server.pid"),
                  "--log-file=" + self.p("ovsdb-server.log"), "--detach", "--no-chdir",
                  "-vconsole:off"])
        self.pids["ovsdb-server"] = self._read_pid("ovsdb-server.pid")
        # flow-limit=0: never install datapath flows (see module notes).
        self.vsctl("init", "--", "set", "Open_vSwitch", ".",
                   "other_config:flow-limit=0", "other_config:max-revalidator=100",
                   wait=False)
        self.run(["ovs-vswitchd", "unix:" + self.db_sock, "--enable-dummy", "--disable-system",
                  "--disable-system-route", "--unixctl=" + self.vs_ctl_path,
                  "--pidfile=" + self.p("ovs-vswitchd.pid"),
                  "--log-file=" + self.p("ovs-vswitchd.log"), "--detach", "--no-chdir",
                  "-vconsole:off", "-vfile:info", "-vunixctl:file:info"])
        self.pids["ovs-vswitchd"] = self._read_pid("ovs-vswitchd.pid")
        self.vs = Unixctl(self.vs_ctl_path)
        log("ovsdb-server pid %d, ovs-vswitchd pid %d, dir %s"
            % (self.pids["ovsdb-server"], self.pids["ovs-vswitchd"], self.dir))

    def _read_pid(self, fn):
        with open(self.p(fn)) as f:
            return int(f.read().strip())

    def ofctl(self, *args):
        return self.run(["ovs-ofctl"] + list(args))

    def stop(self):
        """Clean shutdown: 'exit' to each daemon, then wait for the PIDs we
        started; SIGTERM/SIGKILL only those PIDs if they hang."""
        for name, ctl in (("ovs-vswitchd", self.vs_ctl_path), ("ovsdb-server", self.db_ctl_path)):
            pid = self.pids.get(name)
            if not pid:
                continue
            try:
                Unixctl(ctl, timeout=10).call("exit")
            except (OSError, OracleError):
                pass
            if not _wait_pid_gone(pid, 10):
                log("%s (pid %d) did not exit, sending SIGTERM" % (name, pid))
                _kill(pid, signal.SIGTERM)
                if not _wait_pid_gone(pid, 5):
                    _kill(pid, signal.SIGKILL)
                    _wait_pid_gone(pid, 5)
            self.pids.pop(name, None)

    def cleanup(self):
        self.stop()
        if self.keep:
            sys.stderr.write("oracle: kept OVS sandbox in %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n=25):
        try:
            with open(self.p("ovs-vswitchd.log")) as f:
                lines = [l for l in f if re.search(r"\|(WARN|ERR|EMER)\|", l)
                         and "dynamic limit of 0 flows" not in l
                         and "due to excessive rate" not in l]
            return "".join(lines[-n:])
        except OSError:
            return ""


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is as good as gone (the daemons are not our children anyway)
    try:
        with open("/proc/%d/stat" % pid) as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                return False
    except OSError:
        return False
    return True


def _wait_pid_gone(pid, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not _pid_alive(pid):
            return True
        time.sleep(0.01)
    return not _pid_alive(pid)


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------

def parse_fdb_age(text, mac):
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 4 and f[2].lower() == mac:
            return int(f[3])
    raise OracleError("fdb/show: %s not found in:\n%s" % (mac, text))


def align_clock(sb, vs):
    """Returns the current phase (OVS monotonic msec mod 1000) of the stopped
    clock.  OVS only exposes whole seconds (MAC ages), so the phase is found by
    binary search: learn a MAC, warp x ms, and see whether its age became 1.
    Runs on a throw-away port before the scenario ports exist."""
    lo, hi = 0, 999  # phase is in [lo, hi]
    n = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        x = 1000 - mid  # age becomes 1 iff phase + x >= 1000 iff phase >= mid
        n += 1
        mac = "02:00:5e:00:%02x:%02x" % (n >> 8, n & 0xff)
        frame = "ffffffffffff" + mac.replace(":", "") + "88b5" + "00" * 46
        vs.call("netdev-dummy/receive", "xswprobe", frame)
        vs.call("time/warp", x)
        age = parse_fdb_age(vs.call("fdb/show", "br0"), mac)
        if age == 1:
            lo, hi = 0, hi - mid
        elif age == 0:
            lo, hi = lo + x, mid - 1 + x
        else:
            raise OracleError("clock alignment: unexpected MAC age %d" % age)
    log("clock phase %d ms after %d probes" % (lo, n))
    return lo


def _crosses(sorted_times, lo, hi):
    """True if some element of sorted_times lies in [lo, hi]."""
    import bisect
    k = bisect.bisect_left(sorted_times, lo)
    return k < len(sorted_times) and sorted_times[k] <= hi


def run_scenario(sdir, outdir, keep=False, force=False):
    sc = load_scenario(sdir)
    check = sc["check"]
    os.makedirs(outdir, exist_ok=True)
    for fn in os.listdir(outdir):  # results of an earlier run
        if fn.endswith(".pcap") or fn == "SKIPPED":
            os.remove(os.path.join(outdir, fn))
    if not check.get("ovs", True) and not force:
        note = check.get("note", "")
        with open(os.path.join(outdir, "SKIPPED"), "w") as f:
            f.write(note + "\n")
        print("oracle: SKIPPED %s ([check] ovs = false): %s" % (sdir, note))
        return 0
    ports = sc["ports"]
    frames = load_frames(sdir, ports)
    flows = load_flows(sdir)
    log("%d ports, %d frames, flows.txt: %s" % (len(ports), len(frames), flows is not None))

    sb = Sandbox(keep=keep)
    ok = False
    try:
        sb.start()
        vs = sb.vs
        # Stop the clock before the bridge exists, so every OVS timestamp
        # below is one we chose.
        vs.call("time/stop")
        sb.vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=dummy",
                 "other_config:mac-aging-time=%d" % sc["mac_aging"],
                 "other_config:mac-table-size=%d" % sc["mac_table_size"],
                 "--", "add-port", "br0", "xswprobe", "--", "set", "interface", "xswprobe",
                 "type=dummy")
        phase = align_clock(sb, vs)

        txdir = sb.p("tx")
        os.makedirs(txdir)
        args = ["del-port", "br0", "xswprobe"]
        for p in sorted(ports, key=lambda p: p["ofport"]):
            name = p["name"]
            args += ["--", "add-port", "br0", name]
            if p.get("tag") is not None:
                args.append("tag=%d" % p["tag"])
            if p.get("vlan_mode") is not None:
                args.append("vlan_mode=%s" % p["vlan_mode"])
            if p.get("trunks"):
                args.append("trunks=%s" % ",".join(str(t) for t in p["trunks"]))
            args += ["--", "set", "interface", name, "type=dummy",
                     "ofport_request=%d" % p["ofport"],
                     "options:tx_pcap=%s" % os.path.join(txdir, name + ".pcap")]
            # xsw ports without an mtu carry frames up to 9216 bytes; a dummy
            # port's default MTU is 1500, so raise it to match (9216 - 14).
            args.append("mtu_request=%d" % (p["mtu"] if p.get("mtu") is not None else 9202))
        sb.vsctl(*args)
        vs.call("fdb/flush", "br0")
        out = sb.ofctl("show", "br0").stdout
        for p in ports:
            if not re.search(r"^\s*%d\(%s\):" % (p["ofport"], re.escape(p["name"])), out, re.M):
                raise OracleError("port %s did not get ofport %d:\n%s" % (p["name"], p["ofport"], out))

        # Align OVS seconds to pcap seconds: after this warp, OVS msec mod
        # 1000 == first frame's msec mod 1000.
        t0_ms = frames[0][0] // 1_000_000 if frames else 0
        w = (t0_ms - phase) % 1000
        if w:
            vs.call("time/warp", w)

        timeouts_ms = []
        if flows is not None:
            for w in install_flows(sb, flows):
                sys.stderr.write("oracle: warning: ovs-ofctl: %s\n" % w)
            # Every idle_timeout/hard_timeout value anywhere in the file
            # (including inside learn() specs), in ms.
            timeouts_ms = sorted({int(v) * 1000 for v in re.findall(
                r"(?:idle_timeout|hard_timeout)\s*=\s*(\d+)",
                " ".join(t for _, t in flows)) if int(v)})
            if VERBOSE:
                log("flows:\n" + sb.ofctl("dump-flows", "br0").stdout)

        cur_ms = t0_ms
        bases = [t0_ms]  # times at which a rule may have been used/created
        n_sync = 0
        for i, (ts, ofp, _idx, name, fr) in enumerate(frames):
            target = ts // 1_000_000
            if target > cur_ms:
                vs.call("time/warp", target - cur_ms)
                # OVS expires a rule when now > used + T (or modified + T),
                # but only in the main loop after a revalidator dump finished
                # (every 100 ms of *real* time while the clock is stopped).
                # If some rule may have crossed its deadline in
                # (cur_ms, target], wait for a dump at the new time.
                if any(_crosses(bases, cur_ms - t, target - 1 - t) for t in timeouts_ms):
                    vs.call("revalidator/wait")
                    n_sync += 1
                cur_ms = target
            if timeouts_ms and bases[-1] != cur_ms:
                bases.append(cur_ms)
            if len(fr) < 14:
                sys.stderr.write("oracle: warning: frame %d on %s is %d bytes; "
                                 "netdev-dummy/receive rejects frames < 14 bytes, skipped\n"
                                 % (i + 1, name, len(fr)))
                continue
            vs.call("netdev-dummy/receive", name, fr.hex())
        # Barrier: this reply implies the last frame went through bridge_run.
        vs.call("version")
        log("%d frames injected, %d unixctl calls, %d expiry syncs" % (len(frames), vs.n_calls, n_sync))
        sb.stop()

        for p in ports:
            src = os.path.join(txdir, p["name"] + ".pcap")
            dst = os.path.join(outdir, p["name"] + ".pcap")
            if os.path.isfile(src) and os.path.getsize(src) >= 24:
                shutil.copyfile(src, dst)
            else:
                write_empty_pcap(dst)
        ok = True
        return 0
    except OracleError as ex:
        sys.stderr.write("oracle: error: %s\n" % ex)
        tail = "" if ex.quiet else sb.log_tail()
        if tail:
            sys.stderr.write("---- ovs-vswitchd.log (warnings/errors, tail) ----\n%s" % tail)
        return 2
    finally:
        if not ok and not keep:
            sb.keep = VERBOSE
        sb.cleanup()


# --------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------

def hexdump(b, other=None, indent="    "):
    lines = []
    for off in range(0, max(len(b), 1), 16):
        chunk = b[off:off + 16]
        cells = []
        for j, byte in enumerate(chunk):
            k = off + j
            mark = "*" if other is not None and (k >= len(other) or other[k] != byte) else " "
            cells.append("%02x%s" % (byte, mark))
        lines.append("%s%04x  %s" % (indent, off, "".join(cells)))
    return "\n".join(lines)


def unordered_ports(expected_dir, names):
    """The ports whose frames `xsw test` compares as a multiset: [check]
    unordered (true, or a list of names) of the scenario.toml beside
    expected_dir, if there is one."""
    path = os.path.join(os.path.dirname(os.path.abspath(expected_dir)), "scenario.toml")
    if tomllib is None or not os.path.isfile(path):
        return set()
    with open(path, "rb") as f:
        try:
            u = (tomllib.load(f).get("check", {}) or {}).get("unordered", False)
        except tomllib.TOMLDecodeError:
            return set()
    if u is True:
        return set(names)
    return set(u) if isinstance(u, list) else set()


def compare_dirs(a, b, missing_as_empty=False):
    def pcaps(d):
        return {os.path.splitext(f)[0] for f in os.listdir(d) if f.endswith(".pcap")}
    for d in (a, b):
        if not os.path.isdir(d):
            sys.stderr.write("oracle: error: %s is not a directory\n" % d)
            return 2
    names = sorted(pcaps(a) | pcaps(b))
    unordered = unordered_ports(a, names)
    ndiff = 0
    for name in names:
        fa, fb = os.path.join(a, name + ".pcap"), os.path.join(b, name + ".pcap")
        try:
            if not os.path.isfile(fa) or not os.path.isfile(fb):
                if not missing_as_empty:
                    print("%s: only in %s" % (name, fa if os.path.isfile(fa) else fb))
                    ndiff += 1
                    continue
            ra = [f for _, f in read_pcap(fa)] if os.path.isfile(fa) else []
            rb = [f for _, f in read_pcap(fb)] if os.path.isfile(fb) else []
        except OracleError as ex:
            sys.stderr.write("oracle: error: %s\n" % ex)
            return 2
        if ra == rb:
            print("%s: OK (%d frames)" % (name, len(ra)))
            continue
        if name in unordered and sorted(ra) == sorted(rb):
            print("%s: OK (%d frames, compared unordered)" % (name, len(ra)))
            continue
        ndiff += 1
        n = next(i for i in range(max(len(ra), len(rb)))
                 if i >= len(ra) or i >= len(rb) or ra[i] != rb[i])
        print("%s: DIFFERENT (%d vs %d frames); first difference at frame %d:"
              % (name, len(ra), len(rb), n + 1))
        for label, mine, other in ((a, ra, rb), (b, rb, ra)):
            if n < len(mine):
                o = other[n] if n < len(other) else None
                print("  %s: %d bytes" % (label, len(mine[n])))
                print(hexdump(mine[n], o))
            else:
                print("  %s: <no frame %d>" % (label, n + 1))
    if ndiff:
        print("%d of %d port(s) differ" % (ndiff, len(names)))
        return 1
    return 0


def main(argv=None):
    global VERBOSE
    ap = argparse.ArgumentParser(description="Run an xsw scenario through a private OVS "
                                 "(dummy datapath) and record what it transmits.")
    ap.add_argument("scenario", nargs="?", help="scenario directory")
    ap.add_argument("--out", help="output directory for <port>.pcap files")
    ap.add_argument("--keep", action="store_true", help="keep the OVS sandbox (db, logs)")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--force", action="store_true", help="run even if [check] ovs = false")
    ap.add_argument("--compare", nargs=2, metavar=("DIR_A", "DIR_B"),
                    help="compare per-port pcaps (frame bytes only)")
    ap.add_argument("--missing-as-empty", action="store_true",
                    help="with --compare: a pcap missing on one side counts as empty")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose
    if args.compare:
        return compare_dirs(*args.compare, missing_as_empty=args.missing_as_empty)
    if not args.scenario or not args.out:
        ap.error("SCENARIO_DIR and --out are required (or use --compare)")
    try:
        return run_scenario(args.scenario, args.out, keep=args.keep, force=args.force)
    except OracleError as ex:
        sys.stderr.write("oracle: error: %s\n" % ex)
        return 2


if __name__ == "__main__":
    sys.exit(main())

# --------------------------------------------------------------------------
# Notes (verified with OVS 3.1.0, see /tmp/ovs-findings.md when available)
# --------------------------------------------------------------------------
# Ordering.  ovs-vswitchd's main loop is: bridge_run() (dpif-netdev polls the
# non-PMD dummy rx queues here: upcall, xlate, MAC learning and tx to the
# tx_pcap all happen synchronously in this thread), then
# unixctl_server_run() (first accepts new connections, then runs up to 10
# requests per existing connection).  netdev-dummy/receive only queues the
# frame.  If several requests were pipelined on one connection, the second
# receive could be handled in the same unixctl_server_run() as the first,
# i.e. before the first frame is processed.  A new connection per request is
# only accepted in the next loop iteration, after bridge_run() processed the
# queued frame.  The final 'version' call is the flush barrier.
#
# Time.  time/stop freezes time_msec()/time_now(); time/warp N adds N ms
# immediately (and sleeps 10 ms).  The next loop iteration (bridge_run:
# mac_learning_run(), rule expiry) runs at the new time before the
# following receive is accepted.
#   * MAC aging: entry expires = time_now() (whole seconds) at the last
#     refresh + 300; refresh only when the second changed; expiry in
#     mac_learning_run() every loop iteration when time_now() >= expires.
#     With the seconds aligned to the pcap, an entry last refreshed by a frame
#     at pcap time t is gone for a frame at t' iff floor(t') >= floor(t)+300.
#   * Flow timeouts: rule_expire() checks now > used + idle*1000 and
#     now > modified + hard*1000 (ms), but only in the main loop after the
#     revalidator finished a dump, which with a stopped clock happens every
#     max-revalidator (100, the minimum) ms of *real* time.  Whenever some
#     rule might have crossed a deadline since the previous frame (any
#     earlier frame time or the install time + any timeout in flows.txt
#     falls in [previous frame, this frame)), the oracle calls
#     revalidator/wait after the warp (costs ~100 ms), so the check runs at
#     the frame's exact ms.  'used' is the ms time of the last frame that hit
#     the rule (exact: every frame is an upcall with flow-limit=0);
#     'modified' = install time = first frame's ms.
#   * No intermediate warp steps are needed: nothing else periodic (STP,
#     LACP, BFD, mcast snooping) is enabled.
