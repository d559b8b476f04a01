"""realized_vol sensor, natively, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from klines_venue import MINUTE_MS, T0_MS, Venue, klines

from allele.kernel.sdk.testing import NativeHost, load_native
from allele_guest import PluginError, Reading

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "sensors" / "realized_vol"


def make_sensor(venue: Venue, **params):
    mod = load_native(PLUGIN, NativeHost(allowed_hosts=("127.0.0.1",)))
    sensor = mod.RealizedVol()
    sensor.configure({"source": "local", "local_port": venue.port, **params})
    return sensor


def expected_vol(closes: list[float]) -> float:
    """Independent computation: log returns, then root of the annualized mean square."""
    logs = [math.log(c) for c in closes]
    diffs = [logs[i] - logs[i - 1] for i in range(1, len(logs))]
    return math.sqrt(math.fsum(d * d for d in diffs) / len(diffs) * 365 * 24 * 60)


def price_series(n: int) -> list[float]:
    # deterministic, irregular moves of up to about +-0.3 %
    out, p = [], 43000.0
    for i in range(n):
        p *= 1 + 0.003 * math.sin(i * 1.7) * math.cos(i * 0.31)
        out.append(round(p, 2))
    return out


def test_manifest() -> None:
    mod = load_native(PLUGIN)
    m = mod.RealizedVol.manifest
    assert m.kind == "sensor"
    assert set(m.allowed_hosts) == {"127.0.0.1", "api.binance.com"}
    params = {p.name: p for p in m.parameters}
    assert params["source"].choices == ("local", "binance") and params["source"].default == "local"
    assert params["window"].default == 60
    assert "BTCUSDT" in params["symbol"].choices


def test_value_matches_independent_computation(venue: Venue) -> None:
    closes = price_series(61)
    venue.serve(klines(closes))
    sensor = make_sensor(venue)  # window 60 -> 61 klines

    readings = sensor.poll()

    assert len(readings) == 1
    r = readings[0]
    assert isinstance(r, Reading)
    assert (r.sensor, r.name, r.symbol) == ("realized_vol", "rv_1m_annualized", "BTC-USDT")
    assert r.ts_ns == (T0_MS + 60 * MINUTE_MS + MINUTE_MS - 1) * 1_000_000
    assert r.value == pytest.approx(expected_vol(closes), rel=1e-12)
    assert 0.05 < r.value < 5  # a plausible annualized vol for these moves
    path, query = venue.requests[-1]
    assert path == "/api/v3/klines"
    assert query == {"symbol": ["BTCUSDT"], "interval": ["1m"], "limit": ["61"]}


def test_known_constant_return() -> None:
    mod = load_native(PLUGIN)
    # every minute +1 %: rv = |ln 1.01| * sqrt(525600)
    closes = [100 * 1.01 ** i for i in range(11)]
    assert mod.realized_vol(closes) == pytest.approx(math.log(1.01) * math.sqrt(525600), rel=1e-12)
    assert mod.realized_vol([5.0, 5.0, 5.0]) == 0.0


def test_window_symbol_and_extra_rows(venue: Venue) -> None:
    closes = price_series(30)
    venue.serve(klines(closes))  # more rows than asked for: the newest 11 count
    sensor = make_sensor(venue, window=10, symbol="ETHUSDT")
    (r,) = sensor.poll()
    assert r.symbol == "ETH-USDT"
    assert r.value == pytest.approx(expected_vol(closes[-11:]), rel=1e-12)
    assert r.ts_ns == (T0_MS + 29 * MINUTE_MS + MINUTE_MS - 1) * 1_000_000
    assert venue.requests[-1][1]["limit"] == ["11"] and venue.requests[-1][1]["symbol"] == ["ETHUSDT"]


def test_status_500_is_a_clear_error(venue: Venue) -> None:
    venue.status, venue.body = 500, '{"code":-1000,"msg":"internal"}'
    sensor = make_sensor(venue)
    with pytest.raises(PluginError, match=r"status 500") as exc:
        sensor.poll()
    assert f"http://127.0.0.1:{venue.port}/api/v3/klines" in str(exc.value)


def test_garbage_body_is_a_clear_error(venue: Venue) -> None:
    venue.status, venue.body = 200, "<html>gateway timeout</html>"
    sensor = make_sensor(venue)
    with pytest.raises(PluginError, match=r"not JSON"):
        sensor.poll()
    venue.body = '{"code": -1121, "msg": "Invalid symbol."}'
    with pytest.raises(PluginError, match=r"not a list of klines"):
        sensor.poll()


def test_too_few_rows_is_a_clear_error(venue: Venue) -> None:
    venue.serve(klines(price_series(20)))
    sensor = make_sensor(venue, window=60)
    with pytest.raises(PluginError, match=r"returned 20 klines, need 61"):
        sensor.poll()


@pytest.mark.parametrize("mutate, message", [
    (lambda rows: rows[3].__setitem__(4, "0"), r"row 3: close must be a positive price"),
    (lambda rows: rows[5].__setitem__(4, "-12.5"), r"row 5: close must be a positive price"),
    (lambda rows: rows[2].__setitem__(4, "abc"), r"row 2: close 'abc' is not a number"),
    (lambda rows: rows.__setitem__(4, {"close": "1"}), r"kline row 4 is not an array"),
    (lambda rows: rows.__setitem__(1, rows[1][:5]), r"kline row 1 is not an array"),
    (lambda rows: rows[6].__setitem__(6, "soon"), r"row 6: close_time must be a non-negative integer"),
    (lambda rows: rows[7].__setitem__(0, rows[6][0]), r"row 7: open_time .* is not after"),
])
def test_bad_rows_are_clear_errors(venue: Venue, mutate, message: str) -> None:
    rows = klines(price_series(11))
    mutate(rows)
    venue.serve(rows)
    sensor = make_sensor(venue, window=10)
    with pytest.raises(PluginError, match=message):
        sensor.poll()


def test_unreachable_local_venue_is_a_clear_error(venue: Venue) -> None:
    sensor = make_sensor(venue)
    venue.server.shutdown()
    venue.server.server_close()
    with pytest.raises(PluginError, match=r"failed"):
        sensor.poll()


def test_binance_source_refused_by_allow_list() -> None:
    mod = load_native(PLUGIN, NativeHost(allowed_hosts=("127.0.0.1",)))
    sensor = mod.RealizedVol()
    sensor.configure({"source": "binance", "symbol": "SOLUSDT"})
    with pytest.raises(PluginError, match=r"api\.binance\.com"):
        sensor.poll()


def test_bad_parameters_are_refused() -> None:
    mod = load_native(PLUGIN)
    sensor = mod.RealizedVol()
    with pytest.raises(PluginError, match="window"):
        sensor.configure({"window": 2})
    with pytest.raises(PluginError, match="source"):
        sensor.configure({"source": "kraken"})
    with pytest.raises(PluginError, match="local_port"):
        sensor.configure({"local_port": 70000})
