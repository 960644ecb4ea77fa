/* SPDX-License-Identifier: Apache-2.0 */
/* bpf_overlay.c: the programs on cilium_vxlan (external / collect-metadata VXLAN).
 *
 * cil_from_overlay (tc ingress, after the kernel decapsulated; cilium.md §4 "Pod ingress
 * from a remote node"; the code is lib/overlay.h's, which cil_from_netdev runs too for the
 * VXLAN it decapsulates itself, decision 0011):
 *   1. the source identity is the VNI (no tunnel key: drop 147); a remote host's identity
 *      (1) becomes remote-node (6) here, as Cilium does;
 *   2. destination in cilium_lxc: conntrack, the destination's ingress policy on a new
 *      connection (133/181), reverse NAT of service replies, MAC rewrite and redirect to the
 *      lxc (to-endpoint);
 *   3. a host address of this node: to cilium_host (to-host);
 *   4. anything else goes up the stack.
 * cil_to_overlay (tc egress): passes; the encapsulation was chosen by the sender.
 */
#include "lib/overlay.h"

#define THIS_FILE FILE_BPF_OVERLAY

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
