"""The command line: kubectl / cilium-dbg / hubble conventions plus ciliate's own."""
