"""Recognizing a plugin binary: which ABI, before anything is compiled."""

from __future__ import annotations

from typing import Literal

from .errors import PluginLoadError

Abi = Literal["component", "extism"]

_MAGIC = b"\0asm"
_CORE_MODULE = b"\x01\x00\x00\x00"  # version 1, layer 0: a core module (Extism plugins)
_COMPONENT = b"\x0d\x00\x01\x00"  # version 0x0d, layer 1: a component (WIT worlds)


def detect_abi(data: bytes, source: str) -> Abi:
    """The ABI of `data`, or PluginLoadError saying why it is not a plugin at all."""
    if len(data) < 8:
        raise PluginLoadError(source, f"is {len(data)} bytes long: too short to be WebAssembly",
                              "is the file empty or truncated?")
    if data[:4] != _MAGIC:
        raise PluginLoadError(source, f"is not WebAssembly (it starts with {data[:4].hex(' ')}, not 00 61 73 6d)",
                              "deploy a .wasm built by `allele build`")
    header = data[4:8]
    if header == _COMPONENT:
        return "component"
    if header == _CORE_MODULE:
        return "extism"
    raise PluginLoadError(source, f"has an unknown WebAssembly version/layer {header.hex(' ')}",
                          "expected a component (0d 00 01 00) or a core module (01 00 00 00)")
