/* SPDX-License-Identifier: Apache-2.0 */
/* conntrack.h: Cilium's conntrack tables (cilium.md §3.4): TCP in cilium_ct4_global, every
 * other protocol in cilium_ct_any4_global, both LRU hashes of ipv4_ct_tuple -> ct_entry.
 *
 * Theory of operation (a reduced ct_lookup4/ct_create4):
 *   1. A packet's tuple is {daddr = its source, saddr = its destination, dport, sport,
 *      nexthdr, flags=TUPLE_F_OUT} (Cilium's reply-named addresses, as the model datapath
 *      and the codec print them); ICMP echo uses the identifier as a port (l4.h).
 *   2. Lookup of the tuple itself: a hit is CT_ESTABLISHED (the packet travels the way the
 *      connection was opened).
 *   3. Lookup of the reversed tuple (addresses and ports swapped): a hit is CT_REPLY.
 *   4. No hit is CT_NEW; the caller runs policy and then ct_create4() stores the tuple,
 *      keeping the service's backend and rev-NAT index for load-balanced connections.
 * Replies and established packets skip policy (issue 6), so a connection allowed when it was
 * opened survives policy changes and agent restarts.  Every hit pushes `lifetime` forward
 * by Cilium's default timeouts (TCP established 8000 s, TCP before its first ACK 60 s, TCP
 * closing 10 s, other protocols 60 s); an entry found past its lifetime is treated as
 * absent (CT_NEW), so a stale entry never lets a new flow skip policy.  The LRU evicts the
 * oldest entries when a table is full.
 */
#ifndef CILIATE_CONNTRACK_H
#define CILIATE_CONNTRACK_H

#include "common.h"
#include "l4.h"
#include "maps.h"

#define TUPLE_F_OUT 0
#define TUPLE_F_IN 1
#define TUPLE_F_RELATED 2
#define TUPLE_F_SERVICE 4

#define CT_NEW 0
#define CT_ESTABLISHED 1
#define CT_REPLY 2
#define CT_RELATED 3

#define CT_REPORT_INTERVAL 5 /* seconds, monitor-aggregation-interval */
#define CT_LIFETIME_TCP 8000
#define CT_LIFETIME_TCP_SYN 60
#define CT_LIFETIME_TCP_CLOSE 10
#define CT_LIFETIME_NONTCP 60

/* 14 B, packed.  0 daddr | 4 saddr | 8 dport | 10 sport | 12 nexthdr | 13 flags */
struct ipv4_ct_tuple {
	__be32 daddr;
	__be32 saddr;
	__be16 dport;
	__be16 sport;
	__u8 nexthdr;
	__u8 flags;
} __attribute__((packed));

/* 56 B.  0 reserved0 | 8 backend_id | 16 packets | 24 bytes | 32 lifetime | 36 flags
 * 38 rev_nat_index | 40 ifindex | 42 tx_flags_seen | 43 rx_flags_seen | 44 src_sec_id
 * 48 last_tx_report | 52 last_rx_report */
struct ct_entry {
	__u64 reserved0;
	__u64 backend_id;
	__u64 packets;
	__u64 bytes;
	__u32 lifetime;
	__u16 flags;
	__u16 rev_nat_index;
	__u16 ifindex;
	__u8 tx_flags_seen;
	__u8 rx_flags_seen;
	__u32 src_sec_id;
	__u32 last_tx_report;
	__u32 last_rx_report;
};

#define CT_F_RX_CLOSING 0x1
#define CT_F_TX_CLOSING 0x2
#define CT_F_SEEN_NON_SYN 0x10
#define CT_F_PROXY_REDIRECT 0x40 /* handed to the L7 proxy (proxy.h) */
#define CT_F_FROM_TUNNEL 0x400

/* Without CT_ACCOUNTING the packets field holds the policy revision the entry was last
 * checked at (maps.h cilium_policy_rev); Cilium leaves it zero then. */
#ifdef CT_ACCOUNTING
#error "CT_ACCOUNTING needs another home for the policy revision"
#endif
#define CT_POLICY_REV(e) (*(__u32 *)&(e)->packets)

/* reserved0 (unused by Cilium since 1.16) holds, for connections that arrived through
 * the overlay, the node that sent them: replies are tunnelled back there, where the
 * connection's service translation (and its reverse NAT) lives. */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(key_size, sizeof(struct ipv4_ct_tuple));
	__uint(value_size, sizeof(struct ct_entry));
	/* Cilium: 524288 (or sized from memory); LRU maps are preallocated, so every node
	 * of every cluster on this machine pays for them at load: 128K keeps `up` fast */
	__uint(max_entries, 131072);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_ct4_global SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(key_size, sizeof(struct ipv4_ct_tuple));
	__uint(value_size, sizeof(struct ct_entry));
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_ct_any4_global SEC(".maps");

static __always_inline void *ct_map(__u8 nexthdr)
{
	if (nexthdr == IPPROTO_TCP)
		return &cilium_ct4_global;
	return &cilium_ct_any4_global;
}

/* Seconds of CLOCK_MONOTONIC from the coarse clock (as of the last tick): lifetimes have
 * one-second resolution, and reading the clock source under this hypervisor costs ~40 ns
 * a packet (measured with kernel.bpf_stats_enabled). */
static __always_inline __u32 bpf_sec(void)
{
	return (__u32)(bpf_ktime_get_coarse_ns() / 1000000000ULL);
}

struct ct_result {
	__u8 status;
	__u8 monitor; /* report this packet (aggregation, trace.h) */
	__u16 rev_nat_index;
	__u32 backend_id;
	__u32 src_sec_id;
	__be32 tunnel_src; /* CT_F_FROM_TUNNEL entries: the node the connection came from */
	__u8 proxy_redirect; /* CT_ESTABLISHED of a connection the L7 proxy serves */
	__u8 policy_stale; /* CT_ESTABLISHED, last checked before the current policy revision */
};

static __always_inline void ct_tuple_reverse(const struct ipv4_ct_tuple *t,
					     struct ipv4_ct_tuple *r)
{
	r->daddr = t->saddr;
	r->saddr = t->daddr;
	r->dport = t->sport;
	r->sport = t->dport;
	r->nexthdr = t->nexthdr;
	r->flags = t->flags;
}

/* Account the packet on entry and decide whether it is worth a notification. */
static __always_inline __u32 ct_lifetime(const struct ct_entry *e, __u8 nexthdr)
{
	if (nexthdr != IPPROTO_TCP)
		return CT_LIFETIME_NONTCP;
	if (e->flags & (CT_F_RX_CLOSING | CT_F_TX_CLOSING))
		return CT_LIFETIME_TCP_CLOSE;
	if (!(e->flags & CT_F_SEEN_NON_SYN))
		return CT_LIFETIME_TCP_SYN;
	return CT_LIFETIME_TCP;
}

/* Writes to a shared entry are kept to the ones that change something: the two
 * directions of a connection are often handled on different CPUs (data on the sender's,
 * ACKs on the receiver's), and every store pulls the entry's cache line across.  So the
 * lifetime is rewritten only when it moves (it has one-second resolution), flags only when
 * they gain a bit, and there are no per-packet packet/byte counters (Cilium's
 * --bpf-conntrack-accounting is off by default since 1.16; nothing here reads them, and the
 * packets field holds the policy revision instead: CT_POLICY_REV). */
static __always_inline __u8 ct_touch(struct ct_entry *e, __u8 tcp_flags, __u32 len, int reply,
				     __u8 nexthdr, __u32 now)
{
	__u32 *last = reply ? &e->last_rx_report : &e->last_tx_report;
	__u8 *seen = reply ? &e->rx_flags_seen : &e->tx_flags_seen;
	__u16 flags = e->flags;
	__u32 lifetime;
	__u8 monitor = 0;

	if (tcp_flags & (TCP_FLAG_SYN_ | TCP_FLAG_FIN_ | TCP_FLAG_RST_))
		monitor = 1;
	if ((*seen | tcp_flags) != *seen) {
		*seen |= tcp_flags;
		monitor = 1;
	}
	if (now - *last >= CT_REPORT_INTERVAL) {
		*last = now;
		monitor = 1;
	}
	if (tcp_flags & (TCP_FLAG_FIN_ | TCP_FLAG_RST_))
		flags |= reply ? CT_F_RX_CLOSING : CT_F_TX_CLOSING;
	if (tcp_flags & TCP_FLAG_ACK_)
		flags |= CT_F_SEEN_NON_SYN;
	if (flags != e->flags)
		e->flags = flags;
	/* after the flags: a closing connection gets the closing lifetime */
	lifetime = now + ct_lifetime(e, nexthdr);
	if (lifetime != e->lifetime)
		e->lifetime = lifetime;
	return monitor;
}

static __always_inline void ct_lookup4(const struct ipv4_ct_tuple *tuple, __u8 tcp_flags,
				       __u32 len, struct ct_result *res)
{
	struct ipv4_ct_tuple rev;
	struct ct_entry *e;
	void *map = ct_map(tuple->nexthdr);

	__u32 now = bpf_sec();

	__builtin_memset(res, 0, sizeof(*res));
	e = bpf_map_lookup_elem(map, tuple);
	if (e && (__s32)(e->lifetime - now) < 0)
		e = NULL; /* expired: as if absent (ct_create4 overwrites it) */
	/* A SYN without ACK opens a new connection even when its tuple was used before (a
	 * reused source port): CT_NEW, so policy decides it again (Cilium: CT_REOPENED). */
	if (e && (tcp_flags & (TCP_FLAG_SYN_ | TCP_FLAG_ACK_)) == TCP_FLAG_SYN_)
		e = NULL;
	if (e) {
		__u32 rev = policy_revision();

		res->status = CT_ESTABLISHED;
		/* Policy applies to every packet but replies (Cilium's bpf_lxc).  Rather than
		 * two policy lookups per packet, the entry remembers the revision it was last
		 * allowed at: the caller checks again while the policy changed since, and
		 * records a pass with ct_policy_checked4.  A flow the new policy drops stays
		 * stale, so each of its packets is checked (and dropped), as in Cilium; the
		 * entry stays too, or a reply in flight would re-create it the other way round
		 * and the dropped side's packets would then pass as replies. */
		res->policy_stale = CT_POLICY_REV(e) != rev;
		res->rev_nat_index = e->rev_nat_index;
		res->backend_id = (__u32)e->backend_id;
		res->src_sec_id = e->src_sec_id;
		res->proxy_redirect = !!(e->flags & CT_F_PROXY_REDIRECT);
		res->monitor = ct_touch(e, tcp_flags, len, 0, tuple->nexthdr, now);
		return;
	}
	ct_tuple_reverse(tuple, &rev);
	e = bpf_map_lookup_elem(map, &rev);
	if (e && (__s32)(e->lifetime - now) < 0)
		e = NULL;
	/* nor is a pure SYN ever a reply: it opens a connection the other way round */
	if (e && (tcp_flags & (TCP_FLAG_SYN_ | TCP_FLAG_ACK_)) == TCP_FLAG_SYN_)
		e = NULL;
	if (e) {
		res->status = CT_REPLY;
		res->rev_nat_index = e->rev_nat_index;
		res->backend_id = (__u32)e->backend_id;
		res->src_sec_id = e->src_sec_id;
		if (e->flags & CT_F_FROM_TUNNEL)
			res->tunnel_src = (__be32)e->reserved0;
		res->monitor = ct_touch(e, tcp_flags, len, 1, tuple->nexthdr, now);
		return;
	}
	res->status = CT_NEW;
	res->monitor = 1;
}

static __always_inline int ct_create4_from(const struct ipv4_ct_tuple *tuple, __u32 src_sec_id,
					   __u16 rev_nat_index, __u32 backend_id, __u8 tcp_flags,
					   __u32 len, __be32 tunnel_src)
{
	struct ct_entry e = {};
	__u32 now = bpf_sec();

	if (tunnel_src) {
		e.reserved0 = tunnel_src;
		e.flags = CT_F_FROM_TUNNEL;
	}

	e.backend_id = backend_id;
	e.rev_nat_index = rev_nat_index;
	e.src_sec_id = src_sec_id;
	e.bytes = len;
	e.tx_flags_seen = tcp_flags;
	e.last_tx_report = now;
	if (tcp_flags & TCP_FLAG_ACK_)
		e.flags |= CT_F_SEEN_NON_SYN;
	e.lifetime = now + ct_lifetime(&e, tuple->nexthdr);
	CT_POLICY_REV(&e) = policy_revision();
	return bpf_map_update_elem(ct_map(tuple->nexthdr), tuple, &e, BPF_ANY);
}

/* A stale established flow (ct_result.policy_stale) passed the current policy: record the
 * revision so its next packets skip the lookups again.  One extra hash lookup per flow
 * per policy change. */
static __always_inline void ct_policy_checked4(const struct ipv4_ct_tuple *tuple)
{
	struct ct_entry *e = bpf_map_lookup_elem(ct_map(tuple->nexthdr), tuple);

	if (e)
		CT_POLICY_REV(e) = policy_revision();
}

static __always_inline int ct_create4(const struct ipv4_ct_tuple *tuple, __u32 src_sec_id,
				      __u16 rev_nat_index, __u32 backend_id, __u8 tcp_flags,
				      __u32 len)
{
	return ct_create4_from(tuple, src_sec_id, rev_nat_index, backend_id, tcp_flags, len, 0);
}

static __always_inline void ct_build_tuple(struct ipv4_ct_tuple *t, __be32 saddr, __be32 daddr,
					   __u8 proto, const struct l4_info *l4)
{
	/* Cilium's naming: the address fields are named for the reply (daddr holds the
	 * packet's source), the port fields for the packet's own direction. */
	t->daddr = saddr;
	t->saddr = daddr;
	t->dport = l4->dport;
	t->sport = l4->sport;
	t->nexthdr = proto;
	t->flags = TUPLE_F_OUT;
}

#endif /* CILIATE_CONNTRACK_H */
