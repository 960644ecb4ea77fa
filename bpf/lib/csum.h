/* SPDX-License-Identifier: Apache-2.0 */
/* csum.h: checksum offsets for address/port rewrites (DNAT and reverse NAT).
 *
 * bpf_l3_csum_replace fixes the IPv4 header checksum; bpf_l4_csum_replace fixes the TCP or
 * UDP checksum, with BPF_F_PSEUDO_HDR when an address (part of the pseudo header) changes
 * and BPF_F_MARK_MANGLED_0 for UDP, whose zero checksum means "none".
 */
#ifndef CILIATE_CSUM_H
#define CILIATE_CSUM_H

#include "common.h"
#include <linux/tcp.h>
#include <linux/udp.h>

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_DST_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))
#define IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))

/* Offset of the L4 checksum field for proto, or 0 when it has none we maintain. */
static __always_inline __u32 l4_csum_off(__u8 proto, __u32 l4_off)
{
	if (proto == IPPROTO_TCP)
		return l4_off + offsetof(struct tcphdr, check);
	if (proto == IPPROTO_UDP)
		return l4_off + offsetof(struct udphdr, check);
	return 0;
}

static __always_inline __u64 l4_csum_flags(__u8 proto)
{
	return proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* Rewrite a 4-byte address at off (IP_SRC_OFF or IP_DST_OFF) with both checksums fixed. */
static __always_inline int csum_rewrite_addr(struct __sk_buff *skb, __u32 off, __be32 old,
					     __be32 new, __u8 proto, __u32 l4_off)
{
	__u32 csum_off = l4_csum_off(proto, l4_off);

	if (csum_off &&
	    bpf_l4_csum_replace(skb, csum_off, old, new,
				BPF_F_PSEUDO_HDR | sizeof(new) | l4_csum_flags(proto)) < 0)
		return -1;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old, new, sizeof(new)) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, off, &new, sizeof(new), 0) < 0)
		return -1;
	return 0;
}

/* Rewrite a port at l4_off + port_off (0 source, 2 destination) with the L4 checksum fixed. */
static __always_inline int csum_rewrite_port(struct __sk_buff *skb, __u32 l4_off, __u32 port_off,
					     __be16 old, __be16 new, __u8 proto)
{
	__u32 csum_off = l4_csum_off(proto, l4_off);

	if (old == new)
		return 0;
	if (csum_off &&
	    bpf_l4_csum_replace(skb, csum_off, old, new, sizeof(new) | l4_csum_flags(proto)) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, l4_off + port_off, &new, sizeof(new), 0) < 0)
		return -1;
	return 0;
}

#endif /* CILIATE_CSUM_H */
