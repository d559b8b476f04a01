import { useCallback, useEffect, useMemo, useRef, useState } from "react";

import { ApiError, type Deployed, type Plugin, type Status } from "../api";
import { Badge, type Column, FilterTable, Modal, Panel, Unavailable } from "../components";
import { short } from "../format";
import { useConnection, useLive, usePoll } from "../hooks";

/** Where the API serves a plugin's proof: only a path under /api (it is fetched with the token). */
function proofPath(p: Plugin): string | null {
  const url = p.proof_url ?? null;
  return url && url.startsWith("/api/") ? url : null;
}

function proofCell(p: Plugin, onProof: (p: Plugin) => void) {
  // Not a plain link: the browser would fetch it without the token (401). The page fetches it and shows it.
  if (proofPath(p)) {
    return <button type="button" className="link" data-testid="proof-link"
                   onClick={() => onProof(p)}>proof</button>;
  }
  if (p.proof) return <span className="mono small" title={p.proof}>{p.proof.split("/").pop()}</span>;
  if (p.kind !== "strategy") return <span className="muted">n/a</span>;
  return <span className="muted" title="the API serves no proof document for this plugin">none</span>;
}

function pluginColumns(onProof: (p: Plugin) => void): Column<Plugin>[] {
  return [
    { key: "name", label: "name", render: (p) => p.name, text: (p) => p.name },
    { key: "kind", label: "kind", render: (p) => <Badge kind="info">{p.kind}</Badge>, text: (p) => p.kind },
    { key: "version", label: "version", render: (p) => p.version, text: (p) => p.version },
    { key: "sha", label: "sha256", className: "mono", render: (p) => <span title={p.sha256}>{short(p.sha256)}</span>,
      text: (p) => p.sha256 },
    { key: "where", label: "source", render: (p) => p.deployed ? <Badge kind="ok">deployed</Badge>
      : <Badge kind="muted">bundled</Badge> },
    { key: "used", label: "running in", render: (p) => p.organisms.length ? p.organisms.join(", ")
      : <span className="muted">–</span>, text: (p) => p.organisms.join(" ") },
    { key: "proof", label: "proof", render: (p) => proofCell(p, onProof) },
  ];
}

/** A plugin's proof document (Markdown), fetched with the token and shown as text. */
function ProofDialog(props: { plugin: Plugin; onClose: () => void }) {
  const { api } = useConnection();
  const { plugin, onClose } = props;
  const [text, setText] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const path = proofPath(plugin);
  useEffect(() => {
    let cancelled = false;
    if (!path) return;
    api.getText(path).then((t) => {
      if (!cancelled) setText(t);
    }, (err: unknown) => {
      if (!cancelled) setError(err instanceof ApiError ? err.message : String(err));
    });
    return () => {
      cancelled = true;
    };
  }, [api, path]);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") onClose();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onClose]);
  return (
    <Modal title={`Proof of ${plugin.name} ${plugin.version}`} onClose={onClose} className="modal-wide"
           testId="proof-dialog">
      <p className="muted small mono">{short(plugin.sha256)} · {path}</p>
      {error ? <p className="error" data-testid="proof-error">The proof could not be fetched: {error}</p>
        : text === null ? <p className="muted">Loading the proof…</p>
        : <pre className="proof" data-testid="proof-text">{text}</pre>}
      <div className="row end">
        <button type="button" className="btn" onClick={onClose} data-testid="proof-close">Close</button>
      </div>
    </Modal>
  );
}

export function PluginsView(props: { status: Status | null }) {
  const { api, engineUp } = useConnection();
  const live = useLive();
  const plugins = usePoll((a) => a.plugins(), 3000);
  const [wasm, setWasm] = useState<File | null>(null);
  const [proof, setProof] = useState<File | null>(null);
  const [unproven, setUnproven] = useState(false);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ ok: Deployed | null; error: string | null } | null>(null);
  const form = useRef<HTMLFormElement>(null);
  const [proofOf, setProofOf] = useState<Plugin | null>(null);
  const columns = useMemo(() => pluginColumns(setProofOf), []);
  const closeProof = useCallback(() => setProofOf(null), []);

  const deploy = async () => {
    if (!wasm) return;
    setBusy(true);
    setResult(null);
    try {
      const d = await api.deploy(wasm, proof, unproven);
      setResult({ ok: d, error: null });
      form.current?.reset();
      setWasm(null);
      setProof(null);
      setUnproven(false);
      plugins.refresh();
    } catch (err) {
      setResult({ ok: null, error: err instanceof ApiError ? err.message : String(err) });
    } finally {
      setBusy(false);
    }
  };

  const quarantined = (props.status?.organisms ?? []).filter((o) => o.quarantined);
  return (
    <div className="grid grid-plugins">
      <Panel title="Plugins" className="span-3" testId="plugins-table">
        <Unavailable error={plugins.error} what="plugins" loading={plugins.loading} />
        <FilterTable rows={plugins.data ?? []} columns={columns} rowKey={(p) => p.sha256}
                     facets={[{ label: "kind", value: (p: Plugin) => p.kind }]} empty="No plugin registered." />
      </Panel>

      <Panel title="Deploy a plugin" className="span-2" testId="deploy-panel">
        <form ref={form} className="deploy" onSubmit={(e) => {
          e.preventDefault();
          void deploy();
        }}>
          <label>Plugin (.wasm)
            <input type="file" accept=".wasm,application/wasm" data-testid="deploy-wasm"
                   onChange={(e) => setWasm(e.target.files?.[0] ?? null)} />
          </label>
          <label>Proof document (strategies: edge, assumptions, failure modes, risks)
            <input type="file" accept=".md,.txt,.pdf" data-testid="deploy-proof"
                   onChange={(e) => setProof(e.target.files?.[0] ?? null)} />
          </label>
          <label className="check">
            <input type="checkbox" checked={unproven} data-testid="deploy-unproven"
                   onChange={(e) => setUnproven(e.target.checked)} /> deploy a strategy without a proof
          </label>
          <button type="submit" className="btn btn-primary" disabled={!wasm || busy || !engineUp}
                  data-testid="deploy-submit">{busy ? "Validating and deploying…" : "Deploy"}</button>
        </form>
        {result?.ok ? (
          <div className="ok-text" data-testid="deploy-result">
            Deployed {result.ok.kind} <strong>{result.ok.name}</strong> {result.ok.version} ({short(result.ok.sha256)})
            {result.ok.hot_swap ? " — the organisms trading it now run this build." : "."}
            {result.ok.unproven ? <p className="warn-text">Unproven: {result.ok.unproven}</p> : null}
          </div>
        ) : null}
        {result?.error ? <p className="error" data-testid="deploy-error">Not deployed: {result.error}</p> : null}
      </Panel>

      <Panel title="Quarantined instances" testId="quarantine">
        {quarantined.length === 0 && live.quarantines.size === 0 ? <p className="muted">None.</p> : (
          <ul className="plain">
            {quarantined.map((o) => (
              <li key={o.id}><Badge kind="bad">{o.id}</Badge> {o.strategy} <span className="mono">{short(o.plugin_sha256)}
              </span><br /><span className="small">{live.quarantines.get(o.id)?.reason
                ?? "reason not in this page's stream history"}</span></li>
            ))}
            {[...live.quarantines.values()].filter((q) => !quarantined.some((o) => o.id === q.organism)).map((q) => (
              <li key={q.organism}><Badge kind="warn">{q.organism}</Badge> was quarantined (since replaced):
                <br /><span className="small">{q.reason}</span></li>
            ))}
          </ul>
        )}
      </Panel>

      {proofOf ? <ProofDialog plugin={proofOf} onClose={closeProof} /> : null}
    </div>
  );
}
