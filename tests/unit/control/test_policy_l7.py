"""L7 HTTP rules as the proxy applies them: anchored regexes, empty fields match all,
headers present or equal; no rule allowing a request means 403."""

from __future__ import annotations

from ciliate.control.l7 import describe, http_allowed, http_rule_matches
from ciliate.desired import L7Rule


def test_path_and_method_are_full_matches() -> None:
    r = L7Rule("http", method="GET", path="/public")
    assert http_rule_matches(r, "GET", "/public")
    assert not http_rule_matches(r, "GET", "/public/x")  # whole path, not a prefix
    assert not http_rule_matches(r, "POST", "/public")
    assert http_rule_matches(L7Rule("http", method="GET|HEAD", path="/api/.*"), "HEAD", "/api/v1")


def test_empty_rule_allows_everything_and_headers() -> None:
    assert http_allowed([L7Rule("http")], "DELETE", "/anything") is not None
    r = L7Rule("http", headers=("X-Token", "X-Env: prod"))
    assert http_rule_matches(r, "GET", "/", headers={"x-token": "1", "X-Env": "prod"})
    assert not http_rule_matches(r, "GET", "/", headers={"X-Token": "1", "X-Env": "dev"})
    assert not http_rule_matches(r, "GET", "/", headers={"X-Env": "prod"})


def test_host_and_bad_regex() -> None:
    assert http_rule_matches(
        L7Rule("http", host="api\\.example\\.com"), "GET", "/", host="api.example.com"
    )
    assert not http_rule_matches(L7Rule("http", path="(["), "GET", "([")  # invalid: no match
    assert (
        http_allowed([L7Rule("http", path="/a"), L7Rule("dns", match_name="x")], "GET", "/b")
        is None
    )


def test_describe() -> None:
    assert describe(L7Rule("http", method="GET", path="/public")) == "http GET /public"
    assert describe(L7Rule("dns", match_pattern="*.cilium.io")) == "dns *.cilium.io"
