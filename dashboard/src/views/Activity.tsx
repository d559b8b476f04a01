import { useState } from "react";

import type { Fill, Order, Rejection, StreamEvent } from "../api";
import { Badge, type Column, FilterTable, Panel, Unavailable } from "../components";
import { fmtNum, fmtQty, fmtTs } from "../format";
import { useLive, usePoll } from "../hooks";

const TABS = ["orders", "fills", "signals", "rejections"] as const;
type Tab = (typeof TABS)[number];

function statusKind(s: string): "ok" | "warn" | "bad" | "muted" | "info" {
  if (s === "filled") return "ok";
  if (s === "rejected" || s === "expired") return "bad";
  if (s === "cancelled") return "muted";
  if (s === "partially_filled" || s === "partial") return "warn";
  return "info";
}

const orderColumns: Column<Order>[] = [
  { key: "ts", label: "event time", className: "hide-phone", render: (o) => fmtTs(o.ts_ns) },
  { key: "org", label: "organism", render: (o) => o.organism, text: (o) => o.organism },
  { key: "sym", label: "symbol", render: (o) => o.symbol, text: (o) => o.symbol },
  { key: "side", label: "side", render: (o) => <span className={o.side === "buy" ? "pos" : "neg"}>{o.side}</span>,
    text: (o) => o.side },
  { key: "type", label: "type", className: "hide-phone", render: (o) => o.type, text: (o) => o.type },
  { key: "qty", label: "qty", className: "num", render: (o) => fmtQty(o.quantity) },
  { key: "px", label: "limit", className: "num hide-phone", render: (o) => fmtNum(o.limit_price) },
  { key: "filled", label: "filled", className: "num hide-phone", render: (o) => fmtQty(o.filled_quantity) },
  { key: "status", label: "status", render: (o) => <Badge kind={statusKind(o.status)}>{o.status}</Badge>,
    text: (o) => o.status },
  { key: "id", label: "client order id", className: "mono hide-phone", render: (o) => o.client_order_id,
    text: (o) => o.client_order_id },
];

const fillColumns: Column<Fill>[] = [
  { key: "ts", label: "event time", className: "hide-phone", render: (f) => fmtTs(f.ts_ns) },
  { key: "org", label: "organism", render: (f) => f.organism, text: (f) => f.organism },
  { key: "sym", label: "symbol", render: (f) => f.symbol, text: (f) => f.symbol },
  { key: "side", label: "side", render: (f) => <span className={f.side === "buy" ? "pos" : "neg"}>{f.side}</span>,
    text: (f) => f.side },
  { key: "qty", label: "qty", className: "num", render: (f) => fmtQty(f.quantity) },
  { key: "px", label: "price", className: "num", render: (f) => fmtNum(f.price) },
  { key: "fee", label: "fee", className: "num hide-phone", render: (f) => `${fmtNum(f.fee, 4)} ${f.fee_currency}` },
  { key: "id", label: "order", className: "mono hide-phone", render: (f) => f.client_order_id,
    text: (f) => `${f.client_order_id} ${f.fill_id}` },
];

const signalColumns: Column<StreamEvent>[] = [
  { key: "ts", label: "event time", className: "hide-phone", render: (e) => fmtTs(Number(e.data.ts_ns)) },
  { key: "org", label: "organism", render: (e) => String(e.data.organism ?? ""), text: (e) => String(e.data.organism) },
  { key: "sym", label: "symbol", render: (e) => String(e.data.symbol ?? ""), text: (e) => String(e.data.symbol) },
  { key: "sizing", label: "sizing", render: (e) => String(e.data.sizing ?? ""), text: (e) => String(e.data.sizing) },
  { key: "amount", label: "amount", className: "num", render: (e) => fmtQty(e.data.amount as number) },
  { key: "limit", label: "limit", className: "num hide-phone", render: (e) => fmtNum(e.data.limit_price as number | null) },
  { key: "note", label: "note", className: "hide-phone", render: (e) => String(e.data.note ?? ""), text: (e) => String(e.data.note ?? "") },
];

const rejectionColumns: Column<Rejection>[] = [
  { key: "ts", label: "event time", className: "hide-phone", render: (r) => fmtTs(r.ts_ns) },
  { key: "org", label: "organism", render: (r) => r.organism, text: (r) => r.organism },
  { key: "sym", label: "symbol", render: (r) => r.symbol, text: (r) => r.symbol },
  { key: "rule", label: "rule", render: (r) => <Badge kind="warn">{r.rule}</Badge>, text: (r) => r.rule },
  { key: "reason", label: "reason", render: (r) => r.reason, text: (r) => r.reason },
];

export function ActivityView() {
  const [tab, setTab] = useState<Tab>(() => (sessionStorage.getItem("allele.activity") as Tab | null) ?? "orders");
  const choose = (t: Tab) => {
    sessionStorage.setItem("allele.activity", t);
    setTab(t);
  };
  return (
    <div className="grid">
      <Panel title="Activity" className="span-3" testId={`activity-${tab}`} actions={
        <div className="chips" role="tablist">
          {TABS.map((t) => <button key={t} role="tab" aria-selected={t === tab} data-testid={`activity-tab-${t}`}
                                   className={t === tab ? "chip active" : "chip"} onClick={() => choose(t)}>{t}</button>)}
        </div>
      }>
        {tab === "orders" && <Orders />}
        {tab === "fills" && <Fills />}
        {tab === "signals" && <Signals />}
        {tab === "rejections" && <Rejections />}
      </Panel>
    </div>
  );
}

const byOrganism = { label: "organism", value: (r: { organism: string }) => r.organism };
const bySymbol = { label: "symbol", value: (r: { symbol: string }) => r.symbol };

function Orders() {
  const orders = usePoll((api) => api.orders(2000), 2000);
  return (
    <>
      <Unavailable error={orders.error} what="orders" loading={orders.loading} />
      <FilterTable rows={orders.data ?? []} columns={orderColumns} rowKey={(o) => o.client_order_id} reverse
                   facets={[byOrganism, bySymbol, { label: "status", value: (o: Order) => o.status },
                            { label: "side", value: (o: Order) => o.side }]}
                   empty="No orders yet." testId="orders-table" />
    </>
  );
}

function Fills() {
  const fills = usePoll((api) => api.fills(2000), 2000);
  return (
    <>
      <Unavailable error={fills.error} what="fills" loading={fills.loading} />
      <FilterTable rows={fills.data ?? []} columns={fillColumns} rowKey={(f) => `${f.client_order_id}/${f.fill_id}`}
                   reverse facets={[byOrganism, bySymbol, { label: "side", value: (f: Fill) => f.side }]}
                   empty="No fills yet." testId="fills-table" />
    </>
  );
}

function Signals() {
  const live = useLive();
  const facets = [{ label: "organism", value: (e: StreamEvent) => String(e.data.organism ?? "") },
                  { label: "symbol", value: (e: StreamEvent) => String(e.data.symbol ?? "") }];
  return (
    <>
      <p className="muted small">From the live stream (and what the engine still holds since its start).</p>
      <FilterTable rows={[...live.signals].sort((a, b) => a.seq - b.seq)} columns={signalColumns}
                   rowKey={(e) => String(e.seq)} reverse facets={facets} empty="No signals yet."
                   testId="signals-table" />
    </>
  );
}

function Rejections() {
  const rejections = usePoll((api) => api.rejections(2000), 2000);
  return (
    <>
      <Unavailable error={rejections.error} what="risk rejections" loading={rejections.loading} />
      <FilterTable rows={rejections.data ?? []} columns={rejectionColumns}
                   rowKey={(r) => `${r.ts_ns}/${r.organism}/${r.symbol}/${r.rule}/${r.reason}`} reverse
                   facets={[byOrganism, bySymbol, { label: "rule", value: (r: Rejection) => r.rule }]}
                   empty="No risk rejections." testId="rejections-table" />
    </>
  );
}
