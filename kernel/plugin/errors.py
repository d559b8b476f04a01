"""What can go wrong with a plugin, phrased for the person who has to fix it."""

from __future__ import annotations


class PluginError(Exception):
    """Base class of every plugin problem the host reports."""


class PluginLoadError(PluginError):
    """A plugin file was refused at load time; nothing of it runs."""

    def __init__(self, source: str, problem: str, hint: str = "") -> None:
        self.source = source
        self.problem = problem
        self.hint = hint
        super().__init__(f"{source}: {problem}" + (f" — {hint}" if hint else ""))


class PluginCallError(PluginError):
    """A call into a plugin failed.

    `quarantined` tells whether the instance was quarantined for it (a trap,
    exhausted budget, capability violation, malformed result) or is still
    serving (the plugin itself reported the error, e.g. a garbled venue frame
    or refused parameters).
    """

    def __init__(self, plugin: str, call: str, reason: str, *, quarantined: bool) -> None:
        self.plugin = plugin
        self.call = call
        self.reason = reason
        self.quarantined = quarantined
        tail = " The instance is quarantined; reload it after fixing the plugin." if quarantined else ""
        super().__init__(f"plugin '{plugin}', call '{call}': {reason}.{tail}")


class PluginQuarantined(PluginError):
    """A call was refused because the instance is in quarantine."""

    def __init__(self, plugin: str, reason: str) -> None:
        self.plugin = plugin
        self.reason = reason
        super().__init__(f"plugin '{plugin}' is quarantined ({reason}); it takes no more calls")


class CapabilityViolation(Exception):
    """Raised inside a host function when a plugin uses a capability it does not hold.

    It traps the guest; the host then quarantines the instance with this message.
    """
