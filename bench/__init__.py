"""ciliate's benchmarks: each suite compares ciliate with a baseline or a peer on the
same input in the same run and reports ratios (absolute times drift on shared VMs)."""
