/* SPDX-License-Identifier: Apache-2.0 */
/* proxy.h: hand a connection to the node's L7 proxy, the way Cilium's TPROXY path does
 * (Cilium bpf/lib/proxy.h: ctx_redirect_to_proxy_first / assign_socket_tcp).
 *
 * Theory of operation (TCP only; ingress L7 at the destination endpoint's node, egress L7
 * at the source endpoint's node):
 *   1. policy.h chose an allow entry with a proxy port (an L7 rule): the program creates
 *      the conntrack entry as for any allowed connection and marks it CT_F_PROXY_REDIRECT,
 *      so every later packet of the connection in the same direction comes here too
 *      (replies from the proxy to the client are CT replies: the host forwards them).
 *   2. The socket: first the connection's own (bpf_skc_lookup_tcp on the packet's
 *      tuple in the node's netns -- the proxy's accepted socket, or its request socket
 *      during the handshake; a listener or TIME_WAIT socket does not count), else the
 *      proxy's listener on {0.0.0.0, proxy port}.  bpf_sk_assign() attaches it to the
 *      skb; the stack's socket lookup is skipped at local delivery.
 *   3. skb->mark = MARK_MAGIC_TO_PROXY | port << 16 (Cilium's proxy_port_enchant) and
 *      PACKET_HOST, then TC_ACT_OK: the packet goes up the node's stack, where the rule
 *      "fwmark 0x200/0xf00 lookup 2004" and "local 0.0.0.0/0 dev lo table 2004" (the
 *      agent adds them, datapath/linux/proxy.py) make it local although its destination
 *      is a pod address.  The proxy's listener has IP_TRANSPARENT, so the accepted
 *      socket carries the pod's address and answers from it.
 *   4. No socket (the proxy is not running; or a packet other than a SYN whose
 *      connection the proxy does not hold -- a proxy restarted, an established flow a
 *      changed policy now redirects): DROP_PROXY_LOOKUP_FAILED (178); assignment
 *      refused: DROP_PROXY_SET_FAILED (179).
 * The proxy's upstream connections leave from the node (cilium_host) and carry SO_MARK:
 *   - MARK_MAGIC_PROXY_INGRESS after an ingress redirect: the proxy enforced the
 *     destination's policy, the host programs let it through without a second lookup
 *     (proxy_upstream());
 *   - MARK_MAGIC_PROXY_EGRESS | source identity << 16 after an egress redirect: the host
 *     programs forward it as the source's traffic (proxy_egress_identity()), so the
 *     destination's ingress policy -- here, or across the overlay through the VNI -- sees
 *     the source, not the node.
 * An egress-redirected upstream toward an endpoint of the same node that has L7 ingress
 * rules cannot be redirected again (cil_from_host runs at egress, where no socket can be
 * assigned): the proxy applies both sides itself and marks it PROXY_INGRESS.
 * Not handled (DROP_PROXY_UNSUPPORTED, 180, as before): L7 entries on other protocols than
 * TCP.
 */
#ifndef CILIATE_PROXY_H
#define CILIATE_PROXY_H

#include "common.h"
#include "conntrack.h"
#include "trace.h"

#define MARK_MAGIC_HOST_MASK 0x0F00
#define MARK_MAGIC_TO_PROXY 0x0200
#define MARK_MAGIC_PROXY_INGRESS 0x0A00 /* SO_MARK of the proxy's upstream sockets */
#define MARK_MAGIC_PROXY_EGRESS 0x0B00 /* ... of an egress redirect: identity << 16 */

#define DROP_PROXY_LOOKUP_FAILED 178
#define DROP_PROXY_SET_FAILED 179

#ifndef PACKET_HOST
#define PACKET_HOST 0
#endif

/* A packet the proxy sent towards an endpoint on its own connection's behalf. */
static __always_inline int proxy_upstream(const struct __sk_buff *skb)
{
	return (skb->mark & MARK_MAGIC_HOST_MASK) == MARK_MAGIC_PROXY_INGRESS;
}

/* The source identity an egress-redirected upstream carries in its mark (0: none). */
static __always_inline __u32 proxy_egress_identity(const struct __sk_buff *skb)
{
	if ((skb->mark & MARK_MAGIC_HOST_MASK) != MARK_MAGIC_PROXY_EGRESS)
		return 0;
	return skb->mark >> 16;
}

/* Mark the conntrack entry of a connection handed to the proxy (step 1). */
static __always_inline void ct_set_proxy_redirect(const struct ipv4_ct_tuple *tuple)
{
	struct ct_entry *e = bpf_map_lookup_elem(ct_map(tuple->nexthdr), tuple);

	if (e)
		e->flags |= CT_F_PROXY_REDIRECT;
}

static __always_inline int proxy_assign(struct __sk_buff *skb, __be32 saddr, __be32 daddr,
					__be16 sport, __be16 dport, int established)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	long ret;

	t.ipv4.saddr = saddr;
	t.ipv4.daddr = daddr;
	t.ipv4.sport = sport;
	t.ipv4.dport = dport;
	sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return DROP_PROXY_LOOKUP_FAILED;
	if (established && (sk->state == BPF_TCP_LISTEN || sk->state == BPF_TCP_TIME_WAIT)) {
		bpf_sk_release(sk);
		return DROP_PROXY_LOOKUP_FAILED;
	}
	ret = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	return ret ? DROP_PROXY_SET_FAILED : 0;
}

/* Steps 2-3; 0 when the packet is the proxy's (return CTX_ACT_OK), else a drop reason. */
static __always_inline int ctx_redirect_to_proxy(struct __sk_buff *skb, __be32 saddr,
						 __be32 daddr, const struct l4_info *l4,
						 __u16 proxy_port)
{
	int ret;

	ret = proxy_assign(skb, saddr, daddr, l4->sport, l4->dport, 1);
	/* only a SYN opens a connection at the listener: a later packet whose socket is
	 * gone (a proxy restarted, a flow the policy now redirects) is dropped, not handed
	 * to a listener that would reset it */
	if (ret && proxy_port && (l4->tcp_flags & (TCP_FLAG_SYN_ | TCP_FLAG_ACK_)) == TCP_FLAG_SYN_)
		ret = proxy_assign(skb, 0, 0, 0, bpf_htons(proxy_port), 0);
	if (ret)
		return ret;
	skb->mark = MARK_MAGIC_TO_PROXY | ((__u32)proxy_port << 16);
	bpf_skb_change_type(skb, PACKET_HOST);
	return 0;
}

/* The to-proxy step of a delivery: conntrack flag on a new connection, the trace event
 * (TRACE_TO_PROXY) and the socket.  Returns 0 (pass the packet up: CTX_ACT_OK) or a drop
 * reason.  proxy_port is 0 on later packets (the listener is then not needed: the
 * connection's own socket exists). */
static __always_inline int redirect_to_proxy(struct __sk_buff *skb, struct trace_ctx *t,
					     const struct ipv4_ct_tuple *tuple, int created,
					     __be32 saddr, __be32 daddr, const struct l4_info *l4,
					     __u16 proxy_port)
{
	int ret;

	if (created)
		ct_set_proxy_redirect(tuple);
	ret = ctx_redirect_to_proxy(skb, saddr, daddr, l4, proxy_port);
	if (ret)
		return ret;
	t->obs_point = TRACE_TO_PROXY;
	send_trace_notify(skb, t);
	return 0;
}

#endif /* CILIATE_PROXY_H */
