"""The plugin manifest as the host validates it (wit/types.wit `plugin-manifest`).

Every plugin's manifest passes through `Manifest.model_validate` at load time;
a bad field refuses the plugin with the field's path in the message.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PluginKind = Literal["strategy", "sensor", "exchange"]
ParamType = Literal["int", "float", "bool", "enum"]
ParamValue = int | float | bool | str

# Used with fullmatch: `$` would also accept a trailing newline.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_VERSION = re.compile(r"\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?")
_HOST = re.compile(r"(https?://)?(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?")


def _check_name(v: str, what: str) -> str:
    if not _NAME.fullmatch(v):
        raise ValueError(f"{v!r} is not a {what} name (lowercase letters, digits, _; starting with a letter)")
    return v


class ParamSpec(BaseModel):
    """One tunable parameter: a gene of the organism's genome."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: ParamType
    default: ParamValue
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "parameter")

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.type in ("int", "float"):
            if self.min is None or self.max is None:
                raise ValueError(f"parameter '{self.name}': {self.type} parameters need min and max")
            if not (math.isfinite(self.min) and math.isfinite(self.max)):
                raise ValueError(f"parameter '{self.name}': min and max must be finite")
            if self.min > self.max:
                raise ValueError(f"parameter '{self.name}': min {self.min} is greater than max {self.max}")
            if self.step is not None and not (self.step > 0 and math.isfinite(self.step)):
                raise ValueError(f"parameter '{self.name}': step must be a positive number, got {self.step}")
            if self.type == "int" and not all(
                    v is None or float(v).is_integer() for v in (self.min, self.max, self.step)):
                raise ValueError(f"parameter '{self.name}': an int parameter needs integer min, max and step")
            if self.choices:
                raise ValueError(f"parameter '{self.name}': only enum parameters have choices")
        else:
            if self.min is not None or self.max is not None or self.step is not None:
                raise ValueError(f"parameter '{self.name}': {self.type} parameters take no min, max or step")
            if self.type == "enum":
                if not self.choices:
                    raise ValueError(f"parameter '{self.name}': an enum parameter needs choices")
                if len(set(self.choices)) != len(self.choices):
                    raise ValueError(f"parameter '{self.name}': choices repeat a value")
        try:
            coerce_param(self, self.default)
        except ValueError as exc:
            raise ValueError(f"default: {exc}") from None
        return self


class Manifest(BaseModel):
    """What a plugin declares about itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str
    kind: PluginKind
    author: str = Field(min_length=1)
    description: str = Field(min_length=1)
    parameters: tuple[ParamSpec, ...] = ()
    symbols: tuple[str, ...] = ()
    sensor_inputs: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    proof: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "plugin")

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not _VERSION.fullmatch(v):
            raise ValueError(f"'{v}' is not a semantic version like 1.2.3")
        return v

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for host in v:
            if not _HOST.fullmatch(host):
                raise ValueError(f"'{host}' is not an allowed-host entry: [http(s)://]host[:port], no path; a '*.' "
                                 "prefix matches subdomains")
            port = host.rpartition(":")[2] if host.count(":") > (1 if "://" in host else 0) else ""
            if port and not 0 < int(port) < 65536:
                raise ValueError(f"'{host}': port {port} is out of range")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        names = [p.name for p in self.parameters]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"parameter names repeat: {', '.join(repeated)}")
        if self.kind == "strategy":
            if self.allowed_hosts:
                raise ValueError("a strategy may not declare allowed_hosts: strategies have no network")
            if not self.proof:
                raise ValueError("a strategy must name its proof document in 'proof'")
        return self

    def defaults(self) -> dict[str, ParamValue]:
        return {p.name: p.default for p in self.parameters}


def coerce_param(spec: ParamSpec, value: Any) -> ParamValue:
    """`value` as the parameter's type, or ValueError saying why it does not fit."""
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"'{spec.name}' must be true or false, got {value!r}")
        return value
    if spec.type == "enum":
        if not isinstance(value, str) or value not in spec.choices:
            raise ValueError(f"'{spec.name}' must be one of {list(spec.choices)}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"'{spec.name}' must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"'{spec.name}' must be finite, got {value!r}")
    number: int | float
    if spec.type == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"'{spec.name}' must be an integer, got {value!r}")
        number = int(value)
    else:
        number = float(value)
    assert spec.min is not None and spec.max is not None
    if not spec.min <= number <= spec.max:
        raise ValueError(f"'{spec.name}' = {number!r} is outside its range [{_num(spec.min)}, {_num(spec.max)}]")
    return number


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def check_params(manifest: Manifest, values: dict[str, Any]) -> dict[str, ParamValue]:
    """Values for `configure`, each coerced to its declared type; ValueError names the first bad one."""
    specs = {p.name: p for p in manifest.parameters}
    out: dict[str, ParamValue] = {}
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            raise ValueError(f"'{name}' is not a parameter of {manifest.name} (known: {known})")
        out[name] = coerce_param(spec, value)
    return out
