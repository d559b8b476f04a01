import { useRef } from "react";

import type { Status } from "../api";
import { Badge, Panel, Stat, Unavailable } from "../components";
import { fmtDuration, fmtNum, fmtTs } from "../format";
import { useConnection, useLive, usePoll } from "../hooks";
import { TOPICS, type StreamStatus } from "../stream";

function restartsOf(state: Record<string, unknown> | null): string {
  if (!state) return "–";
  for (const key of ["restart_count", "restarts"]) {
    const v = state[key];
    if (typeof v === "number") return String(v);
    if (Array.isArray(v)) return String(v.length);
  }
  return "–";
}

export function HealthView(props: { status: Status | null; stream: StreamStatus }) {
  const live = useLive();
  const { engineUp } = useConnection();
  const watchdog = usePoll((a) => a.watchdog(), 3000);
  const s = props.status;
  // counter rates from successive status snapshots (engine-side, includes what the stream does not carry)
  const prev = useRef<{ at: number; counters: Record<string, number> } | null>(null);
  const rates = useRef<Record<string, number>>({});
  if (s && (!prev.current || prev.current.counters !== s.counters)) {
    const now = Date.now();
    if (prev.current && now - prev.current.at > 500) {
      const dt = (now - prev.current.at) / 1000;
      const next: Record<string, number> = {};
      for (const [k, v] of Object.entries(s.counters)) next[k] = Math.max(0, (v - (prev.current.counters[k] ?? v)) / dt);
      rates.current = next;
    }
    if (!prev.current || now - prev.current.at > 500) prev.current = { at: now, counters: s.counters };
  }
  const streamRates = live.rates();
  const wd = watchdog.data?.state ?? null;

  return (
    <div className="grid grid-health">
      <Panel title="Engine" className="span-3" testId="health-engine">
        <div className="stats">
          <Stat label="state" value={engineUp ? <Badge kind="ok">{s?.state ?? "?"}</Badge> : <Badge kind="bad">down</Badge>} />
          <Stat label="uptime" value={<span data-testid="uptime">{fmtDuration(s?.uptime_s)}</span>} />
          <Stat label="session" value={s?.session ?? "–"} />
          <Stat label="pid" value={s?.pid ?? "–"} />
          <Stat label="event time" value={fmtTs(s?.event_time_ns)} />
          <Stat label="bus seq" value={s?.seq ?? "–"} />
          <Stat label="stream clients" value={s?.stream_clients ?? "–"} />
          <Stat label="watchdog restarts" value={<span data-testid="watchdog-restarts">{restartsOf(wd)}</span>} />
        </div>
      </Panel>

      <Panel title="Event rates" className="span-2" testId="health-rates">
        <div className="table-wrap">
          <table>
            <thead><tr><th>topic</th><th className="num">per second (stream, 10 s)</th>
              <th className="num">seen by this page</th></tr></thead>
            <tbody>
              {TOPICS.map((t) => (
                <tr key={t}><td>{t}</td><td className="num">{fmtNum(streamRates[t] ?? 0, 1)}</td>
                  <td className="num">{live.counts[t] ?? 0}</td></tr>
              ))}
            </tbody>
          </table>
        </div>
        <h3>Engine counters</h3>
        <div className="table-wrap">
          <table>
            <thead><tr><th>counter</th><th className="num">total</th><th className="num">per second</th></tr></thead>
            <tbody>
              {Object.entries(s?.counters ?? {}).map(([k, v]) => (
                <tr key={k}><td>{k}</td><td className="num">{v}</td>
                  <td className="num">{fmtNum(rates.current[k] ?? null, 1)}</td></tr>
              ))}
            </tbody>
          </table>
        </div>
      </Panel>

      <Panel title="Watchdog and stream" testId="health-watchdog">
        <p>Live stream: {props.stream.connected ? <Badge kind="ok">connected</Badge> : <Badge kind="bad">reconnecting</Badge>}
          {props.stream.since ? <span className="muted"> since {new Date(props.stream.since).toLocaleTimeString()}</span>
            : null}</p>
        <Unavailable error={watchdog.error} what="the watchdog state" loading={watchdog.loading} />
        {watchdog.data?.note ? <p className="muted">{watchdog.data.note}</p> : null}
        {wd ? (
          <table className="kv">
            <tbody>
              {Object.entries(wd).map(([k, v]) => (
                <tr key={k}><th>{k}</th><td className="mono small">{k.endsWith("_at") && typeof v === "number"
                  ? new Date(v * 1000).toISOString().replace("T", " ").slice(0, 19)
                  : typeof v === "object" ? JSON.stringify(v) : String(v)}</td></tr>
              ))}
            </tbody>
          </table>
        ) : null}
      </Panel>
    </div>
  );
}
