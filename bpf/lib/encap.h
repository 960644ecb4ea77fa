/* SPDX-License-Identifier: Apache-2.0 */
/* encap.h: local delivery and VXLAN encapsulation, the two ways a packet leaves a program
 * towards a pod.  Shared by cil_from_container, cil_from_overlay and cil_from_host. */
#ifndef CILIATE_ENCAP_H
#define CILIATE_ENCAP_H

#include "common.h"
#include "eth.h"
#include "maps.h"
#include "trace.h"
#include "l4.h"

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

/* The VXLAN port (Cilium's; RFC 7348 registers 4789) and header (RFC 7348 §5). */
#define VXLAN_PORT 8472
#define VXLAN_HLEN 8
#define VXLAN_F_VNI 0x08 /* the I flag: the VNI is valid */

/* What encapsulation adds in front of the inner IPv4 header: outer IPv4 (no options),
 * UDP, VXLAN and the inner Ethernet header (the outer Ethernet header is the packet's
 * own, rewritten). */
#define VXLAN_ENCAP_LEN (sizeof(struct iphdr) + sizeof(struct udphdr) + VXLAN_HLEN + ETH_HLEN)

struct vxlan_encap_hdr {
	struct iphdr ip;
	struct udphdr udp;
	__be32 vx_flags;
	__be32 vx_vni;
	struct ethhdr inner;
} __attribute__((packed));

static __always_inline __u16 csum_fold_diff(__s64 sum)
{
	__u32 s = (__u32)sum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* The inner IPv4 length of one packet on the wire: the packet's, or for a GSO packet one
 * segment's (gso_size plus the IPv4 and TCP/UDP headers).  -1: not IPv4 TCP/UDP GSO. */
static __always_inline int inner_wire_len(struct __sk_buff *skb, __u32 *len)
{
	struct iphdr ip;
	__u8 doff;
	__u32 hlen;

	if (!skb->gso_size) {
		*len = skb->len - ETH_HLEN;
		return 0;
	}
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return -1;
	hlen = ip.ihl * 4;
	if (ip.protocol == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + hlen + 12, &doff, 1) < 0)
			return -1;
		hlen += (doff >> 4) * 4;
	} else if (ip.protocol == IPPROTO_UDP) {
		hlen += sizeof(struct udphdr);
	} else {
		return -1;
	}
	*len = skb->gso_size + hlen;
	return 0;
}

/* Out of the device a FIB lookup chose (its verdict in fib_ret: SUCCESS or NO_NEIGH):
 * the MACs it resolved written, or the neighbour left to bpf_redirect_neigh (Cilium's
 * fib_redirect in fib.h).  Returns a tc verdict, or -1 when the MACs could not be
 * written. */
static __always_inline int fib_redirect_to(struct __sk_buff *skb,
					   const struct bpf_fib_lookup *fib, int fib_ret)
{
	if (fib_ret == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(fib->ifindex, NULL, 0, 0);
	if (bpf_skb_store_bytes(skb, 0, fib->dmac, ETH_ALEN, 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, fib->smac, ETH_ALEN, 0) < 0)
		return -1;
	return bpf_redirect(fib->ifindex, 0);
}

/* Native encapsulation (decision 0011): the program builds the VXLAN headers itself
 * (bpf_skb_adjust_room, the flags Cilium's native tunnel uses) and sends the packet out of
 * the device the FIB picks toward the far node, instead of handing it to cilium_vxlan.
 * The wire format is the device's: UDP 8472, zero UDP checksum, VNI = the source identity,
 * the inner frame as the pod sent it.  Saves the device's transmit (route lookup without a
 * cache, the tunnel transmit, the local output path): ~0.3 µs per packet here.
 * Returns a tc verdict; -1 when it does not apply (nothing changed: not IPv4 TCP/UDP/ICMP,
 * no route, or a packet that would not fit the path MTU once encapsulated — those take
 * the device, which fragments the outer packet); -2 when the packet was changed and could
 * not be finished (the caller drops it). */
static __always_inline int encap_vxlan_native(struct __sk_buff *skb, __be32 tunnel_endpoint,
					      __u32 src_identity)
{
	struct runtime_config *cfg = runtime_config();
	struct bpf_fib_lookup fib = {};
	struct vxlan_encap_hdr h = {};
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_NO_CSUM_RESET |
		      BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
		      BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN);
	__u32 len = skb->len, wire, hash;
	int fib_ret;

	if (!cfg || !cfg->node_ip || skb->protocol != bpf_htons(ETH_P_IP))
		return -1;
	if (inner_wire_len(skb, &wire) < 0)
		return -1;
	fib.family = 2; /* AF_INET */
	fib.ipv4_src = cfg->node_ip;
	fib.ipv4_dst = tunnel_endpoint;
	fib.tot_len = wire + VXLAN_ENCAP_LEN; /* FRAG_NEEDED above the path MTU */
	fib.ifindex = skb->ifindex;
	fib_ret = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (fib_ret != BPF_FIB_LKUP_RET_SUCCESS && fib_ret != BPF_FIB_LKUP_RET_NO_NEIGH)
		return -1;
	if (bpf_skb_load_bytes(skb, 0, &h.inner, ETH_HLEN) < 0)
		return -1;
	hash = bpf_get_hash_recalc(skb);
	if (bpf_skb_adjust_room(skb, VXLAN_ENCAP_LEN, BPF_ADJ_ROOM_MAC, flags) < 0)
		return -1;
	h.ip.version = 4;
	h.ip.ihl = 5;
	h.ip.ttl = 64;
	h.ip.protocol = IPPROTO_UDP;
	h.ip.id = (__be16)hash;
	h.ip.saddr = cfg->node_ip;
	h.ip.daddr = tunnel_endpoint;
	h.ip.tot_len = bpf_htons(len - ETH_HLEN + VXLAN_ENCAP_LEN);
	h.ip.check = csum_fold_diff(bpf_csum_diff(0, 0, (__be32 *)&h, sizeof(struct iphdr), 0));
	/* the source port spreads flows as the kernel's udp_flow_src_port does */
	h.udp.source = bpf_htons((__u16)((hash >> 16) | 0x8000));
	h.udp.dest = bpf_htons(VXLAN_PORT);
	h.udp.len = bpf_htons(len - ETH_HLEN + VXLAN_ENCAP_LEN - sizeof(struct iphdr));
	h.vx_flags = bpf_htonl((__u32)VXLAN_F_VNI << 24);
	h.vx_vni = bpf_htonl((src_identity & 0xFFFFFF) << 8);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0) < 0)
		return -2;
	fib_ret = fib_redirect_to(skb, &fib, fib_ret);
	return fib_ret < 0 ? -2 : fib_ret;
}

/* Tunnel to a remote node: the VNI carries the source identity (cilium.md §4), the outer
 * destination is the node IP from the ipcache.  Built natively when it can be (above);
 * otherwise cilium_vxlan (external/collect_md) builds the outer headers from the tunnel
 * key.  Returns a tc verdict or -1 (the caller drops). */
static __always_inline int encap_vxlan(struct __sk_buff *skb, __be32 tunnel_endpoint,
				       __u32 src_identity, __u32 vxlan_ifindex)
{
	struct bpf_tunnel_key key = {};
	int ret;

	ret = encap_vxlan_native(skb, tunnel_endpoint, src_identity);
	if (ret >= 0)
		return ret;
	if (ret == -2)
		return -1;
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
	if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH)
		return -1;
	return fib_redirect_to(skb, &fib, ret);
}

#endif /* CILIATE_ENCAP_H */
