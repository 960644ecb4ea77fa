/* SPDX-License-Identifier: Apache-2.0 */
/* bpf_host.c: the programs of the node's own devices.
 *
 * cil_from_netdev (eth0 ingress): VXLAN for a local pod is decapsulated here and takes the
 *   overlay's receive path (overlay.h, decision 0011); NodePort / LoadBalancer frontends
 *   reached from the node network are DNATed (lb.h) and delivered to a local backend or
 *   tunnelled to the backend's node, which returns the replies through the tunnel for the
 *   reverse NAT; everything else passes.
 * cil_to_host (cilium_host and cilium_net ingress): traffic handed to the host; replies
 *   of the host's service connections tunnelled back by a remote backend's node are
 *   reverse-NATed here; everything passes.
 * cil_from_host (cilium_host egress): the host's own traffic towards pods, routed to
 *   cilium_host by the per-pod-CIDR routes, and towards service frontends, routed there
 *   by the node's policy rules (hostsvc.py) and DNATed as socket-LB would at connect()
 *   (no backend: drop 158; decision 0009): local pods are delivered through cilium_lxc
 *   (the destination's ingress policy sees identity host), remote pods are tunnelled with
 *   VNI = host (1), which the far side reads as remote-node (6).  ARP requests of the host
 *   (when cilium_host is not NOARP) are answered with cilium_host's MAC.
 */
#include "lib/overlay.h"
#include "lib/arp.h"

#define THIS_FILE FILE_BPF_HOST

/* Deliver to a local endpoint or tunnel to a remote one, for traffic whose source is not a
 * local pod (the host, or the node network after NodePort DNAT). */
static __always_inline int host_forward(struct __sk_buff *skb, __u32 src_id, __be32 saddr,
					__be32 daddr, __u8 proto, __u32 l4_off,
					struct l4_info *l4, struct lb_result *lb)
{
	struct runtime_config *cfg = runtime_config();
	struct endpoint_info *dst;
	struct remote_endpoint_info *remote;
	struct ipv4_ct_tuple tuple = {};
	struct ct_result ct;
	struct trace_ctx t = {};
	__u32 flags = cfg ? cfg->flags : 0;
	int ret;

	dst = lookup_endpoint(daddr);
	ct_build_tuple(&tuple, saddr, daddr, proto, l4);
	ct_lookup4(&tuple, l4->tcp_flags, skb->len, &ct);
	/* the L7 proxy answers a client that reached a backend through a service: the
	 * reply leaves the proxy from the backend's address, the client expects the
	 * frontend's (proxy.h) */
	if (ct.status == CT_REPLY && ct.rev_nat_index && dst && !(dst->flags & ENDPOINT_F_HOST)) {
		ret = lb4_rev_nat(skb, ct.rev_nat_index, proto, l4_off, &saddr);
		if (ret > 0)
			return DROP(skb, THIS_FILE, METRIC_INGRESS, ret, dst->lxc_id, src_id,
				    dst->sec_id, dst->lxc_id);
	}
	t.reason = ct.status;
	t.monitor = ct.monitor;
	t.src_label = src_id;

	if (dst && !(dst->flags & ENDPOINT_F_HOST)) {
		/* new connections, and established ones the policy changed under; the L7
		 * proxy's upstream is not checked here: the proxy enforced the policy (proxy.h) */
		if ((ct.status == CT_NEW || ct.policy_stale) && (flags & RUNTIME_F_POLICY) &&
		    !proxy_upstream(skb)) {
			ret = policy_can_access(skb, dst->lxc_id, src_id, 0, proto, l4->dport);
			if (ret)
				return DROP(skb, THIS_FILE, METRIC_INGRESS, ret, dst->lxc_id, src_id,
					    dst->sec_id, dst->lxc_id);
			if (ct.policy_stale)
				ct_policy_checked4(&tuple);
		}
		if (ct.status == CT_NEW)
			ct_create4(&tuple, src_id, lb->rev_nat_index, lb->backend_id,
				   l4->tcp_flags, skb->len);
		t.obs_point = TRACE_TO_LXC;
		t.source = dst->lxc_id;
		t.dst_id = dst->lxc_id;
		t.dst_label = dst->sec_id;
		t.ifindex = dst->ifindex;
		send_trace_notify(skb, &t);
		ret = deliver_local(skb, dst);
		if (ret < 0)
			return DROP(skb, THIS_FILE, METRIC_INGRESS, DROP_WRITE_ERROR, dst->lxc_id,
				    src_id, dst->sec_id, dst->lxc_id);
		return ret;
	}
	if (dst)
		return CTX_ACT_OK;
	remote = lookup_ipcache(daddr);
	if (remote && (remote->flags & IPCACHE_F_HAS_TUNNEL_EP) && remote->tunnel_endpoint && cfg &&
	    cfg->vxlan_ifindex) {
		if (ct.status == CT_NEW)
			ct_create4(&tuple, src_id, lb->rev_nat_index, lb->backend_id, l4->tcp_flags,
				   skb->len);
		t.obs_point = TRACE_TO_OVERLAY;
		t.flags = TRACE_F_VXLAN;
		t.dst_label = remote->sec_identity;
		t.ifindex = cfg->vxlan_ifindex;
		send_trace_notify(skb, &t);
		ret = encap_vxlan(skb, remote->tunnel_endpoint, src_id, cfg->vxlan_ifindex);
		if (ret < 0)
			return DROP(skb, THIS_FILE, METRIC_EGRESS, DROP_WRITE_ERROR, 0, src_id,
				    remote->sec_identity, 0);
		return ret;
	}
	return CTX_ACT_OK;
}

/* The host's own connection to a service frontend (the node's policy rules route
 * frontends to cilium_host: datapath/linux/hostsvc.py): DNAT as socket-LB does at
 * connect() for the host (decision 0009).  Pod addresses are never frontends, so traffic
 * to pods skips the service lookups; only exact frontends match (the node's own
 * NodePort entry included), not the 0.0.0.0 surrogate, as in the model.  Returns 0 or a
 * drop reason. */
static __always_inline int host_service(struct __sk_buff *skb, __be32 saddr, __be32 *daddr,
					__u8 proto, __u32 l4_off, struct l4_info *l4,
					struct lb_result *lb)
{
	struct endpoint_info *dst = lookup_endpoint(*daddr);
	struct remote_endpoint_info *remote;

	if (dst && !(dst->flags & ENDPOINT_F_HOST))
		return 0;
	if (!dst) {
		remote = lookup_ipcache(*daddr);
		if (remote && (remote->flags & IPCACHE_F_HAS_TUNNEL_EP))
			return 0;
	}
	return lb4_translate(skb, saddr, daddr, proto, l4_off, l4, LB_LOOKUP_SCOPE_INT, 0, lb);
}

SEC("tc")
int cil_from_host(struct __sk_buff *skb)
{
	struct runtime_config *cfg;
	struct lb_result lb = {};
	struct l4_info l4;
	void *data_end;
	struct iphdr *ip4;
	__be32 saddr, daddr;
	__u32 src_id, l4_off;
	__u8 proto;
	int ret;

	if (skb->protocol == bpf_htons(ETH_P_ARP)) {
		/* cilium_host should be NOARP (Cilium sets it so); if it is not, the host ARPs
		 * for pods behind it and nobody would answer: answer with cilium_host's MAC,
		 * the programs rewrite the MACs of what follows anyway. */
		struct arp_eth arp;

		cfg = runtime_config();
		if (cfg && arp_check(skb, &arp))
			return arp_respond(skb, &arp, &cfg->host_mac, BPF_F_INGRESS);
		return CTX_ACT_OK;
	}
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return CTX_ACT_OK;
	ip4 = ipv4_hdr(skb, &data_end);
	if (!ip4)
		return CTX_ACT_OK;
	saddr = ip4->saddr;
	daddr = ip4->daddr;
	proto = ip4->protocol;
	l4_off = ETH_HLEN + ipv4_hdrlen(ip4);
	if (l4_load(skb, l4_off, proto, &l4) < 0)
		return CTX_ACT_OK;
	/* the L7 proxy's upstream of an egress redirect carries the source's identity */
	src_id = proxy_egress_identity(skb);
	cfg = runtime_config();
	if (!src_id && cfg && (cfg->flags & RUNTIME_F_LB) && !ipv4_is_fragment(ip4)) {
		ret = host_service(skb, saddr, &daddr, proto, l4_off, &l4, &lb);
		if (ret > 0)
			return DROP(skb, THIS_FILE, METRIC_EGRESS, ret, 0, HOST_ID, 0, 0);
	}
	return host_forward(skb, src_id ? src_id : HOST_ID, saddr, daddr, proto, l4_off, &l4,
			    &lb);
}

SEC("tc")
int cil_to_host(struct __sk_buff *skb)
{
	struct runtime_config *cfg = runtime_config();
	struct ipv4_ct_tuple tuple = {};
	struct ct_result ct;
	struct l4_info l4;
	void *data_end;
	struct iphdr *ip4;
	__be32 saddr;
	__u32 l4_off;
	__u8 proto;
	int ret;

	/* A reply to the host's own service connection with a remote backend comes back
	 * through the tunnel (cil_from_overlay hands it here): reverse NAT to the frontend
	 * the host's socket is connected to (decision 0009).  Replies from a local backend
	 * are reverse-NATed by cil_from_container. */
	if (skb->protocol != bpf_htons(ETH_P_IP) || !cfg || !(cfg->flags & RUNTIME_F_LB))
		return CTX_ACT_OK;
	ip4 = ipv4_hdr(skb, &data_end);
	if (!ip4 || ipv4_is_fragment(ip4))
		return CTX_ACT_OK;
	saddr = ip4->saddr;
	proto = ip4->protocol;
	l4_off = ETH_HLEN + ipv4_hdrlen(ip4);
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP_)
		return CTX_ACT_OK;
	if (l4_load(skb, l4_off, proto, &l4) < 0)
		return CTX_ACT_OK;
	ct_build_tuple(&tuple, saddr, ip4->daddr, proto, &l4);
	ct_lookup4(&tuple, l4.tcp_flags, skb->len, &ct);
	if (ct.status != CT_REPLY || !ct.rev_nat_index)
		return CTX_ACT_OK;
	ret = lb4_rev_nat(skb, ct.rev_nat_index, proto, l4_off, &saddr);
	if (ret > 0)
		return DROP(skb, THIS_FILE, METRIC_INGRESS, ret, 0, ct.src_sec_id, HOST_ID, 0);
	return CTX_ACT_OK;
}

SEC("tc")
int cil_from_netdev(struct __sk_buff *skb)
{
	struct runtime_config *cfg = runtime_config();
	struct lb_result lb = {};
	struct l4_info l4;
	struct endpoint_info *dst;
	void *data_end;
	struct iphdr *ip4;
	__be32 saddr, daddr;
	__u32 l4_off;
	__u8 proto;
	int ret;

	if (skb->protocol != bpf_htons(ETH_P_IP) || !cfg)
		return CTX_ACT_OK;
	ip4 = ipv4_hdr(skb, &data_end);
	if (!ip4)
		return CTX_ACT_OK;
	saddr = ip4->saddr;
	daddr = ip4->daddr;
	proto = ip4->protocol;
	l4_off = ETH_HLEN + ipv4_hdrlen(ip4);
	if (ipv4_is_fragment(ip4) || l4_load(skb, l4_off, proto, &l4) < 0)
		return CTX_ACT_OK;
	/* The overlay's own packets (VXLAN, UDP 8472) are never service traffic, and they
	 * are the bulk of what eth0 receives: those for a local pod are decapsulated here
	 * (overlay.h, decision 0011), the others go to cilium_vxlan. */
	if (proto == IPPROTO_UDP && l4.dport == bpf_htons(VXLAN_PORT)) {
		ret = overlay_native_rx(skb, cfg, ip4);
		return ret < 0 ? CTX_ACT_OK : ret;
	}
	if (!(cfg->flags & RUNTIME_F_LB))
		return CTX_ACT_OK;
	/* Only frontends this node answers for: its own addresses (NodePort) and
	 * LoadBalancer/external IPs that are not pod addresses. */
	dst = lookup_endpoint(daddr);
	if (dst && !(dst->flags & ENDPOINT_F_HOST))
		return CTX_ACT_OK;
	ret = lb4_translate(skb, saddr, &daddr, proto, l4_off, &l4, LB_LOOKUP_SCOPE_EXT,
			    dst != NULL, &lb);
	if (ret > 0)
		return DROP(skb, THIS_FILE, METRIC_INGRESS, ret, 0, resolve_identity(saddr), 0, 0);
	if (!lb.rev_nat_index)
		return CTX_ACT_OK;
	/* A remote backend is tunnelled to with the client's identity; its node sends the
	 * replies back through the tunnel (CT_F_FROM_TUNNEL) for the reverse NAT here. */
	return host_forward(skb, resolve_identity(saddr), saddr, daddr, proto, l4_off, &l4, &lb);
}

char _license[] SEC("license") = "GPL";
