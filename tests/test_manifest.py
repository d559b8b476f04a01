"""The manifest model and parameter checks, without any wasm."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from allele.kernel.config import describe_validation_error
from allele.kernel.plugin.capabilities import url_allowed
from allele.kernel.plugin.manifest import Manifest, ParamSpec, check_params

BASE: dict[str, Any] = {"name": "demo", "version": "0.1.0", "kind": "strategy", "author": "a", "description": "d",
                        "proof": "docs/strategies/demo.md"}


def _error(**fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        Manifest.model_validate({**BASE, **fields})
    return describe_validation_error(info.value)


def test_valid_manifest_with_every_parameter_type() -> None:
    m = Manifest.model_validate({**BASE, "parameters": [
        {"name": "n", "type": "int", "default": 3, "min": 1, "max": 9, "step": 1},
        {"name": "x", "type": "float", "default": 0.5, "min": 0, "max": 1},
        {"name": "b", "type": "bool", "default": True},
        {"name": "e", "type": "enum", "default": "a", "choices": ["a", "b"]}]})
    assert m.defaults() == {"n": 3, "x": 0.5, "b": True, "e": "a"}


@pytest.mark.parametrize(("fields", "expected"), [
    ({"name": "Bad Name"}, "field 'name': 'Bad Name' is not a plugin name"),
    ({"version": "one"}, "field 'version': 'one' is not a semantic version"),
    ({"kind": "robot"}, "field 'kind'"),
    ({"author": ""}, "field 'author'"),
    ({"proof": ""}, "a strategy must name its proof document"),
    ({"allowed_hosts": ["example.com"]}, "a strategy may not declare allowed_hosts"),
    ({"parameters": [{"name": "w", "type": "int", "default": 10, "min": 50, "max": 5}]},
     "field 'parameters[0]': parameter 'w': min 50.0 is greater than max 5.0"),
    ({"parameters": [{"name": "w", "type": "int", "default": 99, "min": 1, "max": 5}]},
     "default: 'w' = 99 is outside its range [1, 5]"),
    ({"parameters": [{"name": "w", "type": "int", "default": 2, "min": 1.5, "max": 5}]},
     "an int parameter needs integer min, max and step"),
    ({"parameters": [{"name": "w", "type": "float", "default": 1.0}]}, "float parameters need min and max"),
    ({"parameters": [{"name": "w", "type": "float", "default": 1.0, "min": 0, "max": 2, "step": -1}]},
     "step must be a positive number"),
    ({"parameters": [{"name": "e", "type": "enum", "default": "z", "choices": ["a"]}]}, "must be one of ['a']"),
    ({"parameters": [{"name": "e", "type": "enum", "default": "a", "choices": []}]}, "needs choices"),
    ({"parameters": [{"name": "b", "type": "bool", "default": 1}]}, "must be true or false"),
    ({"parameters": [{"name": "a", "type": "bool", "default": True}, {"name": "a", "type": "bool",
                                                                       "default": False}]},
     "parameter names repeat: a"),
])
def test_invalid_manifests_name_the_field(fields: dict[str, Any], expected: str) -> None:
    assert expected in _error(**fields)


def test_allowed_host_entries_are_scheme_host_and_port_without_a_path() -> None:
    msg = _error(kind="sensor", allowed_hosts=["https://api.example.com/v1"])
    assert "field 'allowed_hosts'" in msg and "is not an allowed-host entry" in msg
    assert "port 70000 is out of range" in _error(kind="sensor", allowed_hosts=["api.example.com:70000"])
    ok = Manifest.model_validate({**BASE, "kind": "sensor",
                                  "allowed_hosts": ["https://api.example.com", "127.0.0.1:8080", "*.example.org"]})
    assert ok.allowed_hosts == ("https://api.example.com", "127.0.0.1:8080", "*.example.org")


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://api.example.com/v1/x", True),        # bare host: http or https, any port
    ("http://api.example.com:8080/x", True),
    ("https://evil.example.com/", False),
    ("https://api.example.com.evil.net/", False),
    ("https://a.b.example.org/", True),            # *.example.org
    ("https://example.org/", False),
    ("http://secure.example.net/", False),         # https:// entry: https only
    ("https://secure.example.net/", True),
    ("https://secure.example.net:8443/", True),    # no port in the entry: any port
    ("http://127.0.0.1:8080/k", True),             # host:port entry: that port only
    ("http://127.0.0.1:8081/k", False),
    ("ftp://api.example.com/", False),
    ("http://api.example.com:99999/", False),      # a malformed port
])
def test_urls_are_admitted_by_scheme_host_and_port(url: str, allowed: bool) -> None:
    entries = frozenset({"api.example.com", "*.example.org", "https://secure.example.net", "127.0.0.1:8080"})
    assert url_allowed(url, entries) is allowed


def test_check_params_coerces_and_names_the_bad_value() -> None:
    m = Manifest.model_validate({**BASE, "parameters": [
        {"name": "n", "type": "int", "default": 3, "min": 1, "max": 9},
        {"name": "x", "type": "float", "default": 0.5, "min": 0, "max": 1}]})
    assert check_params(m, {"n": 4.0, "x": 1}) == {"n": 4, "x": 1.0}
    assert isinstance(check_params(m, {"x": 1})["x"], float)
    with pytest.raises(ValueError, match=r"'n' must be an integer, got 4\.5"):
        check_params(m, {"n": 4.5})
    with pytest.raises(ValueError, match=r"'x' = 2.0 is outside its range \[0, 1\]"):
        check_params(m, {"x": 2})
    with pytest.raises(ValueError, match="'y' is not a parameter of demo"):
        check_params(m, {"y": 1})
    with pytest.raises(ValueError, match="'n' must be a number, got True"):
        check_params(m, {"n": True})


@given(lo=st.integers(-1000, 1000), span=st.integers(0, 1000), value=st.integers(-3000, 3000))
def test_int_params_accept_exactly_their_range(lo: int, span: int, value: int) -> None:
    spec = ParamSpec(name="p", type="int", default=lo, min=lo, max=lo + span)
    m = Manifest.model_validate({**BASE, "parameters": [spec.model_dump()]})
    if lo <= value <= lo + span:
        assert check_params(m, {"p": value}) == {"p": value}
    else:
        with pytest.raises(ValueError, match="outside its range"):
            check_params(m, {"p": value})
