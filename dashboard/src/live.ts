// What the stream tells, kept in bounded buffers: prices and top of book per symbol, the organisms' orders
// and fills as chart markers, signals, risk refusals, quarantines, and per-topic event rates. Components read
// it and re-render on `subscribe` notifications, which are batched (at most a few per second) so a fast
// market never floods React.

import type { StreamEvent } from "./api";

export interface PricePoint { time: number; value: number } // time: event-time seconds
export interface Quote { price: number | null; bid: number | null; ask: number | null; ts_ns: number }
export interface ChartMark {
  time: number; kind: "order" | "fill"; side: string; organism: string; price: number | null; quantity: number | null;
  seq: number;
}
export interface Quarantine { organism: string; reason: string; seq: number }

const MAX_POINTS = 5000;
const MAX_MARKS = 400;
const MAX_ROWS = 2000;
const RATE_WINDOW_S = 10;

function num(v: unknown): number | null {
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (typeof v === "string" && v.trim() !== "" && Number.isFinite(Number(v))) return Number(v);
  return null;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : v === null || v === undefined ? "" : String(v);
}

function pushBounded<T>(list: T[], item: T, max: number): void {
  list.push(item);
  if (list.length > max * 1.25) list.splice(0, list.length - max);
}

export class LiveStore {
  prices = new Map<string, PricePoint[]>();
  quotes = new Map<string, Quote>();
  marks = new Map<string, ChartMark[]>();
  signals: StreamEvent[] = [];
  refusals: StreamEvent[] = [];
  quarantines = new Map<string, Quarantine>();
  organismEvents: StreamEvent[] = [];
  counts: Record<string, number> = {};
  version = 0;
  private seen = new Set<number>(); // seqs of non-tick events kept (backfill and live overlap)
  private buckets: { second: number; counts: Record<string, number> }[] = [];
  private listeners = new Set<() => void>();
  private pending = false;

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private notify(): void {
    if (this.pending) return;
    this.pending = true;
    window.setTimeout(() => {
      this.pending = false;
      this.version += 1;
      for (const fn of this.listeners) fn();
    }, 250);
  }

  /** Forget everything live: the engine is a new process. */
  reset(): void {
    this.prices.clear();
    this.quotes.clear();
    this.marks.clear();
    this.signals = [];
    this.refusals = [];
    this.organismEvents = [];
    this.seen.clear();
    this.notify();
  }

  symbols(): string[] {
    return [...this.prices.keys()].sort();
  }

  /** Events per second per topic over the last RATE_WINDOW_S seconds of wall time. */
  rates(): Record<string, number> {
    const now = Math.floor(Date.now() / 1000);
    const out: Record<string, number> = {};
    for (const b of this.buckets) {
      if (b.second > now - RATE_WINDOW_S && b.second < now) {
        for (const [t, n] of Object.entries(b.counts)) out[t] = (out[t] ?? 0) + n / (RATE_WINDOW_S - 1);
      }
    }
    return out;
  }

  private count(topic: string): void {
    const second = Math.floor(Date.now() / 1000);
    let bucket = this.buckets[this.buckets.length - 1];
    if (!bucket || bucket.second !== second) {
      bucket = { second, counts: {} };
      this.buckets.push(bucket);
      if (this.buckets.length > RATE_WINDOW_S + 2) this.buckets.shift();
    }
    bucket.counts[topic] = (bucket.counts[topic] ?? 0) + 1;
    this.counts[topic] = (this.counts[topic] ?? 0) + 1;
  }

  /** Live events from the stream (counted for the rates). */
  add(events: StreamEvent[]): void {
    for (const e of events) {
      this.count(e.topic);
      this.apply(e);
    }
    if (events.length) this.notify();
  }

  /** Backfilled events from REST: kept, not counted as live traffic. */
  backfill(events: StreamEvent[]): void {
    for (const e of events) this.apply(e);
    // older events may land after newer live ones: keep every buffer in seq order
    for (const list of this.marks.values()) list.sort((a, b) => a.seq - b.seq);
    this.signals.sort((a, b) => a.seq - b.seq);
    this.refusals.sort((a, b) => a.seq - b.seq);
    this.organismEvents.sort((a, b) => a.seq - b.seq);
    if (events.length) this.notify();
  }

  /** Older ticks from REST (the API's ring): put in front of what the stream already brought. */
  backfillTicks(events: StreamEvent[]): void {
    const bySymbol = new Map<string, PricePoint[]>();
    for (const e of events) {
      if (e.topic !== "tick" || e.data.sensor !== undefined) continue;
      const symbol = str(e.data.symbol);
      const value = num(e.data.price);
      if (!symbol || value === null) continue;
      const time = Math.floor((num(e.data.ts_ns) ?? 0) / 1e9);
      const list = bySymbol.get(symbol) ?? [];
      const last = list[list.length - 1];
      if (last && time < last.time) continue;
      if (last && time === last.time) last.value = value;
      else list.push({ time, value });
      bySymbol.set(symbol, list);
      const d = e.data;
      if (!this.quotes.has(symbol) && (num(d.bid) ?? 0) > 0) {
        this.quotes.set(symbol, { price: value, bid: num(d.bid), ask: num(d.ask), ts_ns: num(d.ts_ns) ?? 0 });
      }
    }
    for (const [symbol, older] of bySymbol) {
      const current = this.prices.get(symbol) ?? [];
      const start = current[0]?.time ?? Infinity;
      const prefix = older.filter((p) => p.time < start);
      const merged = [...prefix, ...current];
      if (merged.length > MAX_POINTS) merged.splice(0, merged.length - MAX_POINTS);
      this.prices.set(symbol, merged);
    }
    if (bySymbol.size) this.notify();
  }

  private apply(e: StreamEvent): void {
    const d = e.data;
    if (e.topic === "tick") {
      this.tick(d);
      return;
    }
    if (this.seen.has(e.seq)) return;
    this.seen.add(e.seq);
    if (this.seen.size > 50_000) this.seen = new Set([...this.seen].slice(-25_000));
    const symbol = str(d.symbol);
    const time = (num(d.ts_ns) ?? 0) / 1e9;
    switch (e.topic) {
      case "signal":
        pushBounded(this.signals, e, MAX_ROWS);
        break;
      case "risk":
        if (d.accepted === false) pushBounded(this.refusals, e, MAX_ROWS);
        break;
      case "organism":
        pushBounded(this.organismEvents, e, MAX_ROWS);
        if (d.status === "quarantined") {
          const organism = str(d.id);
          this.quarantines.set(organism, { organism, reason: str(d.reason), seq: e.seq });
        }
        break;
      case "order":
        if (d.status === "new" && symbol) {
          this.mark(symbol, { time, kind: "order", side: str(d.side), organism: str(d.organism),
                              price: num(d.limit_price), quantity: num(d.quantity), seq: e.seq });
        }
        break;
      case "fill":
        if (symbol) {
          this.mark(symbol, { time, kind: "fill", side: str(d.side), organism: str(d.organism),
                              price: num(d.price), quantity: num(d.quantity), seq: e.seq });
        }
        break;
      default:
        break;
    }
  }

  private tick(d: Record<string, unknown>): void {
    const symbol = str(d.symbol);
    if (!symbol || d.sensor !== undefined) return; // sensor readings are not prices
    const price = num(d.price);
    // a trade tick carries no quote (bid = ask = 0): the last quote stays
    const prev = this.quotes.get(symbol);
    const bid = (num(d.bid) ?? 0) > 0 ? num(d.bid) : prev?.bid ?? null;
    const ask = (num(d.ask) ?? 0) > 0 ? num(d.ask) : prev?.ask ?? null;
    const tsNs = num(d.ts_ns) ?? 0;
    this.quotes.set(symbol, { price: price ?? prev?.price ?? null, bid, ask, ts_ns: tsNs });
    const value = price ?? (bid !== null && ask !== null ? (bid + ask) / 2 : null);
    if (value === null) return;
    const time = Math.floor(tsNs / 1e9);
    let series = this.prices.get(symbol);
    if (!series) {
      series = [];
      this.prices.set(symbol, series);
    }
    const last = series[series.length - 1];
    if (last && time < last.time) {
      // event time went backwards (a new session replaying from an earlier time): start the series again
      series.length = 0;
      this.marks.delete(symbol);
    } else if (last && time === last.time) {
      last.value = value;
      return;
    }
    pushBounded(series, { time, value }, MAX_POINTS);
  }

  private mark(symbol: string, m: ChartMark): void {
    let list = this.marks.get(symbol);
    if (!list) {
      list = [];
      this.marks.set(symbol, list);
    }
    pushBounded(list, m, MAX_MARKS);
  }
}
