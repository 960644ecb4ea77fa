"""Selector cache: label normalization (cilium.md §6.2) and identity resolution."""

from __future__ import annotations

from ciliate.control.selectors import IdentitySelector, SelectorCache, label_map, normalize_key
from ciliate.desired import Identity
from ciliate.model.meta import LabelSelector


def test_normalize_key_sources() -> None:
    assert normalize_key("app") == "k8s:app"
    assert normalize_key("any:app") == "k8s:app"
    assert normalize_key("k8s:app") == "k8s:app"
    assert normalize_key("reserved:host") == "reserved:host"
    assert normalize_key("io.kubernetes.pod.namespace") == "k8s:io.kubernetes.pod.namespace"
    assert normalize_key("kubernetes.io/metadata.name") == "k8s:kubernetes.io/metadata.name"


def test_label_map() -> None:
    assert label_map(["k8s:app=web", "reserved:host", "cidr:10.0.0.0/8"]) == {
        "k8s:app": "web",
        "reserved:host": "",
        "cidr:10.0.0.0/8": "",
    }


def ident(n: int, *labels: str) -> Identity:
    return Identity(n, tuple(sorted(labels)))


IDS = {
    1: ident(1, "reserved:host"),
    2: ident(2, "reserved:world"),
    300: ident(300, "k8s:app=web", "k8s:io.kubernetes.pod.namespace=x"),
    301: ident(301, "k8s:app=db", "k8s:io.kubernetes.pod.namespace=x", "k8s:tier=1"),
    302: ident(302, "k8s:app=web", "k8s:io.kubernetes.pod.namespace=y"),
}


def sel(doc: dict[str, object]) -> IdentitySelector:
    return IdentitySelector.from_label_selector(LabelSelector.from_doc(doc))


def test_select_operators() -> None:
    c = SelectorCache(IDS)
    assert c.select(sel({"matchLabels": {"app": "web"}})) == {300, 302}
    assert c.select(
        sel({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]})
    ) == {300, 301, 302}
    # NotIn / DoesNotExist also match identities without the key (reserved ones too):
    # that is why the policy layer adds a namespace requirement to pod selectors.
    assert c.select(
        sel({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]})
    ) == {1, 2, 301}
    assert c.select(sel({"matchExpressions": [{"key": "tier", "operator": "Exists"}]})) == {301}
    assert c.select(sel({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})) == {
        1,
        2,
        300,
        302,
    }
    assert c.select(IdentitySelector.exists("reserved:host")) == {1}
    assert c.select(IdentitySelector()) == {1, 2, 300, 301, 302}


def test_add_and_remove_identity_update_cached_answers() -> None:
    c = SelectorCache(IDS)
    web = sel({"matchLabels": {"app": "web"}})
    db = sel({"matchLabels": {"app": "db"}})
    assert c.select(web) == {300, 302} and c.select(db) == {301}
    changed = c.add_identity(ident(303, "k8s:app=web", "k8s:io.kubernetes.pod.namespace=z"))
    assert web in changed and db not in changed
    assert c.select(web) == {300, 302, 303}
    changed = c.remove_identity(300)
    assert web in changed and c.select(web) == {302, 303}
    assert c.remove_identity(999) == []


def test_identity_changes_reach_every_matching_selector_whatever_its_operators() -> None:
    """A new or gone identity is checked only against the selectors its labels can
    match (the anchor index); the answers must equal resolving every selector anew."""
    c = SelectorCache(IDS)
    sels = [
        sel({"matchLabels": {"app": "web"}}),
        sel({"matchLabels": {"app": "web", "tier": "gold"}}),
        sel({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]}),
        sel({"matchExpressions": [{"key": "app", "operator": "In", "values": []}]}),
        sel({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
        sel({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
        sel({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
        sel(
            {
                "matchExpressions": [{"key": "tier", "operator": "Exists"}],
                "matchLabels": {"app": "db"},
            }
        ),
        IdentitySelector(),
        IdentitySelector.exists("reserved:host"),
    ]
    for s in sels:
        c.select(s)
    new = [
        ident(400, "k8s:app=web", "k8s:tier=gold"),
        ident(401, "k8s:app=db", "k8s:tier=silver"),
        ident(402, "k8s:app=cache"),
        ident(403, "reserved:host", "reserved:kube-apiserver"),
    ]
    for i in new:
        changed = c.add_identity(i)
        assert set(changed) == {s for s in sels if s.matches(label_map(i.labels))}
    gone = c.remove_identity(401)
    assert set(gone) == {s for s in sels if s.matches(label_map(new[1].labels))}
    fresh = SelectorCache({**IDS, **{i.id: i for i in new if i.id != 401}})
    assert {s: c.select(s) for s in sels} == {s: fresh.select(s) for s in sels}
