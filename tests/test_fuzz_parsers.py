"""Fuzzing the parsers that take outside input: whatever arrives, the answer is a value or the parser's own
clear error, never another exception and never a hang.

- venue frames: the order kernel's 64-byte frames, and the bundled binance_spot exchange's `decode`;
- plugin files and manifests: `PluginHost.load` on arbitrary bytes, `Manifest` on arbitrary JSON;
- specs and configuration: arena organism specs, and `config.toml` as text and as tables.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from allele.kernel.arena.organism import OrganismSpec
from allele.kernel.config import ConfigError, describe_validation_error
from allele.kernel.engine.config import load_engine_config, load_organisms, load_sensors
from allele.kernel.orders import frames
from allele.kernel.plugin.errors import PluginLoadError
from allele.kernel.plugin.host import PluginHost
from allele.kernel.plugin.manifest import Manifest
from allele.kernel.risk import load_risk_config
from allele.kernel.sdk.testing import NativeHost, load_native

BINANCE = Path(__file__).resolve().parents[1] / "plugins" / "exchanges" / "binance_spot"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=25)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- venue frames ------------------------------------------------------------------------------------------------

@FUZZ
@given(st.binary(max_size=80) | st.binary(min_size=64, max_size=64))
def test_order_kernel_frames_decode_or_refuse(frame: bytes) -> None:
    try:
        msg = frames.decode(frame)
    except frames.FrameError as exc:
        assert str(exc)
        return
    assert frames.encode(msg) == frame  # what decodes is exactly what it says


@FUZZ
@given(st.sampled_from(list(frames.MsgType)), st.binary(min_size=63, max_size=63))
def test_order_kernel_frames_of_every_type_decode_or_refuse(msg_type: frames.MsgType, rest: bytes) -> None:
    frame = bytes([msg_type]) + rest
    try:
        assert frames.encode(frames.decode(frame)) == frame
    except frames.FrameError as exc:
        assert msg_type.name in str(exc) or "reserved" in str(exc) or "not a valid" in str(exc)


@pytest.fixture(scope="module")
def binance() -> Any:
    module = load_native(BINANCE, NativeHost(secrets={"main": b"s"}))
    return module.BinanceSpot()


def _decode_or_refuse(exchange: Any, frame: str) -> None:
    from allele_guest import MarketEvent, OrderUpdate, PluginError

    try:
        out = exchange.decode(frame)
    except PluginError as exc:
        assert str(exc)
        return
    assert isinstance(out, list) and all(isinstance(x, MarketEvent | OrderUpdate) for x in out)


@FUZZ
@given(st.text(max_size=200))
def test_binance_decode_of_any_text(binance: Any, frame: str) -> None:
    _decode_or_refuse(binance, frame)


event_frames = st.fixed_dictionaries(
    {"e": st.sampled_from(["trade", "bookTicker", "executionReport", "outboundAccountPosition", "x"])},
    optional={k: json_values | st.sampled_from(["BTCUSDT", "0.5", "-1", "NaN", "1e400", "1700000000000", "NEW",
                                                  "FILLED", "CANCELED", "BUY", "SELL", "LIMIT"])
              for k in ("s", "p", "q", "T", "t", "b", "B", "a", "A", "c", "C", "i", "X", "x", "l", "L", "z", "S",
                        "o", "n", "N", "E", "u", "m")})


@FUZZ
@given(event_frames, st.booleans())
def test_binance_decode_of_event_shaped_frames(binance: Any, event: dict[str, Any], wrapped: bool) -> None:
    body = {"stream": "btcusdt@trade", "data": event} if wrapped else event
    _decode_or_refuse(binance, json.dumps(body, allow_nan=True))


# --- plugin files and manifests ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(Path(tempfile.mkdtemp(prefix="allele-fuzz-")))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.binary(max_size=40).map(lambda b: b"\0asm\x01\0\0\0" + b)
       | st.binary(max_size=40).map(lambda b: b"\0asm\x0d\0\x01\0" + b))
def test_loading_any_bytes_is_a_plugin_or_a_clear_refusal(host: PluginHost, data: bytes) -> None:
    with pytest.raises(PluginLoadError) as info:
        host.load("fuzz.wasm", data=data)
    assert "fuzz.wasm" in str(info.value)


manifest_like = st.fixed_dictionaries(
    {"name": st.text(max_size=20) | st.just("x"), "version": st.text(max_size=8) | st.just("1.0.0"),
     "kind": st.sampled_from(["strategy", "sensor", "exchange", "oracle"]) | json_values},
    optional={"author": json_values, "description": json_values, "proof": json_values, "symbols": json_values,
              "sensor_inputs": json_values, "allowed_hosts": json_values | st.lists(st.text(max_size=30), max_size=3),
              "parameters": st.lists(st.dictionaries(st.sampled_from(["name", "type", "default", "min", "max", "step",
                                                                       "choices", "x"]), json_values), max_size=3)})


@FUZZ
@given(manifest_like | json_values)
def test_any_manifest_json_is_a_manifest_or_a_named_error(data: Any) -> None:
    try:
        Manifest.model_validate(data)
    except ValidationError as exc:
        assert describe_validation_error(exc)


# --- specs and configuration -------------------------------------------------------------------------------------

@FUZZ
@given(st.fixed_dictionaries({}, optional={"strategy": json_values, "plugin_sha256": json_values,
                                           "genome": json_values, "exchange": json_values, "sensors": json_values,
                                           "allocation": json_values}) | json_values)
def test_any_organism_spec_is_a_spec_or_a_validation_error(data: Any) -> None:
    try:
        spec = OrganismSpec.model_validate(data)
    except ValidationError as exc:
        assert describe_validation_error(exc)
        return
    assert len(spec.fingerprint) == 64 and OrganismSpec.model_validate_json(spec.canonical()) == spec


LOADERS = (load_engine_config, load_risk_config, load_organisms, load_sensors)


def _loads_or_refuses(home: Path) -> None:
    for loader in LOADERS:
        try:
            loader(home)
        except ConfigError as exc:
            assert "config.toml" in str(exc) or "ALLELE_" in str(exc)


@FUZZ
@given(st.text(max_size=300))
def test_any_config_text_loads_or_is_refused_naming_the_file(text: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="allele-fuzz-home-"))
    (home / "config.toml").write_text(text, encoding="utf-8")
    _loads_or_refuses(home)


toml_scalars = st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=12)
engine_keys = st.sampled_from(["mode", "seed", "symbols", "bar_ms", "speed", "bars", "batch_events", "order_kernel",
                               "order_kernel_slots", "order_ttl_s", "latency_us", "maker_fee", "taker_fee",
                               "record", "firehose_max_mb", "ledger_sync", "equity_interval_s", "typo"])


@FUZZ
@given(st.dictionaries(engine_keys, toml_scalars | st.lists(toml_scalars, max_size=3), max_size=6))
def test_any_engine_table_loads_or_is_refused_naming_the_key(table: dict[str, Any]) -> None:
    home = Path(tempfile.mkdtemp(prefix="allele-fuzz-home-"))
    lines = ["[engine]"] + [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    (home / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        load_engine_config(home)
    except ConfigError as exc:
        assert "[engine]" in str(exc) or "not valid TOML" in str(exc)
