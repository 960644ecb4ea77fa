/* SPDX-License-Identifier: Apache-2.0 */
/* maps.h: the endpoint map, the ipcache and the node's runtime configuration.
 *
 * Every map is pinned by name (LIBBPF_PIN_BY_NAME) under the node's pin directory
 * /sys/fs/bpf/ciliate/<cluster-tag>/<node>/tc/globals, so the three objects of a node share
 * one instance and a reload adopts the existing maps with their contents.  Layouts are
 * Cilium's (cilium.md §3.1, §3.2) and are checked against the Python codecs
 * (src/ciliate/codec.py STRUCT_LAYOUTS) by tests/unit/datapath/linux/test_layout.py.
 *
 * Maps are declared with key_size/value_size rather than __type(): they then carry no BTF
 * types, so `bpftool map lookup pinned ... key hex ...` answers in raw hex bytes as the
 * networking101 walkthrough shows, instead of a decoded struct.
 */
#ifndef CILIATE_MAPS_H
#define CILIATE_MAPS_H

#include "common.h"
#include "eth.h"

#define ENDPOINT_KEY_IPV4 1
#define ENDPOINT_F_HOST 0x1

/* cilium_lxc key: 20 B, packed.
 *   0 ip4/ip6 (16) | 16 family | 17 key | 18 cluster_id (u16) */
struct endpoint_key {
	union {
		__be32 ip4;
		__u8 ip6[16];
	};
	__u8 family;
	__u8 key;
	__u16 cluster_id;
} __attribute__((packed));

/* cilium_lxc value: 48 B.
 *   0 ifindex | 4 unused | 6 lxc_id | 8 flags | 12 pad | 16 mac | 24 node_mac | 32 sec_id
 *   36 parent_ifindex | 40 pad[2] */
struct endpoint_info {
	__u32 ifindex;
	__u16 unused;
	__u16 lxc_id;
	__u32 flags;
	__u32 pad0;
	mac_t mac;
	mac_t node_mac;
	__u32 sec_id;
	__u32 parent_ifindex;
	__u32 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(key_size, sizeof(struct endpoint_key));
	__uint(value_size, sizeof(struct endpoint_info));
	__uint(max_entries, 65535);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_lxc SEC(".maps");

/* cilium_ipcache key: 24 B, packed, LPM.  prefixlen counts the 32 static bits of
 * cluster_id/pad1/family plus the address prefix (a v4 /32 is 64).
 *   0 prefixlen | 4 cluster_id | 6 pad1 | 7 family | 8 ip4/ip6 (16) */
struct ipcache_key {
	__u32 prefixlen;
	__u16 cluster_id;
	__u8 pad1;
	__u8 family;
	union {
		__be32 ip4;
		__u8 ip6[16];
	};
} __attribute__((packed));

#define IPCACHE_STATIC_PREFIX 32

/* cilium_ipcache value (the cilium_ipcache layout of Cilium ≤1.17 with a 4-byte tunnel
 * endpoint, as the networking101 walkthrough reads it): 12 B.
 *   0 sec_identity | 4 tunnel_endpoint (be32) | 8 pad | 10 key | 11 flags */
struct remote_endpoint_info {
	__u32 sec_identity;
	__be32 tunnel_endpoint;
	__u16 pad;
	__u8 key;
	__u8 flags;
};

#define IPCACHE_F_SKIP_TUNNEL 0x1
#define IPCACHE_F_HAS_TUNNEL_EP 0x2

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(key_size, sizeof(struct ipcache_key));
	__uint(value_size, sizeof(struct remote_endpoint_info));
	__uint(max_entries, 512000);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_ipcache SEC(".maps");

/* cilium_runtime_config: one ARRAY slot with what Cilium compiles into each object
 * (node_config.h): filled by the agent, read by every program.  32 B.
 *   0 node_ip | 4 host_ip | 8 host_ifindex | 12 vxlan_ifindex | 16 flags | 20 maglev_m
 *   24 host_mac */
struct runtime_config {
	__be32 node_ip;
	__be32 host_ip;
	__u32 host_ifindex;
	__u32 vxlan_ifindex;
	__u32 flags;
	__u32 maglev_m;
	mac_t host_mac;
};

/* flags: enforce the policy map (issue 6); without it every endpoint allows all. */
#define RUNTIME_F_POLICY 0x1
/* flags: run the service load balancer on pod egress and on the node device. */
#define RUNTIME_F_LB 0x2

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct runtime_config));
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_runtime_config SEC(".maps");

/* cilium_policy_rev: one u32, bumped by the agent after every batch of policy map changes
 * on this node (ciliate's; Cilium looks policy up on every packet instead).  Conntrack
 * entries remember the revision they were last checked at (conntrack.h), so an
 * established flow is checked again, once, after each policy change. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_policy_rev SEC(".maps");

static __always_inline __u32 policy_revision(void)
{
	__u32 zero = 0;
	__u32 *rev = bpf_map_lookup_elem(&cilium_policy_rev, &zero);

	return rev ? *rev : 0;
}

static __always_inline struct runtime_config *runtime_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&cilium_runtime_config, &zero);
}

static __always_inline struct endpoint_info *lookup_endpoint(__be32 ip4)
{
	struct endpoint_key key = {};

	key.ip4 = ip4;
	key.family = ENDPOINT_KEY_IPV4;
	return bpf_map_lookup_elem(&cilium_lxc, &key);
}

static __always_inline struct remote_endpoint_info *lookup_ipcache(__be32 ip4)
{
	struct ipcache_key key = {};

	key.prefixlen = IPCACHE_STATIC_PREFIX + 32;
	key.family = ENDPOINT_KEY_IPV4;
	key.ip4 = ip4;
	return bpf_map_lookup_elem(&cilium_ipcache, &key);
}

/* Identity of an address: the ipcache's, world when only 0.0.0.0/0 (or nothing) matches. */
static __always_inline __u32 resolve_identity(__be32 ip4)
{
	struct remote_endpoint_info *info = lookup_ipcache(ip4);

	return info ? info->sec_identity : WORLD_ID;
}

#endif /* CILIATE_MAPS_H */
