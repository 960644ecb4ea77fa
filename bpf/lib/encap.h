/* SPDX-License-Identifier: Apache-2.0 */
/* encap.h: local delivery and VXLAN encapsulation, the two ways a packet leaves a program
 * towards a pod.  Shared by cil_from_container, cil_from_overlay and cil_from_host. */
#ifndef CILIATE_ENCAP_H
#define CILIATE_ENCAP_H

#include "common.h"
#include "eth.h"
#include "maps.h"
#include "trace.h"

/* Local delivery: rewrite MACs (dst = pod MAC, src = the lxc MAC of the destination) and
 * redirect to the destination lxc; leaving the host side of a veth pair delivers into the
 * pod.  No checksum covers the Ethernet header, so none needs fixing. */
static __always_inline int deliver_local(struct __sk_buff *skb, const struct endpoint_info *ep)
{
	if (eth_store_macs(skb, &ep->mac, &ep->node_mac) < 0)
		return -1;
	return bpf_redirect(ep->ifindex, 0);
}

/* The same from a tc ingress hook: bpf_redirect_peer hands the packet straight to the
 * ingress of the pod's eth0 (the lxc's peer), skipping the lxc's transmit path and the
 * per-CPU backlog — what Cilium does for local delivery, and what keeps pod-to-pod close
 * to a plain veth pair. */
static __always_inline int deliver_local_peer(struct __sk_buff *skb,
					      const struct endpoint_info *ep)
{
	if (eth_store_macs(skb, &ep->mac, &ep->node_mac) < 0)
		return -1;
	return bpf_redirect_peer(ep->ifindex, 0);
}

/* Tunnel to a remote node: the VNI carries the source identity (cilium.md §4), the outer
 * destination is the node IP from the ipcache; cilium_vxlan (external/collect_md) builds the
 * outer headers. */
static __always_inline int encap_vxlan(struct __sk_buff *skb, __be32 tunnel_endpoint,
				       __u32 src_identity, __u32 vxlan_ifindex)
{
	struct bpf_tunnel_key key = {};

	key.tunnel_id = src_identity & 0xFFFFFF;
	key.remote_ipv4 = bpf_ntohl(tunnel_endpoint);
	key.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &key, offsetof(struct bpf_tunnel_key, tunnel_label) + 4,
				   BPF_F_ZERO_CSUM_TX) < 0)
		return -1;
	return bpf_redirect(vxlan_ifindex, 0);
}

/* Send a packet out of the device the routing table picks, without the stack's input path:
 * needed for reverse-NATed replies whose new source is this node's own address (the input
 * route check would drop a packet arriving with a local source as martian).  Resolves the
 * neighbour like bpf_redirect_neigh (Cilium's fib_redirect in fib.h).  Returns a tc verdict
 * or -1 when the FIB has no route (the caller passes the packet to the stack then). */
static __always_inline int fib_redirect_v4(struct __sk_buff *skb, __be32 saddr, __be32 daddr)
{
	struct bpf_fib_lookup fib = {};
	int ret;

	fib.family = 2; /* AF_INET */
	fib.ipv4_src = saddr;
	fib.ipv4_dst = daddr;
	fib.ifindex = skb->ingress_ifindex;
	ret = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (ret == BPF_FIB_LKUP_RET_SUCCESS) {
		if (bpf_skb_store_bytes(skb, 0, fib.dmac, ETH_ALEN, 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_ALEN, fib.smac, ETH_ALEN, 0) < 0)
			return -1;
		return bpf_redirect(fib.ifindex, 0);
	}
	if (ret == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
	return -1;
}

#endif /* CILIATE_ENCAP_H */
