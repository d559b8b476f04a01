import { type ReactNode, useMemo, useState } from "react";

import type { ApiError } from "./api";

export function Panel(props: { title: ReactNode; actions?: ReactNode; children: ReactNode; className?: string;
                               testId?: string }) {
  return (
    <section className={`panel ${props.className ?? ""}`} data-testid={props.testId}>
      <header className="panel-head">
        <h2>{props.title}</h2>
        {props.actions ? <div className="panel-actions">{props.actions}</div> : null}
      </header>
      <div className="panel-body">{props.children}</div>
    </section>
  );
}

export function Stat(props: { label: string; value: ReactNode; className?: string; testId?: string }) {
  return (
    <div className={`stat ${props.className ?? ""}`} data-testid={props.testId}>
      <div className="stat-label">{props.label}</div>
      <div className="stat-value">{props.value}</div>
    </div>
  );
}

export function Badge(props: { kind: "ok" | "warn" | "bad" | "muted" | "info"; children: ReactNode }) {
  return <span className={`badge badge-${props.kind}`}>{props.children}</span>;
}

/** What a panel shows when its data cannot be had: the route is missing (an older engine) or it failed. */
export function Unavailable(props: { error: ApiError | null; what: string; loading?: boolean }) {
  if (props.loading && !props.error) return <p className="muted">Loading {props.what}…</p>;
  if (!props.error) return null;
  if (props.error.kind === "missing") {
    const detail = props.error.message === "Not Found" ? "this engine's API has no such route yet"
      : props.error.message;
    return <p className="unavailable" data-testid="not-available">{props.what}: not available ({detail}).</p>;
  }
  if (props.error.kind === "down") return <p className="muted">{props.what}: waiting for the engine…</p>;
  return <p className="error">{props.what}: {props.error.message}</p>;
}

export interface Column<T> {
  key: string;
  label: string;
  render: (row: T) => ReactNode;
  text?: (row: T) => string; // what the free-text filter matches (default: none)
  className?: string;
}

export interface Facet<T> { label: string; value: (row: T) => string }

/** A table with a free-text filter and drop-down facets; newest rows first when `reverse`. */
export function FilterTable<T>(props: {
  rows: T[]; columns: Column<T>[]; rowKey: (row: T) => string; facets?: Facet<T>[]; empty: string;
  testId?: string; reverse?: boolean; limit?: number;
}) {
  const [text, setText] = useState("");
  const [chosen, setChosen] = useState<Record<string, string>>({});
  const facets = props.facets ?? [];
  const options = useMemo(() => facets.map((f) => [...new Set(props.rows.map(f.value))].filter(Boolean).sort()),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [props.rows]);
  const needle = text.trim().toLowerCase();
  let rows = props.rows.filter((r) => facets.every((f) => !chosen[f.label] || f.value(r) === chosen[f.label]));
  if (needle) {
    rows = rows.filter((r) => props.columns.some((c) => (c.text ? c.text(r) : "").toLowerCase().includes(needle)));
  }
  if (props.reverse) rows = [...rows].reverse();
  const limit = props.limit ?? 300;
  const shown = rows.slice(0, limit);
  // identical rows (the same refusal twice in one event) still need distinct React keys
  const used = new Map<string, number>();
  const keyOf = (r: T): string => {
    const k = props.rowKey(r);
    const n = used.get(k) ?? 0;
    used.set(k, n + 1);
    return n ? `${k}#${n}` : k;
  };
  return (
    <div className="filter-table" data-testid={props.testId}>
      <div className="filters">
        <input type="search" placeholder="Filter…" value={text} aria-label="filter rows"
               onChange={(e) => setText(e.target.value)} />
        {facets.map((f, i) => (
          <select key={f.label} aria-label={f.label} value={chosen[f.label] ?? ""}
                  onChange={(e) => setChosen({ ...chosen, [f.label]: e.target.value })}>
            <option value="">any {f.label}</option>
            {(options[i] ?? []).map((o) => <option key={o} value={o}>{o}</option>)}
          </select>
        ))}
        <span className="muted count">{rows.length} of {props.rows.length}</span>
      </div>
      <div className="table-wrap">
        <table>
          <thead>
            <tr>{props.columns.map((c) => <th key={c.key} className={c.className}>{c.label}</th>)}</tr>
          </thead>
          <tbody>
            {shown.length === 0 ? (
              <tr><td colSpan={props.columns.length} className="muted empty">{props.empty}</td></tr>
            ) : shown.map((r) => (
              <tr key={keyOf(r)}>
                {props.columns.map((c) => <td key={c.key} className={c.className}>{c.render(r)}</td>)}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {rows.length > limit ? <p className="muted">Showing the newest {limit}; filter to narrow.</p> : null}
    </div>
  );
}

export function Modal(props: { title: string; children: ReactNode; onClose: () => void; className?: string;
                               testId?: string }) {
  return (
    <div className="modal-backdrop" role="presentation" onClick={props.onClose}>
      <div className={`modal ${props.className ?? ""}`} role="dialog" aria-modal="true" aria-label={props.title}
           data-testid={props.testId}
           onClick={(e) => e.stopPropagation()}>
        <h2>{props.title}</h2>
        {props.children}
      </div>
    </div>
  );
}
