"""ciliate: a Cilium-style Kubernetes networking stack in Python.

Two datapaths (the pure-Python model in ``datapath.sim`` and the Linux/eBPF kernel
datapath in ``datapath.linux``) realize one compiled state (``desired``).
"""

__version__ = "0.1.0"
