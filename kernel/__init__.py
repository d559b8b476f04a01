"""allele.kernel: the asyncio host. Loads plugins, brokers data, and runs the engine."""

__version__ = "0.1.0"
