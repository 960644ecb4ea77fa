/* SPDX-License-Identifier: Apache-2.0 */
/* layout_check.c: prints the layout of every struct shared with userspace as JSON,
 *   {"struct": {"size": N, "fields": {"name": [offset, size], ...}}, ...}
 * Compiled for the HOST (plain cc) from the very headers the programs use, and compared by
 * tests/unit/datapath/linux/test_layout.py with the Python codecs' STRUCT_LAYOUTS, so C and
 * Python cannot drift apart silently.  Bit-fields are reported by the byte that holds them.
 */
#include <stdio.h>
#include <stddef.h>

#include "lib/common.h"
#include "lib/eth.h"
#include "lib/maps.h"
#include "lib/trace.h"
#include "lib/drop.h"
#include "lib/conntrack.h"
#include "lib/policy.h"
#include "lib/lb.h"

static int first_struct = 1;
static int first_field;

static void begin(const char *name, size_t size)
{
	printf("%s\n  \"%s\": {\"size\": %zu, \"fields\": {", first_struct ? "{" : ",", name, size);
	first_struct = 0;
	first_field = 1;
}

static void field(const char *name, size_t off, size_t size)
{
	printf("%s\"%s\": [%zu, %zu]", first_field ? "" : ", ", name, off, size);
	first_field = 0;
}

static void end(void)
{
	printf("}}");
}

#define S(type) begin(#type, sizeof(struct type))
#define F(type, f) field(#f, offsetof(struct type, f), sizeof(((struct type *)0)->f))
#define B(name, off, size) field(name, off, size)

int main(void)
{
	S(endpoint_key);
	F(endpoint_key, ip4); F(endpoint_key, family); F(endpoint_key, key);
	F(endpoint_key, cluster_id);
	end();

	S(endpoint_info);
	F(endpoint_info, ifindex); F(endpoint_info, unused); F(endpoint_info, lxc_id);
	F(endpoint_info, flags); F(endpoint_info, mac); F(endpoint_info, node_mac);
	F(endpoint_info, sec_id); F(endpoint_info, parent_ifindex);
	end();

	S(ipcache_key);
	F(ipcache_key, prefixlen); F(ipcache_key, cluster_id); F(ipcache_key, pad1);
	F(ipcache_key, family); F(ipcache_key, ip4);
	end();

	S(remote_endpoint_info);
	F(remote_endpoint_info, sec_identity); F(remote_endpoint_info, tunnel_endpoint);
	F(remote_endpoint_info, pad); F(remote_endpoint_info, key); F(remote_endpoint_info, flags);
	end();

	S(policy_key);
	F(policy_key, prefixlen); F(policy_key, endpoint_id); F(policy_key, sec_label);
	F(policy_key, egress); F(policy_key, protocol); F(policy_key, dport);
	end();

	S(policy_entry);
	F(policy_entry, proxy_port);
	B("deny_prefix", 2, 1); /* deny:1 reserved:2 lpm_prefix_length:5 */
	B("auth_type", 3, 1); /* auth_type:7 has_explicit_auth_type:1 */
	F(policy_entry, proxy_port_priority); F(policy_entry, cookie);
	end();

	S(ipv4_ct_tuple);
	F(ipv4_ct_tuple, daddr); F(ipv4_ct_tuple, saddr); F(ipv4_ct_tuple, dport);
	F(ipv4_ct_tuple, sport); F(ipv4_ct_tuple, nexthdr); F(ipv4_ct_tuple, flags);
	end();

	S(ct_entry);
	F(ct_entry, reserved0); F(ct_entry, backend_id); F(ct_entry, packets); F(ct_entry, bytes);
	F(ct_entry, lifetime); F(ct_entry, flags); F(ct_entry, rev_nat_index);
	F(ct_entry, ifindex); F(ct_entry, tx_flags_seen); F(ct_entry, rx_flags_seen);
	F(ct_entry, src_sec_id); F(ct_entry, last_tx_report); F(ct_entry, last_rx_report);
	end();

	S(lb4_key);
	F(lb4_key, address); F(lb4_key, dport); F(lb4_key, backend_slot); F(lb4_key, proto);
	F(lb4_key, scope);
	end();

	S(lb4_service);
	F(lb4_service, backend_id); F(lb4_service, count); F(lb4_service, rev_nat_index);
	F(lb4_service, flags); F(lb4_service, flags2); F(lb4_service, qcount);
	end();

	S(lb4_backend);
	F(lb4_backend, address); F(lb4_backend, port); F(lb4_backend, proto);
	F(lb4_backend, flags); F(lb4_backend, cluster_id); F(lb4_backend, zone);
	end();

	S(lb4_reverse_nat);
	F(lb4_reverse_nat, address); F(lb4_reverse_nat, port);
	end();

	S(lb4_maglev_key);
	F(lb4_maglev_key, rev_nat_index); F(lb4_maglev_key, slot);
	end();

	S(lb4_affinity_key);
	F(lb4_affinity_key, client_ip); F(lb4_affinity_key, rev_nat_id);
	F(lb4_affinity_key, netns_cookie);
	end();

	S(lb_affinity_val);
	F(lb_affinity_val, last_used); F(lb_affinity_val, backend_id);
	end();

	S(runtime_config);
	F(runtime_config, node_ip); F(runtime_config, host_ip); F(runtime_config, host_ifindex);
	F(runtime_config, vxlan_ifindex); F(runtime_config, flags); F(runtime_config, maglev_m);
	F(runtime_config, host_mac);
	end();

	S(metrics_key);
	F(metrics_key, reason); F(metrics_key, dir);
	end();

	S(metrics_value);
	F(metrics_value, count); F(metrics_value, bytes);
	end();

	S(trace_notify);
	F(trace_notify, type); F(trace_notify, subtype); F(trace_notify, source);
	F(trace_notify, hash); F(trace_notify, len_orig); F(trace_notify, len_cap);
	F(trace_notify, version); F(trace_notify, ext_version); F(trace_notify, src_label);
	F(trace_notify, dst_label); F(trace_notify, dst_id); F(trace_notify, reason);
	F(trace_notify, flags); F(trace_notify, ifindex); F(trace_notify, orig_ip);
	end();

	S(drop_notify);
	F(drop_notify, type); F(drop_notify, subtype); F(drop_notify, source);
	F(drop_notify, hash); F(drop_notify, len_orig); F(drop_notify, len_cap);
	F(drop_notify, version); F(drop_notify, ext_version); F(drop_notify, src_label);
	F(drop_notify, dst_label); F(drop_notify, dst_id); F(drop_notify, line);
	F(drop_notify, file); F(drop_notify, ext_error); F(drop_notify, ifindex);
	F(drop_notify, flags);
	end();

	S(policy_verdict_notify);
	F(policy_verdict_notify, type); F(policy_verdict_notify, source);
	F(policy_verdict_notify, len_cap); F(policy_verdict_notify, remote_label);
	F(policy_verdict_notify, verdict); F(policy_verdict_notify, dst_port);
	F(policy_verdict_notify, proto); F(policy_verdict_notify, flags);
	F(policy_verdict_notify, auth_type); F(policy_verdict_notify, cookie);
	end();

	S(notify_record);
	F(notify_record, data);
	end();

	printf("\n}\n");
	return 0;
}
