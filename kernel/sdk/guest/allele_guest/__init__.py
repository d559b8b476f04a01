"""allele_guest: the library a plugin imports, inside its WebAssembly component.

    from allele_guest import Strategy, Manifest, Param, exposure, export_strategy

    class MyStrategy(Strategy):
        manifest = Manifest(name="my_strategy", version="0.1.0", kind="strategy", ...)
        def on_event(self, event): ...

    StrategyApi = export_strategy(MyStrategy)

Pure Python, no dependencies: the same module runs natively in a plugin's unit
tests and inside the component built by `allele build`.
"""

from .bridge import export_exchange, export_sensor, export_strategy
from .columns import Batch, decode_batch, encode_signals
from .host import fetch, log, now_ns, sign
from .model import (
                    API_KEY_PLACEHOLDER,
                    BAR,
                    EXPOSURE,
                    QUOTE,
                    TRADE,
                    UNITS,
                    FinalizedOrder,
                    HttpResponse,
                    Manifest,
                    MarketEvent,
                    OrderUpdate,
                    Param,
                    PluginError,
                    Reading,
                    Signal,
                    VenueRequest,
                    exposure,
                    units,
)
from .plugin import Exchange, Plugin, Sensor, Strategy, check_params

__all__ = [
                    "API_KEY_PLACEHOLDER",
                    "BAR",
                    "EXPOSURE",
                    "QUOTE",
                    "TRADE",
                    "UNITS",
                    "Batch",
                    "Exchange",
                    "FinalizedOrder",
                    "HttpResponse",
                    "Manifest",
                    "MarketEvent",
                    "OrderUpdate",
                    "Param",
                    "Plugin",
                    "PluginError",
                    "Reading",
                    "Sensor",
                    "Signal",
                    "Strategy",
                    "VenueRequest",
                    "check_params",
                    "decode_batch",
                    "encode_signals",
                    "export_exchange",
                    "export_sensor",
                    "export_strategy",
                    "exposure",
                    "fetch",
                    "log",
                    "now_ns",
                    "sign",
                    "units",
]
