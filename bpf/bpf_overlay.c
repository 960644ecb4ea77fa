/* SPDX-License-Identifier: Apache-2.0 */
/* bpf_overlay.c: the programs on cilium_vxlan (external / collect-metadata VXLAN).
 *
 * cil_from_overlay (tc ingress, after decapsulation; cilium.md §4 "Pod ingress from a
 * remote node"):
 *   1. the source identity is the VNI (no tunnel key: drop 147); a remote host's identity
 *      (1) becomes remote-node (6) here, as Cilium does;
 *   2. destination in cilium_lxc: conntrack, the destination's ingress policy on a new
 *      connection (133/181), reverse NAT of service replies, MAC rewrite and redirect to the
 *      lxc (to-endpoint);
 *   3. a host address of this node: to cilium_host (to-host);
 *   4. anything else goes up the stack.
 * cil_to_overlay (tc egress): passes; the encapsulation was chosen by the sender.
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
#include "lib/encap.h"

#define THIS_FILE FILE_BPF_OVERLAY

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
		return DROP(skb, THIS_FILE, METRIC_EGRESS, ret, 0, src_id, 0, 0);
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
		return DROP(skb, THIS_FILE, METRIC_INGRESS, DROP_INVALID, 0, src_id, 0, 0);
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
			return DROP(skb, THIS_FILE, METRIC_INGRESS, DROP_WRITE_ERROR, 0, src_id,
				    HOST_ID, 0);
		return bpf_redirect(cfg->host_ifindex, BPF_F_INGRESS);
	}

	if (l4_load(skb, l4_off, proto, &l4) < 0)
		return DROP(skb, THIS_FILE, METRIC_INGRESS, DROP_CT_INVALID_HDR, dst->lxc_id, src_id,
			    dst->sec_id, dst->lxc_id);
	ct_build_tuple(&tuple, saddr, daddr, proto, &l4);
	ct_lookup4(&tuple, l4.tcp_flags, skb->len, &ct);
	if (ct.status == CT_REPLY && ct.rev_nat_index) {
		ret = lb4_rev_nat(skb, ct.rev_nat_index, proto, l4_off, &saddr);
		if (ret > 0)
			return DROP(skb, THIS_FILE, METRIC_INGRESS, ret, dst->lxc_id, src_id,
				    dst->sec_id, dst->lxc_id);
	}
	/* new connections, and established ones the policy changed under (conntrack.h) */
	if ((ct.status == CT_NEW || ct.policy_stale) && (flags & RUNTIME_F_POLICY)) {
		ret = policy_can_access_proxy(skb, dst->lxc_id, src_id, 0, proto, l4.dport,
					      &proxy_port);
		if (ret)
			return DROP(skb, THIS_FILE, METRIC_INGRESS, ret, dst->lxc_id, src_id,
				    dst->sec_id, dst->lxc_id);
		if (ct.policy_stale)
			ct_policy_checked4(&tuple);
	}
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
			return DROP(skb, THIS_FILE, METRIC_INGRESS, ret, dst->lxc_id, src_id,
				    dst->sec_id, dst->lxc_id);
		return CTX_ACT_OK;
	}
	t.obs_point = TRACE_TO_LXC;
	send_trace_notify(skb, &t);
	ret = deliver_local_peer(skb, dst);
	if (ret < 0)
		return DROP(skb, THIS_FILE, METRIC_INGRESS, DROP_WRITE_ERROR, dst->lxc_id, src_id,
			    dst->sec_id, dst->lxc_id);
	return ret;
}

SEC("tc")
int cil_from_overlay(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	__u32 src_id;

	if (bpf_skb_get_tunnel_key(skb, &key, offsetof(struct bpf_tunnel_key, tunnel_label) + 4,
				   0) < 0)
		return DROP(skb, THIS_FILE, METRIC_INGRESS, DROP_NO_TUNNEL_KEY, 0, 0, 0, 0);
	src_id = key.tunnel_id;
	if (src_id == HOST_ID)
		src_id = REMOTE_NODE_ID;
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return CTX_ACT_OK;
	return from_overlay_ipv4(skb, src_id, bpf_htonl(key.remote_ipv4));
}

SEC("tc")
int cil_to_overlay(struct __sk_buff *skb)
{
	return CTX_ACT_OK;
}

char _license[] SEC("license") = "GPL";
