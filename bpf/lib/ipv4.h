/* SPDX-License-Identifier: Apache-2.0 */
/* ipv4.h: IPv4 header parsing with the bounds checks the verifier needs. */
#ifndef CILIATE_IPV4_H
#define CILIATE_IPV4_H

#include "common.h"

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

/* Returns the IPv4 header behind the Ethernet header, or NULL when the packet is short. */
static __always_inline struct iphdr *ipv4_hdr(struct __sk_buff *skb, void **data_end_out)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip4 = data + ETH_HLEN;

	*data_end_out = data_end;
	if ((void *)(ip4 + 1) > data_end)
		return NULL;
	if (ip4->ihl < 5)
		return NULL;
	return ip4;
}

static __always_inline int ipv4_hdrlen(const struct iphdr *ip4)
{
	return ip4->ihl * 4;
}

/* A non-first fragment carries no L4 header: ports are unknown. */
static __always_inline int ipv4_is_fragment(const struct iphdr *ip4)
{
	return ip4->frag_off & bpf_htons(IP_OFFSET);
}

/* Any fragment, the first one (more fragments, offset 0) included: a packet that is only
 * whole after reassembly. */
static __always_inline int ipv4_is_any_fragment(const struct iphdr *ip4)
{
	return ip4->frag_off & bpf_htons(IP_MF | IP_OFFSET);
}

#endif /* CILIATE_IPV4_H */
