// lightweight-charts wrappers: a price line with the organisms' orders and fills as markers, and equity
// curves. Series are fed incrementally (update) while the data only grows, and reset when it does not.

import {
  ColorType, createChart, type IChartApi, type ISeriesApi, type LineData, type SeriesMarker, type Time,
  type UTCTimestamp,
} from "lightweight-charts";
import { useEffect, useRef } from "react";

import type { ChartMark, PricePoint } from "./live";

export const PALETTE = ["#4f9dff", "#f5a623", "#7ed321", "#bd10e0", "#50e3c2", "#ff6b6b", "#b8e986", "#9013fe",
                        "#f8e71c", "#8b572a"];

function newChart(el: HTMLElement): IChartApi {
  return createChart(el, {
    autoSize: true,
    layout: { background: { type: ColorType.Solid, color: "transparent" }, textColor: "#9aa7b8", fontSize: 11 },
    grid: { vertLines: { color: "rgba(255,255,255,0.04)" }, horzLines: { color: "rgba(255,255,255,0.06)" } },
    rightPriceScale: { borderColor: "rgba(255,255,255,0.1)" },
    timeScale: { borderColor: "rgba(255,255,255,0.1)", timeVisible: true, secondsVisible: false },
    crosshair: { mode: 0 },
  });
}

/** Markers need a time the series has: snap each to the last price point at or before it. */
function snap(points: PricePoint[], time: number): number | null {
  let lo = 0;
  let hi = points.length - 1;
  let best: number | null = null;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const p = points[mid]!;
    if (p.time <= time) {
      best = p.time;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return best ?? points[0]?.time ?? null;
}

export function toMarkers(points: PricePoint[], marks: ChartMark[]): SeriesMarker<Time>[] {
  const out: SeriesMarker<Time>[] = [];
  const first = points[0]?.time ?? Infinity;
  for (const m of marks) {
    if (m.time < first) continue; // before the prices this page holds
    const t = snap(points, m.time);
    if (t === null) continue;
    const buy = m.side === "buy";
    if (m.kind === "order") {
      out.push({ time: t as UTCTimestamp, position: buy ? "belowBar" : "aboveBar",
                 shape: buy ? "arrowUp" : "arrowDown", color: buy ? "#2ecc71" : "#ff5c5c", size: 0.6 });
    } else {
      out.push({ time: t as UTCTimestamp, position: "inBar", shape: "circle", color: buy ? "#a6f4c5" : "#ffb3b3",
                 size: 0.6, text: buy ? "B" : "S" });
    }
  }
  out.sort((a, b) => (a.time as number) - (b.time as number));
  return out;
}

export function PriceChart(props: { points: PricePoint[]; marks: ChartMark[]; version: number; symbol: string }) {
  const el = useRef<HTMLDivElement>(null);
  const chart = useRef<IChartApi | null>(null);
  const series = useRef<ISeriesApi<"Line"> | null>(null);
  const fed = useRef<{ symbol: string; count: number; last: number }>({ symbol: "", count: 0, last: -1 });

  useEffect(() => {
    if (!el.current) return;
    chart.current = newChart(el.current);
    series.current = chart.current.addLineSeries({ color: "#4f9dff", lineWidth: 2, priceLineVisible: true });
    return () => {
      chart.current?.remove();
      chart.current = null;
      series.current = null;
      fed.current = { symbol: "", count: 0, last: -1 };
    };
  }, []);

  useEffect(() => {
    const s = series.current;
    if (!s) return;
    const points = props.points;
    const f = fed.current;
    const first = points[0]?.time ?? -1;
    const grew = f.symbol === props.symbol && points.length >= f.count && f.count > 0 && (points[f.count - 1]?.time
      ?? -2) === f.last;
    if (grew) {
      // the last fed point may have changed value (same second), then the new ones
      for (let i = Math.max(0, f.count - 1); i < points.length; i++) {
        s.update(points[i] as LineData<Time> & { time: UTCTimestamp });
      }
    } else {
      s.setData(points.map((p) => ({ time: p.time as UTCTimestamp, value: p.value })));
      if (points.length) chart.current?.timeScale().fitContent();
    }
    fed.current = { symbol: props.symbol, count: points.length, last: points[points.length - 1]?.time ?? -1 };
    void first;
    s.setMarkers(toMarkers(points, props.marks));
  }, [props.points, props.marks, props.version, props.symbol]);

  return <div className="chart" ref={el} data-testid="price-chart" />;
}

export interface Curve { id: string; points: { time: number; value: number }[] }

export function EquityChart(props: { curves: Curve[]; testId?: string }) {
  const el = useRef<HTMLDivElement>(null);
  const chart = useRef<IChartApi | null>(null);
  const series = useRef(new Map<string, ISeriesApi<"Line">>());

  useEffect(() => {
    if (!el.current) return;
    chart.current = newChart(el.current);
    const map = series.current;
    return () => {
      chart.current?.remove();
      chart.current = null;
      map.clear();
    };
  }, []);

  useEffect(() => {
    const c = chart.current;
    if (!c) return;
    const map = series.current;
    const wanted = new Set(props.curves.map((x) => x.id));
    for (const [id, s] of map) {
      if (!wanted.has(id)) {
        c.removeSeries(s);
        map.delete(id);
      }
    }
    props.curves.forEach((curve, i) => {
      let s = map.get(curve.id);
      const fresh = !s;
      if (!s) {
        s = c.addLineSeries({ color: PALETTE[i % PALETTE.length], lineWidth: i === 0 ? 3 : 1, title: curve.id,
                              priceLineVisible: false });
        map.set(curve.id, s);
      }
      // one point per second: equity samples in the same second keep the last one
      const dedup: { time: UTCTimestamp; value: number }[] = [];
      for (const p of curve.points) {
        const t = Math.floor(p.time) as UTCTimestamp;
        const last = dedup[dedup.length - 1];
        if (last && t < last.time) continue;
        if (last && t === last.time) last.value = p.value;
        else dedup.push({ time: t, value: p.value });
      }
      s.setData(dedup);
      if (fresh && dedup.length) c.timeScale().fitContent();
    });
  }, [props.curves]);

  return <div className="chart" ref={el} data-testid={props.testId} />;
}
