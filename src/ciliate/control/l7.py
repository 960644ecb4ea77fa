"""L7 rule matching of a redirect entry (what the proxy decides for one request).

HTTP (cilium.md §6.3 ``rules.http``): ``method``, ``path`` and ``host`` are extended
regular expressions matched against the whole value (Envoy ``safe_regex`` semantics);
an empty field matches anything; ``headers`` entries are ``"Name"`` (present) or
``"Name: value"`` (equal). A request is allowed when any rule matches; otherwise the
proxy answers 403 "Access denied". ``http: [{}]`` (one empty rule) allows every request.

Used by the model datapath and by ``explain``. Pure; imports only ``ciliate.desired``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

from ciliate.desired import L7Rule

HTTP_FORBIDDEN = 403


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _full(pattern: str, value: str) -> bool:
    if not pattern:
        return True
    rx = _compiled(pattern)
    return rx is not None and rx.fullmatch(value) is not None


def _headers_ok(wanted: Sequence[str], headers: Mapping[str, str]) -> bool:
    lower = {k.lower(): v for k, v in headers.items()}
    for h in wanted:
        name, sep, value = h.partition(":")
        got = lower.get(name.strip().lower())
        if got is None or (sep and got.strip() != value.strip()):
            return False
    return True


def http_rule_matches(
    rule: L7Rule, method: str, path: str, host: str = "", headers: Mapping[str, str] | None = None
) -> bool:
    return (
        rule.kind == "http"
        and _full(rule.method, method)
        and _full(rule.path, path)
        and _full(rule.host, host)
        and _headers_ok(rule.headers, headers or {})
    )


def http_allowed(
    rules: Sequence[L7Rule],
    method: str,
    path: str,
    host: str = "",
    headers: Mapping[str, str] | None = None,
) -> L7Rule | None:
    """The first HTTP rule allowing the request, or None (the proxy answers 403)."""
    for r in rules:
        if http_rule_matches(r, method, path, host, headers):
            return r
    return None


def describe(rule: L7Rule) -> str:
    if rule.kind == "dns":
        return f"dns {rule.match_name or rule.match_pattern}"
    parts = [rule.method or "*", rule.path or "*"]
    if rule.host:
        parts.append(f"host={rule.host}")
    parts.extend(rule.headers)
    return "http " + " ".join(parts)
