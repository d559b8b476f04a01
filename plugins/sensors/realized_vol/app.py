"""realized_vol: annualized realized volatility of 1-minute closes.

Each poll fetches the last `window + 1` one-minute klines of `symbol` from a
Binance-compatible REST endpoint,

    GET {base}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit={window + 1}

where `base` is the simulated venue on this machine (`source` = "local",
http://127.0.0.1:{local_port}) or Binance itself (`source` = "binance",
https://api.binance.com). It reports one reading,

    realized_vol/rv_1m_annualized  (symbol "BTC-USDT")
    value = sqrt(mean(r_i ** 2) * 525600),  r_i = ln(close_i / close_{i-1})

i.e. the root mean square of the `window` close-to-close log returns, scaled
from minutes to a 365-day year (no mean is subtracted: over minutes the drift
is noise). The reading's time is the close time of the last kline; the sensor
world has no clock, so every timestamp comes from the data. Note that Binance's
last kline is usually the minute still in progress: its close is the latest
trade and its close time lies up to a minute ahead.

Any answer that is not a clean klines array (status other than 200, a body
that is not JSON, a row of the wrong shape, too few rows, a price that is not
positive, rows out of time order) is a PluginError naming what was wrong.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise

from allele_guest import Manifest, Param, PluginError, Reading, Sensor, export_sensor, fetch

SENSOR = "realized_vol"
READING = "rv_1m_annualized"
MINUTES_PER_YEAR = 525600  # 365 days
BINANCE_BASE = "https://api.binance.com"
SYMBOLS = {  # venue symbol -> normalized symbol
    "BTCUSDT": "BTC-USDT",
    "ETHUSDT": "ETH-USDT",
    "SOLUSDT": "SOL-USDT",
    "BNBUSDT": "BNB-USDT",
    "XRPUSDT": "XRP-USDT",
}


def _describe(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _price(row_no: int, field: str, value: object) -> float:
    """A kline price: a decimal string (Binance) or a number, finite and positive."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PluginError(f"kline row {row_no}: {field} must be a decimal string, got {_describe(value)}")
    try:
        price = float(value)
    except ValueError:
        raise PluginError(f"kline row {row_no}: {field} {_describe(value)} is not a number") from None
    if not math.isfinite(price) or price <= 0.0:
        raise PluginError(f"kline row {row_no}: {field} must be a positive price, got {_describe(value)}")
    return price


def _millis(row_no: int, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PluginError(f"kline row {row_no}: {field} must be a non-negative integer (ms), got {_describe(value)}")
    return value


def realized_vol(closes: list[float]) -> float:
    """sqrt(mean(r^2) * minutes per year) of the log returns between consecutive closes."""
    if len(closes) < 2:
        raise PluginError(f"need at least 2 closes for a return, got {len(closes)}")
    total = 0.0
    for prev, cur in pairwise(closes):
        r = math.log(cur / prev)
        total += r * r
    return math.sqrt(total / (len(closes) - 1) * MINUTES_PER_YEAR)


class RealizedVol(Sensor):
    manifest = Manifest(
        name="realized_vol", version="0.1.0", kind="sensor", author="Allele",
        description="Annualized realized volatility of 1-minute close-to-close log returns, from Binance-style klines.",
        parameters=(
            Param.enum("source", "local", ("local", "binance"),
                       description="local: the simulated venue on 127.0.0.1:local_port; binance: api.binance.com"),
            Param.int("local_port", 8700, 1, 65535, description="port of the simulated venue when source is local"),
            Param.enum("symbol", "BTCUSDT", tuple(SYMBOLS), description="venue symbol whose klines are read"),
            Param.int("window", 60, 5, 999,
                      description="number of 1-minute returns (window + 1 klines; Binance serves at most 1000)"),
        ),
        allowed_hosts=("127.0.0.1", "api.binance.com"),
    )

    def reset(self) -> None:
        p = self.params
        base = f"http://127.0.0.1:{p['local_port']}" if p["source"] == "local" else BINANCE_BASE
        self._rows = p["window"] + 1
        self._url = f"{base}/api/v3/klines?symbol={p['symbol']}&interval=1m&limit={self._rows}"
        self._symbol = SYMBOLS[p["symbol"]]

    def poll(self) -> list[Reading]:
        url = self._url
        resp = fetch(url)  # PluginError naming the host if refused or failed
        if resp.status != 200:
            raise PluginError(f"GET {url} returned status {resp.status}: {resp.body[:200]!r}")
        try:
            rows = json.loads(resp.body)
        except ValueError:
            raise PluginError(f"GET {url} returned a body that is not JSON: {resp.body[:120]!r}") from None
        if not isinstance(rows, list):
            raise PluginError(f"GET {url} returned JSON that is not a list of klines: {_describe(rows)}")
        if len(rows) < self._rows:
            raise PluginError(f"GET {url} returned {len(rows)} klines, need {self._rows} "
                              f"(window {self.params['window']} + 1)")
        first = len(rows) - self._rows  # a server that ignores `limit`: use the newest rows
        rows = rows[first:]
        closes: list[float] = []
        last_open = -1
        close_ms = 0
        for i, row in enumerate(rows, start=first):
            if not isinstance(row, list) or len(row) < 7:
                raise PluginError(f"kline row {i} is not an array [open_time, open, high, low, close, volume, "
                                  f"close_time, ...]: {_describe(row)}")
            open_ms = _millis(i, "open_time", row[0])
            if open_ms <= last_open:
                raise PluginError(f"kline row {i}: open_time {open_ms} is not after the previous row's {last_open}")
            last_open = open_ms
            closes.append(_price(i, "close", row[4]))
            close_ms = _millis(i, "close_time", row[6])
        return [Reading(SENSOR, READING, self._symbol, close_ms * 1_000_000, realized_vol(closes))]


SensorApi = export_sensor(RealizedVol)
