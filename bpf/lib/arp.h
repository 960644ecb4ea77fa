/* SPDX-License-Identifier: Apache-2.0 */
/* arp.h: the ARP responder on the lxc side.
 *
 * A pod's only route is `default via <cilium_host IP> dev eth0`, so the first thing it does
 * is ARP for the gateway.  As in Cilium (bpf_lxc.c, tail_handle_arp), cil_from_container
 * answers every ARP request from the pod — whatever the target IP — with the MAC of the
 * pod's lxc device, taken from the source endpoint's cilium_lxc entry (node_mac), and sends
 * the reply straight back into the pod.  Gratuitous ARP (target == sender) is passed on.
 */
#ifndef CILIATE_ARP_H
#define CILIATE_ARP_H

#include "common.h"
#include "eth.h"
#include "maps.h"

/* linux/if_arp.h pulls in libc headers: the constants we need, from RFC 826. */
#define ARPHRD_ETHER 1
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2

struct arp_eth {
	__be16 ar_hrd;
	__be16 ar_pro;
	__u8 ar_hln;
	__u8 ar_pln;
	__be16 ar_op;
	__u8 ar_sha[ETH_ALEN];
	__be32 ar_sip;
	__u8 ar_tha[ETH_ALEN];
	__be32 ar_tip;
} __attribute__((packed));

/* Returns 1 when the packet is an ARP request to answer, with the sender and target addresses set. */
static __always_inline int arp_check(struct __sk_buff *skb, struct arp_eth *arp)
{
	if (bpf_skb_load_bytes(skb, ETH_HLEN, arp, sizeof(*arp)) < 0)
		return 0;
	if (arp->ar_hrd != bpf_htons(ARPHRD_ETHER) || arp->ar_pro != bpf_htons(ETH_P_IP) ||
	    arp->ar_hln != ETH_ALEN || arp->ar_pln != 4 || arp->ar_op != bpf_htons(ARPOP_REQUEST))
		return 0;
	return arp->ar_sip != arp->ar_tip;
}

/* Turn the request into the reply in place and send it back where it came from: from an
 * lxc's ingress, out of the lxc (into the pod); from cilium_host's egress, into
 * cilium_host's ingress (redirect_flags BPF_F_INGRESS). */
static __always_inline int arp_respond(struct __sk_buff *skb, struct arp_eth *arp,
				       const mac_t *lxc_mac, __u64 redirect_flags)
{
	struct arp_eth reply = {};
	__u8 smac[ETH_ALEN];

	__builtin_memcpy(smac, arp->ar_sha, ETH_ALEN);
	reply.ar_hrd = arp->ar_hrd;
	reply.ar_pro = arp->ar_pro;
	reply.ar_hln = ETH_ALEN;
	reply.ar_pln = 4;
	reply.ar_op = bpf_htons(ARPOP_REPLY);
	__builtin_memcpy(reply.ar_sha, lxc_mac, ETH_ALEN);
	reply.ar_sip = arp->ar_tip;
	__builtin_memcpy(reply.ar_tha, smac, ETH_ALEN);
	reply.ar_tip = arp->ar_sip;
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &reply, sizeof(reply), 0) < 0)
		return CTX_ACT_DROP;
	if (bpf_skb_store_bytes(skb, 0, smac, ETH_ALEN, 0) < 0)
		return CTX_ACT_DROP;
	if (bpf_skb_store_bytes(skb, ETH_ALEN, lxc_mac, ETH_ALEN, 0) < 0)
		return CTX_ACT_DROP;
	return bpf_redirect(skb->ifindex, redirect_flags);
}

#endif /* CILIATE_ARP_H */
