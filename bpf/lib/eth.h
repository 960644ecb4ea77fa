/* SPDX-License-Identifier: Apache-2.0 */
/* eth.h: Ethernet header access and MAC rewriting.
 *
 * Cilium stores MACs in its maps as a u64 whose lowest byte is MAC byte 0 (mac_t), so the
 * first six bytes of the field in memory are the address in wire order: we copy them as is.
 */
#ifndef CILIATE_ETH_H
#define CILIATE_ETH_H

#include "common.h"

typedef __u64 mac_t;

/* Rewrite destination and source MAC: the only change local delivery needs (no checksum
 * covers the Ethernet header), in one store: each helper call makes the header writable
 * again. */
static __always_inline int eth_store_macs(struct __sk_buff *skb, const mac_t *dst, const mac_t *src)
{
	__u8 macs[2 * ETH_ALEN];

	__builtin_memcpy(macs, dst, ETH_ALEN);
	__builtin_memcpy(macs + ETH_ALEN, src, ETH_ALEN);
	return bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0) < 0 ? -1 : 0;
}

static __always_inline int eth_is_bcast(const __u8 *mac)
{
	return (mac[0] & mac[1] & mac[2] & mac[3] & mac[4] & mac[5]) == 0xff;
}

#endif /* CILIATE_ETH_H */
