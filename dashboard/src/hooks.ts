import { createContext, useContext, useEffect, useRef, useState, useSyncExternalStore } from "react";

import { Api, ApiError } from "./api";
import { LiveStore } from "./live";

export interface Connection {
  api: Api;
  live: LiveStore;
  epoch: number; // bumps when the engine comes back or restarts: every poll refetches at once
  engineUp: boolean;
  reportFailure(err: unknown): void;
}

export const ConnectionContext = createContext<Connection | null>(null);

export function useConnection(): Connection {
  const c = useContext(ConnectionContext);
  if (c === null) throw new Error("useConnection outside ConnectionContext");
  return c;
}

export function useLive(): LiveStore {
  const { live } = useConnection();
  useSyncExternalStore((fn) => live.subscribe(fn), () => live.version);
  return live;
}

export interface Polled<T> {
  data: T | null;
  error: ApiError | null;
  loading: boolean;
  refresh(): void;
}

/** `load` now and every `intervalMs`; the last good data stays shown while a refresh fails. */
export function usePoll<T>(load: (api: Api) => Promise<T>, intervalMs: number, deps: unknown[] = []): Polled<T> {
  const { api, epoch, reportFailure } = useConnection();
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  useEffect(() => {
    let cancelled = false;
    let timer: number | null = null;
    const run = async () => {
      try {
        const value = await loadRef.current(api);
        if (cancelled) return;
        setData(value);
        setError(null);
      } catch (err) {
        if (cancelled) return;
        const e = err instanceof ApiError ? err : new ApiError("refused", 0, String(err));
        setError(e);
        reportFailure(e);
      } finally {
        if (!cancelled) {
          setLoading(false);
          timer = window.setTimeout(run, intervalMs);
        }
      }
    };
    void run();
    return () => {
      cancelled = true;
      if (timer !== null) window.clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [api, epoch, intervalMs, tick, ...deps]);

  return { data, error, loading, refresh: () => setTick((t) => t + 1) };
}
