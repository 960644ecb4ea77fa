"""cilium-dbg style views over the computed state, one module per domain noun.

``sections`` (per-node output and typed map dumps), ``endpoint`` (endpoint and identity
lists, cilium_lxc), ``ipcache`` (cilium_ipcache), ``lb`` (service list, cilium_lb4_*),
``policymap`` (an endpoint's policy map with provenance) and ``bpftool`` (bpftool's
plain map lookup/dump). ``ciliate.cli.cmd_cilium`` registers their commands from one
table. Like every CLI module, nothing below ``cli`` may import these.
"""
