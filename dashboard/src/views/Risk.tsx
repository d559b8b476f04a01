import { useState } from "react";

import { ApiError } from "../api";
import { Badge, Modal, Panel, Stat, Unavailable } from "../components";
import { fmtNum, fmtPct, fmtTs } from "../format";
import { useConnection, useLive, usePoll } from "../hooks";

export function RiskView() {
  const { api, engineUp } = useConnection();
  const live = useLive();
  const risk = usePoll((a) => a.risk(), 1500);
  const [confirming, setConfirming] = useState<"engage" | "clear" | null>(null);
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<{ kind: "ok" | "error"; text: string } | null>(null);
  const ks = risk.data?.kill_switch;

  const submit = async () => {
    if (!confirming) return;
    setBusy(true);
    setMessage(null);
    try {
      const engage = confirming === "engage";
      const result = await api.setKillSwitch(engage, engage ? reason.trim() || "engaged from the dashboard" : "");
      setMessage({ kind: "ok", text: result.engaged
        ? `Kill switch engaged${result.applied ? ": the engine cancelled its open orders and refuses new ones."
          : "; the engine acts on it at its next event."}`
        : "Kill switch cleared: the organisms may trade again." });
      setConfirming(null);
      setReason("");
      risk.refresh();
    } catch (err) {
      setMessage({ kind: "error", text: err instanceof ApiError ? err.message : String(err) });
    } finally {
      setBusy(false);
    }
  };

  const killEvents = live.refusals.length;
  return (
    <div className="grid grid-risk">
      <Panel title="Kill switch" testId="kill-switch-panel">
        <Unavailable error={risk.error} what="the risk state" loading={risk.loading} />
        <div className="kill-state" data-testid="kill-switch-state">
          {ks ? (ks.engaged ? <Badge kind="bad">ENGAGED — trading halted</Badge> : <Badge kind="ok">off — trading</Badge>)
            : <Badge kind="muted">unknown</Badge>}
          {ks && ks.engaged !== ks.applied ? <Badge kind="warn">engine not yet applied</Badge> : null}
        </div>
        {ks?.engaged && ks.reason ? <p>Reason: {ks.reason}</p> : null}
        <p className="muted small">Engaging cancels every open order and refuses new ones until cleared; it survives
          engine restarts (flag file <code>{ks?.file ?? ".allele/kill-switch"}</code>, also set by
          {" "}<code>allele kill-switch on</code>).</p>
        {ks?.engaged ? (
          <button className="btn" data-testid="kill-switch-clear" disabled={!engineUp || busy}
                  onClick={() => setConfirming("clear")}>Clear kill switch…</button>
        ) : (
          <button className="btn btn-danger" data-testid="kill-switch-engage" disabled={!engineUp || busy || !ks}
                  onClick={() => setConfirming("engage")}>Engage kill switch…</button>
        )}
        {message ? <p className={message.kind === "ok" ? "ok-text" : "error"} data-testid="kill-switch-message">
          {message.text}</p> : null}
      </Panel>

      <Panel title="Exposure" className="span-2" testId="risk-stats">
        <div className="stats">
          <Stat label="equity" value={fmtNum(risk.data?.equity ?? null)} />
          <Stat label="high water" value={fmtNum(risk.data?.high_water ?? null)} />
          <Stat label="drawdown" value={fmtPct(risk.data?.drawdown ?? null)} />
          <Stat label="open orders" value={<span data-testid="open-orders">{risk.data?.open_orders ?? "–"}</span>} />
          <Stat label="refused intents" value={<span data-testid="refused-count">{risk.data?.refused ?? "–"}</span>} />
          <Stat label="kernel rejects" value={risk.data?.kernel_rejects ?? "–"} />
        </div>
        <h3>Limits</h3>
        <div className="table-wrap">
          <table className="kv">
            <tbody>
              {Object.entries(risk.data?.config ?? {}).map(([k, v]) => (
                <tr key={k}><th>{k}</th><td className="mono">{typeof v === "object" ? JSON.stringify(v) : String(v)}</td></tr>
              ))}
            </tbody>
          </table>
        </div>
      </Panel>

      <Panel title="Latest refusals (live)" className="span-3" testId="live-refusals">
        {killEvents === 0 ? <p className="muted">No refusal since this page opened.</p> : (
          <div className="table-wrap">
            <table>
              <thead><tr><th>event time</th><th>organism</th><th>symbol</th><th>rule</th><th>reason</th></tr></thead>
              <tbody>
                {live.refusals.slice(-15).reverse().map((e) => (
                  <tr key={e.seq}><td>{fmtTs(Number(e.data.ts_ns))}</td><td>{String(e.data.organism ?? "")}</td>
                    <td>{String(e.data.symbol ?? "")}</td><td><Badge kind="warn">{String(e.data.rule ?? "")}</Badge></td>
                    <td>{String(e.data.reason ?? "")}</td></tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Panel>

      {confirming ? (
        <Modal title={confirming === "engage" ? "Engage the kill switch?" : "Clear the kill switch?"}
               onClose={() => !busy && setConfirming(null)}>
          {confirming === "engage" ? (
            <>
              <p>Every open order is cancelled and every organism's new orders are refused until you clear it.</p>
              <label htmlFor="ks-reason">Reason (recorded in the ledger)</label>
              <input id="ks-reason" data-testid="kill-switch-reason" value={reason} maxLength={500}
                     placeholder="why trading stops" onChange={(e) => setReason(e.target.value)} />
            </>
          ) : <p>The organisms resume trading at the engine's next event.</p>}
          <div className="row end">
            <button className="btn" onClick={() => setConfirming(null)} disabled={busy}>Cancel</button>
            <button className={confirming === "engage" ? "btn btn-danger" : "btn btn-primary"} disabled={busy}
                    data-testid="kill-switch-confirm" onClick={() => void submit()}>
              {busy ? "Working…" : confirming === "engage" ? "Engage: halt trading" : "Clear: resume trading"}
            </button>
          </div>
        </Modal>
      ) : null}
    </div>
  );
}
