"""Hostile: returns results that break the contract. Bypasses the SDK to return raw WIT values.

The `mode` parameter picks the garbage: NaN amounts, an exposure of 50x, 20,000
signals for one event, a batch answer that is not JSON, or rows that do not exist.
"""

import componentize_py_types
from wit_world.imports import types as t

MANIFEST = t.PluginManifest(
    name="garbage", version="0.1.0", kind=t.PluginKind.STRATEGY, author="tests", description="Returns garbage.",
    parameters=[t.ParamSpec(name="mode", type=t.ParamType.ENUM, default=t.Scalar_Text("nan"), min=None, max=None,
                            step=None, choices=["nan", "exposure", "flood", "notjson", "badrow"], description="")],
    symbols=["*"], sensor_inputs=[], allowed_hosts=[], proof="docs/strategies/garbage.md")
MODE = ["nan"]


def _signal(amount):
    return t.Signal(symbol="X", sizing=t.Sizing.EXPOSURE, amount=amount, limit_price=None, group="", note="")


class StrategyApi:
    def manifest(self):
        return MANIFEST

    def configure(self, params):
        for p in params:
            MODE[0] = p.value.value

    def reset(self):
        pass

    def on_event(self, ev):
        mode = MODE[0]
        if mode == "nan":
            return [_signal(float("nan"))]
        if mode == "exposure":
            return [_signal(50.0)]
        if mode == "flood":
            return [_signal(1.0)] * 20_000
        return []

    def on_batch(self, columns):
        if MODE[0] == "notjson":
            return "}{ this is not json"
        if MODE[0] == "badrow":
            return '{"row":[999999999],"sym":[0],"sizing":[0],"amount":[1.0],"limit":[null],"group":[""]}'
        raise componentize_py_types.Err("nothing to do")
