/* SPDX-License-Identifier: Apache-2.0 */
/* l4.h: the L4 summary a program needs: ports (ICMP echo id as a port, as Cilium's
 * conntrack does) and TCP flags. */
#ifndef CILIATE_L4_H
#define CILIATE_L4_H

#include "common.h"
#include <linux/tcp.h>
#include <linux/udp.h>

/* linux/icmp.h pulls in libc headers through linux/if.h: declare the echo header here. */
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8

struct icmp_echo_hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 sequence;
};

#define IPPROTO_SCTP_ 132

/* TCP flag bits as in the header's 13th byte. */
#define TCP_FLAG_FIN_ 0x01
#define TCP_FLAG_SYN_ 0x02
#define TCP_FLAG_RST_ 0x04
#define TCP_FLAG_PSH_ 0x08
#define TCP_FLAG_ACK_ 0x10

struct l4_info {
	__be16 sport;
	__be16 dport;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 is_icmp_reply;
	__u8 pad;
};

/* Fill *l4 from the header at l4_off.  ICMP echo: the identifier stands in for the ports
 * (source side for requests, destination side for replies) so that a request and its reply
 * map to one conntrack entry.  Returns 0, or -1 when the header is truncated. */
static __always_inline int l4_load(struct __sk_buff *skb, __u32 l4_off, __u8 proto,
				   struct l4_info *l4)
{
	__be16 frag_off;

	__builtin_memset(l4, 0, sizeof(*l4));
	/* A non-first fragment carries no L4 header: its ports are unknown (0), never the
	 * payload bytes that happen to sit where a header would be. */
	if (bpf_skb_load_bytes(skb, ETH_HLEN + 6, &frag_off, sizeof(frag_off)) < 0)
		return -1;
	if (frag_off & bpf_htons(0x1FFF))
		return 0;
	switch (proto) {
	case IPPROTO_TCP: {
		__u8 hdr[14];

		if (bpf_skb_load_bytes(skb, l4_off, hdr, sizeof(hdr)) < 0)
			return -1;
		__builtin_memcpy(&l4->sport, &hdr[0], 2);
		__builtin_memcpy(&l4->dport, &hdr[2], 2);
		l4->tcp_flags = hdr[13];
		return 0;
	}
	case IPPROTO_UDP:
	case IPPROTO_SCTP_: {
		__be16 ports[2];

		if (bpf_skb_load_bytes(skb, l4_off, ports, sizeof(ports)) < 0)
			return -1;
		l4->sport = ports[0];
		l4->dport = ports[1];
		return 0;
	}
	case IPPROTO_ICMP: {
		struct icmp_echo_hdr icmp;

		if (bpf_skb_load_bytes(skb, l4_off, &icmp, sizeof(icmp)) < 0)
			return -1;
		l4->icmp_type = icmp.type;
		if (icmp.type == ICMP_ECHO) {
			l4->sport = icmp.id;
		} else if (icmp.type == ICMP_ECHOREPLY) {
			l4->dport = icmp.id;
			l4->is_icmp_reply = 1;
		}
		return 0;
	}
	default:
		return 0;
	}
}

#endif /* CILIATE_L4_H */
