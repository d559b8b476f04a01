// The typed REST client of the engine's API (kernel/api/app.py, models.py). Every call carries the token as
// `Authorization: Bearer`; failures become an ApiError that says whether the engine was unreachable (down),
// refused the token (401), lacks the route (404: an older engine) or refused the request (4xx with detail).

export type Decimal = string; // the ledger's money and quantities: exact decimal strings

export interface Health { ok: boolean; seq: number; engine_running: boolean }
export interface KillSwitch { engaged: boolean; reason: string; applied: boolean; file: string }
export interface Organism {
  id: string; strategy: string; plugin_sha256: string; params: Record<string, unknown>; symbols: string[];
  active: boolean; quarantined: boolean; allocation: number; equity: number; cash: number; fees: number;
  positions: Record<string, number>; open_orders: number; signals: number; rank: number;
}
export interface Status {
  state: string; session: string; pid: number; event_time_ns: number; uptime_s: number;
  counters: Record<string, number>; kill_switch: KillSwitch; equity: number; high_water: number;
  organisms: Organism[]; seq: number; stream_clients: number;
}
export interface Position {
  organism: string; symbol: string; quantity: Decimal; avg_price: Decimal; realized_pnl: Decimal;
  mark: number | null; unrealized_pnl: number | null;
}
export interface Order {
  client_order_id: string; organism: string; symbol: string; side: string; type: string; quantity: Decimal;
  limit_price: Decimal | null; time_in_force: string; status: string; filled_quantity: Decimal; ts_ns: number;
  deadline_ns: number; venue_order_id: string;
}
export interface Fill {
  client_order_id: string; fill_id: string; organism: string; symbol: string; side: string; quantity: Decimal;
  price: Decimal; fee: Decimal; fee_currency: string; ts_ns: number;
}
export interface Pnl {
  organism: string; cash: number; equity: number; fees: number; realized_pnl: Decimal; unrealized_pnl: number;
  allocation: number;
}
export interface EquityPoint { ts_ns: number; equity: number }
export interface PnlHistory { organism: string; points: EquityPoint[]; current: EquityPoint }
export interface RiskState {
  kill_switch: KillSwitch; config: Record<string, unknown>; equity: number; high_water: number; drawdown: number;
  open_orders: number; refused: number; kernel_rejects: number;
}
export interface Rejection { ts_ns: number; organism: string; symbol: string; rule: string; reason: string }
export interface Plugin {
  name: string; kind: string; version: string; sha256: string; path: string; deployed: boolean;
  organisms: string[]; proof?: string | null; proof_url?: string | null;
}
export interface Deployed {
  name: string; kind: string; version: string; sha256: string; deployed: string; proof: string | null;
  unproven: string | null; hot_swap: boolean;
}
export interface Watchdog { state: Record<string, unknown> | null; note: string | null }
export interface StreamEvent { seq: number; topic: string; data: Record<string, unknown> }
export interface Backfill { since: number; last_seq: number; events: StreamEvent[]; complete: boolean }
export interface Standing {
  fingerprint: string; spec: Record<string, unknown>; status: string; allocation: number; fitness: number | null;
  sortino: number | null; dsr: number | null; oos_sharpe: number | null; trades: number | null; protected: boolean;
  funded: boolean; reason: string | null; run_id: string | null; generation: number | null;
}
export interface LineageNode {
  fingerprint: string; parents: string[]; operator: string; generation: number; run_id: string;
  detail: Record<string, unknown>;
}
// The MAP-Elites archive as kernel/arena/archive.py Archive.grid() shapes it.
export interface NicheCell {
  niche: (number | string)[]; labels: Record<string, string>; fingerprint: string; value: number;
}
export interface ArchiveGrid { descriptors: string[]; bins: Record<string, number[]>; cells: NicheCell[] }
// GET /api/arena/archive: the grid of the latest finished arena run (404 while none has finished).
export interface ArenaArchive extends ArchiveGrid { run_id: string; finished_ns: number | null }
// GET /api/book/{symbol}: the simulated venue's order book, best level first on each side.
export interface BookLevel { price: number; quantity: number }
export interface Book { symbol: string; ts_ns: number; bids: BookLevel[]; asks: BookLevel[] }

export type ApiErrorKind = "down" | "unauthorized" | "missing" | "refused";

export class ApiError extends Error {
  constructor(readonly kind: ApiErrorKind, readonly status: number, message: string) {
    super(message);
    this.name = "ApiError";
  }
}

function detailOf(body: unknown): string | null {
  if (body && typeof body === "object") {
    const b = body as { message?: unknown; detail?: unknown };
    if (typeof b.message === "string") return b.message;
    if (typeof b.detail === "string") return b.detail;
    if (b.detail !== undefined) return JSON.stringify(b.detail);
  }
  return null;
}

export class Api {
  constructor(readonly token: string, readonly base: string = "") {}

  private async request<T>(method: string, path: string, body?: BodyInit, json?: unknown,
                           asText = false): Promise<T> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.token}` };
    let payload = body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(json);
    }
    let response: Response;
    try {
      response = await fetch(this.base + path, { method, headers, body: payload, cache: "no-store" });
    } catch (err) {
      throw new ApiError("down", 0, `the engine's API does not answer (${String(err)})`);
    }
    if (response.status === 502 || response.status === 503 || response.status === 504) {
      throw new ApiError("down", response.status, `the engine's API does not answer (HTTP ${response.status})`);
    }
    let parsed: unknown = null;
    const text = await response.text();
    if (asText && response.ok) return text as T;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    if (response.status === 401) {
      throw new ApiError("unauthorized", 401, detailOf(parsed) ?? "the API refused the token");
    }
    if (response.status === 404) {
      throw new ApiError("missing", 404, detailOf(parsed) ?? `${path} is not available on this engine`);
    }
    if (!response.ok) {
      throw new ApiError("refused", response.status, detailOf(parsed) ?? `HTTP ${response.status} on ${path}`);
    }
    return parsed as T;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>("GET", path);
  }

  /** A text document under /api (e.g. a plugin's Markdown proof), fetched with the token. */
  getText(path: string): Promise<string> {
    return this.request<string>("GET", path, undefined, undefined, true);
  }

  health(): Promise<Health> { return this.get("/api/health"); }
  status(): Promise<Status> { return this.get("/api/status"); }
  organisms(): Promise<Organism[]> { return this.get("/api/organisms"); }
  watchdog(): Promise<Watchdog> { return this.get("/api/watchdog"); }
  positions(): Promise<Position[]> { return this.get("/api/positions"); }
  orders(limit = 500): Promise<Order[]> { return this.get(`/api/orders?limit=${limit}`); }
  fills(limit = 500): Promise<Fill[]> { return this.get(`/api/fills?limit=${limit}`); }
  pnl(): Promise<Pnl[]> { return this.get("/api/pnl"); }
  pnlHistory(organism: string): Promise<PnlHistory> {
    return this.get(`/api/pnl/history?organism=${encodeURIComponent(organism)}&limit=2000`);
  }
  risk(): Promise<RiskState> { return this.get("/api/risk"); }
  rejections(limit = 500): Promise<Rejection[]> { return this.get(`/api/risk/rejections?limit=${limit}`); }
  plugins(): Promise<Plugin[]> { return this.get("/api/plugins"); }
  leaderboard(): Promise<Standing[]> { return this.get("/api/arena/leaderboard"); }
  lineage(fingerprint: string): Promise<LineageNode[]> {
    return this.get(`/api/arena/lineage/${encodeURIComponent(fingerprint)}`);
  }
  archive(): Promise<ArenaArchive> { return this.get("/api/arena/archive"); }
  book(symbol: string, depth = 20): Promise<Book> {
    return this.get(`/api/book/${encodeURIComponent(symbol)}?depth=${depth}`);
  }
  backfill(since: number, topics: string[], limit = 2000): Promise<Backfill> {
    return this.get(`/api/stream?since=${since}&topics=${topics.join(",")}&limit=${limit}`);
  }

  setKillSwitch(engaged: boolean, reason: string): Promise<KillSwitch> {
    return this.request("POST", "/api/kill-switch", undefined, { engaged, reason });
  }

  deploy(wasm: File, proof: File | null, allowUnproven: boolean): Promise<Deployed> {
    const form = new FormData();
    form.append("wasm", wasm, wasm.name);
    if (proof) form.append("proof", proof, proof.name);
    form.append("allow_unproven", allowUnproven ? "true" : "false");
    return this.request("POST", "/api/plugins", form);
  }
}
