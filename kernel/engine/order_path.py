"""The engine's side of the order-kernel port: domain orders <-> fixed binary frames.

The order kernel speaks integers (`allele.kernel.orders.frames`): symbols as small ids, prices in
ticks, quantities in lots, client order ids as uint64. `OrderPath` owns those mappings, encodes
every request as a frame, hands it to the `OrderKernelPort` (software model or RTL) and decodes
what comes back. It also tracks which orders the kernel still holds open, so a venue report about
an order the kernel already closed (a fill racing a cancel) is not fed back as an error.
"""

from __future__ import annotations

from collections.abc import Mapping

from allele.kernel.domain import FinalizedOrder, OrderUpdate
from allele.kernel.orders import frames as f
from allele.kernel.orders.kernel import TERMINAL
from allele.kernel.orders.port import OrderKernelPort
from allele.kernel.risk import RiskConfig
from allele.kernel.venue.book import Instrument

_SIDE = {"buy": f.Side.BUY, "sell": f.Side.SELL}
_TYPE = {"market": f.OrderType.MARKET, "limit": f.OrderType.LIMIT}
_TIF = {"gtc": f.TimeInForce.GTC, "ioc": f.TimeInForce.IOC, "fok": f.TimeInForce.FOK,
        "post-only": f.TimeInForce.POST_ONLY}


_I64_CAP = 2**62


class OrderPath:
    """Frames in and out of one order kernel, for the instruments of one venue."""

    def __init__(self, port: OrderKernelPort, instruments: Mapping[str, Instrument]) -> None:
        self.port = port
        self.instruments = dict(instruments)
        self.symbol_ids = {symbol: i + 1 for i, symbol in enumerate(sorted(instruments))}
        self._symbols = {i: s for s, i in self.symbol_ids.items()}
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._open: set[int] = set()
        self._ref: dict[int, int] = {}
        self._wanted_ref: dict[int, int] = {}
        self.frames_in = 0
        self.frames_out = 0

    # --- plumbing -------------------------------------------------------------------------

    def _send(self, msg: f.InboundMessage) -> list[f.OutboundMessage]:
        out_frames = self.port.submit(f.encode(msg))
        self.frames_in += 1
        self.frames_out += len(out_frames)
        out: list[f.OutboundMessage] = []
        for frame in out_frames:
            decoded = f.decode(frame)
            if isinstance(decoded, f.StateChange) and decoded.new in TERMINAL:
                self._open.discard(decoded.client_order_id)
            elif isinstance(decoded, f.Expired):
                self._open.discard(decoded.client_order_id)
            out.append(decoded)
        return out

    def kernel_id(self, client_order_id: str) -> int:
        cid = self._ids.get(client_order_id)
        if cid is None:
            cid = self._ids[client_order_id] = len(self._ids) + 1
            self._names[cid] = client_order_id
        return cid

    def client_order_id(self, kernel_id: int) -> str:
        return self._names[kernel_id]

    def symbol(self, symbol_id: int) -> str:
        return self._symbols[symbol_id]

    def is_open(self, client_order_id: str) -> bool:
        cid = self._ids.get(client_order_id)
        return cid is not None and cid in self._open

    def _ticks(self, symbol: str, price: float) -> int:
        ticks: int | None = self.instruments[symbol].to_ticks(price)
        if ticks is None:
            raise ValueError(f"{symbol}: price {price!r} is not on the tick grid")
        return ticks

    def _lots(self, symbol: str, quantity: float) -> int:
        lots: int | None = self.instruments[symbol].to_lots(quantity)
        if lots is None:
            raise ValueError(f"{symbol}: quantity {quantity!r} is not a whole number of lots")
        return lots

    # --- requests -------------------------------------------------------------------------

    def configure(self, risk: RiskConfig, organisms: int) -> None:
        """LIMITS for every symbol from the risk settings: the kernel is the hardware backstop of the gate."""
        burst = max(risk.orders_per_minute * max(organisms, 1), 1)
        for symbol, sid in self.symbol_ids.items():
            inst = self.instruments[symbol]
            # Clamped into int64: "unlimited" settings (a backtest's) must still fit the frame.
            max_lots = min(int(risk.max_order_quantity / inst.lot_size), _I64_CAP // 100)
            max_notional = min(int(risk.max_order_notional / (inst.tick_size * inst.lot_size)), _I64_CAP)
            self._send(f.Limits(sid, max_lots, max_notional, round(risk.price_band_pct * 10_000),
                                max_lots * 100, burst, 60_000_000_000 // burst))

    def reference_price(self, symbol: str, price: float) -> None:
        """Note the symbol's reference price. The REF_PRICE frame goes out only before the next NEW_ORDER or
        AMEND on that symbol (the only frames whose checks read it), not on every tick."""
        sid = self.symbol_ids.get(symbol)
        if sid is not None:
            self._wanted_ref[sid] = max(round(price / self.instruments[symbol].tick_size), 1)

    def _sync_ref(self, sid: int) -> None:
        ticks = self._wanted_ref.get(sid)
        if ticks is not None and self._ref.get(sid) != ticks:
            self._ref[sid] = ticks
            self._send(f.RefPrice(sid, ticks))

    def new_order(self, order: FinalizedOrder) -> list[f.OutboundMessage]:
        cid = self.kernel_id(order.client_order_id)
        self._sync_ref(self.symbol_ids[order.symbol])
        price = 0 if order.limit_price is None else self._ticks(order.symbol, order.limit_price)
        msg = f.NewOrder(cid, self.symbol_ids[order.symbol], _SIDE[order.side], _TYPE[order.order_type],
                         _TIF[order.time_in_force], price, self._lots(order.symbol, order.quantity), order.ts_ns,
                         order.deadline_ns)
        out = self._send(msg)
        if any(isinstance(m, f.Accepted) for m in out):
            self._open.add(cid)
        return out

    def amend(self, client_order_id: str, symbol: str, ts_ns: int, total_quantity: float,
              limit_price: float | None) -> list[f.OutboundMessage]:
        price = 0 if limit_price is None else self._ticks(symbol, limit_price)
        self._sync_ref(self.symbol_ids[symbol])
        return self._send(f.Amend(self.kernel_id(client_order_id), price, self._lots(symbol, total_quantity), ts_ns))

    def cancel(self, client_order_id: str, ts_ns: int) -> list[f.OutboundMessage]:
        return self._send(f.Cancel(self.kernel_id(client_order_id), ts_ns))

    def tick(self, ts_ns: int) -> list[f.OutboundMessage]:
        return self._send(f.Tick(ts_ns))

    def kill_switch(self, engaged: bool) -> list[f.OutboundMessage]:
        return self._send(f.KillSwitch(engaged))

    def venue_update(self, update: OrderUpdate) -> list[f.OutboundMessage]:
        """The frame a venue report becomes; nothing for an order the kernel no longer holds."""
        if not self.is_open(update.client_order_id):
            return []
        cid = self._ids[update.client_order_id]
        match update.status:
            case "accepted":
                return self._send(f.VenueAck(cid))
            case "partially-filled" | "filled":
                if update.fill_quantity <= 0:
                    return []
                inst = self.instruments[update.symbol]
                return self._send(f.VenueFill(cid, round(update.fill_quantity / inst.lot_size),
                                              round(update.fill_price / inst.tick_size)))
            case "rejected":
                return self._send(f.VenueReject(cid))
            case _:  # cancelled, expired: the venue closed the rest
                return self._send(f.VenueCancelled(cid))
