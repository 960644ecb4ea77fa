/* SPDX-License-Identifier: Apache-2.0 */
/* common.h: includes, return codes, identities and small helpers shared by every program.
 *
 * ciliate's eBPF programs mirror Cilium's (bpf/bpf_lxc.c, bpf_overlay.c, bpf_host.c) at a
 * much smaller scale.  Everything a program needs to know about the cluster comes from
 * pinned maps filled by the Python agent (src/ciliate/datapath/linux/maps.py); nothing is
 * compiled in per endpoint, so one object serves every endpoint of every node.
 */
#ifndef CILIATE_COMMON_H
#define CILIATE_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define CTX_ACT_OK TC_ACT_OK
#define CTX_ACT_DROP TC_ACT_SHOT
#define CTX_ACT_REDIRECT TC_ACT_REDIRECT

/* Reserved identities (cilium.md §1.1). */
#define HOST_ID 1
#define WORLD_ID 2
#define UNMANAGED_ID 3
#define HEALTH_ID 4
#define REMOTE_NODE_ID 6

/* Source files as Cilium numbers them in drop notifications (cilium.md §3.6). */
#define FILE_BPF_HOST 1
#define FILE_BPF_LXC 2
#define FILE_BPF_OVERLAY 3

/* Metric directions (Cilium's METRIC_INGRESS / METRIC_EGRESS). */
#define METRIC_INGRESS 1
#define METRIC_EGRESS 2

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif /* CILIATE_COMMON_H */
