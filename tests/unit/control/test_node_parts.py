"""Node parts: a node's routing table is built on first read and equals the eager one."""

from __future__ import annotations

import cluster_docs as C

from ciliate.control.engine import compute_desired
from ciliate.control.node_parts import NodeRoutes
from ciliate.control.nodes import node_routes, resolve_nodes, sorted_pod_cidrs


def test_node_routes_are_built_on_first_read_and_equal_the_table() -> None:
    cfg = C.config()
    nodes = resolve_nodes(C.node_docs(cfg), cfg)
    all_nodes = list(nodes.values())
    cidrs = sorted_pod_cidrs(all_nodes)
    for info in all_nodes:
        lazy = NodeRoutes(info, all_nodes, cfg, cidrs)
        assert lazy._args is not None  # nothing built yet
        eager = node_routes(info, all_nodes, cfg)
        assert lazy == eager and eager == lazy
        assert lazy != node_routes(info, all_nodes[:1], cfg) or len(all_nodes) == 1
        assert list(lazy) == list(eager) and len(lazy) == len(eager)
        assert lazy[0] == eager[0] and lazy[-2:] == eager[-2:]
        assert lazy == NodeRoutes(info, all_nodes, cfg, None)
    other = all_nodes[0]
    assert NodeRoutes(other, all_nodes, cfg, cidrs) != node_routes(all_nodes[1], all_nodes, cfg)


def test_states_with_lazy_routes_compare_by_content() -> None:
    cfg = C.config()
    docs = C.node_docs(cfg) + C.networking101()
    a, b = compute_desired(docs, cfg), compute_desired(docs, cfg)
    for name in a.nodes:
        assert a.nodes[name].routes == b.nodes[name].routes
        assert tuple(a.nodes[name].routes) == tuple(b.nodes[name].routes)
