import { useEffect, useState } from "react";

import type { Book, BookLevel, Order, Position, Status } from "../api";
import { PriceChart } from "../charts";
import { Panel, Stat, Unavailable } from "../components";
import { fmtNum, fmtQty, fmtTs, signClass } from "../format";
import { useLive, usePoll } from "../hooks";
import type { Quote } from "../live";

const TERMINAL = new Set(["filled", "cancelled", "rejected", "expired"]);

const BOOK_DEPTH = 10; // price levels per side of the venue's book

interface Level { side: string; price: number; quantity: number; orders: number; organisms: Set<string> }

/** One price level's identity: the ledger's decimal strings and the venue's floats meet on 12 significant digits. */
function levelKey(side: string, price: number): string {
  return `${side}@${Number(price.toPrecision(12))}`;
}

/** The organisms' resting limit orders (the ledger's), by price level, best first; all of them unless `limit`. */
function levels(orders: Order[], side: string, limit = Infinity): Level[] {
  const by = new Map<number, Level>();
  for (const o of orders) {
    if (o.side !== side || o.limit_price === null) continue;
    const price = Number(o.limit_price);
    const remaining = Number(o.quantity) - Number(o.filled_quantity);
    if (!(remaining > 0)) continue;
    const l = by.get(price) ?? { side, price, quantity: 0, orders: 0, organisms: new Set<string>() };
    l.quantity += remaining;
    l.orders += 1;
    l.organisms.add(o.organism);
    by.set(price, l);
  }
  return [...by.values()].sort((a, b) => (side === "buy" ? b.price - a.price : a.price - b.price)).slice(0, limit);
}

function ownCell(l: Level | undefined) {
  if (!l) return null;
  return <span title={`${l.orders} resting order(s): ${[...l.organisms].join(", ")}`}>
    {fmtQty(l.quantity)} · {[...l.organisms].join(", ")}</span>;
}

/** The venue's depth: asks above (best nearest the middle), bids below; the levels where the organisms have
 * resting orders are highlighted, with their own quantity. */
function BookTable(props: { book: Book; own: Map<string, Level> }) {
  const { book, own } = props;
  const biggest = Math.max(0, ...book.bids.map((l) => l.quantity), ...book.asks.map((l) => l.quantity));
  const shown = new Set<string>();
  const row = (side: "buy" | "sell", l: BookLevel) => {
    const key = levelKey(side, l.price);
    shown.add(key);
    const ours = own.get(key);
    const pct = biggest > 0 ? Math.round((100 * l.quantity) / biggest) : 0;
    const colour = side === "buy" ? "46, 204, 113" : "255, 92, 92";
    return (
      <tr key={key} className={`${side === "buy" ? "bid-row" : "ask-row"}${ours ? " ours" : ""}`}
          data-testid={side === "buy" ? "book-bid" : "book-ask"} data-ours={ours ? "true" : undefined}>
        <td className={side === "buy" ? "pos" : "neg"}>{side === "buy" ? "bid" : "ask"}</td>
        <td className="num" data-testid="book-price">{fmtNum(l.price)}</td>
        <td className="num depth" data-testid="book-qty"
            style={{ backgroundImage: `linear-gradient(to left, rgba(${colour}, 0.16) ${pct}%, transparent ${pct}%)` }}>
          {fmtQty(l.quantity)}</td>
        <td className="ours-cell">{ownCell(ours)}</td>
      </tr>
    );
  };
  const asks = [...book.asks].reverse().map((l) => row("sell", l));
  const bids = book.bids.map((l) => row("buy", l));
  const bid = book.bids[0]?.price;
  const ask = book.asks[0]?.price;
  const beyond = [...own.values()].filter((l) => !shown.has(levelKey(l.side, l.price)));
  return (
    <>
      <table className="book" data-testid="book-table">
        <thead><tr><th>side</th><th className="num">price</th><th className="num">qty</th><th>ours</th></tr></thead>
        <tbody>
          {asks.length ? asks : <tr><td colSpan={4} className="muted empty">No ask resting at the venue.</td></tr>}
          <tr className="mid-row"><td colSpan={4} className="muted">
            {bid !== undefined && ask !== undefined ? `spread ${fmtNum(ask - bid)} · mid ${fmtNum((ask + bid) / 2)}`
              : "one side of the book is empty"}
          </td></tr>
          {bids.length ? bids : <tr><td colSpan={4} className="muted empty">No bid resting at the venue.</td></tr>}
        </tbody>
      </table>
      {beyond.length ? (
        <p className="muted small" data-testid="book-beyond">Our resting orders outside the {BOOK_DEPTH} levels shown:{" "}
          {beyond.map((l) => `${l.side} ${fmtQty(l.quantity)} @ ${fmtNum(l.price)}`).join(" · ")}</p>
      ) : null}
      <p className="muted small">The simulated venue's book, {BOOK_DEPTH} levels a side, refreshed every second;
        <span className="ours-legend"> highlighted</span>: levels where our organisms have resting limit orders
        (their quantity in "ours"){own.size === 0 ? "; none of theirs rests on this symbol now" : ""}.</p>
    </>
  );
}

/** Without a venue book (a venue that does not serve one): the organisms' own resting levels only. */
function OwnLevels(props: { bids: Level[]; asks: Level[]; quote: Quote | undefined }) {
  const { quote } = props;
  const bids = props.bids.slice(0, 12);
  const asks = props.asks.slice(0, 12);
  return (
    <>
      <table className="book">
        <thead><tr><th>side</th><th className="num">price</th><th className="num">qty</th><th>orders</th></tr></thead>
        <tbody>
          {[...asks].reverse().map((l) => (
            <tr key={`a${l.price}`} className="ask-row ours">
              <td className="neg">ask</td><td className="num">{fmtNum(l.price)}</td>
              <td className="num">{fmtQty(l.quantity)}</td><td>{l.orders} · {[...l.organisms].join(", ")}</td>
            </tr>
          ))}
          <tr className="mid-row"><td colSpan={4} className="muted">
            {quote?.bid != null ? `venue ${fmtNum(quote.bid)} / ${fmtNum(quote.ask ?? null)}` : "venue quote: –"}
          </td></tr>
          {bids.map((l) => (
            <tr key={`b${l.price}`} className="bid-row ours">
              <td className="pos">bid</td><td className="num">{fmtNum(l.price)}</td>
              <td className="num">{fmtQty(l.quantity)}</td><td>{l.orders} · {[...l.organisms].join(", ")}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p className="muted small">Top of book from the venue's ticks; the levels are the organisms' resting limit
        orders.</p>
    </>
  );
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
  const book = usePoll((api) => (current ? api.book(current, BOOK_DEPTH) : Promise.resolve(null)), 1000, [current]);
  const positions = usePoll((api) => api.positions(), 3000);
  const open = (orders.data ?? []).filter((o) => !TERMINAL.has(o.status) && o.symbol === current);
  const quote = current ? live.quotes.get(current) : undefined;
  const points = current ? live.prices.get(current) ?? [] : [];
  const marks = current ? live.marks.get(current) ?? [] : [];
  const ownBids = levels(open, "buy");
  const ownAsks = levels(open, "sell");
  const own = new Map<string, Level>([...ownBids, ...ownAsks].map((l) => [levelKey(l.side, l.price), l]));
  // the last answer for another symbol is not this symbol's book
  const venueBook = book.data && book.data.symbol === current ? book.data : null;
  const bestBid = venueBook ? venueBook.bids[0]?.price ?? null : quote?.bid ?? null;
  const bestAsk = venueBook ? venueBook.asks[0]?.price ?? null : quote?.ask ?? null;
  const spread = bestBid !== null && bestAsk !== null ? bestAsk - bestBid : null;
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

      <Panel title={<>Order book {current ? <span className="muted" data-testid="book-symbol">· {current}</span> : null}
             </>} testId="order-book">
        <div className="book-top">
          <Stat label="bid" value={<span className="pos" data-testid="book-best-bid">{fmtNum(bestBid)}</span>} />
          <Stat label="ask" value={<span className="neg" data-testid="book-best-ask">{fmtNum(bestAsk)}</span>} />
          <Stat label="spread" value={fmtNum(spread)} />
        </div>
        {venueBook ? (
          <BookTable book={venueBook} own={own} />
        ) : book.error?.kind === "missing" ? (
          <>
            <Unavailable error={book.error} what="the venue's order book" />
            <OwnLevels bids={ownBids} asks={ownAsks} quote={quote} />
          </>
        ) : (
          <Unavailable error={book.error} what="the venue's order book" loading={current !== null} />
        )}
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
