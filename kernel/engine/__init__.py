"""allele.kernel.engine: one asyncio engine for backtest, replay, paper and live."""
