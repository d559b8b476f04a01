import { useState } from "react";

import type { ArchiveGrid, LineageNode, Standing, Status } from "../api";
import { Badge, Panel, Unavailable } from "../components";
import { fmtNum, fmtSigned, fmtTs, short, signClass } from "../format";
import { usePoll } from "../hooks";

function statusBadge(s: string) {
  const kind = s === "funded" || s === "active" ? "ok" : s === "retired" || s === "rejected" ? "bad"
    : s === "quarantined" ? "bad" : "info";
  return <Badge kind={kind}>{s}</Badge>;
}

export function ArenaView(props: { status: Status | null }) {
  const organisms = usePoll((api) => api.organisms(), 2000);
  const board = usePoll((api) => api.leaderboard(), 5000);
  const archive = usePoll((api) => api.archive(), 10000);
  const [picked, setPicked] = useState<string | null>(null);
  // 404 with the API's own detail: the route exists but no arena run has finished (a bare "Not Found" is an
  // older engine without the route, which <Unavailable> reports)
  const noRun = archive.error?.kind === "missing" && archive.error.message !== "Not Found";
  const rows = organisms.data ?? [...(props.status?.organisms ?? [])].sort((a, b) => a.rank - b.rank);

  return (
    <div className="grid grid-arena">
      <Panel title="Live organisms (ranked by equity)" className="span-3" testId="live-leaderboard">
        <Unavailable error={organisms.error} what="organisms" loading={organisms.loading && !rows.length} />
        <div className="table-wrap">
          <table>
            <thead><tr><th>#</th><th>organism</th><th className="hide-phone">strategy</th><th>status</th>
              <th className="num hide-phone">capital</th><th className="num">equity</th><th className="num">P&L</th>
              <th className="num hide-phone">open</th><th className="num hide-phone">signals</th>
              <th className="hide-phone">plugin</th></tr></thead>
            <tbody>
              {rows.map((o) => {
                const d = o.equity - o.allocation;
                return (
                  <tr key={o.id} data-testid={`organism-${o.id}`}>
                    <td>{o.rank}</td><td>{o.id}</td><td className="hide-phone">{o.strategy}</td>
                    <td>{o.quarantined ? <Badge kind="bad">quarantined</Badge>
                      : o.active ? <Badge kind="ok">active</Badge> : <Badge kind="muted">idle</Badge>}</td>
                    <td className="num hide-phone">{fmtNum(o.allocation)}</td>
                    <td className="num" data-testid="organism-equity">{fmtNum(o.equity, 4)}</td>
                    <td className={`num ${signClass(d)}`}>{fmtSigned(d)}</td>
                    <td className="num hide-phone">{o.open_orders}</td>
                    <td className="num hide-phone">{o.signals}</td>
                    <td className="mono hide-phone">{short(o.plugin_sha256)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      </Panel>

      <Panel title="Arena standing" className="span-2" testId="arena-leaderboard">
        <Unavailable error={board.error} what="the arena's standing" loading={board.loading} />
        <div className="table-wrap">
          <table>
            <thead><tr><th>organism</th><th className="hide-phone">strategy</th><th>status</th>
              <th className="num">fitness</th><th className="num">Sortino</th><th className="num">deflated Sharpe</th>
              <th className="num">capital</th><th className="num hide-phone">gen</th></tr></thead>
            <tbody>
              {(board.data ?? []).length === 0 ? (
                <tr><td colSpan={8} className="muted empty">No arena run yet: <code>allele arena run</code> fills this.
                </td></tr>
              ) : (board.data ?? []).map((s: Standing) => (
                <tr key={s.fingerprint} className={picked === s.fingerprint ? "picked clickable" : "clickable"}
                    onClick={() => setPicked(s.fingerprint)} data-testid={`standing-${s.fingerprint}`}>
                  <td className="mono">{short(s.fingerprint)}</td>
                  <td className="hide-phone">{String(s.spec.strategy ?? "–")}</td>
                  <td>{statusBadge(s.status)}{s.protected ? <Badge kind="info">protected</Badge> : null}</td>
                  <td className="num">{fmtNum(s.fitness, 3)}</td><td className="num">{fmtNum(s.sortino, 3)}</td>
                  <td className="num">{fmtNum(s.dsr, 3)}</td><td className="num">{fmtNum(s.allocation)}</td>
                  <td className="num hide-phone">{s.generation ?? "–"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <p className="muted small">Click an organism to see its lineage.</p>
      </Panel>

      <Panel title="Lineage" testId="lineage">
        {picked ? <Lineage fingerprint={picked} /> : <p className="muted">Pick an organism in the standing.</p>}
      </Panel>

      <Panel title="MAP-Elites niches" className="span-3" testId="niches">
        {noRun ? (
          <p className="muted" data-testid="no-arena-run" title={archive.error?.message}>No arena run yet: the
            niches fill when an <code>allele arena run</code> finishes.</p>
        ) : <Unavailable error={archive.error} what="the MAP-Elites archive" loading={archive.loading} />}
        {archive.data && !noRun ? (
          <>
            <p className="muted small archive-run" data-testid="archive-run">Latest run <span className="mono">{archive.data.run_id}
            </span>{archive.data.finished_ns ? <>, finished {fmtTs(archive.data.finished_ns)} UTC</> : null}.</p>
            <NicheGrid grid={archive.data} onPick={setPicked} />
          </>
        ) : null}
      </Panel>
    </div>
  );
}

function Lineage(props: { fingerprint: string }) {
  const lineage = usePoll((api) => api.lineage(props.fingerprint), 30000, [props.fingerprint]);
  const nodes = lineage.data ?? [];
  return (
    <div>
      <Unavailable error={lineage.error} what="lineage" loading={lineage.loading} />
      <ol className="lineage">
        {nodes.map((n: LineageNode, i) => (
          <li key={`${n.fingerprint}-${i}`} style={{ marginLeft: `${Math.min(i, 8) * 0.8}rem` }}>
            <span className="mono">{short(n.fingerprint)}</span> <Badge kind="info">{n.operator}</Badge>
            <span className="muted"> gen {n.generation}</span>
            {n.parents.length ? <span className="muted"> ← {n.parents.map((p) => short(p, 8)).join(" × ")}</span>
              : <span className="muted"> (seed)</span>}
          </li>
        ))}
      </ol>
    </div>
  );
}

/** A bin's label as the archive writes it: below the first edge, between two, or at least the last. */
function binLabel(edges: number[], index: number): string {
  if (!edges.length) return String(index);
  if (index <= 0) return `<${edges[0]}`;
  if (index >= edges.length) return `>=${edges[edges.length - 1]}`;
  return `[${edges[index - 1]}, ${edges[index]})`;
}

function NicheGrid(props: { grid: ArchiveGrid; onPick: (fp: string) => void }) {
  const numeric = props.grid.descriptors.filter((d) => d !== "venue");
  const [x, setX] = useState(numeric[0] ?? "");
  const [y, setY] = useState(numeric[1] ?? numeric[0] ?? "");
  const xi = props.grid.descriptors.indexOf(x);
  const yi = props.grid.descriptors.indexOf(y);
  const nx = (props.grid.bins[x]?.length ?? 0) + 1;
  const ny = (props.grid.bins[y]?.length ?? 0) + 1;
  const best = new Map<string, { value: number; fingerprint: string; count: number }>();
  const xLabel: string[] = [];
  const yLabel: string[] = [];
  for (const c of props.grid.cells) {
    const cx = Number(c.niche[xi]);
    const cy = Number(c.niche[yi]);
    xLabel[cx] = c.labels[x] ?? String(cx);
    yLabel[cy] = c.labels[y] ?? String(cy);
    const k = `${cx},${cy}`;
    const prev = best.get(k);
    if (!prev || c.value > prev.value) best.set(k, { value: c.value, fingerprint: c.fingerprint,
                                                      count: (prev?.count ?? 0) + 1 });
    else prev.count += 1;
  }
  const values = [...best.values()].map((b) => b.value);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  if (!props.grid.cells.length) return <p className="muted">The archive is empty: no arena run has filled a niche.</p>;
  return (
    <div>
      <div className="filters">
        <label>x <select value={x} onChange={(e) => setX(e.target.value)}>
          {numeric.map((d) => <option key={d}>{d}</option>)}</select></label>
        <label>y <select value={y} onChange={(e) => setY(e.target.value)}>
          {numeric.map((d) => <option key={d}>{d}</option>)}</select></label>
        <span className="muted">{props.grid.cells.length} elites; colour = best value in the cell; rows: {y}, columns: {x}
        </span>
      </div>
      <div className="niche-grid" style={{ gridTemplateColumns: `6rem repeat(${nx}, minmax(2.2rem, 1fr))` }}>
        {Array.from({ length: ny }, (_, r) => ny - 1 - r).map((row) => (
          <div key={row} className="niche-row" style={{ display: "contents" }}>
            <div className="niche-axis">{yLabel[row] ?? binLabel(props.grid.bins[y] ?? [], row)}</div>
            {Array.from({ length: nx }, (_, col) => {
              const cell = best.get(`${col},${row}`);
              const t = cell && hi > lo ? (cell.value - lo) / (hi - lo) : cell ? 1 : 0;
              return (
                <button key={col} className={cell ? "niche filled" : "niche"} disabled={!cell}
                        data-testid={cell ? "niche-cell" : undefined}
                        title={cell ? `${short(cell.fingerprint)}: ${fmtNum(cell.value, 3)} (${cell.count} elites)`
                          : "empty niche"}
                        style={cell ? { background: `hsl(${Math.round(10 + 120 * t)}, 65%, 40%)` } : undefined}
                        onClick={() => cell && props.onPick(cell.fingerprint)}>
                  {cell ? fmtNum(cell.value, 2) : ""}
                </button>
              );
            })}
          </div>
        ))}
        <div />
        {Array.from({ length: nx }, (_, col) => <div key={col} className="niche-axis x">{xLabel[col] ?? binLabel(props.grid.bins[x] ?? [], col)}</div>)}
      </div>
    </div>
  );
}
