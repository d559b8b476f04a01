// The live stream (/ws, kernel/api/stream.py) as a connection that never gives up: exponential backoff with
// jitter while the engine is away, resume from the last seq it saw (`since`), a REST backfill of what a gap
// lost, and a fresh start when the engine behind the port is a new process (its seq went backwards).

import type { StreamEvent } from "./api";

export const TOPICS = ["tick", "signal", "order", "fill", "risk", "organism", "health", "control"] as const;
export const NON_TICK = TOPICS.filter((t) => t !== "tick");

export interface StreamStatus {
  connected: boolean;
  attempt: number; // failed connection attempts since the last success
  retryAt: number | null; // Date.now() of the next attempt while disconnected
  lastSeq: number;
  since: number | null; // when it last connected (Date.now())
}

export interface StreamHandlers {
  events(events: StreamEvent[]): void;
  status(status: StreamStatus): void;
  restarted(): void; // the engine behind the API is a new process: earlier live data is of another session
  gap(from: number, to: number): void; // messages lost; the non-tick ones can be backfilled from REST
}

const PROTOCOL = "allele.bearer";
const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 8000;
const PING_MS = 10_000;
const SILENCE_MS = 30_000; // no frame (not even a pong) for this long: the connection is dead

export function backoffDelay(attempt: number): number {
  const base = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

export class Stream {
  private ws: WebSocket | null = null;
  private stopped = false;
  private attempt = 0;
  private lastSeq = 0;
  private retryTimer: number | null = null;
  private pingTimer: number | null = null;
  private lastFrame = 0;
  private retryAt: number | null = null;
  private connectedSince: number | null = null;

  constructor(private readonly token: string, private readonly handlers: StreamHandlers,
              private readonly url: string = Stream.defaultUrl()) {}

  static defaultUrl(): string {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}/ws`;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimers();
    this.ws?.close(1000, "dashboard closed");
    this.ws = null;
  }

  /** Try now instead of waiting out the backoff (the REST side saw the engine come back). */
  retryNow(): void {
    if (this.stopped || this.ws !== null) return;
    if (this.retryTimer !== null) window.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.connect();
  }

  private clearTimers(): void {
    if (this.retryTimer !== null) window.clearTimeout(this.retryTimer);
    if (this.pingTimer !== null) window.clearInterval(this.pingTimer);
    this.retryTimer = null;
    this.pingTimer = null;
  }

  private report(): void {
    this.handlers.status({
      connected: this.connectedSince !== null, attempt: this.attempt, retryAt: this.retryAt,
      lastSeq: this.lastSeq, since: this.connectedSince,
    });
  }

  private connect(): void {
    const query = new URLSearchParams({ topics: TOPICS.join(",") });
    if (this.lastSeq > 0) query.set("since", String(this.lastSeq));
    let ws: WebSocket;
    try {
      ws = new WebSocket(`${this.url}?${query.toString()}`, [PROTOCOL, this.token]);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    this.retryAt = null;
    ws.onopen = () => {
      this.lastFrame = Date.now();
      this.pingTimer = window.setInterval(() => {
        if (Date.now() - this.lastFrame > SILENCE_MS) {
          ws.close(4000, "no frame from the engine");
          return;
        }
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ op: "ping" }));
      }, PING_MS);
    };
    ws.onmessage = (msg: MessageEvent<string>) => {
      this.lastFrame = Date.now();
      let frame: unknown;
      try {
        frame = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (Array.isArray(frame)) {
        const fresh = (frame as StreamEvent[]).filter((e) => e.seq > this.lastSeq);
        if (fresh.length) {
          this.lastSeq = fresh[fresh.length - 1]!.seq;
          this.handlers.events(fresh);
        }
        return;
      }
      const control = frame as { type?: string; seq?: number; first?: number; from?: number; to?: number };
      if (control.type === "hello") {
        const seq = control.seq ?? 0;
        if (seq < this.lastSeq) {
          // A new engine process (its bus starts again at 0): our cursor means nothing there.
          this.lastSeq = 0;
          this.handlers.restarted();
          ws.onclose = null;
          ws.close(1000, "engine restarted; reconnecting from its start");
          this.ws = null;
          this.clearTimers();
          this.connect();
          return;
        }
        if (this.lastSeq > 0 && control.first !== undefined && control.first > this.lastSeq + 1) {
          this.handlers.gap(this.lastSeq + 1, control.first - 1);
        }
        this.attempt = 0;
        this.connectedSince = Date.now();
        this.report();
      } else if (control.type === "gap" && control.from !== undefined && control.to !== undefined) {
        this.handlers.gap(control.from, control.to);
      }
    };
    ws.onclose = () => {
      if (this.ws === ws) this.ws = null;
      this.clearTimers();
      this.connectedSince = null;
      if (!this.stopped) this.scheduleRetry();
    };
    ws.onerror = () => {
      // onclose follows and schedules the retry
    };
  }

  private scheduleRetry(): void {
    this.attempt += 1;
    const delay = backoffDelay(this.attempt);
    this.retryAt = Date.now() + delay;
    this.report();
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }
}
