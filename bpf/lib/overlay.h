/* SPDX-License-Identifier: Apache-2.0 */
/* overlay.h: what a node does with a packet that arrives through the VXLAN overlay, and
 * the native receive path that takes it there without the kernel's VXLAN device.
 *
 * from_overlay_ipv4() is the receive half of cilium.md §4 ("Pod ingress from a remote
 * node"): the source identity is the VNI; a destination in cilium_lxc gets conntrack, its
 * ingress policy on a new connection (133/181), reverse NAT of service replies, and
 * delivery to the lxc (or the node's L7 proxy); a host address goes to cilium_host;
 * replies of connections this node translated are reverse-NATed and sent on.  Drops and
 * traces name bpf_overlay whichever program runs it.  Two programs do:
 *
 *   - cil_from_overlay, on cilium_vxlan's ingress after the kernel decapsulated the
 *     packet (the tunnel key carries VNI and outer source);
 *   - cil_from_netdev, on eth0's ingress, through overlay_native_rx() below: VXLAN for a
 *     local pod is decapsulated in the program (bpf_skb_adjust_room) and handed to the
 *     same code, without the kernel device (decision 0011).
 */
#ifndef CILIATE_OVERLAY_H
#define CILIATE_OVERLAY_H

#include "common.h"
#include "eth.h"
#include "ipv4.h"
#include "l4.h"
#include "maps.h"
#include "trace.h"
#include "drop.h"
#include "conntrack.h"
#include "policy.h"
#include "proxy.h"
#include "lb.h"
#include "nat.h"
#include "encap.h"

/* A reply tunnelled back by the backend's node for a connection this node translated
 * (NodePort / LoadBalancer with a remote backend): reverse NAT, then out of the device the
 * FIB picks toward the client.  Anything else for a non-local address goes up the stack. */
static __always_inline int from_overlay_reply_out(struct __sk_buff *skb, __be32 saddr,
						  __be32 daddr, __u8 proto, __u32 l4_off,
						  __u32 src_id)
{
	struct runtime_config *cfg = runtime_config();
	struct remote_endpoint_info *remote;
	struct ipv4_ct_tuple tuple = {};
	struct ct_result ct;
	struct l4_info l4;
	struct trace_ctx t = {};
	int ret;

	if (l4_load(skb, l4_off, proto, &l4) < 0)
		return CTX_ACT_OK;
	ct_build_tuple(&tuple, saddr, daddr, proto, &l4);
	ct_lookup4(&tuple, l4.tcp_flags, skb->len, &ct);
	if (ct.status != CT_REPLY || !ct.rev_nat_index)
		return CTX_ACT_OK;
	ret = lb4_rev_nat(skb, ct.rev_nat_index, proto, l4_off, &saddr);
	if (ret > 0)
		return DROP(skb, FILE_BPF_OVERLAY, METRIC_EGRESS, ret, 0, src_id, 0, 0);
	remote = lookup_ipcache(daddr);
	t.reason = ct.status;
	t.monitor = ct.monitor;
	t.flags = TRACE_F_VXLAN;
	t.src_label = src_id;
	t.dst_label = remote ? remote->sec_identity : WORLD_ID;
	if (remote && (remote->flags & IPCACHE_F_HAS_TUNNEL_EP) && remote->tunnel_endpoint &&
	    cfg && cfg->vxlan_ifindex) {
		/* the client is a pod of another node (a NodePort hairpin): straight back into
		 * the tunnel, as the node's own traffic (VNI host) */
		t.obs_point = TRACE_TO_OVERLAY;
		t.ifindex = cfg->vxlan_ifindex;
		send_trace_notify(skb, &t);
		ret = encap_vxlan(skb, remote->tunnel_endpoint, HOST_ID, cfg->vxlan_ifindex);
		return ret < 0 ? CTX_ACT_DROP : ret;
	}
	t.obs_point = TRACE_TO_STACK;
	send_trace_notify(skb, &t);
	ret = fib_redirect_v4(skb, saddr, daddr);
	return ret < 0 ? CTX_ACT_OK : ret;
}

static __always_inline int from_overlay_ipv4(struct __sk_buff *skb, __u32 src_id,
					     __be32 tunnel_src)
{
	struct runtime_config *cfg = runtime_config();
	struct endpoint_info *dst;
	struct ipv4_ct_tuple tuple = {};
	struct ct_result ct;
	struct l4_info l4;
	struct trace_ctx t = {};
	void *data_end;
	struct iphdr *ip4;
	__be32 saddr, daddr;
	__u32 l4_off, flags;
	__u16 proxy_port = 0;
	__u8 proto;
	int ret;

	ip4 = ipv4_hdr(skb, &data_end);
	if (!ip4)
		return DROP(skb, FILE_BPF_OVERLAY, METRIC_INGRESS, DROP_INVALID, 0, src_id, 0, 0);
	saddr = ip4->saddr;
	daddr = ip4->daddr;
	proto = ip4->protocol;
	l4_off = ETH_HLEN + ipv4_hdrlen(ip4);
	flags = cfg ? cfg->flags : 0;

	dst = lookup_endpoint(daddr);
	if (!dst)
		return from_overlay_reply_out(skb, saddr, daddr, proto, l4_off, src_id);
	if (dst->flags & ENDPOINT_F_HOST) {
		if (!cfg || !cfg->host_ifindex)
			return CTX_ACT_OK;
		t.obs_point = TRACE_TO_HOST;
		t.reason = TRACE_REASON_UNKNOWN;
		t.src_label = src_id;
		t.dst_label = HOST_ID;
		t.flags = TRACE_F_VXLAN;
		t.ifindex = cfg->host_ifindex;
		send_trace_notify(skb, &t);
		if (bpf_skb_store_bytes(skb, 0, &cfg->host_mac, ETH_ALEN, 0) < 0)
			return DROP(skb, FILE_BPF_OVERLAY, METRIC_INGRESS, DROP_WRITE_ERROR, 0, src_id,
				    HOST_ID, 0);
		return bpf_redirect(cfg->host_ifindex, BPF_F_INGRESS);
	}

	if (l4_load(skb, l4_off, proto, &l4) < 0)
		return DROP(skb, FILE_BPF_OVERLAY, METRIC_INGRESS, DROP_CT_INVALID_HDR, dst->lxc_id, src_id,
			    dst->sec_id, dst->lxc_id);
	ct_build_tuple(&tuple, saddr, daddr, proto, &l4);
	ct_lookup4(&tuple, l4.tcp_flags, skb->len, &ct);
	if (ct.status == CT_REPLY && ct.rev_nat_index) {
		ret = lb4_rev_nat(skb, ct.rev_nat_index, proto, l4_off, &saddr);
		if (ret > 0)
			return DROP(skb, FILE_BPF_OVERLAY, METRIC_INGRESS, ret, dst->lxc_id, src_id,
				    dst->sec_id, dst->lxc_id);
	}
	/* new connections, and established ones the policy changed under (conntrack.h) */
	ret = policy_ingress_check(skb, dst, src_id, proto, l4.dport, &ct, &tuple, flags,
				   &proxy_port);
	if (ret)
		return DROP(skb, FILE_BPF_OVERLAY, METRIC_INGRESS, ret, dst->lxc_id, src_id,
			    dst->sec_id, dst->lxc_id);
	if (ct.status == CT_NEW)
		ct_create4_from(&tuple, src_id, 0, 0, l4.tcp_flags, skb->len, tunnel_src);

	t.reason = ct.status;
	t.monitor = ct.monitor;
	t.flags = TRACE_F_VXLAN;
	t.source = dst->lxc_id;
	t.dst_id = dst->lxc_id;
	t.src_label = src_id;
	t.dst_label = dst->sec_id;
	t.ifindex = dst->ifindex;
	/* L7 ingress policy: the node's proxy serves the connection (proxy.h) */
	if (proxy_port || (ct.status == CT_ESTABLISHED && ct.proxy_redirect)) {
		ret = redirect_to_proxy(skb, &t, &tuple, proxy_port != 0, saddr, daddr, &l4,
					proxy_port);
		if (ret)
			return DROP(skb, FILE_BPF_OVERLAY, METRIC_INGRESS, ret, dst->lxc_id, src_id,
				    dst->sec_id, dst->lxc_id);
		return CTX_ACT_OK;
	}
	t.obs_point = TRACE_TO_LXC;
	send_trace_notify(skb, &t);
	ret = deliver_local_peer(skb, dst);
	if (ret < 0)
		return DROP(skb, FILE_BPF_OVERLAY, METRIC_INGRESS, DROP_WRITE_ERROR, dst->lxc_id, src_id,
			    dst->sec_id, dst->lxc_id);
	return ret;
}


/* Native VXLAN receive, called by cil_from_netdev for a UDP packet to VXLAN_PORT whose
 * outer IPv4 header (without options) starts at ETH_HLEN.
 *
 * Why: in collect-metadata mode the kernel's VXLAN device allocates a metadata dst for
 * every received packet and frees it through RCU; on this machine's veth fabric that cost
 * a fifth of a single TCP stream's throughput with the default congestion control (BBR),
 * and the UDP socket, GRO cells and a route lookup stand between eth0 and the pod besides
 * (decision 0011).  The wire format is the device's (whichever side built it, encap.h or
 * cilium_vxlan), and the VNI still carries the source identity.
 *
 * Taken only for a well-formed, unfragmented VXLAN packet (a first fragment holds only
 * the start of the inner packet: fragments are reassembled by the stack and reach the
 * device) to this node's address whose inner frame is IPv4 to a local pod: those
 * (VXLAN_ENCAP_LEN of headers stripped) are delivered locally (or to the local proxy) and never
 * segmented again, so the encapsulation state that bpf_skb_adjust_room leaves on a GSO
 * packet (kernels without BPF_F_ADJ_ROOM_DECAP_L4_UDP) is never used.  Everything else
 * (the node's own addresses, service replies to send on, ARP, fragments, anything
 * unexpected) returns -1 and the kernel device receives it as before, into
 * cil_from_overlay: the two paths run the same from_overlay_ipv4(). */
static __always_inline int overlay_native_rx(struct __sk_buff *skb,
					     const struct runtime_config *cfg,
					     const struct iphdr *outer)
{
	struct endpoint_info *dst;
	__u32 off = ETH_HLEN + sizeof(struct iphdr) + sizeof(struct udphdr);
	__be32 vx[2], tunnel_src, inner_daddr;
	__be16 inner_proto;
	__u32 src_id;

	if (!cfg->node_ip || outer->daddr != cfg->node_ip || outer->ihl != 5 ||
	    ipv4_is_any_fragment(outer))
		return -1;
	tunnel_src = outer->saddr;
	if (bpf_skb_load_bytes(skb, off, vx, sizeof(vx)) < 0 ||
	    !(*(__u8 *)vx & VXLAN_F_VNI))
		return -1;
	off += VXLAN_HLEN;
	if (bpf_skb_load_bytes(skb, off + 2 * ETH_ALEN, &inner_proto, sizeof(inner_proto)) < 0 ||
	    inner_proto != bpf_htons(ETH_P_IP))
		return -1;
	if (bpf_skb_load_bytes(skb, off + ETH_HLEN + offsetof(struct iphdr, daddr),
			       &inner_daddr, sizeof(inner_daddr)) < 0)
		return -1;
	dst = lookup_endpoint(inner_daddr);
	if (!dst || (dst->flags & ENDPOINT_F_HOST))
		return -1;
	src_id = bpf_ntohl(vx[1]) >> 8;
	if (src_id == HOST_ID)
		src_id = REMOTE_NODE_ID;
	/* the outer IP, UDP and VXLAN headers and the inner Ethernet header go; eth0's
	 * Ethernet header stays in front of the inner IPv4 header (its MACs are rewritten on
	 * delivery).  FIXED_GSO: a GSO packet's segment size is the inner TCP's MSS. */
	if (bpf_skb_adjust_room(skb, -(__s32)VXLAN_ENCAP_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO) < 0)
		return -1;
	return from_overlay_ipv4(skb, src_id, tunnel_src);
}

#endif /* CILIATE_OVERLAY_H */
