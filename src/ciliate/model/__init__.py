"""Typed, frozen Kubernetes/Cilium resources.

Documents (JSON-compatible dicts, as the API server stores them) are the storage form;
the classes here are read-only typed views parsed with ``<Kind>.from_doc(doc)``. Every
class keeps the document it came from in ``doc``, so unknown fields are never dropped.
Parsing assumes a document the manifest decoder validated; it is lenient, never raises
on missing optional fields. Imports nothing of ciliate but ``ciliate.errors``.
"""
