"""The `http` task's allowlist (`domain/builtins.py`): `host:port` allows that port, a bare
host only the scheme's default port, IPv6 entries in brackets match."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskyard.domain.builtins import BuiltinPolicy, allowlist_entry, http_allowed

PORTS = st.integers(min_value=1, max_value=65535)


def test_an_ipv6_entry_with_a_port_matches_that_port_only() -> None:
    allow = ["[::1]:9000"]
    assert http_allowed("http://[::1]:9000/hook", allow)
    assert http_allowed("http://[0:0:0:0:0:0:0:1]:9000/", allow)
    assert not http_allowed("http://[::1]:9001/", allow)
    assert not http_allowed("http://[::1]/", allow)
    assert not http_allowed("http://127.0.0.1:9000/", allow)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://hooks.test/", True),
        ("http://hooks.test:80/", True),
        ("https://hooks.test/x", True),
        ("https://hooks.test:443/x", True),
        ("http://hooks.test:443/", False),
        ("https://hooks.test:80/", False),
        ("http://hooks.test:5432/", False),
        ("http://hooks.test:6379/", False),
        ("http://hooks.test:8080/", False),
        ("http://HOOKS.Test/", True),
        ("http://other.test/", False),
    ],
)
def test_a_bare_host_allows_only_the_scheme_s_default_port(url: str, allowed: bool) -> None:
    assert http_allowed(url, ["Hooks.test"]) is allowed


@pytest.mark.parametrize(
    "url",
    [
        "http://x@127.0.0.1:9000/",
        "http://evil.test\\@127.0.0.1:9000/",
        "http://127.0.0.1:9000@evil.test/",
        "http://127.0.0.1\t:9000/",
        "http://127.0.0.1:9000/ x",
        "http://127.0.0.1:9000/\x00",
        "ftp://127.0.0.1:9000/",
        "http:///x",
    ],
)
def test_a_url_two_readers_could_read_differently_is_never_allowed(url: str) -> None:
    assert not http_allowed(url, ["127.0.0.1:9000", "evil.test"])
    assert BuiltinPolicy(http_allowed_hosts=frozenset({"127.0.0.1:9000"})).check(
        "http", {"url": url}
    )


@given(scheme=st.sampled_from(["http", "https"]), port=PORTS)
def test_a_bare_entry_allows_exactly_the_default_port(scheme: str, port: int) -> None:
    default = {"http": 80, "https": 443}[scheme]
    assert http_allowed(f"{scheme}://h.test:{port}/", ["h.test"]) is (port == default)


@given(scheme=st.sampled_from(["http", "https"]), port=PORTS, allowed=PORTS)
def test_an_entry_with_a_port_allows_exactly_that_port(
    scheme: str, port: int, allowed: int
) -> None:
    assert http_allowed(f"{scheme}://h.test:{port}/", [f"h.test:{allowed}"]) is (port == allowed)


@given(address=st.ip_addresses(v=6), port=PORTS)
def test_an_ipv6_entry_matches_any_spelling_of_its_address(
    address: ipaddress.IPv6Address, port: int
) -> None:
    assert http_allowed(f"http://[{address.exploded}]:{port}/", [f"[{address}]:{port}"])
    assert not http_allowed(f"http://[{address}]:{port}/", [f"[{address}]"]) or port == 80


def test_entries_are_read_as_host_and_optional_port() -> None:
    assert allowlist_entry("[::1]:9000") == ("::1", 9000)
    assert allowlist_entry("[::1]") == ("::1", None)
    assert allowlist_entry("127.0.0.1:80") == ("127.0.0.1", 80)
    assert allowlist_entry("Example.COM") == ("example.com", None)
    for bad in ("::1:9000", "a:b", "[::1", "h:1:2", ""):
        assert allowlist_entry(bad) is None, bad


STRINGS = st.text(max_size=5)
NOT_STRING = st.one_of(st.none(), st.booleans(), st.integers(), st.lists(STRINGS, max_size=2))


@pytest.mark.parametrize(
    ("task", "field", "args"),
    [
        ("http", "headers", {"url": "https://example.com/"}),
        ("shell", "env", {"argv": ["true"]}),
    ],
)
@given(
    good=st.dictionaries(STRINGS, STRINGS, max_size=3),
    bad=st.one_of(
        NOT_STRING,
        STRINGS,
        st.dictionaries(STRINGS, NOT_STRING, min_size=1, max_size=2),
    ),
)
def test_headers_and_env_are_objects_of_strings(
    task: str, field: str, args: dict[str, object], good: dict[str, str], bad: object
) -> None:
    """The http task's `headers` and the shell task's `env`: optional, and if given an
    object whose keys and values are all strings, else one problem naming the field."""
    policy = BuiltinPolicy(http_allowed_hosts=frozenset({"example.com"}), shell_enabled=True)
    assert policy.check(task, args) == []
    assert policy.check(task, {**args, field: good}) == []
    problems = policy.check(task, {**args, field: bad})
    assert [(p.field, p.message) for p in problems] == [
        (f"args.{field}", "must be an object of strings")
    ]
