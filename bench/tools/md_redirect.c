/* SPDX-License-Identifier: GPL-2.0 */
/* md_redirect.c: the least a collect-metadata ("external") VXLAN needs, for the datapath
 * benchmark's vxlan-md baseline.  Attached at tc ingress of a pod's host-side veth: the
 * inner destination MAC becomes the far VXLAN device's (so its stack takes the packet),
 * the tunnel key names the far node, and the packet goes to the local external VXLAN
 * device.  No lookups, no conntrack, no policy: what remains is the kernel's cost of
 * Cilium's tunnel design (bpf_skb_set_tunnel_key + an external-mode device).
 * Compiled by bench/suite_datapath.py with -DREMOTE=<far node IPv4, host order>
 * -DVXLAN=<ifindex> -DPEER_MAC=<6 bytes>. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int md_redirect(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	unsigned char mac[6] = { PEER_MAC };

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK; /* ARP for the gateway stays on the node */
	if (bpf_skb_store_bytes(skb, 0, mac, sizeof(mac), 0) < 0)
		return TC_ACT_SHOT;
	key.remote_ipv4 = REMOTE;
	key.tunnel_id = 42;
	key.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(VXLAN, 0);
}

char _license[] SEC("license") = "GPL";
