/* SPDX-License-Identifier: Apache-2.0 */
/* drop.h: drop reasons as Cilium numbers them (cilium.md §5) and the one drop path:
 * send_drop_notify() counts the drop, always reports it (drops are never aggregated) and
 * returns TC_ACT_SHOT, so a program ends with `return send_drop_notify(...)`. */
#ifndef CILIATE_DROP_H
#define CILIATE_DROP_H

#include "common.h"
#include "trace.h"

#define DROP_INVALID_SOURCE_IP 132
#define DROP_POLICY 133
#define DROP_INVALID 134
#define DROP_CT_INVALID_HDR 135
#define DROP_UNKNOWN_L3 139
#define DROP_WRITE_ERROR 141
#define DROP_NO_TUNNEL_KEY 147
#define DROP_UNKNOWN_TARGET 150
#define DROP_CSUM_L3 153
#define DROP_CSUM_L4 154
#define DROP_CT_CREATE_FAILED 155
#define DROP_FRAG_NOSUPPORT 157
#define DROP_NO_SERVICE 158
#define DROP_NO_TUNNEL_ENDPOINT 160
#define DROP_INVALID_IDENTITY 171
#define DROP_PROXY_UNSUPPORTED 180
#define DROP_POLICY_DENY 181
#define DROP_POLICY_AUTH_REQUIRED 189
#define DROP_PUNT_PROXY 205

struct drop_ctx {
	__u8 reason;
	__u8 file;
	__u8 dir;
	__u16 line;
	__u16 source;
	__u32 src_label;
	__u32 dst_label;
	__u32 dst_id;
	__u32 ifindex;
};

static __always_inline int send_drop_notify(struct __sk_buff *skb, const struct drop_ctx *d)
{
	struct notify_record *rec;

	update_metrics(skb->len, d->dir, d->reason);
	rec = bpf_ringbuf_reserve(&cilium_events, sizeof(*rec), 0);
	if (rec) {
		__builtin_memset(rec, 0, sizeof(*rec));
		rec->drop.type = CILIUM_NOTIFY_DROP;
		rec->drop.subtype = d->reason;
		rec->drop.source = d->source;
		rec->drop.hash = bpf_get_hash_recalc(skb);
		rec->drop.len_orig = skb->len;
		rec->drop.version = 2;
		rec->drop.src_label = d->src_label;
		rec->drop.dst_label = d->dst_label;
		rec->drop.dst_id = d->dst_id;
		rec->drop.line = d->line;
		rec->drop.file = d->file;
		rec->drop.ifindex = d->ifindex;
		rec->drop.len_cap = capture_payload(skb, rec);
		bpf_ringbuf_submit(rec, 0);
	} else {
		count_lost_event();
	}
	return CTX_ACT_DROP;
}

/* DROP(skb, reason, ...) fills the line number of the call site, as Cilium's
 * send_drop_notify_error() macro does with __LINE__. */
#define DROP(skb, file_id, metric_dir, code, src_ep, slabel, dlabel, dep)                     \
	({                                                                                     \
		struct drop_ctx __d = {                                                        \
			.reason = (code),                                                      \
			.file = (file_id),                                                     \
			.dir = (metric_dir),                                                   \
			.line = __LINE__,                                                      \
			.source = (src_ep),                                                    \
			.src_label = (slabel),                                                 \
			.dst_label = (dlabel),                                                 \
			.dst_id = (dep),                                                       \
			.ifindex = (skb)->ifindex,                                             \
		};                                                                             \
		send_drop_notify((skb), &__d);                                                 \
	})

#endif /* CILIATE_DROP_H */
