//! The XDP program run on crafted frames with BPF_PROG_TEST_RUN (as root;
//! CI runs as root). Each case: a frame, the port's configuration and
//! rules, the expected action and the verdict counter that must move.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::PacketBuilder;
use xsw_ebpf::abi::{
    XSW_KEY_DL_TYPE_BITS, XSW_KEY_DL_TYPE_SHIFT, XSW_KEY_DL_TYPE_WORD, XSW_KEY_NW_PROTO_BITS,
    XSW_KEY_NW_PROTO_SHIFT, XSW_KEY_NW_PROTO_WORD, XSW_KEY_TP_DST_BITS, XSW_KEY_TP_DST_SHIFT,
    XSW_KEY_TP_DST_WORD,
};
use xsw_ebpf::{action, Verdict, XdpProgram, XdpRule, KEY_WORDS};

const PORT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const HOST_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

fn load() -> XdpProgram {
    match XdpProgram::load() {
        Ok(p) => p,
        Err(e) => panic!("{e}\n(these tests need root: run them as root, as CI does)"),
    }
}

fn udp(dst_mac: [u8; 6], dst_ip: [u8; 4], dport: u16, vlan: Option<u16>) -> Vec<u8> {
    let mut out = Vec::new();
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], dst_mac);
    match vlan {
        Some(v) => eth
            .single_vlan(etherparse::VlanId::try_new(v).expect("vid"))
            .ipv4([198, 18, 0, 1], dst_ip, 64)
            .udp(1000, dport)
            .write(&mut out, &[0; 10]),
        None => eth
            .ipv4([198, 18, 0, 1], dst_ip, 64)
            .udp(1000, dport)
            .write(&mut out, &[0; 10]),
    }
    .expect("frame");
    out
}

fn arp_request(tpa: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 198, 18, 0, 1]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f.resize(60, 0);
    f
}

/// A key field as `xsw_abi.h` places it: (word, shift, width in bits).
type Field = (u64, u64, u64);

const DL_TYPE: Field = (
    XSW_KEY_DL_TYPE_WORD,
    XSW_KEY_DL_TYPE_SHIFT,
    XSW_KEY_DL_TYPE_BITS,
);
const NW_PROTO: Field = (
    XSW_KEY_NW_PROTO_WORD,
    XSW_KEY_NW_PROTO_SHIFT,
    XSW_KEY_NW_PROTO_BITS,
);
const TP_DST: Field = (
    XSW_KEY_TP_DST_WORD,
    XSW_KEY_TP_DST_SHIFT,
    XSW_KEY_TP_DST_BITS,
);

/// A drop rule matching each field exactly on its value (all other bits
/// wildcarded).
fn rule(fields: &[(Field, u64)], needs_l3: bool) -> XdpRule {
    let mut mask = [0u64; KEY_WORDS];
    let mut value = [0u64; KEY_WORDS];
    for &((word, shift, bits), v) in fields {
        let ones = (1u64 << bits) - 1;
        mask[word as usize] |= ones << shift;
        value[word as usize] |= (v & ones) << shift;
    }
    XdpRule {
        mask,
        value,
        needs_l3,
    }
}

/// `udp,tp_dst=PORT,actions=drop` in key words.
fn drop_udp_port(port: u16) -> XdpRule {
    rule(
        &[(DL_TYPE, 0x0800), (NW_PROTO, 17), (TP_DST, u64::from(port))],
        true,
    )
}

fn delta(p: &XdpProgram, before: [u64; 5], v: Verdict) -> u64 {
    p.verdicts().expect("counters")[v as usize] - before[v as usize]
}

#[test]
fn unconfigured_ports_pass_everything() {
    let p = load();
    let before = p.verdicts().expect("counters");
    assert_eq!(
        p.test_run(&udp([0xff; 6], [1, 2, 3, 4], 9, None))
            .expect("run"),
        action::PASS
    );
    assert_eq!(delta(&p, before, Verdict::Disabled), 1);
}

#[test]
fn each_verdict_on_its_frame() {
    let p = load();
    p.configure(3, true, PORT_MAC).expect("configure");
    p.set_host_addrs(
        &[HOST_IP],
        &[Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10)],
    )
    .expect("addrs");
    p.set_rules(&[drop_udp_port(53)]).expect("rules");
    let cases: Vec<(&str, Vec<u8>, u32, Verdict)> = vec![
        (
            "unicast to the host's MAC",
            udp(PORT_MAC, [198, 18, 0, 10], 9, None),
            action::PASS,
            Verdict::PassHost,
        ),
        (
            "ARP for the host's address",
            arp_request([198, 18, 0, 10]),
            action::PASS,
            Verdict::PassHost,
        ),
        (
            "ARP for someone else",
            arp_request([198, 18, 0, 99]),
            action::DROP,
            Verdict::NoSocket,
        ),
        (
            "UDP 53 (drop rule)",
            udp([2, 0, 0, 0, 0, 2], [198, 18, 0, 2], 53, None),
            action::DROP,
            Verdict::DropRule,
        ),
        (
            "UDP 53 tagged (drop rule)",
            udp([2, 0, 0, 0, 0, 2], [198, 18, 0, 2], 53, Some(7)),
            action::DROP,
            Verdict::DropRule,
        ),
        (
            "UDP 54 (to the switch)",
            udp([2, 0, 0, 0, 0, 2], [198, 18, 0, 2], 54, None),
            action::DROP,
            Verdict::NoSocket,
        ),
        (
            "runt",
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
            action::DROP,
            Verdict::NoSocket,
        ),
    ];
    for (what, frame, want, verdict) in cases {
        let before = p.verdicts().expect("counters");
        let got = p.test_run(&frame).expect("run");
        assert_eq!(got, want, "{what}");
        assert_eq!(
            delta(&p, before, verdict),
            1,
            "{what}: counter {}",
            verdict.name()
        );
    }
    let hits = p.rule_hits(1).expect("hits");
    let dropped_bytes = udp([2, 0, 0, 0, 0, 2], [198, 18, 0, 2], 53, None).len()
        + udp([2, 0, 0, 0, 0, 2], [198, 18, 0, 2], 53, Some(7)).len();
    assert_eq!(
        hits[0],
        (2, dropped_bytes as u64),
        "two frames dropped by the rule, counted with their bytes"
    );
}

#[test]
fn host_pass_can_be_turned_off() {
    let p = load();
    p.configure(1, false, PORT_MAC).expect("configure");
    let before = p.verdicts().expect("counters");
    // No socket in the map: meant for the switch, dropped as no_socket.
    assert_eq!(
        p.test_run(&udp(PORT_MAC, [198, 18, 0, 10], 9, None))
            .expect("run"),
        action::DROP
    );
    assert_eq!(delta(&p, before, Verdict::NoSocket), 1);
}

#[test]
fn rules_that_need_l3_leave_ipv6_to_userspace() {
    let p = load();
    p.configure(1, false, PORT_MAC).expect("configure");
    // A rule on tp_dst only (no dl_type): an IPv6 UDP frame cannot be judged here.
    p.set_rules(&[rule(&[(TP_DST, 53)], true)]).expect("rules");
    let mut v6 = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .udp(1, 53)
        .write(&mut v6, &[0; 8])
        .expect("frame");
    let before = p.verdicts().expect("counters");
    p.test_run(&v6).expect("run");
    assert_eq!(delta(&p, before, Verdict::DropRule), 0);
    assert_eq!(delta(&p, before, Verdict::NoSocket), 1);
}
