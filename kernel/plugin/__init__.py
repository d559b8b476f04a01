"""allele.kernel.plugin: the plugin port.

One port, two adapters: WIT components on wasmtime (`component`), and Extism
plugins carrying the same payloads as JSON (`extism_abi`). `PluginHost` loads
and validates either, runs each instance inside its budget, and quarantines an
instance that misbehaves while the rest keep running.
"""

from .errors import PluginCallError, PluginError, PluginLoadError, PluginQuarantined
from .host import ExchangePlugin, LoadedPlugin, PluginHost, SensorPlugin, StrategyPlugin
from .limits import KindLimits, Limits
from .manifest import Manifest, ParamSpec

__all__ = [
    "ExchangePlugin", "KindLimits", "Limits", "LoadedPlugin", "Manifest", "ParamSpec", "PluginCallError",
    "PluginError", "PluginHost", "PluginLoadError", "PluginQuarantined", "SensorPlugin", "StrategyPlugin",
]
