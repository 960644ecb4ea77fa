/* SPDX-License-Identifier: Apache-2.0 */
/* policy.h: endpoint policy enforcement (cilium.md §3.3, §6).
 *
 * Deviation from Cilium, on purpose: Cilium keeps one LPM map per endpoint
 * (cilium_policy_v2_NNNNN) and reaches it through a tail call per endpoint.  Swapping or
 * creating inner maps costs ~15 ms on this kernel, so ciliate keeps ONE shared LPM map,
 * cilium_policy_v2, whose key is Cilium's policy_key prefixed by the endpoint ID.  The
 * endpoint ID and the identity/direction are always fully specified (72 static bits); the
 * protocol and port bits carry the same prefix semantics as Cilium's key.  The CLI and
 * maps.py present per-endpoint views named cilium_policy_v2_NNNNN with Cilium's 12-byte
 * key (docs/decisions/0002-bpf-maps.md).
 *
 * Lookup (__policy_can_access, numbered as in cilium.md §3.3):
 *   1. exact key {endpoint, remote identity, direction, proto, dport} with full prefix;
 *   2. an L3 hit that denies -> DROP_POLICY_DENY (181);
 *   3. the L4-only lookup (identity 0): chosen if it denies, if there is no L3 hit, or if
 *      its proto/port prefix is longer; otherwise the L3 entry;
 *   4. nothing -> DROP_POLICY (133);
 *   5. an allow with auth -> DROP_POLICY_AUTH_REQUIRED (189); an allow that redirects to
 *      an L7 proxy: the caller gets the proxy port (policy_can_access_proxy, reported as
 *      the verdict, as Cilium does) and hands the connection to the proxy (proxy.h);
 *      a caller that cannot (policy_can_access) drops with DROP_PROXY_UNSUPPORTED (180).
 */
#ifndef CILIATE_POLICY_H
#define CILIATE_POLICY_H

#include "common.h"
#include "drop.h"
#include "conntrack.h"

/* Shared-map key: 16 B.
 *   0 prefixlen | 4 endpoint_id | 8 sec_label | 12 egress | 13 protocol | 14 dport (be16)
 * Bytes 8..15 are Cilium's policy_key after its prefixlen word; prefixlen is Cilium's + 32. */
struct policy_key {
	__u32 prefixlen;
	__u32 endpoint_id;
	__u32 sec_label;
	__u8 egress;
	__u8 protocol;
	__be16 dport;
};

#define POLICY_FULL_PREFIX (32 + 32 + 8 + 8 + 16)

/* policy_entry, Cilium 1.18: 12 B.
 *   0 proxy_port (be16) | 2 deny:1 reserved:2 lpm_prefix_length:5 | 3 auth_type:7
 *   has_explicit_auth_type:1 | 4 proxy_port_priority | 5 pad[3] | 8 cookie */
struct policy_entry {
	__be16 proxy_port;
	__u8 deny : 1, reserved : 2, lpm_prefix_length : 5;
	__u8 auth_type : 7, has_explicit_auth_type : 1;
	__u8 proxy_port_priority;
	__u8 pad[3];
	__u32 cookie;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(key_size, sizeof(struct policy_key));
	__uint(value_size, sizeof(struct policy_entry));
	/* all endpoints of the node share it (Cilium: 16384 per endpoint) */
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_policy_v2 SEC(".maps");

/* Match types reported in policy verdicts (cilium.md §3.3 step 6). */
#define POLICY_MATCH_NONE 0
#define POLICY_MATCH_L3_ONLY 1
#define POLICY_MATCH_L3_L4 2
#define POLICY_MATCH_L4_ONLY 3
#define POLICY_MATCH_ALL 4
#define POLICY_MATCH_L3_PROTO 5
#define POLICY_MATCH_PROTO_ONLY 6

static __always_inline __u8 policy_match_type(const struct policy_entry *e, int l3)
{
	if (e->lpm_prefix_length > 8)
		return l3 ? POLICY_MATCH_L3_L4 : POLICY_MATCH_L4_ONLY;
	if (e->lpm_prefix_length == 8)
		return l3 ? POLICY_MATCH_L3_PROTO : POLICY_MATCH_PROTO_ONLY;
	return l3 ? POLICY_MATCH_L3_ONLY : POLICY_MATCH_ALL;
}

/* Returns 0 to allow or a positive drop reason, and reports the verdict.  An allow
 * through the L7 proxy sets *proxy_port (host order) when proxy_port is not NULL, else
 * drops with DROP_PROXY_UNSUPPORTED. */
static __always_inline int policy_can_access_proxy(struct __sk_buff *skb, __u16 endpoint_id,
						   __u32 remote_id, __u8 egress, __u8 proto,
						   __be16 dport, __u16 *proxy_port)
{
	struct policy_key key = {};
	struct policy_entry *l3, *l4, *chosen;
	int ret = 0;

	key.prefixlen = POLICY_FULL_PREFIX;
	key.endpoint_id = endpoint_id;
	key.sec_label = remote_id;
	key.egress = egress;
	key.protocol = proto;
	key.dport = dport;
	l3 = bpf_map_lookup_elem(&cilium_policy_v2, &key);
	key.sec_label = 0;
	l4 = bpf_map_lookup_elem(&cilium_policy_v2, &key);
	/* 2.-3. a deny wins, the L3 one first; then the longer proto/port prefix, L3 on a tie */
	if (l3 && l3->deny)
		chosen = l3;
	else if (l4 && l4->deny)
		chosen = l4;
	else if (l4 && (!l3 || l4->lpm_prefix_length > l3->lpm_prefix_length))
		chosen = l4;
	else
		chosen = l3;
	if (!chosen) {
		send_policy_verdict(skb, endpoint_id, remote_id, egress, proto, dport,
				    POLICY_MATCH_NONE, -DROP_POLICY, 0, 0);
		return DROP_POLICY;
	}
	if (chosen->deny)
		ret = DROP_POLICY_DENY;
	else if (chosen->auth_type)
		ret = DROP_POLICY_AUTH_REQUIRED;
	else if (chosen->proxy_port && (!proxy_port || proto != IPPROTO_TCP))
		ret = DROP_PROXY_UNSUPPORTED;
	else if (chosen->proxy_port)
		*proxy_port = bpf_ntohs(chosen->proxy_port);
	send_policy_verdict(skb, endpoint_id, remote_id, egress, proto, dport,
			    policy_match_type(chosen, chosen == l3),
			    ret ? -ret : (__s32)bpf_ntohs(chosen->proxy_port), chosen->auth_type,
			    chosen->cookie);
	return ret;
}

static __always_inline int policy_can_access(struct __sk_buff *skb, __u16 endpoint_id,
					     __u32 remote_id, __u8 egress, __u8 proto,
					     __be16 dport)
{
	return policy_can_access_proxy(skb, endpoint_id, remote_id, egress, proto, dport, NULL);
}

/* The destination's ingress check of a local delivery (cil_from_container to a pod of this
 * node, and the overlay's receive): a new connection, or an established one the policy
 * changed under since it was last allowed (conntrack.h), whose pass is then recorded.
 * Returns 0 or a drop reason (the caller reports it, so the drop names its own line);
 * *proxy_port: the L7 redirect of the chosen entry. */
static __always_inline int policy_ingress_check(struct __sk_buff *skb,
						const struct endpoint_info *dst, __u32 src_id,
						__u8 proto, __be16 dport, const struct ct_result *ct,
						const struct ipv4_ct_tuple *tuple, __u32 flags,
						__u16 *proxy_port)
{
	int ret;

	if (!(ct->status == CT_NEW || ct->policy_stale) || !(flags & RUNTIME_F_POLICY))
		return 0;
	ret = policy_can_access_proxy(skb, dst->lxc_id, src_id, 0, proto, dport, proxy_port);
	if (ret)
		return ret;
	if (ct->policy_stale)
		ct_policy_checked4(tuple);
	return 0;
}

#endif /* CILIATE_POLICY_H */
