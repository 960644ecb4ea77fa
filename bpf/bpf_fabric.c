/* SPDX-License-Identifier: Apache-2.0 */
/* bpf_fabric.c: the node network's fast path (not a Cilium program: the lab's wire).
 *
 * A ciliate cluster's nodes meet on a Linux bridge in the fabric namespace, as kind's
 * nodes meet on docker's bridge.  fabric_forward runs at tc ingress of every fabric port
 * (the fabric's end of a node's eth0 veth) and hands a unicast frame for a known node
 * straight to that node's eth0 (bpf_redirect_peer), as a cable between the two would:
 * one transmit, one receive, no bridge lookup and no second backlog queue.  Broadcast,
 * multicast and unknown destinations go to the bridge, which floods and learns as before
 * (ARP between nodes, anything not in the table).
 *
 * fabric_fdb: node eth0 MAC -> ifindex of its fabric port, written by the agent when it
 * plugs a node in (datapath/linux/fabric.py), removed with the node.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

struct fabric_mac {
	__u8 addr[ETH_ALEN];
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct fabric_mac);
	__type(value, __u32);
	__uint(max_entries, 4096);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fabric_fdb SEC(".maps");

SEC("tc")
int fabric_forward(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct fabric_mac key = {};
	__u32 *port;

	if ((void *)(eth + 1) > data_end || (eth->h_dest[0] & 1))
		return TC_ACT_OK; /* short, broadcast or multicast: the bridge */
	__builtin_memcpy(key.addr, eth->h_dest, ETH_ALEN);
	port = bpf_map_lookup_elem(&fabric_fdb, &key);
	if (!port || *port == skb->ifindex)
		return TC_ACT_OK;
	return bpf_redirect_peer(*port, 0);
}

char _license[] SEC("license") = "GPL";
