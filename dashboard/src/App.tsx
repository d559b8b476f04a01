import { useCallback, useEffect, useMemo, useRef, useState } from "react";

import { Api, ApiError, type Status } from "./api";
import { Badge } from "./components";
import { fmtDuration, fmtNum } from "./format";
import { ConnectionContext, type Connection } from "./hooks";
import { LiveStore } from "./live";
import { NON_TICK, Stream, type StreamStatus } from "./stream";
import { forgetToken, saveToken, takeToken } from "./token";
import { ActivityView } from "./views/Activity";
import { ArenaView } from "./views/Arena";
import { HealthView } from "./views/Health";
import { MarketsView } from "./views/Markets";
import { PluginsView } from "./views/Plugins";
import { PortfolioView } from "./views/Portfolio";
import { RiskView } from "./views/Risk";

const VIEWS = [
  { id: "markets", label: "Markets" },
  { id: "portfolio", label: "Portfolio" },
  { id: "arena", label: "Arena" },
  { id: "activity", label: "Activity" },
  { id: "risk", label: "Risk" },
  { id: "plugins", label: "Plugins" },
  { id: "health", label: "Health" },
] as const;
type ViewId = (typeof VIEWS)[number]["id"];

type Auth = "ok" | "missing" | "refused";

export function App() {
  const [token, setToken] = useState<string | null>(() => takeToken());
  const [auth, setAuth] = useState<Auth>(token ? "ok" : "missing");
  const [refusal, setRefusal] = useState("");

  const onRefused = useCallback((message: string) => {
    setRefusal(message);
    setAuth("refused");
  }, []);

  if (auth !== "ok" || !token) {
    return <TokenScreen state={auth === "ok" ? "missing" : auth} detail={refusal} onToken={(t) => {
      saveToken(t);
      setToken(t);
      setAuth("ok");
      setRefusal("");
    }} />;
  }
  return <Dashboard key={token} token={token} onRefused={onRefused} />;
}

function TokenScreen(props: { state: "missing" | "refused"; detail: string; onToken: (t: string) => void }) {
  const [value, setValue] = useState("");
  const refused = props.state === "refused";
  return (
    <main className="token-screen" data-testid={refused ? "token-refused" : "token-missing"}>
      <div className="token-card">
        <h1>Allele</h1>
        <h2>{refused ? "The engine refused this token" : "No API token"}</h2>
        <p>
          {refused
            ? "The token this page holds is not the engine's (it may have been regenerated)."
            : "The dashboard needs the engine's API token to show anything."}
          {" "}Open the dashboard with <code>allele ui</code> (it opens a URL that carries the token), or run
          {" "}<code>allele ui --print-url</code> and open the URL it prints. The token is in
          {" "}<code>.allele/api.token</code>.
        </p>
        {props.detail ? <p className="muted">The API said: {props.detail}</p> : null}
        <form onSubmit={(e) => {
          e.preventDefault();
          if (value.trim()) props.onToken(value.trim());
        }}>
          <label htmlFor="token-input">Or paste the token:</label>
          <div className="row">
            <input id="token-input" type="password" autoComplete="off" value={value}
                   onChange={(e) => setValue(e.target.value)} />
            <button type="submit" disabled={!value.trim()}>Use token</button>
          </div>
        </form>
      </div>
    </main>
  );
}

function Dashboard(props: { token: string; onRefused: (message: string) => void }) {
  const api = useMemo(() => new Api(props.token), [props.token]);
  const live = useMemo(() => new LiveStore(), []);
  const [view, setView] = useState<ViewId>(() => {
    const saved = sessionStorage.getItem("allele.view");
    return (VIEWS.find((v) => v.id === saved)?.id ?? "markets") as ViewId;
  });
  const [status, setStatus] = useState<Status | null>(null);
  const [restUp, setRestUp] = useState(true);
  const [stream, setStream] = useState<StreamStatus>({ connected: false, attempt: 0, retryAt: null, lastSeq: 0,
                                                       since: null });
  const [epoch, setEpoch] = useState(0);
  const [now, setNow] = useState(Date.now());
  const streamRef = useRef<Stream | null>(null);
  const sessionRef = useRef<string | null>(null);
  const restUpRef = useRef(true);
  const { onRefused } = props;

  const markDown = useCallback(() => {
    restUpRef.current = false;
    setRestUp(false);
  }, []);

  const reportFailure = useCallback((err: unknown) => {
    if (err instanceof ApiError && err.kind === "unauthorized") {
      forgetToken();
      onRefused(err.message);
    } else if (err instanceof ApiError && err.kind === "down") {
      markDown();
    }
  }, [onRefused, markDown]);

  // Non-tick history from REST, oldest first in pages; at the start only the recent part (`since` = null),
  // so the tables and chart markers hold what happened just before the page opened.
  const backfill = useCallback(async (since: number | null) => {
    try {
      let from = since ?? Math.max(0, (await api.health()).seq - 30_000);
      for (let page = 0; page < 6; page++) {
        const b = await api.backfill(from, NON_TICK, 5000);
        live.backfill(b.events);
        const last = b.events[b.events.length - 1];
        if (b.events.length < 5000 || !last) break;
        from = last.seq;
      }
    } catch (err) {
      reportFailure(err);
    }
  }, [api, live, reportFailure]);

  const backfillTicks = useCallback(async () => {
    try {
      const h = await api.health();
      const b = await api.backfill(Math.max(0, h.seq - 10_000), ["tick"], 10_000);
      live.backfillTicks(b.events);
    } catch (err) {
      reportFailure(err);
    }
  }, [api, live, reportFailure]);

  // The stream: started once; it reconnects by itself.
  useEffect(() => {
    const s = new Stream(props.token, {
      events: (events) => live.add(events),
      status: (st) => setStream(st),
      restarted: () => {
        live.reset();
        void backfill(0);
        void backfillTicks();
        setEpoch((e) => e + 1);
      },
      gap: (from) => void backfill(from - 1),
    });
    streamRef.current = s;
    s.start();
    void backfill(null); // signals, refusals, quarantines and markers the engine already published
    void backfillTicks(); // recent prices, so the chart does not start empty
    return () => s.stop();
  }, [props.token, live, backfill, backfillTicks]);

  // The engine's status: the header, the down banner, and noticing a new engine process.
  useEffect(() => {
    let cancelled = false;
    let timer: number | null = null;
    const run = async () => {
      try {
        const st = await api.status();
        if (cancelled) return;
        setStatus(st);
        if (sessionRef.current !== null && sessionRef.current !== st.session) {
          live.reset();
          void backfill(0);
          setEpoch((e) => e + 1);
        }
        sessionRef.current = st.session;
        if (!restUpRef.current) {
          restUpRef.current = true;
          setRestUp(true);
          setEpoch((e) => e + 1); // the engine is back: every view refetches now
          streamRef.current?.retryNow();
        }
      } catch (err) {
        if (cancelled) return;
        if (err instanceof ApiError && err.kind === "unauthorized") {
          forgetToken();
          onRefused(err.message);
          return;
        }
        markDown();
      } finally {
        if (!cancelled) timer = window.setTimeout(run, restUpRef.current ? 2000 : 1000);
      }
    };
    void run();
    return () => {
      cancelled = true;
      if (timer !== null) window.clearTimeout(timer);
    };
  }, [api, live, backfill, onRefused, markDown]);

  // before the first connection attempt has failed, the page is connecting, not looking at a dead engine
  const engineUp = restUp && (stream.connected || stream.attempt === 0);
  // the banner's countdown: a clock only while the engine is away
  useEffect(() => {
    if (engineUp) return undefined;
    const t = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(t);
  }, [engineUp]);

  const connection: Connection = { api, live, epoch, engineUp, reportFailure };
  const halted = status?.kill_switch.engaged ?? false;
  const retryIn = stream.retryAt !== null ? Math.max(0, Math.ceil((stream.retryAt - now) / 1000)) : null;

  return (
    <ConnectionContext.Provider value={connection}>
      <div className="app">
        <header className="topbar">
          <div className="brand">
            <span className="logo">◆</span> Allele
          </div>
          <div className="engine-state" data-testid="engine-state">
            {!engineUp ? <Badge kind="bad">engine down</Badge>
              : halted ? <Badge kind="warn">halted</Badge>
              : <Badge kind="ok">{status?.state ?? "connecting"}</Badge>}
            {status ? <span className="muted hide-phone">session {status.session} · up {fmtDuration(status.uptime_s)}
            </span> : null}
          </div>
          <div className="equity" data-testid="header-equity">
            <span className="muted">equity</span> {status ? fmtNum(status.equity) : "–"}
          </div>
        </header>
        <nav className="tabs" role="tablist">
          {VIEWS.map((v) => (
            <button key={v.id} role="tab" aria-selected={view === v.id} data-testid={`tab-${v.id}`}
                    className={view === v.id ? "active" : ""} onClick={() => {
                      sessionStorage.setItem("allele.view", v.id);
                      setView(v.id);
                    }}>
              {v.label}
            </button>
          ))}
        </nav>
        {!engineUp ? (
          <div className="banner banner-down" role="alert" data-testid="engine-down">
            <strong>The engine is not reachable.</strong>{" "}
            {restUp ? "The live stream dropped; " : "Its API does not answer; "}
            reconnecting automatically{retryIn !== null ? ` (attempt ${stream.attempt}, next in ${retryIn}s)` : "…"}.
            {" "}What is shown below is the last known state. Start it with <code>allele start</code> if it was
            stopped.
          </div>
        ) : null}
        {engineUp && halted ? (
          <div className="banner banner-halt" data-testid="halted-banner">
            <strong>Kill switch engaged:</strong> trading is halted ({status?.kill_switch.reason || "no reason given"}).
          </div>
        ) : null}
        <main className={`content ${engineUp ? "" : "stale"}`} data-testid={`view-${view}`}>
          {view === "markets" && <MarketsView status={status} />}
          {view === "portfolio" && <PortfolioView status={status} />}
          {view === "arena" && <ArenaView status={status} />}
          {view === "activity" && <ActivityView />}
          {view === "risk" && <RiskView />}
          {view === "plugins" && <PluginsView status={status} />}
          {view === "health" && <HealthView status={status} stream={stream} />}
        </main>
      </div>
    </ConnectionContext.Provider>
  );
}
