import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` serves the dashboard with hot reload and forwards /api and /ws to a running engine's API
// (ALLELE_API_URL, default the [api] default port on this machine).
declare const process: { env: Record<string, string | undefined> }; // Node's, without @types/node

const api = process.env.ALLELE_API_URL ?? "http://127.0.0.1:8765";

export default defineConfig({
  plugins: [react()],
  base: "./",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1024 },
  server: {
    host: "127.0.0.1",
    proxy: {
      "/api": { target: api, changeOrigin: true },
      "/ws": { target: api.replace(/^http/, "ws"), ws: true, changeOrigin: true },
    },
  },
});
