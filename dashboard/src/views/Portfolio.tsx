import { useMemo, useState } from "react";

import type { PnlHistory, Status } from "../api";
import { type Curve, EquityChart, PALETTE } from "../charts";
import { Panel, Stat, Unavailable } from "../components";
import { fmtNum, fmtPct, fmtSigned, signClass } from "../format";
import { usePoll } from "../hooks";

function curveOf(h: PnlHistory, id: string): Curve {
  const points = h.points.map((p) => ({ time: p.ts_ns / 1e9, value: p.equity }));
  const last = points[points.length - 1];
  if (h.current.ts_ns && (!last || h.current.ts_ns / 1e9 >= last.time)) {
    points.push({ time: h.current.ts_ns / 1e9, value: h.current.equity });
  }
  return { id, points };
}

/** Largest fall from a running peak, as a fraction of the peak. */
export function maxDrawdown(values: number[]): number {
  let peak = -Infinity;
  let worst = 0;
  for (const v of values) {
    peak = Math.max(peak, v);
    if (peak > 0) worst = Math.max(worst, (peak - v) / peak);
  }
  return worst;
}

export function PortfolioView(props: { status: Status | null }) {
  const ids = (props.status?.organisms ?? []).map((o) => o.id).sort();
  const key = ids.join(",");
  const [shown, setShown] = useState<"portfolio" | "organisms">("portfolio");
  const history = usePoll(async (api) => {
    const all = await Promise.all(["*", ...ids].map((id) => api.pnlHistory(id)));
    return all;
  }, 4000, [key]);
  const pnl = usePoll((api) => api.pnl(), 2000);
  const risk = usePoll((api) => api.risk(), 2000);

  const curves = useMemo(() => {
    const h = history.data ?? [];
    const portfolio = h[0] ? [curveOf(h[0], "portfolio")] : [];
    const organisms = h.slice(1).map((x) => curveOf(x, x.organism));
    return { portfolio, organisms };
  }, [history.data]);
  const portfolioValues = curves.portfolio[0]?.points.map((p) => p.value) ?? [];
  const mdd = maxDrawdown(portfolioValues);
  const totals = (pnl.data ?? []).reduce((acc, p) => ({
    realized: acc.realized + Number(p.realized_pnl), unrealized: acc.unrealized + p.unrealized_pnl,
    fees: acc.fees + p.fees, allocation: acc.allocation + p.allocation, equity: acc.equity + p.equity,
  }), { realized: 0, unrealized: 0, fees: 0, allocation: 0, equity: 0 });
  const net = totals.equity - totals.allocation;

  return (
    <div className="grid grid-portfolio">
      <Panel title="Portfolio" className="span-3" testId="portfolio-stats">
        <div className="stats">
          <Stat label="equity" value={fmtNum(risk.data?.equity ?? props.status?.equity ?? null)} />
          <Stat label="P&L vs allocation" value={<span className={signClass(net)}>{fmtSigned(net)}</span>} />
          <Stat label="realized" value={<span className={signClass(totals.realized)}>{fmtSigned(totals.realized)}</span>} />
          <Stat label="unrealized" value={<span className={signClass(totals.unrealized)}>
            {fmtSigned(totals.unrealized)}</span>} />
          <Stat label="fees" value={fmtNum(totals.fees)} />
          <Stat label="high water" value={fmtNum(risk.data?.high_water ?? props.status?.high_water ?? null)} />
          <Stat label="drawdown now" value={<span data-testid="drawdown">{fmtPct(risk.data?.drawdown ?? null)}</span>} />
          <Stat label="max drawdown (curve)" value={fmtPct(portfolioValues.length ? mdd : null)} />
        </div>
      </Panel>

      <Panel title="Equity curve" className="span-3" testId="equity-panel" actions={
        <div className="chips">
          <button className={shown === "portfolio" ? "chip active" : "chip"} onClick={() => setShown("portfolio")}>
            portfolio</button>
          <button className={shown === "organisms" ? "chip active" : "chip"} onClick={() => setShown("organisms")}>
            each organism</button>
        </div>
      }>
        <Unavailable error={history.error} what="equity history" loading={history.loading} />
        <EquityChart curves={shown === "portfolio" ? curves.portfolio : curves.organisms} testId="equity-chart" />
        {shown === "organisms" ? (
          <p className="legend">{curves.organisms.map((c, i) => (
            <span key={c.id} style={{ color: PALETTE[i % PALETTE.length] }}>■ {c.id} </span>))}</p>
        ) : null}
        {history.data && (history.data[0]?.points.length ?? 0) === 0 ? (
          <p className="muted">The ledger has no equity samples yet (the engine writes them in event time).</p>
        ) : null}
      </Panel>

      <Panel title="P&L per organism" className="span-3" testId="pnl-table">
        <Unavailable error={pnl.error} what="P&L" loading={pnl.loading} />
        <div className="table-wrap">
          <table>
            <thead><tr><th>organism</th><th className="num">allocation</th><th className="num">equity</th>
              <th className="num">P&L</th><th className="num hide-phone">realized</th>
              <th className="num hide-phone">unrealized</th><th className="num hide-phone">fees</th>
              <th className="num hide-phone">cash</th></tr></thead>
            <tbody>
              {(pnl.data ?? []).map((p) => {
                const d = p.equity - p.allocation;
                return (
                  <tr key={p.organism}>
                    <td>{p.organism}</td><td className="num">{fmtNum(p.allocation)}</td>
                    <td className="num">{fmtNum(p.equity)}</td>
                    <td className={`num ${signClass(d)}`}>{fmtSigned(d)}</td>
                    <td className={`num hide-phone ${signClass(Number(p.realized_pnl))}`}>{fmtNum(p.realized_pnl)}</td>
                    <td className={`num hide-phone ${signClass(p.unrealized_pnl)}`}>{fmtNum(p.unrealized_pnl)}</td>
                    <td className="num hide-phone">{fmtNum(p.fees)}</td>
                    <td className="num hide-phone">{fmtNum(p.cash)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      </Panel>
    </div>
  );
}
