"""The emulator's perpetuals: a Binance USD-M futures (`/fapi/v1`, `/fapi/v2`, `/fapi/v3`) subset over the same engine.

`FuturesState` is an `EmulatorState` with perpetual contracts instead of spot pairs: the same matching
engine, synthetic market, request authentication, error codes and rate limit, but

- every symbol ("BTCUSDT") is a linear perpetual (`contractType` PERPETUAL) settled and margined in USDT;
- an account holds a USDT wallet and one signed position per symbol (one-way mode, `positionSide` BOTH):
  a sell from flat opens a short; a fill against the position reduces it and books realized PnL into the
  wallet; fees (maker/taker, in USDT) come out of the wallet;
- an order that adds exposure needs initial margin (`notional / leverage`, cross margin, leverage fixed per
  account at `leverage`) out of the available balance (wallet + unrealized PnL - margin of positions and of
  open orders); a `reduceOnly` order may only shrink the position;
- the endpoints ccxt's `binance` (defaultType "swap") calls: exchangeInfo, depth, trades, aggTrades,
  ticker/24hr, ticker/bookTicker, ticker/price, premiumIndex, time, ping; order (POST/GET/DELETE),
  openOrders, allOrders, userTrades, account, balance, positionRisk, leverageBracket; listenKey
  (POST/PUT/DELETE) with `ORDER_TRADE_UPDATE` events on the user data stream. The API version in the path
  (v1/v2/v3) does not change a reply: each carries the fields of every version ccxt reads.

Not emulated: funding payments, liquidation, mark price distinct from the last price (the mark is the
book's mid, else the last trade), isolated margin, hedge mode, leverage changes, stop and trailing orders.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from allele.kernel.domain import OrderUpdate, Side

from .state import (
    _OPEN,
    JSON,
    Account,
    ApiError,
    EmulatorConfig,
    EmulatorState,
    OrderRecord,
    Reply,
    _execution_type,
    fmt,
)

MARGIN_ASSET = "USDT"
FUTURES_CONFIG = EmulatorConfig(seed=11, maker_fee=0.0002, taker_fee=0.0005)
"""Binance's base USD-M fee tier (also ccxt's default `linear` fees, so ccxt's market fees tell the truth)."""
MAINT_MARGIN_RATIO = 0.004


@dataclass(slots=True)
class Position:
    """One account's position in one perpetual: signed quantity (short < 0) and its average entry price."""

    qty: float = 0.0
    entry: float = 0.0
    update_ms: int = 0


class FuturesState(EmulatorState):
    """Linear perpetuals, margined in USDT; see the module docstring for what is and is not modelled."""

    def __init__(self, config: EmulatorConfig | None = None, accounts: Mapping[str, Account] | None = None,
                 *, leverage: int = 10, clock: Callable[[], int] = time.time_ns) -> None:
        super().__init__(config or FUTURES_CONFIG, accounts, clock=clock)
        if any(s.quote != MARGIN_ASSET for s in self.config.symbols):
            raise ValueError(f"futures symbols must be margined in {MARGIN_ASSET}")
        self.leverage = leverage
        self.positions: dict[tuple[str, str], Position] = {}
        self.reduce_only: set[int] = set()
        self._last_realized = 0.0  # the realized PnL of the fill being applied, for its user-stream event

    @classmethod
    def beside(cls, spot: EmulatorState, *, leverage: int = 10) -> FuturesState | None:
        """A futures venue for the spot venue's API keys (each futures wallet starts with the account's USDT),
        listing a perpetual for each USDT-quoted spot symbol; None if there is none."""
        accounts = {key: Account(a.secret, {MARGIN_ASSET: a.balances.get(MARGIN_ASSET, 0.0)})
                    for key, a in spot.accounts.items()}
        symbols = tuple(s for s in spot.config.symbols if s.quote == MARGIN_ASSET)
        if not symbols:
            return None
        config = EmulatorConfig(symbols=symbols, seed=spot.config.seed + 4, maker_fee=FUTURES_CONFIG.maker_fee,
                                taker_fee=FUTURES_CONFIG.taker_fee, weight_per_minute=spot.config.weight_per_minute,
                                weight_window_s=spot.config.weight_window_s,
                                clock_offset_ms=spot.config.clock_offset_ms, depth_levels=spot.config.depth_levels)
        return cls(config, accounts, leverage=leverage, clock=spot._clock)

    # --- money -----------------------------------------------------------------------------------

    def position(self, account: str, symbol: str) -> Position:
        return self.positions.setdefault((account, symbol), Position())

    def mark(self, symbol: str) -> float:
        bid, _, ask, _ = self._top(symbol)
        return (bid + ask) / 2 if bid and ask else self._last(symbol)

    def unrealized(self, account: str, symbol: str) -> float:
        p = self.positions.get((account, symbol))
        return p.qty * (self.mark(symbol) - p.entry) if p is not None and p.qty else 0.0

    def wallet(self, account: str) -> float:
        return self.accounts[account].balances.get(MARGIN_ASSET, 0.0)

    def position_margin(self, account: str, symbol: str) -> float:
        p = self.positions.get((account, symbol))
        return abs(p.qty) * self.mark(symbol) / self.leverage if p is not None else 0.0

    def order_margin(self, account: str, symbol: str | None = None) -> float:
        """Initial margin held by the open orders that would add exposure (all symbols when `symbol` is None)."""
        total = 0.0
        for o in self.orders.values():
            if o.account != account or o.status not in _OPEN or (symbol is not None and o.symbol != symbol):
                continue
            qty = self.position(account, o.symbol).qty
            adds = (o.side == "BUY" and qty >= 0) or (o.side == "SELL" and qty <= 0)
            if adds:
                total += (o.orig_qty - o.executed_qty) * (o.price or self.mark(o.symbol)) / self.leverage
        return total

    def available(self, account: str) -> float:
        upnl = sum(self.unrealized(account, s) for s in self.specs)
        held = sum(self.position_margin(account, s) for s in self.specs) + self.order_margin(account)
        return self.wallet(account) + upnl - held

    def _check_funds(self, account: str, params: Mapping[str, str], symbol: str, side: Side, quantity: float,
                     reference: float) -> None:
        if params.get("positionSide", "BOTH") != "BOTH":
            raise ApiError(400, -4061, "Order's position side does not match user's setting (the emulator runs "
                                       "one-way mode: positionSide BOTH).")
        qty = self.position(account, symbol).qty
        signed = quantity if side == "buy" else -quantity
        if params.get("reduceOnly", "false").lower() == "true" and (qty == 0 or qty * signed > 0
                                                                     or abs(signed) > abs(qty) + 1e-12):
            raise ApiError(400, -2022, "ReduceOnly Order is rejected.")
        added = max(abs(qty + signed) - abs(qty), 0.0)
        need = added * reference / self.leverage + quantity * reference * self.config.taker_fee
        if added > 0 and self.available(account) + 1e-9 < need:
            raise ApiError(400, -2019, "Margin is insufficient.")

    def _settle_fill(self, record: OrderRecord, qty: float, price: float, fee: float) -> None:
        p = self.position(record.account, record.symbol)
        signed = qty if record.side == "BUY" else -qty
        realized = 0.0
        if p.qty * signed < 0:  # against the position: close up to its size at the entry price
            closing = min(abs(signed), abs(p.qty))
            realized = closing * (price - p.entry) * (1.0 if p.qty > 0 else -1.0)
            rest = p.qty + signed
            if abs(rest) < 1e-12:
                p.qty, p.entry = 0.0, 0.0
            elif rest * p.qty > 0:
                p.qty = rest
            else:  # flipped: the remainder opens at this fill's price
                p.qty, p.entry = rest, price
        else:
            total = p.qty + signed
            p.entry = (abs(p.qty) * p.entry + qty * price) / abs(total)
            p.qty = total
        p.update_ms = self.now_ms()
        self._last_realized = realized
        balances = self.accounts[record.account].balances
        balances[MARGIN_ASSET] = balances.get(MARGIN_ASSET, 0.0) + realized - fee

    # --- public endpoints ------------------------------------------------------------------------

    def _public(self, path: str, params: Mapping[str, str]) -> Any:
        if path == "premiumIndex":
            if "symbol" in params:
                return self.premium_index(self._symbol(params))
            return [self.premium_index(s) for s in self.specs]
        try:
            return super()._public(path, params)
        except ApiError as exc:
            if exc.code == -1000:
                raise ApiError(404, -1000, f"unknown endpoint /fapi/v1/{path} (the emulator speaks a subset of "
                                           "the Binance USD-M futures API)") from None
            raise

    def premium_index(self, symbol: str) -> JSON:
        mark = fmt(self.mark(symbol))
        return {"symbol": symbol, "markPrice": mark, "indexPrice": mark, "estimatedSettlePrice": mark,
                "lastFundingRate": fmt(0.0), "interestRate": fmt(0.0), "nextFundingTime": 0,
                "time": self.now_ms()}

    def exchange_info(self) -> JSON:
        symbols = []
        for s in self.config.symbols:
            price_precision = max(0, len(fmt(s.tick_size).rstrip("0").split(".")[1]))
            qty_precision = max(0, len(fmt(s.lot_size).rstrip("0").split(".")[1]))
            symbols.append({
                "symbol": s.symbol, "pair": s.symbol, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
                "requiredMarginPercent": "5.0000", "baseAsset": s.base, "quoteAsset": s.quote,
                "marginAsset": MARGIN_ASSET, "pricePrecision": price_precision, "quantityPrecision": qty_precision,
                "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [],
                "settlePlan": 0, "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
                "maxMoveOrderLimit": 10000,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": fmt(s.tick_size), "maxPrice": "4529764",
                     "tickSize": fmt(s.tick_size)},
                    {"filterType": "LOT_SIZE", "minQty": fmt(s.lot_size), "maxQty": "1000",
                     "stepSize": fmt(s.lot_size)},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": fmt(s.lot_size), "maxQty": "120",
                     "stepSize": fmt(s.lot_size)},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MIN_NOTIONAL", "notional": "5"},
                ],
                "orderTypes": ["LIMIT", "MARKET"], "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
            })
        return {"timezone": "UTC", "serverTime": self.now_ms(), "futuresType": "U_MARGINED",
                "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                "limit": self.config.weight_per_minute}],
                "exchangeFilters": [], "assets": [{"asset": MARGIN_ASSET, "marginAvailable": True}],
                "symbols": symbols}

    # --- private endpoints -----------------------------------------------------------------------

    def private(self, method: str, path: str, params: Mapping[str, str], api_key: str | None, payload: str,
                signature: str | None) -> Reply:
        """A signed request to /fapi/v{1,2,3}/<path>; every failure is a Binance-style error reply."""
        self.counters["requests"] += 1
        try:
            self.charge(api_key or "anonymous", 1 if method != "GET" or path == "order" else 5)
            account = self.authenticate(api_key, payload, signature, params)
            route = (method, path)
            if route == ("POST", "order"):
                return 200, self.new_order(account, params)
            if route == ("DELETE", "order"):
                return 200, self.cancel_order(account, params)
            if route in (("GET", "order"), ("GET", "openOrder")):
                return 200, self._render(self._find(account, params))
            if route == ("GET", "account"):
                return 200, self.account_info(account)
            if route == ("GET", "balance"):
                return 200, [self._asset(account)]
            if route == ("GET", "positionRisk"):
                symbol = self._symbol(params, required=False)
                return 200, [self._position_risk(account, s) for s in self.specs if not symbol or s == symbol]
            if route == ("GET", "leverageBracket"):
                return 200, [{"symbol": s, "notionalCoef": 1.0, "brackets": [
                    {"bracket": 1, "initialLeverage": 125, "notionalCap": 1_000_000_000, "notionalFloor": 0,
                     "maintMarginRatio": MAINT_MARGIN_RATIO, "cum": 0.0}]} for s in self.specs]
            listed = self.order_lists(account, route, params)
            if listed is not None:
                return 200, listed
            raise ApiError(404, -1000, f"unknown endpoint {method} /fapi/v1/{path} (the emulator speaks a subset "
                                       "of the Binance USD-M futures API)")
        except ApiError as exc:
            return exc.reply()

    def new_order(self, account: str, params: Mapping[str, str]) -> JSON:
        if params.get("type") == "LIMIT" and params.get("timeInForce") == "GTX":
            # Binance futures' post-only is a time in force; the spot model's is the LIMIT_MAKER order type.
            params = {k: v for k, v in params.items() if k != "timeInForce"} | {"type": "LIMIT_MAKER"}
        elif params.get("type") == "LIMIT_MAKER":
            raise ApiError(400, -1116, "Invalid orderType.")
        reply = super().new_order(account, params)
        record = self.orders[reply["orderId"]]
        if params.get("reduceOnly", "false").lower() == "true":
            self.reduce_only.add(record.order_id)
        return self._render(record)

    def cancel_order(self, account: str, params: Mapping[str, str]) -> JSON:
        reply = super().cancel_order(account, params)
        return self._render(self.orders[reply["orderId"]])

    def _render(self, o: OrderRecord) -> JSON:
        post_only = o.type == "LIMIT_MAKER"
        average = o.quote_qty / o.executed_qty if o.executed_qty else 0.0
        return {"symbol": o.symbol, "orderId": o.order_id, "clientOrderId": o.client_order_id,
                "price": fmt(o.price), "avgPrice": fmt(average), "origQty": fmt(o.orig_qty),
                "executedQty": fmt(o.executed_qty), "cumQty": fmt(o.executed_qty), "cumQuote": fmt(o.quote_qty),
                "status": o.status, "timeInForce": "GTX" if post_only else o.time_in_force,
                "type": "LIMIT" if post_only else o.type, "origType": "LIMIT" if post_only else o.type,
                "side": o.side, "positionSide": "BOTH", "reduceOnly": o.order_id in self.reduce_only,
                "closePosition": False, "stopPrice": fmt(0.0), "workingType": "CONTRACT_PRICE",
                "priceProtect": False, "priceMatch": "NONE", "selfTradePreventionMode": "NONE", "goodTillDate": 0,
                "time": o.time_ms, "updateTime": o.update_ms}

    def _user_event(self, record: OrderRecord, update: OrderUpdate) -> JSON:
        fill = record.fills[-1] if update.fill_quantity > 0 and record.fills else None
        rendered = self._render(record)
        now = self.now_ms()
        return {"e": "ORDER_TRADE_UPDATE", "E": now, "T": record.update_ms, "o": {
            "s": record.symbol, "c": record.client_order_id, "S": record.side, "o": rendered["type"],
            "f": rendered["timeInForce"], "q": fmt(record.orig_qty), "p": fmt(record.price),
            "ap": rendered["avgPrice"], "sp": fmt(0.0), "x": _execution_type(update, record.status),
            "X": record.status, "i": record.order_id, "l": fmt(update.fill_quantity), "z": fmt(record.executed_qty),
            "L": fmt(update.fill_price), "N": update.fee_currency or MARGIN_ASSET, "n": fmt(update.fee),
            "T": record.update_ms, "t": fill["tradeId"] if fill else 0, "b": fmt(0.0), "a": fmt(0.0),
            "m": update.reason == "maker", "R": rendered["reduceOnly"], "wt": "CONTRACT_PRICE",
            "ot": rendered["origType"], "ps": "BOTH", "cp": False,
            "rp": fmt(self._last_realized if fill else 0.0), "pP": False, "si": 0, "ss": 0, "V": "NONE",
            "pm": "NONE", "gtd": 0}}

    def _asset(self, account: str) -> JSON:
        wallet = self.wallet(account)
        upnl = sum(self.unrealized(account, s) for s in self.specs)
        position_im = sum(self.position_margin(account, s) for s in self.specs)
        order_im = self.order_margin(account)
        available = wallet + upnl - position_im - order_im
        maint = sum(abs(self.position(account, s).qty) * self.mark(s) * MAINT_MARGIN_RATIO for s in self.specs)
        return {"accountAlias": "emulator", "asset": MARGIN_ASSET, "walletBalance": fmt(wallet),
                "unrealizedProfit": fmt(upnl), "marginBalance": fmt(wallet + upnl), "maintMargin": fmt(maint),
                "initialMargin": fmt(position_im + order_im), "positionInitialMargin": fmt(position_im),
                "openOrderInitialMargin": fmt(order_im), "crossWalletBalance": fmt(wallet), "crossUnPnl": fmt(upnl),
                "availableBalance": fmt(available), "maxWithdrawAmount": fmt(max(available, 0.0)),
                "balance": fmt(wallet), "marginAvailable": True, "updateTime": self.now_ms()}

    def _position_risk(self, account: str, symbol: str) -> JSON:
        p = self.position(account, symbol)
        mark = self.mark(symbol)
        notional = p.qty * mark
        im = abs(notional) / self.leverage
        return {"symbol": symbol, "positionSide": "BOTH", "positionAmt": fmt(p.qty), "entryPrice": fmt(p.entry),
                "breakEvenPrice": fmt(p.entry), "markPrice": fmt(mark),
                "unRealizedProfit": fmt(self.unrealized(account, symbol)), "liquidationPrice": fmt(0.0),
                "isolatedMargin": fmt(0.0), "notional": fmt(notional), "marginAsset": MARGIN_ASSET,
                "isolatedWallet": fmt(0.0), "initialMargin": fmt(im), "maintMargin": fmt(abs(notional) *
                                                                                       MAINT_MARGIN_RATIO),
                "positionInitialMargin": fmt(im), "openOrderInitialMargin": fmt(self.order_margin(account, symbol)),
                "adl": 0, "bidNotional": fmt(0.0), "askNotional": fmt(0.0), "updateTime": p.update_ms,
                "leverage": str(self.leverage), "marginType": "cross", "isAutoAddMargin": "false",
                "maxNotionalValue": "1000000000"}

    def account_info(self, account: str) -> JSON:
        asset = self._asset(account)
        positions = []
        for s in self.specs:
            risk = self._position_risk(account, s)
            positions.append({k: risk[k] for k in ("symbol", "positionSide", "positionAmt", "unRealizedProfit",
                                                   "isolatedMargin", "notional", "isolatedWallet", "initialMargin",
                                                   "maintMargin", "updateTime", "entryPrice", "leverage")}
                             | {"unrealizedProfit": risk["unRealizedProfit"], "isolated": False,
                                "positionInitialMargin": risk["positionInitialMargin"],
                                "openOrderInitialMargin": risk["openOrderInitialMargin"],
                                "maxNotional": risk["maxNotionalValue"], "bidNotional": fmt(0.0),
                                "askNotional": fmt(0.0)})
        return {"feeTier": 0, "canTrade": True, "canDeposit": False, "canWithdraw": False, "feeBurn": False,
                "multiAssetsMargin": False, "tradeGroupId": -1, "updateTime": 0,
                "totalInitialMargin": asset["initialMargin"], "totalMaintMargin": asset["maintMargin"],
                "totalWalletBalance": asset["walletBalance"], "totalUnrealizedProfit": asset["unrealizedProfit"],
                "totalMarginBalance": asset["marginBalance"],
                "totalPositionInitialMargin": asset["positionInitialMargin"],
                "totalOpenOrderInitialMargin": asset["openOrderInitialMargin"],
                "totalCrossWalletBalance": asset["crossWalletBalance"], "totalCrossUnPnl": asset["crossUnPnl"],
                "availableBalance": asset["availableBalance"], "maxWithdrawAmount": asset["maxWithdrawAmount"],
                "assets": [asset], "positions": positions}
