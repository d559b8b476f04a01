import { useEffect, useState } from "react";

import type { Order, Position, Status } from "../api";
import { PriceChart } from "../charts";
import { Panel, Stat, Unavailable } from "../components";
import { fmtNum, fmtQty, fmtTs, signClass } from "../format";
import { useLive, usePoll } from "../hooks";

const TERMINAL = new Set(["filled", "cancelled", "rejected", "expired"]);

interface Level { price: number; quantity: number; orders: number; organisms: Set<string> }

function levels(orders: Order[], side: string): Level[] {
  const by = new Map<number, Level>();
  for (const o of orders) {
    if (o.side !== side || o.limit_price === null) continue;
    const price = Number(o.limit_price);
    const remaining = Number(o.quantity) - Number(o.filled_quantity);
    if (!(remaining > 0)) continue;
    const l = by.get(price) ?? { price, quantity: 0, orders: 0, organisms: new Set<string>() };
    l.quantity += remaining;
    l.orders += 1;
    l.organisms.add(o.organism);
    by.set(price, l);
  }
  return [...by.values()].sort((a, b) => (side === "buy" ? b.price - a.price : a.price - b.price)).slice(0, 12);
}

export function MarketsView(props: { status: Status | null }) {
  const live = useLive();
  const symbols = live.symbols();
  const traded = [...new Set((props.status?.organisms ?? []).flatMap((o) => o.symbols))].sort();
  const all = [...new Set([...symbols, ...traded])].sort();
  const [symbol, setSymbol] = useState<string | null>(null);
  const current = symbol && all.includes(symbol) ? symbol : all[0] ?? null;
  useEffect(() => {
    if (symbol === null && all.length) setSymbol(all[0]!);
  }, [symbol, all]);

  const orders = usePoll((api) => api.orders(2000), 2000);
  const positions = usePoll((api) => api.positions(), 3000);
  const open = (orders.data ?? []).filter((o) => !TERMINAL.has(o.status) && o.symbol === current);
  const quote = current ? live.quotes.get(current) : undefined;
  const points = current ? live.prices.get(current) ?? [] : [];
  const marks = current ? live.marks.get(current) ?? [] : [];
  const bids = levels(open, "buy");
  const asks = levels(open, "sell");
  const spread = quote?.bid != null && quote?.ask != null ? quote.ask - quote.bid : null;
  const market = open.filter((o) => o.limit_price === null);
  const recent = marks.filter((m) => m.kind === "fill").slice(-8).reverse();

  return (
    <div className="grid grid-markets">
      <Panel title={<>Price {current ? <span className="muted">· {current}</span> : null}</>} className="span-2"
             testId="price-panel"
             actions={
               <div className="chips" role="group" aria-label="symbol">
                 {all.map((s) => (
                   <button key={s} className={s === current ? "chip active" : "chip"}
                           onClick={() => setSymbol(s)} data-testid={`symbol-${s}`}>{s}</button>
                 ))}
               </div>
             }>
        <div className="price-line">
          <Stat label="last" value={<span data-testid="last-price">{fmtNum(quote?.price ?? points.at(-1)?.value
            ?? null)}</span>} />
          <Stat label="event time" value={fmtTs(quote?.ts_ns)} />
          <Stat label="ticks seen" value={<span data-testid="tick-count">{points.length}</span>} />
          <Stat label="marks" value={`${marks.filter((m) => m.kind === "order").length} orders · ${
            marks.filter((m) => m.kind === "fill").length} fills`} />
        </div>
        {current ? <PriceChart points={points} marks={marks} version={live.version} symbol={current} />
          : <p className="muted">Waiting for the first tick…</p>}
        <p className="legend muted">▲ buy order · ▼ sell order · ● fill (B/S) — the organisms' own, from the live
          stream</p>
      </Panel>

      <Panel title="Order book" testId="order-book">
        <div className="book-top">
          <Stat label="bid" value={<span className="pos">{fmtNum(quote?.bid ?? null)}</span>} />
          <Stat label="ask" value={<span className="neg">{fmtNum(quote?.ask ?? null)}</span>} />
          <Stat label="spread" value={fmtNum(spread)} />
        </div>
        <table className="book">
          <thead><tr><th>side</th><th className="num">price</th><th className="num">qty</th><th>orders</th></tr></thead>
          <tbody>
            {[...asks].reverse().map((l) => (
              <tr key={`a${l.price}`} className="ask-row">
                <td className="neg">ask</td><td className="num">{fmtNum(l.price)}</td>
                <td className="num">{fmtQty(l.quantity)}</td><td>{l.orders} · {[...l.organisms].join(", ")}</td>
              </tr>
            ))}
            <tr className="mid-row"><td colSpan={4} className="muted">
              {quote?.bid != null ? `venue ${fmtNum(quote.bid)} / ${fmtNum(quote.ask ?? null)}` : "venue quote: –"}
            </td></tr>
            {bids.map((l) => (
              <tr key={`b${l.price}`} className="bid-row">
                <td className="pos">bid</td><td className="num">{fmtNum(l.price)}</td>
                <td className="num">{fmtQty(l.quantity)}</td><td>{l.orders} · {[...l.organisms].join(", ")}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {market.length ? <p className="muted">{market.length} market order(s) in flight.</p> : null}
        <h3>Recent fills</h3>
        <table className="book" data-testid="recent-fills">
          <thead><tr><th>side</th><th className="num">price</th><th className="num">qty</th><th>organism</th></tr></thead>
          <tbody>
            {recent.length === 0 ? <tr><td colSpan={4} className="muted empty">No fill since this page opened.</td></tr>
              : recent.map((m) => (
                <tr key={m.seq}><td className={m.side === "buy" ? "pos" : "neg"}>{m.side}</td>
                  <td className="num">{fmtNum(m.price)}</td><td className="num">{fmtQty(m.quantity)}</td>
                  <td>{m.organism}</td></tr>
              ))}
          </tbody>
        </table>
        <p className="muted small">Top of book from the simulated venue's ticks; the levels are the organisms' resting
          limit orders. The venue's full depth is not served by the API.</p>
        <Unavailable error={orders.error} what="open orders" loading={orders.loading} />
      </Panel>

      <Panel title="Positions" className="span-3" testId="positions">
        <Unavailable error={positions.error} what="positions" loading={positions.loading} />
        <div className="table-wrap">
          <table>
            <thead><tr><th>organism</th><th>symbol</th><th className="num">qty</th><th className="num hide-phone">avg</th>
              <th className="num hide-phone">mark</th><th className="num">unrealized</th><th className="num">realized</th></tr>
            </thead>
            <tbody>
              {(positions.data ?? []).length === 0 ? (
                <tr><td colSpan={7} className="muted empty">No open positions.</td></tr>
              ) : (positions.data ?? []).map((p: Position) => (
                <tr key={`${p.organism}/${p.symbol}`}>
                  <td>{p.organism}</td><td>{p.symbol}</td><td className="num">{fmtQty(p.quantity)}</td>
                  <td className="num hide-phone">{fmtNum(p.avg_price)}</td>
                  <td className="num hide-phone">{fmtNum(p.mark)}</td>
                  <td className={`num ${signClass(p.unrealized_pnl)}`}>{fmtNum(p.unrealized_pnl)}</td>
                  <td className={`num ${signClass(Number(p.realized_pnl))}`}>{fmtNum(p.realized_pnl)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </Panel>
    </div>
  );
}
