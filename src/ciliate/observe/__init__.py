"""Observability: Hubble-style flow records, a bounded ring, filters and rendering.

- ``flow``: ``Flow`` and its parts (flow.proto field for field), Summary text.
- ``jsonpb``: ``to_json``/``from_json``, exactly what ``hubble observe -o json`` prints.
- ``reasons``: drop reasons, trace observation points/reasons, policy match types.
- ``ring``: ``FlowRing``, bounded (4095) and thread-safe, with follow cursors.
- ``flowfilter``: ``FilterSpec`` and ``FlowFilter``, the predicate (allow/deny lists,
  time bounds, ``--first``/``--last``).
- ``filters``: hubble's filter flags → ``FlowFilter`` (``add_filter_arguments``,
  ``from_args``).
- ``render``: compact / json / table / dict output (``render_flow``, ``FlowPrinter``).
- ``metrics``: Hubble's flow metrics as counters, Prometheus text.
- ``servicemap``: who talks to whom, aggregated from flows (JSON, DOT).

Pure: no I/O. The file-backed flow log that crosses processes is
``ciliate.datapath.flowlog``.
"""
