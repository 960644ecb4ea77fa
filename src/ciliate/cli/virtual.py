"""Computed ("virtual") kinds for ``ciliate get``: objects ciliate derives instead of
storing, such as ciliumendpoints, ciliumnodes and ciliumidentities.

Registry API (kept small on purpose)::

    from ciliate.cli.virtual import VirtualKind, register

    register(VirtualKind(
        kind="CiliumNode", plural="ciliumnodes", short_names=("cn", "ciliumn"),
        namespaced=False,
        list=lambda ctx: [...],            # (Context) -> list[Doc], every namespace
        table=lambda docs, wide: (["NAME", ...], [[...], ...]),
    ))

``get`` consults ``lookup(word)`` before the store. It filters by namespace (``-n`` /
``-A``), names and ``-l`` itself, so ``list`` just returns every object as documents
(apiVersion, kind, metadata.name/namespace/labels, and whatever the table reads);
``-o json|yaml|name`` print those documents. The control-plane part registers its kinds
from ``ciliate.cli.cmd_cilium`` at import time; ``lookup`` imports that module lazily
when it has not been imported yet.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ciliate.manifest.kinds import KindNames
from ciliate.model.meta import Doc

if TYPE_CHECKING:
    from ciliate.cli.context import Context

Table = tuple[list[str], list[list[str]]]

PROVIDER_MODULES = ("ciliate.cli.cmd_cilium",)


@dataclass(frozen=True)
class VirtualKind(KindNames):
    kind: str  # CiliumEndpoint
    plural: str  # ciliumendpoints
    short_names: tuple[str, ...]
    namespaced: bool
    list: Callable[[Context], list[Doc]]
    table: Callable[[Sequence[Doc], bool], Table]  # (docs, wide) -> (headers, rows)
    group: str = "cilium.io"
    version: str = "v2"

    def names(self) -> set[str]:
        return {
            self.plural,
            self.singular,
            *self.short_names,
            self.kind.lower(),
            self.qualified_plural,
            self.qualified_singular,
        }


VIRTUAL_KINDS: dict[str, VirtualKind] = {}
"""Canonical plural name -> kind."""

_loaded = False


def register(vk: VirtualKind) -> None:
    """Add (or replace) a computed kind."""
    VIRTUAL_KINDS[vk.plural] = vk


def _load_providers() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in PROVIDER_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise


def lookup(word: str) -> VirtualKind | None:
    """The computed kind ``word`` names (plural, singular, short or qualified), if any."""
    _load_providers()
    low = word.lower()
    for vk in VIRTUAL_KINDS.values():
        if low in vk.names() or word == vk.kind:
            return vk
    return None
