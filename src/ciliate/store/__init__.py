"""Cluster state: get, list, transactional apply, watch from a resourceVersion."""
