// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/*
 * Licence: this file is dual-licensed, GPL-2.0-only or Apache-2.0 (the
 * SPDX line above). The kernel must see a GPL-compatible licence for the
 * program to call GPL-only helpers, so the LICENSE section at the end
 * declares "GPL": loaded into the kernel, the program is offered under the
 * GPL-2.0 option of its dual licence.
 */
/*
 * xsw's XDP classifier: one entry point per port, run on every frame the
 * port receives. It decides, in this order:
 *
 *   pass      frames for the host's own addresses on this interface go to the
 *             host stack (the interface's MAC, ARP for a host IPv4 address,
 *             IPv6 neighbour solicitations for a host IPv6 address), so a NIC
 *             handed to the switch keeps the host's own traffic working;
 *   drop      the frame surely matches a table-0 rule whose actions are drop
 *             and which no higher-priority non-drop rule overlaps (userspace
 *             decides which rules qualify and loads them in priority order);
 *   redirect  everything else goes to this port's AF_XDP socket for its rx
 *             queue (XSKMAP), where the switch pipeline handles it.
 *
 * Drop rules match on the first XSW_KEY_WORDS (four) words of xsw's flow
 * key (in_port, dl_type, vlan_tci, nw_proto, nw_tos, dl_src/dst, tp_src/dst,
 * nw_src/dst; the layout is in xsw_abi.h, shared with userspace), extracted
 * here with the same Open vSwitch rules the userspace parser uses.
 * When this program cannot be sure of a field a rule needs (IPv6 L3/L4,
 * 802.3 frames, truncated tags), it stops and lets userspace decide: a drop
 * here is only ever an early copy of userspace's own decision.
 *
 * Every header read is preceded by a bounds check against data_end, and
 * every verdict has a per-CPU counter.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xsw_abi.h"

/* ICMPv6 neighbour solicitation (RFC 4861); the uapi headers lack a name. */
#define ICMPV6_NEIGHBOUR_SOLICITATION 135
/* ARP hardware type Ethernet: ARPHRD_ETHER of linux/if_arp.h, which cannot
 * be included here (it pulls in libc headers). */
#define ARPHRD_ETHER 1

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, XSW_MAX_QUEUES);
    __type(key, __u32);
    __type(value, __u32);
} xsks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, XSW_N_VERDICTS);
    __type(key, __u32);
    __type(value, __u64);
} verdicts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct xsw_cfg);
} cfg SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, XSW_MAX_RULES);
    __type(key, __u32);
    __type(value, struct xsw_rule);
} rules SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, XSW_MAX_RULES);
    __type(key, __u32);
    __type(value, struct rule_hits);
} hits SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, XSW_MAX_HOST_ADDRS);
    __type(key, __u32);
    __type(value, __u8);
} host_v4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, XSW_MAX_HOST_ADDRS);
    __type(key, struct v6addr);
    __type(value, __u8);
} host_v6 SEC(".maps");

static __always_inline void count(__u32 v)
{
    __u64 *c = bpf_map_lookup_elem(&verdicts, &v);
    if (c)
        *c += 1;
}

static __always_inline __u64 mac48(const __u8 *p)
{
    return ((__u64)p[0] << 40) | ((__u64)p[1] << 32) | ((__u64)p[2] << 24) |
           ((__u64)p[3] << 16) | ((__u64)p[4] << 8) | (__u64)p[5];
}

static __always_inline __u16 rd16(const __u8 *p)
{
    return ((__u16)p[0] << 8) | p[1];
}

static __always_inline __u32 rd32(const __u8 *p)
{
    return ((__u32)p[0] << 24) | ((__u32)p[1] << 16) | ((__u32)p[2] << 8) | p[3];
}

/* Parse result: the key's first XSW_KEY_WORDS words and what could not be parsed. */
struct fkey {
    __u64 w[XSW_KEY_WORDS];
    __u32 l3_unknown;   /* IPv6, 802.3 or a truncated tag: L3/L4 fields unknown */
    __u32 is_arp;
    __u32 arp_tpa;
    __u32 ns_target;    /* 1 when an IPv6 NS target is in ns_tgt */
    __u8 ns_tgt[16];
};

/*
 * Extracts the key as userspace does (OVS flow_extract rules). Returns 0 on
 * success, -1 when the frame is shorter than an Ethernet header.
 */
static __always_inline int extract(void *data, void *data_end, __u32 full, __u16 ofport,
                                   struct fkey *k)
{
    __u8 *p = data;
    __u64 dl_type = 0, tci = 0, proto = 0, tos = 0, tp_src = 0, tp_dst = 0;
    __u64 nw_src = 0, nw_dst = 0;
    __u32 off = 12;

    if (p + 14 > (__u8 *)data_end)
        return -1;
    __u64 dst = mac48(p), src = mac48(p + 6);
    __u16 t0 = rd16(p + 12);
    if (t0 == ETH_P_8021Q || t0 == ETH_P_8021AD) {
        if (p + 18 <= (__u8 *)data_end) {
            tci = rd16(p + 14) | XSW_VLAN_CFI;
            off = 16;
        } else {
            k->l3_unknown = 1;
        }
    }
    if (p + off + 2 > (__u8 *)data_end)
        return -1;
    dl_type = rd16(p + off);
    off += 2;
    if (dl_type < ETH_P_802_3_MIN) {
        /* 802.3: userspace looks for LLC/SNAP; leave it to userspace. */
        k->l3_unknown = 1;
        dl_type = XSW_DL_TYPE_NOT_ETH_TYPE;
    }

    __u8 *l3 = p + off;
    if (!k->l3_unknown && dl_type == ETH_P_IP) {
        /* Lengths are checked against the whole frame (jumbo frames arrive
         * in fragments; the headers are always in the first). */
        if (l3 + 20 <= (__u8 *)data_end && full > off) {
            __u32 size = full - off;
            __u32 ihl = (l3[0] & 0x0f) * 4;
            __u32 tot = rd16(l3 + 2);
            if (ihl >= 20 && size >= ihl && tot <= size && ihl <= tot) {
                nw_src = rd32(l3 + 12);
                nw_dst = rd32(l3 + 16);
                tos = l3[1];
                proto = l3[9];
                __u16 frag = rd16(l3 + 6);
                /* OVS: no L4 ports in any fragment. */
                if (!(frag & 0x3fff) && ihl <= 60) {
                    __u8 *l4 = l3 + ihl;
                    __u32 l4len = tot - ihl;
                    if (proto == IPPROTO_TCP) {
                        if (l4 + 20 <= (__u8 *)data_end && l4len >= 20) {
                            __u32 doff = (l4[12] >> 4) * 4;
                            if (doff >= 20 && l4len >= doff) {
                                tp_src = rd16(l4);
                                tp_dst = rd16(l4 + 2);
                            }
                        }
                    } else if (proto == IPPROTO_UDP) {
                        if (l4 + 8 <= (__u8 *)data_end && l4len >= 8) {
                            tp_src = rd16(l4);
                            tp_dst = rd16(l4 + 2);
                        }
                    } else if (proto == IPPROTO_SCTP) {
                        if (l4 + 12 <= (__u8 *)data_end && l4len >= 12) {
                            tp_src = rd16(l4);
                            tp_dst = rd16(l4 + 2);
                        }
                    } else if (proto == IPPROTO_ICMP || proto == IPPROTO_IGMP ||
                               proto == IPPROTO_ICMPV6) {
                        if (l4 + 8 <= (__u8 *)data_end && l4len >= 8) {
                            tp_src = l4[0];
                            tp_dst = l4[1];
                        }
                    }
                }
            }
        }
    } else if (!k->l3_unknown && (dl_type == ETH_P_ARP || dl_type == ETH_P_RARP)) {
        k->is_arp = 1;
        if (l3 + 28 <= (__u8 *)data_end && rd16(l3) == ARPHRD_ETHER && rd16(l3 + 2) == ETH_P_IP &&
            l3[4] == ETH_ALEN && l3[5] == 4) {
            nw_src = rd32(l3 + 14);
            nw_dst = rd32(l3 + 24);
            k->arp_tpa = nw_dst;
            __u16 op = rd16(l3 + 6);
            if (op <= 0xff)
                proto = op;
        }
    } else if (!k->l3_unknown && dl_type == ETH_P_IPV6) {
        /* IPv6 L3/L4 fields are left to userspace; spot NS for host-pass. */
        k->l3_unknown = 1;
        if (l3 + 40 + 24 <= (__u8 *)data_end && l3[6] == IPPROTO_ICMPV6) {
            __u8 *icmp = l3 + 40;
            if (icmp[0] == ICMPV6_NEIGHBOUR_SOLICITATION) {
                __builtin_memcpy(k->ns_tgt, icmp + 8, 16);
                k->ns_target = 1;
            }
        }
    }
    /* k->w is all zero here (the caller's key starts empty). */
    XSW_KEY_SET(k->w, XSW_KEY_IN_PORT, ofport);
    XSW_KEY_SET(k->w, XSW_KEY_DL_TYPE, dl_type);
    XSW_KEY_SET(k->w, XSW_KEY_VLAN_TCI, tci);
    XSW_KEY_SET(k->w, XSW_KEY_NW_PROTO, proto);
    XSW_KEY_SET(k->w, XSW_KEY_NW_TOS, tos);
    XSW_KEY_SET(k->w, XSW_KEY_DL_SRC, src);
    XSW_KEY_SET(k->w, XSW_KEY_TP_SRC, tp_src);
    XSW_KEY_SET(k->w, XSW_KEY_DL_DST, dst);
    XSW_KEY_SET(k->w, XSW_KEY_TP_DST, tp_dst);
    XSW_KEY_SET(k->w, XSW_KEY_NW_SRC, nw_src);
    XSW_KEY_SET(k->w, XSW_KEY_NW_DST, nw_dst);
    return 0;
}

SEC("xdp.frags")
int xsw_port(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 zero = 0;
    struct xsw_cfg *c = bpf_map_lookup_elem(&cfg, &zero);
    if (!c || !c->enabled) {
        count(XSW_V_DISABLED);
        return XDP_PASS;
    }

    struct fkey k = {};
    if (extract(data, data_end, bpf_xdp_get_buff_len(ctx), c->ofport, &k) == 0) {
        /* 1. The host's own traffic. */
        if (c->host_pass) {
            __u64 dst = XSW_KEY_GET(k.w, XSW_KEY_DL_DST);
            if (dst == mac48(c->mac)) {
                count(XSW_V_PASS_HOST);
                return XDP_PASS;
            }
            if (k.is_arp && k.arp_tpa && bpf_map_lookup_elem(&host_v4, &k.arp_tpa)) {
                count(XSW_V_PASS_HOST);
                return XDP_PASS;
            }
            if (k.ns_target && bpf_map_lookup_elem(&host_v6, k.ns_tgt)) {
                count(XSW_V_PASS_HOST);
                return XDP_PASS;
            }
        }

        /* 2. Drop rules, highest priority first. */
        __u32 n = c->n_rules;
        for (__u32 i = 0; i < XSW_MAX_RULES; i++) {
            if (i >= n)
                break;
            /* A copy for the lookup keeps the loop counter in a register,
             * so the verifier can bound the loop. */
            __u32 idx = i;
            struct xsw_rule *r = bpf_map_lookup_elem(&rules, &idx);
            if (!r)
                break;
            if (r->needs_l3 && k.l3_unknown)
                break; /* cannot be sure: userspace decides */
            /* One comparison per key word: there are XSW_KEY_WORDS. */
            _Static_assert(XSW_KEY_WORDS == 4, "the rule match compares four key words");
            if ((k.w[0] & r->mask[0]) == r->value[0] && (k.w[1] & r->mask[1]) == r->value[1] &&
                (k.w[2] & r->mask[2]) == r->value[2] && (k.w[3] & r->mask[3]) == r->value[3]) {
                struct rule_hits *h = bpf_map_lookup_elem(&hits, &idx);
                if (h) {
                    h->packets += 1;
                    h->bytes += bpf_xdp_get_buff_len(ctx);
                }
                count(XSW_V_DROP_RULE);
                return XDP_DROP;
            }
        }
    }

    /* 3. The switch. */
    int ret = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_DROP);
    count(ret == XDP_REDIRECT ? XSW_V_REDIRECT : XSW_V_NO_SOCKET);
    return ret;
}

/*
 * The kernel must see a GPL-compatible licence here for the program to call
 * GPL-only helpers: in the kernel the program is offered under the GPL-2.0
 * option of its dual licence (GPL-2.0-only OR Apache-2.0, as the SPDX line
 * at the top says).
 */
char LICENSE[] SEC("license") = "GPL";
