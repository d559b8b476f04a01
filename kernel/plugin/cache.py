"""Compile cache: compiled components on disk, keyed by wasm sha256 and wasmtime version.

Compiling an 18 MB componentize-py component takes ~10 s; deserializing its
cached artifact takes ~0.1 s. Deserializing runs native code, so the cache
directory is created private (0700) and only this host writes to it.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from pathlib import Path

from wasmtime import Engine, WasmtimeError
from wasmtime.component import Component

WASMTIME_VERSION = importlib.metadata.version("wasmtime")


class CompileCache:
    def __init__(self, directory: Path, engine_tag: str) -> None:
        self.directory = directory
        self.engine_tag = engine_tag  # the engine configuration the artifacts were made with
        self.hits = 0
        self.misses = 0

    def path_for(self, sha256: str) -> Path:
        return self.directory / f"{sha256}-wasmtime{WASMTIME_VERSION}-{self.engine_tag}.cwasm"

    def component(self, engine: Engine, data: bytes, sha256: str) -> Component:
        """The compiled component, from the cache if possible. Raises WasmtimeError if `data` does not compile."""
        path = self.path_for(sha256)
        if path.is_file():
            try:
                component = Component.deserialize_file(engine, str(path))
                self.hits += 1
                return component
            except WasmtimeError:
                path.unlink(missing_ok=True)  # stale or damaged: compile again below
        component = Component(engine, data)
        self.misses += 1
        self._store(path, component.serialize())
        return component

    def _store(self, path: Path, artifact: bytes | bytearray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(artifact)
            os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
