"""The operator's API: REST + WebSocket over the running engine (FastAPI, bound to 127.0.0.1, token-protected)."""
