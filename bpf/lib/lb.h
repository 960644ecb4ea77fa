/* SPDX-License-Identifier: Apache-2.0 */
/* lb.h: service load balancing (cilium.md §3.5, §7): the lb4 maps and the DNAT step.
 *
 * lb4_translate() (Cilium's lb4_lookup_service + lb4_local, reduced):
 *   1. master entry {vip, dport, slot 0, proto, scope} with the packet's protocol (the
 *      1.18 layout always fills it; ciliate writes no proto-ANY entries); an address of
 *      this node also matches the NodePort
 *      surrogate 0.0.0.0:port; a two-scopes service is looked up again with scope INT for
 *      traffic from inside the cluster (internalTrafficPolicy=Local).
 *   2. count == 0 -> DROP_NO_SERVICE (158): a service without ready backends answers with
 *      a drop instead of hanging.
 *   3. an existing CT_SERVICE entry for the client tuple keeps its backend (established
 *      connections keep their backend while backends change) if that backend still exists;
 *   4. otherwise sessionAffinity (cilium_lb4_affinity, client IP -> backend, within the
 *      timeout), else Maglev (algorithm 2 in the master's high byte: slot hash % M looked up
 *      in the shared cilium_lb4_maglev keyed {rev_nat_index, slot}) or random
 *      (prandom % count + 1);
 *   5. the CT_SERVICE entry is written, the packet is DNATed (address and port, both
 *      checksums fixed) and the caller stores rev_nat_index in the connection's CT entry so
 *      that replies are reverse-NATed (nat.h).
 */
#ifndef CILIATE_LB_H
#define CILIATE_LB_H

#include "common.h"
#include "l4.h"
#include "csum.h"
#include "maps.h"
#include "conntrack.h"
#include "drop.h"

#define LB_LOOKUP_SCOPE_EXT 0
#define LB_LOOKUP_SCOPE_INT 1
#define LB_ALG_RANDOM 1
#define LB_ALG_MAGLEV 2

#define SVC_FLAG_AFFINITY 0x10
#define SVC_FLAG2_TWO_SCOPES 0x20

/* 12 B.  0 address | 4 dport | 6 backend_slot | 8 proto | 9 scope | 10 pad[2] */
struct lb4_key {
	__be32 address;
	__be16 dport;
	__u16 backend_slot;
	__u8 proto;
	__u8 scope;
	__u8 pad[2];
};

/* 12 B.  0 backend_id / affinity_timeout|alg<<24 | 4 count | 6 rev_nat_index | 8 flags
 * 9 flags2 | 10 qcount */
struct lb4_service {
	__u32 backend_id;
	__u16 count;
	__u16 rev_nat_index;
	__u8 flags;
	__u8 flags2;
	__u16 qcount;
};

/* 12 B.  0 address | 4 port | 6 proto | 7 flags | 8 cluster_id | 10 zone | 11 pad */
struct lb4_backend {
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 flags;
	__u16 cluster_id;
	__u8 zone;
	__u8 pad;
};

/* 6 B, packed.  0 address | 4 port */
struct lb4_reverse_nat {
	__be32 address;
	__be16 port;
} __attribute__((packed));

/* Maglev: one shared HASH keyed {rev_nat_index, slot} instead of Cilium's map-in-map
 * (inner-map updates cost ~15 ms here).  8 B.  0 rev_nat_index | 2 pad | 4 slot */
struct lb4_maglev_key {
	__u16 rev_nat_index;
	__u16 pad;
	__u32 slot;
};

/* sessionAffinity=ClientIP: 16 B key (cilium.md §3.5) -> {u64 last_used, u32 backend_id}. */
struct lb4_affinity_key {
	__be32 client_ip;
	__u32 pad0;
	__u16 rev_nat_id;
	__u8 netns_cookie;
	__u8 pad1;
	__u32 pad2;
};

struct lb_affinity_val {
	__u64 last_used;
	__u32 backend_id;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(key_size, sizeof(struct lb4_key));
	__uint(value_size, sizeof(struct lb4_service));
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_lb4_services_v2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct lb4_backend));
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_lb4_backends_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(key_size, sizeof(__u16));
	__uint(value_size, sizeof(struct lb4_reverse_nat));
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_lb4_reverse_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(key_size, sizeof(struct lb4_maglev_key));
	__uint(value_size, sizeof(__u32));
	/* 8M slots: 512 services at the default M = 16381 (allocated as used) */
	__uint(max_entries, 1 << 23);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_lb4_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(key_size, sizeof(struct lb4_affinity_key));
	__uint(value_size, sizeof(struct lb_affinity_val));
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_lb4_affinity SEC(".maps");

struct lb_result {
	__u16 rev_nat_index;
	__u16 pad;
	__u32 backend_id;
};

static __always_inline struct lb4_service *lb4_lookup_service(struct lb4_key *key, __u8 scope)
{
	struct lb4_service *svc;

	key->backend_slot = 0;
	key->scope = LB_LOOKUP_SCOPE_EXT;
	svc = bpf_map_lookup_elem(&cilium_lb4_services_v2, key);
	if (!svc)
		return NULL;
	if (scope == LB_LOOKUP_SCOPE_INT && (svc->flags2 & SVC_FLAG2_TWO_SCOPES)) {
		struct lb4_service *twin;

		key->scope = LB_LOOKUP_SCOPE_INT;
		twin = bpf_map_lookup_elem(&cilium_lb4_services_v2, key);
		if (twin)
			return twin;
		key->scope = LB_LOOKUP_SCOPE_EXT;
	}
	return svc;
}

static __always_inline __u32 lb4_hash(const struct ipv4_ct_tuple *t)
{
	/* A cheap mix of the tuple; the kernel's jhash is not available to tc programs. */
	__u32 h = t->saddr ^ (t->daddr * 2654435761u);

	h ^= ((__u32)t->sport << 16 | t->dport) * 2246822519u;
	h ^= t->nexthdr;
	h ^= h >> 15;
	h *= 2654435761u;
	return h ^ (h >> 13);
}

static __always_inline __u32 lb4_select_slot(struct lb4_key *key, const struct lb4_service *svc,
					     const struct ipv4_ct_tuple *tuple, __u32 maglev_m)
{
	struct lb4_service *slot;

	if ((svc->backend_id >> 24) == LB_ALG_MAGLEV && maglev_m) {
		struct lb4_maglev_key mk = {};
		__u32 *id;

		mk.rev_nat_index = svc->rev_nat_index;
		mk.slot = lb4_hash(tuple) % maglev_m;
		id = bpf_map_lookup_elem(&cilium_lb4_maglev, &mk);
		if (id && *id)
			return *id;
	}
	key->backend_slot = (bpf_get_prandom_u32() % svc->count) + 1;
	slot = bpf_map_lookup_elem(&cilium_lb4_services_v2, key);
	return slot ? slot->backend_id : 0;
}

/* Returns 0 (translated, or not a service) or a drop reason. */
static __always_inline int lb4_translate(struct __sk_buff *skb, __be32 saddr, __be32 *daddr,
					 __u8 proto, __u32 l4_off, struct l4_info *l4, __u8 scope,
					 int host_addr, struct lb_result *res)
{
	struct runtime_config *cfg = runtime_config();
	struct lb4_key key = {};
	struct lb4_service *svc;
	struct lb4_backend *backend = NULL;
	struct ipv4_ct_tuple stuple = {};
	struct ct_entry *sct;
	__u32 backend_id = 0;
	__be32 vip = *daddr;
	__be16 vport = l4->dport;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP_)
		return 0;
	key.address = vip;
	key.dport = vport;
	key.proto = proto;
	svc = lb4_lookup_service(&key, scope);
	if (!svc) {
		/* NodePort: any address of this node (host_addr, from the caller's cilium_lxc
		 * lookup) matches the 0.0.0.0:port surrogate. */
		if (!host_addr)
			return 0;
		key.address = 0;
		key.proto = proto;
		svc = lb4_lookup_service(&key, scope);
		if (!svc)
			return 0;
	}
	if (svc->count == 0)
		return DROP_NO_SERVICE;

	/* 3. an existing service connection keeps its backend. */
	ct_build_tuple(&stuple, saddr, vip, proto, l4);
	stuple.flags = TUPLE_F_SERVICE;
	sct = bpf_map_lookup_elem(ct_map(proto), &stuple);
	if (sct) {
		backend_id = (__u32)sct->backend_id;
		backend = bpf_map_lookup_elem(&cilium_lb4_backends_v3, &backend_id);
	}
	/* 4. affinity, Maglev or random. */
	if (!backend && (svc->flags & SVC_FLAG_AFFINITY)) {
		struct lb4_affinity_key ak = {};
		struct lb_affinity_val *av;

		ak.client_ip = saddr;
		ak.rev_nat_id = svc->rev_nat_index;
		av = bpf_map_lookup_elem(&cilium_lb4_affinity, &ak);
		if (av && bpf_ktime_get_ns() - av->last_used <
				  (__u64)(svc->backend_id & 0xFFFFFF) * 1000000000ULL) {
			backend_id = av->backend_id;
			backend = bpf_map_lookup_elem(&cilium_lb4_backends_v3, &backend_id);
		}
	}
	if (!backend) {
		backend_id = lb4_select_slot(&key, svc, &stuple, cfg ? cfg->maglev_m : 0);
		backend = bpf_map_lookup_elem(&cilium_lb4_backends_v3, &backend_id);
		if (!backend)
			return DROP_NO_SERVICE;
	}
	if (svc->flags & SVC_FLAG_AFFINITY) {
		struct lb4_affinity_key ak = {};
		struct lb_affinity_val av = {};

		ak.client_ip = saddr;
		ak.rev_nat_id = svc->rev_nat_index;
		av.last_used = bpf_ktime_get_ns();
		av.backend_id = backend_id;
		bpf_map_update_elem(&cilium_lb4_affinity, &ak, &av, BPF_ANY);
	}
	if (!sct || (__u32)sct->backend_id != backend_id)
		ct_create4(&stuple, 0, svc->rev_nat_index, backend_id, l4->tcp_flags, 0);

	/* 5. DNAT. */
	if (backend->address != vip &&
	    csum_rewrite_addr(skb, IP_DST_OFF, vip, backend->address, proto, l4_off) < 0)
		return DROP_CSUM_L3;
	if (backend->port && backend->port != vport) {
		if (csum_rewrite_port(skb, l4_off, 2, vport, backend->port, proto) < 0)
			return DROP_CSUM_L4;
		l4->dport = backend->port;
	}
	*daddr = backend->address;
	res->rev_nat_index = svc->rev_nat_index;
	res->backend_id = backend_id;
	return 0;
}

#endif /* CILIATE_LB_H */
