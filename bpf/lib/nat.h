/* SPDX-License-Identifier: Apache-2.0 */
/* nat.h: reverse NAT of service replies.  A reply of a load-balanced connection leaves the
 * backend with the backend's address; the connection's CT entry holds the service's
 * rev_nat_index, and cilium_lb4_reverse_nat gives the frontend address and port to put back
 * as the source, so the client sees the address it connected to. */
#ifndef CILIATE_NAT_H
#define CILIATE_NAT_H

#include "common.h"
#include "csum.h"
#include "lb.h"
#include "drop.h"

/* Returns 0 or a drop reason; *saddr is updated to the frontend address. */
static __always_inline int lb4_rev_nat(struct __sk_buff *skb, __u16 rev_nat_index, __u8 proto,
				       __u32 l4_off, __be32 *saddr)
{
	struct lb4_reverse_nat *nat;
	struct runtime_config *cfg;
	__be32 addr;
	__be16 old_port;

	nat = bpf_map_lookup_elem(&cilium_lb4_reverse_nat, &rev_nat_index);
	if (!nat)
		return 0;
	addr = nat->address;
	if (!addr) {
		/* The NodePort surrogate 0.0.0.0:port: the client reached this node's IP. */
		cfg = runtime_config();
		if (!cfg)
			return 0;
		addr = cfg->node_ip;
	}
	if (addr != *saddr) {
		if (csum_rewrite_addr(skb, IP_SRC_OFF, *saddr, addr, proto, l4_off) < 0)
			return DROP_CSUM_L3;
		*saddr = addr;
	}
	if (nat->port && (proto == IPPROTO_TCP || proto == IPPROTO_UDP)) {
		if (bpf_skb_load_bytes(skb, l4_off, &old_port, sizeof(old_port)) < 0)
			return DROP_INVALID;
		if (csum_rewrite_port(skb, l4_off, 0, old_port, nat->port, proto) < 0)
			return DROP_CSUM_L4;
	}
	return 0;
}

#endif /* CILIATE_NAT_H */
