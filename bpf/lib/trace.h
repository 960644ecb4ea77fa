/* SPDX-License-Identifier: Apache-2.0 */
/* trace.h: the one notify path.  Every forward (trace_notify) and every drop (drop_notify,
 * drop.h) goes through emit_notify(), which counts it in cilium_metrics and, when asked,
 * copies the notification plus the first TRACE_PAYLOAD_LEN bytes of the packet onto the
 * cilium_events ring buffer.  Cilium uses a perf event array; a BPF ring buffer keeps the
 * order across CPUs and lets userspace read it with one mmap (see
 * docs/decisions/0002-bpf-maps.md).
 *
 * Aggregation follows monitor-aggregation=medium (cilium.md §3.6): from-* traces are never
 * sent, to-* traces only when conntrack says the connection is new, changed state, carries
 * SYN/FIN/RST, or was last reported more than 5 s ago.  Drops are always sent.
 */
#ifndef CILIATE_TRACE_H
#define CILIATE_TRACE_H

#include "common.h"

#define CILIUM_NOTIFY_DROP 1
#define CILIUM_NOTIFY_TRACE 4
#define CILIUM_NOTIFY_POLICY_VERDICT 5

/* Observation points (cilium.md §3.6). */
#define TRACE_TO_LXC 0
#define TRACE_TO_PROXY 1
#define TRACE_TO_HOST 2
#define TRACE_TO_STACK 3
#define TRACE_TO_OVERLAY 4
#define TRACE_FROM_LXC 5
#define TRACE_FROM_PROXY 6
#define TRACE_FROM_HOST 7
#define TRACE_FROM_STACK 8
#define TRACE_FROM_OVERLAY 9
#define TRACE_FROM_NETWORK 10
#define TRACE_TO_NETWORK 11

/* Trace reasons = conntrack state. */
#define TRACE_REASON_POLICY 0 /* "new" */
#define TRACE_REASON_CT_ESTABLISHED 1
#define TRACE_REASON_CT_REPLY 2
#define TRACE_REASON_CT_RELATED 3
#define TRACE_REASON_UNKNOWN 5

/* trace flags */
#define TRACE_F_VXLAN 0x4

#define TRACE_PAYLOAD_LEN 128

/* trace_notify version 1: 48 B header (cilium.md §3.6).
 *   0 type | 1 obs_point | 2 source | 4 hash | 8 len_orig | 12 len_cap | 14 version
 *   15 ext_version | 16 src_label | 20 dst_label | 24 dst_id | 26 reason | 27 flags
 *   28 ifindex | 32 orig_ip (16) */
struct trace_notify {
	__u8 type;
	__u8 subtype;
	__u16 source;
	__u32 hash;
	__u32 len_orig;
	__u16 len_cap;
	__u8 version;
	__u8 ext_version;
	__u32 src_label;
	__u32 dst_label;
	__u16 dst_id;
	__u8 reason;
	__u8 flags;
	__u32 ifindex;
	__u8 orig_ip[16];
};

/* drop_notify version 2: 40 B header.
 *   0 type | 1 subtype (reason) | 2 source | 4 hash | 8 len_orig | 12 len_cap | 14 version
 *   15 ext_version | 16 src_label | 20 dst_label | 24 dst_id | 28 line | 30 file
 *   31 ext_error | 32 ifindex | 36 flags | 37 pad[3] */
struct drop_notify {
	__u8 type;
	__u8 subtype;
	__u16 source;
	__u32 hash;
	__u32 len_orig;
	__u16 len_cap;
	__u8 version;
	__u8 ext_version;
	__u32 src_label;
	__u32 dst_label;
	__u32 dst_id;
	__u16 line;
	__u8 file;
	__s8 ext_error;
	__u32 ifindex;
	__u8 flags;
	__u8 pad[3];
};

/* policy_verdict_notify: 40 B header.
 *   0 type | 1 subtype | 2 source (local endpoint) | 4 hash | 8 len_orig | 12 len_cap
 *   14 version | 15 ext_version | 16 remote_label | 20 verdict (s32: 0 allow, <0 -reason,
 *   >0 proxy port) | 24 dst_port | 26 proto | 27 flags (bits0-1 dir 1 ingress / 2 egress,
 *   bits3-5 match type) | 28 auth_type | 32 cookie */
struct policy_verdict_notify {
	__u8 type;
	__u8 subtype;
	__u16 source;
	__u32 hash;
	__u32 len_orig;
	__u16 len_cap;
	__u8 version;
	__u8 ext_version;
	__u32 remote_label;
	__s32 verdict;
	__u16 dst_port;
	__u8 proto;
	__u8 flags;
	__u8 auth_type;
	__u8 pad0[3];
	__u32 cookie;
	__u32 pad1;
};

/* Ring-buffer records: the header padded to 48 B, then the captured packet bytes. */
struct notify_record {
	union {
		struct trace_notify trace;
		struct drop_notify drop;
		struct policy_verdict_notify verdict;
	};
	__u8 data[TRACE_PAYLOAD_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_events SEC(".maps");

/* Notifications that found the ring buffer full (Hubble's LostEvent from
 * PERF_EVENT_RING_BUFFER): one per-CPU counter, read by events.EventReader.lost(). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u64));
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_events_lost SEC(".maps");

static __always_inline void count_lost_event(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&cilium_events_lost, &zero);

	if (n)
		*n += 1;
}

/* cilium_metrics: {u8 reason, u8 dir, u16 reserved[3]} -> {u64 count, u64 bytes}, per CPU. */
struct metrics_key {
	__u8 reason;
	__u8 dir;
	__u16 reserved[3];
};

struct metrics_value {
	__u64 count;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(key_size, sizeof(struct metrics_key));
	__uint(value_size, sizeof(struct metrics_value));
	__uint(max_entries, 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_metrics SEC(".maps");

static __always_inline void update_metrics(__u64 bytes, __u8 dir, __u8 reason)
{
	struct metrics_key key = {};
	struct metrics_value *v;

	key.reason = reason;
	key.dir = dir;
	v = bpf_map_lookup_elem(&cilium_metrics, &key);
	if (v) {
		v->count += 1;
		v->bytes += bytes;
	} else {
		struct metrics_value init = {1, bytes};

		bpf_map_update_elem(&cilium_metrics, &key, &init, BPF_ANY);
	}
}

/* Copy the packet head into rec->data; returns the number of bytes captured. */
static __always_inline __u16 capture_payload(struct __sk_buff *skb, struct notify_record *rec)
{
	__u32 cap = skb->len;

	if (cap > TRACE_PAYLOAD_LEN)
		cap = TRACE_PAYLOAD_LEN;
	if (cap < 1)
		return 0;
	if (bpf_skb_load_bytes(skb, 0, rec->data, cap) < 0) {
		/* Non-linear or short skb: fall back to the Ethernet+IP header we know exists. */
		if (skb->len >= 34 && bpf_skb_load_bytes(skb, 0, rec->data, 34) == 0)
			return 34;
		return 0;
	}
	return cap;
}

struct trace_ctx {
	__u8 obs_point;
	__u8 reason;
	__u8 flags;
	__u8 monitor; /* 0: count only, no event (aggregated away) */
	__u16 source;
	__u16 dst_id;
	__u32 src_label;
	__u32 dst_label;
	__u32 ifindex;
};

static __always_inline void send_trace_notify(struct __sk_buff *skb, const struct trace_ctx *t)
{
	struct notify_record *rec;
	__u8 dir = (t->obs_point == TRACE_TO_LXC) ? METRIC_INGRESS : METRIC_EGRESS;

	update_metrics(skb->len, dir, 0);
	if (!t->monitor)
		return;
	rec = bpf_ringbuf_reserve(&cilium_events, sizeof(*rec), 0);
	if (!rec) {
		count_lost_event();
		return;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->trace.type = CILIUM_NOTIFY_TRACE;
	rec->trace.subtype = t->obs_point;
	rec->trace.source = t->source;
	rec->trace.hash = bpf_get_hash_recalc(skb);
	rec->trace.len_orig = skb->len;
	rec->trace.version = 1;
	rec->trace.src_label = t->src_label;
	rec->trace.dst_label = t->dst_label;
	rec->trace.dst_id = t->dst_id;
	rec->trace.reason = t->reason;
	rec->trace.flags = t->flags;
	rec->trace.ifindex = t->ifindex;
	rec->trace.len_cap = capture_payload(skb, rec);
	bpf_ringbuf_submit(rec, 0);
}

/* A policy verdict for a new connection (Cilium's send_policy_verdict_notify).  Sent for
 * every enforced lookup; userspace drops those of directions the endpoint does not
 * enforce (the compiled state knows, the datapath need not). */
static __always_inline void send_policy_verdict(struct __sk_buff *skb, __u16 endpoint_id,
						__u32 remote_id, __u8 egress, __u8 proto,
						__be16 dport, __u8 match_type, __s32 verdict,
						__u8 auth_type, __u32 cookie)
{
	struct notify_record *rec;

	rec = bpf_ringbuf_reserve(&cilium_events, sizeof(*rec), 0);
	if (!rec) {
		count_lost_event();
		return;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->verdict.type = CILIUM_NOTIFY_POLICY_VERDICT;
	rec->verdict.source = endpoint_id;
	rec->verdict.hash = bpf_get_hash_recalc(skb);
	rec->verdict.len_orig = skb->len;
	rec->verdict.version = 1;
	rec->verdict.remote_label = remote_id;
	rec->verdict.verdict = verdict;
	rec->verdict.dst_port = bpf_ntohs(dport);
	rec->verdict.proto = proto;
	rec->verdict.flags = (egress ? 2 : 1) | ((match_type & 0x7) << 3);
	rec->verdict.auth_type = auth_type;
	rec->verdict.cookie = cookie;
	rec->verdict.len_cap = capture_payload(skb, rec);
	bpf_ringbuf_submit(rec, 0);
}

#endif /* CILIATE_TRACE_H */
