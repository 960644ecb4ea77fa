"""The model datapath: the programs of a Cilium node as Python functions over DesiredState.

``trace`` follows one probe hop by hop; ``probe`` answers reachability quickly. See
``network`` (the fabric and the driver), ``lxc``, ``policy``, ``overlay``, ``host``,
``lb`` (the programs) and ``views`` (``ip a`` / ``ip route`` / ``arp -a`` renderers).
Never touches the kernel (import contract).
"""

from ciliate.datapath.sim.network import probe, resolve, topology, trace

__all__ = ["probe", "resolve", "topology", "trace"]
