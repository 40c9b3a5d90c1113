/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * The ABI between xsw's XDP program (xsw.bpf.c) and userspace, defined once:
 *
 *  - the layout of the first four words of xsw's flow key, which the
 *    program extracts and its drop rules match on. Userspace's key
 *    (datapath/src/key.rs, Field::loc) must agree: xsw-ebpf's build script
 *    turns every `#define XSW_...` below into a Rust constant
 *    (xsw_ebpf::abi), and xsw-live asserts at compile time that each
 *    field's word, shift and width are the same as here;
 *  - the map value structs, which Rust uses through the types the
 *    libbpf-cargo skeleton generates from the program's BTF (so their
 *    layout is this one by construction; the sizes below are asserted on
 *    both sides);
 *  - the limits and the verdict counters.
 *
 * Only plain `#define NAME integer` lines are read by the build script.
 */
#ifndef XSW_ABI_H
#define XSW_ABI_H

/* Limits. */
#define XSW_MAX_QUEUES 64
#define XSW_MAX_RULES 64
#define XSW_MAX_HOST_ADDRS 64

/* Verdict counters (index into the `verdicts` map). */
#define XSW_V_PASS_HOST 0 /* to the host stack */
#define XSW_V_DROP_RULE 1 /* dropped by a rule */
#define XSW_V_REDIRECT 2  /* to the AF_XDP socket */
#define XSW_V_NO_SOCKET 3 /* meant for the socket, but none on this queue: dropped */
#define XSW_V_DISABLED 4  /* port not configured yet: passed */
#define XSW_N_VERDICTS 5

/* Key words the program fills and its rules match (of the key's eight). */
#define XSW_KEY_WORDS 4

/* Each key field: the word it is in, its shift and its width in bits. */
#define XSW_KEY_IN_PORT_WORD 0
#define XSW_KEY_IN_PORT_SHIFT 0
#define XSW_KEY_IN_PORT_BITS 16
#define XSW_KEY_DL_TYPE_WORD 0
#define XSW_KEY_DL_TYPE_SHIFT 16
#define XSW_KEY_DL_TYPE_BITS 16
#define XSW_KEY_VLAN_TCI_WORD 0
#define XSW_KEY_VLAN_TCI_SHIFT 32
#define XSW_KEY_VLAN_TCI_BITS 16
#define XSW_KEY_NW_PROTO_WORD 0
#define XSW_KEY_NW_PROTO_SHIFT 48
#define XSW_KEY_NW_PROTO_BITS 8
#define XSW_KEY_NW_TOS_WORD 0
#define XSW_KEY_NW_TOS_SHIFT 56
#define XSW_KEY_NW_TOS_BITS 8
#define XSW_KEY_DL_SRC_WORD 1
#define XSW_KEY_DL_SRC_SHIFT 0
#define XSW_KEY_DL_SRC_BITS 48
#define XSW_KEY_TP_SRC_WORD 1
#define XSW_KEY_TP_SRC_SHIFT 48
#define XSW_KEY_TP_SRC_BITS 16
#define XSW_KEY_DL_DST_WORD 2
#define XSW_KEY_DL_DST_SHIFT 0
#define XSW_KEY_DL_DST_BITS 48
#define XSW_KEY_TP_DST_WORD 2
#define XSW_KEY_TP_DST_SHIFT 48
#define XSW_KEY_TP_DST_BITS 16
#define XSW_KEY_NW_SRC_WORD 3
#define XSW_KEY_NW_SRC_SHIFT 0
#define XSW_KEY_NW_SRC_BITS 32
#define XSW_KEY_NW_DST_WORD 3
#define XSW_KEY_NW_DST_SHIFT 32
#define XSW_KEY_NW_DST_BITS 32

/* Key values with a special meaning (as in Open vSwitch's struct flow). */
#define XSW_DL_TYPE_NOT_ETH_TYPE 0x05ff /* 802.3 frame without SNAP */
#define XSW_VLAN_CFI 0x1000             /* vlan_tci: a tag is present */

/* Map value sizes (no padding anywhere: every byte is a field's). */
#define XSW_CFG_SIZE 20
#define XSW_RULE_SIZE 72
#define XSW_RULE_HITS_SIZE 16

#ifdef __bpf__
/* Per-port configuration (the one entry of `cfg`). */
struct xsw_cfg {
    __u32 enabled;   /* 0: pass everything (not yet configured) */
    __u32 host_pass; /* 1: pass frames for the host's addresses */
    __u16 ofport;    /* this port's OpenFlow number */
    __u8 mac[6];     /* the interface's MAC */
    __u32 n_rules;   /* drop rules loaded */
};

/* A drop rule over the first key words: match when (k & mask) == value. */
struct xsw_rule {
    __u64 mask[XSW_KEY_WORDS];
    __u64 value[XSW_KEY_WORDS];
    __u32 needs_l3; /* the rule reads IPv4/ARP/L4 fields */
    __u32 pad;
};

/* What one rule dropped (per CPU). */
struct rule_hits {
    __u64 packets;
    __u64 bytes;
};

/* A host IPv6 address (key of `host_v6`). */
struct v6addr {
    __u8 a[16];
};

_Static_assert(sizeof(struct xsw_cfg) == XSW_CFG_SIZE, "xsw_cfg layout");
_Static_assert(sizeof(struct xsw_rule) == XSW_RULE_SIZE, "xsw_rule layout");
_Static_assert(sizeof(struct rule_hits) == XSW_RULE_HITS_SIZE, "rule_hits layout");

/* The mask of a field of `XSW_KEY_<F>` at its place in its word. */
#define XSW_KEY_MASK(F) ((((__u64)1 << F##_BITS) - 1) << F##_SHIFT)
/* Stores `v` into field `F` of key words `w` (the field must be zero). */
#define XSW_KEY_SET(w, F, v) \
    ((w)[F##_WORD] |= (((__u64)(v) << F##_SHIFT) & XSW_KEY_MASK(F)))
/* Reads field `F` of key words `w`. */
#define XSW_KEY_GET(w, F) (((w)[F##_WORD] & XSW_KEY_MASK(F)) >> F##_SHIFT)
#endif /* __bpf__ */

#endif /* XSW_ABI_H */
