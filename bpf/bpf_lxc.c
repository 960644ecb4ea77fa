/* SPDX-License-Identifier: Apache-2.0 */
/* bpf_lxc.c: cil_from_container, attached at tc ingress of every lxc device, i.e. on every
 * packet a pod sends.
 *
 * Walk (cilium.md §4, "Pod egress"):
 *   ARP      -> answered with the lxc MAC (arp.h).
 *   IPv4     -> source endpoint from cilium_lxc (unknown source: drop 132)
 *            -> service translation (lb.h: DNAT to a backend, or drop 158)
 *            -> conntrack (conntrack.h)
 *            -> destination identity from cilium_ipcache
 *            -> on a new connection: the source's egress policy (policy.h, 133/181)
 *            -> local destination (cilium_lxc hit): the destination's ingress policy, MAC
 *               rewrite and redirect to its lxc (to-endpoint);
 *               host address (ENDPOINT_F_HOST): up the stack (to-stack);
 *               remote pod (ipcache tunnel endpoint): VXLAN with VNI = source identity
 *               (to-overlay); otherwise up the stack (to-stack).
 *   other L3 -> drop 139 (IPv6 is not enabled).
 */
#include "lib/common.h"
#include "lib/eth.h"
#include "lib/ipv4.h"
#include "lib/l4.h"
#include "lib/maps.h"
#include "lib/trace.h"
#include "lib/drop.h"
#include "lib/conntrack.h"
#include "lib/policy.h"
#include "lib/proxy.h"
#include "lib/lb.h"
#include "lib/nat.h"
#include "lib/arp.h"
#include "lib/encap.h"

#define THIS_FILE FILE_BPF_LXC

static __always_inline int handle_arp(struct __sk_buff *skb)
{
	struct arp_eth arp;
	struct endpoint_info *src;

	if (!arp_check(skb, &arp))
		return CTX_ACT_OK;
	src = lookup_endpoint(arp.ar_sip);
	if (!src)
		return CTX_ACT_OK;
	return arp_respond(skb, &arp, &src->node_mac, 0);
}

static __always_inline int handle_ipv4(struct __sk_buff *skb)
{
	struct runtime_config *cfg = runtime_config();
	struct endpoint_info *src, *dst;
	struct remote_endpoint_info *remote;
	struct ipv4_ct_tuple tuple = {};
	struct ct_result ct;
	struct l4_info l4;
	struct lb_result lb = {};
	struct trace_ctx t = {};
	void *data_end;
	struct iphdr *ip4;
	__be32 saddr, daddr;
	__u32 l4_off, src_id, dst_id, flags;
	__u16 src_ep, egress_proxy = 0;
	__u8 proto;
	int ret;

	ip4 = ipv4_hdr(skb, &data_end);
	if (!ip4)
		return DROP(skb, THIS_FILE, METRIC_EGRESS, DROP_INVALID, 0, 0, 0, 0);
	saddr = ip4->saddr;
	daddr = ip4->daddr;
	proto = ip4->protocol;
	l4_off = ETH_HLEN + ipv4_hdrlen(ip4);

	src = lookup_endpoint(saddr);
	if (!src || (src->flags & ENDPOINT_F_HOST))
		return DROP(skb, THIS_FILE, METRIC_EGRESS, DROP_INVALID_SOURCE_IP, 0, 0, 0, 0);
	src_ep = src->lxc_id;
	src_id = src->sec_id;
	flags = cfg ? cfg->flags : 0;

	if (l4_load(skb, l4_off, proto, &l4) < 0)
		return DROP(skb, THIS_FILE, METRIC_EGRESS, DROP_CT_INVALID_HDR, src_ep, src_id, 0,
			    0);

	/* 1. Service translation: a frontend hit DNATs to a backend (lb.h).  Pod addresses
	 * (local in cilium_lxc, remote behind a tunnel endpoint in the ipcache) are never
	 * frontends, so pod-to-pod traffic skips the service lookups. */
	dst = lookup_endpoint(daddr);
	/* a local pod's identity is in its cilium_lxc entry: the LPM lookup is for the rest */
	remote = (dst && !(dst->flags & ENDPOINT_F_HOST)) ? NULL : lookup_ipcache(daddr);
	if ((flags & RUNTIME_F_LB) && !(dst && !(dst->flags & ENDPOINT_F_HOST)) &&
	    !(remote && (remote->flags & IPCACHE_F_HAS_TUNNEL_EP))) {
		ret = lb4_translate(skb, saddr, &daddr, proto, l4_off, &l4, LB_LOOKUP_SCOPE_INT,
				    dst != NULL, &lb);
		if (ret > 0)
			return DROP(skb, THIS_FILE, METRIC_EGRESS, ret, src_ep, src_id, 0, 0);
		if (lb.rev_nat_index) {
			dst = lookup_endpoint(daddr);
			remote = (dst && !(dst->flags & ENDPOINT_F_HOST)) ? NULL :
									      lookup_ipcache(daddr);
		}
	}

	/* 2. Conntrack; replies to a translated connection are reverse-NATed. */
	ct_build_tuple(&tuple, saddr, daddr, proto, &l4);
	ct_lookup4(&tuple, l4.tcp_flags, skb->len, &ct);
	if (ct.status == CT_REPLY && ct.rev_nat_index) {
		ret = lb4_rev_nat(skb, ct.rev_nat_index, proto, l4_off, &saddr);
		if (ret > 0)
			return DROP(skb, THIS_FILE, METRIC_EGRESS, ret, src_ep, src_id, 0, 0);
	}

	/* 3. Destination identity. */
	if (dst && !(dst->flags & ENDPOINT_F_HOST))
		dst_id = dst->sec_id;
	else
		dst_id = remote ? remote->sec_identity : WORLD_ID;

	/* 4. Egress policy of the source: new connections, and established ones the policy
	 * changed under since they were last checked (conntrack.h); replies never. */
	if ((ct.status == CT_NEW || ct.policy_stale) && (flags & RUNTIME_F_POLICY)) {
		ret = policy_can_access_proxy(skb, src_ep, dst_id, 1, proto, l4.dport,
					      &egress_proxy);
		if (ret)
			return DROP(skb, THIS_FILE, METRIC_EGRESS, ret, src_ep, src_id, dst_id, 0);
		/* a local destination's ingress check follows; it records the pass */
		if (ct.policy_stale && !(dst && !(dst->flags & ENDPOINT_F_HOST)))
			ct_policy_checked4(&tuple);
	}

	t.reason = ct.status;
	t.monitor = ct.monitor;
	t.src_label = src_id;
	t.dst_label = dst_id;

	/* L7 egress policy, and every later packet of a connection this node's proxy
	 * serves (either direction's redirect): to the proxy (proxy.h) */
	if (egress_proxy || (ct.status == CT_ESTABLISHED && ct.proxy_redirect)) {
		/* a stale entry: the local destination's ingress check the delivery below
		 * would run, then the pass is recorded (the proxy serves it either way) */
		if (ct.policy_stale && (flags & RUNTIME_F_POLICY)) {
			if (dst && !(dst->flags & ENDPOINT_F_HOST)) {
				__u16 ingress_proxy = 0;

				ret = policy_can_access_proxy(skb, dst->lxc_id, src_id, 0, proto,
							      l4.dport, &ingress_proxy);
				if (ret)
					return DROP(skb, THIS_FILE, METRIC_INGRESS, ret, dst->lxc_id,
						    src_id, dst->sec_id, dst->lxc_id);
			}
			ct_policy_checked4(&tuple);
		}
		if (ct.status == CT_NEW)
			ct_create4(&tuple, src_id, lb.rev_nat_index, lb.backend_id, l4.tcp_flags,
				   skb->len);
		t.source = src_ep;
		ret = redirect_to_proxy(skb, &t, &tuple, egress_proxy != 0, saddr, daddr, &l4,
					egress_proxy);
		if (ret)
			return DROP(skb, THIS_FILE, METRIC_EGRESS, ret, src_ep, src_id, dst_id, 0);
		return CTX_ACT_OK;
	}

	/* 5. Deliver.  A reply on a connection that came through the overlay goes back
	 * through it, to the node it came from: that node may hold the connection's service
	 * translation (its NodePort sent the client here), even for a client on this node. */
	if (ct.status == CT_REPLY && ct.tunnel_src && cfg && cfg->vxlan_ifindex) {
		t.source = src_ep;
		t.obs_point = TRACE_TO_OVERLAY;
		t.flags = TRACE_F_VXLAN;
		t.ifindex = cfg->vxlan_ifindex;
		send_trace_notify(skb, &t);
		ret = encap_vxlan(skb, ct.tunnel_src, src_id, cfg->vxlan_ifindex);
		if (ret < 0)
			return DROP(skb, THIS_FILE, METRIC_EGRESS, DROP_WRITE_ERROR, src_ep, src_id,
				    dst_id, 0);
		return ret;
	}

	if (dst && !(dst->flags & ENDPOINT_F_HOST)) {
		__u16 proxy_port = 0;

		ret = policy_ingress_check(skb, dst, src_id, proto, l4.dport, &ct, &tuple, flags,
					   &proxy_port);
		if (ret)
			return DROP(skb, THIS_FILE, METRIC_INGRESS, ret, dst->lxc_id, src_id,
				    dst->sec_id, dst->lxc_id);
		if (ct.status == CT_NEW)
			ct_create4(&tuple, src_id, lb.rev_nat_index, lb.backend_id, l4.tcp_flags,
				   skb->len);
		t.source = dst->lxc_id;
		t.dst_id = dst->lxc_id;
		t.dst_label = dst->sec_id;
		t.ifindex = dst->ifindex;
		/* L7 ingress policy: the node's proxy serves the connection (proxy.h) */
		if (proxy_port) {
			ret = redirect_to_proxy(skb, &t, &tuple, proxy_port != 0, saddr, daddr, &l4,
						proxy_port);
			if (ret)
				return DROP(skb, THIS_FILE, METRIC_INGRESS, ret, dst->lxc_id, src_id,
					    dst->sec_id, dst->lxc_id);
			return CTX_ACT_OK;
		}
		t.obs_point = TRACE_TO_LXC;
		send_trace_notify(skb, &t);
		ret = deliver_local_peer(skb, dst);
		if (ret < 0)
			return DROP(skb, THIS_FILE, METRIC_INGRESS, DROP_WRITE_ERROR, src_ep, src_id,
				    dst_id, dst->lxc_id);
		return ret;
	}

	if (ct.status == CT_NEW)
		ct_create4(&tuple, src_id, lb.rev_nat_index, lb.backend_id, l4.tcp_flags, skb->len);
	t.source = src_ep;


	if (!dst && remote && (remote->flags & IPCACHE_F_HAS_TUNNEL_EP) &&
	    remote->tunnel_endpoint && cfg && cfg->vxlan_ifindex) {
		t.obs_point = TRACE_TO_OVERLAY;
		t.flags = TRACE_F_VXLAN;
		t.ifindex = cfg->vxlan_ifindex;
		send_trace_notify(skb, &t);
		ret = encap_vxlan(skb, remote->tunnel_endpoint, src_id, cfg->vxlan_ifindex);
		if (ret < 0)
			return DROP(skb, THIS_FILE, METRIC_EGRESS, DROP_WRITE_ERROR, src_ep, src_id,
				    dst_id, 0);
		return ret;
	}

	t.obs_point = TRACE_TO_STACK;
	send_trace_notify(skb, &t);
	if (ct.status == CT_REPLY && ct.rev_nat_index && !dst) {
		/* A NodePort reply now sourced from this node's address: route it out
		 * directly (the input path would drop a local source as martian). */
		ret = fib_redirect_v4(skb, saddr, daddr);
		if (ret >= 0)
			return ret;
	}
	return CTX_ACT_OK;
}

SEC("tc")
int cil_from_container(struct __sk_buff *skb)
{
	switch (skb->protocol) {
	case bpf_htons(ETH_P_ARP):
		return handle_arp(skb);
	case bpf_htons(ETH_P_IP):
		return handle_ipv4(skb);
	default:
		return DROP(skb, THIS_FILE, METRIC_EGRESS, DROP_UNKNOWN_L3, 0, 0, 0, 0);
	}
}

char _license[] SEC("license") = "GPL";
