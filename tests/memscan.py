"""Read the linear memories of the WebAssembly instances living in this process (Linux, wasmtime).

A component's memories are not reachable through wasmtime's API (by design: components encapsulate
them), so the canary test finds them where wasmtime puts them: each linear memory is a run of
read-write mappings (anonymous, or copy-on-write from the compiled `.cwasm`) directly followed by the
inaccessible rest of its reservation, a `---p` mapping of a gigabyte or more. Python's own heap has
no such neighbour, so the secret the host legitimately holds is not scanned; a positive control in
the test proves the scanner does see what a plugin holds.
"""

from __future__ import annotations

from dataclasses import dataclass

RESERVATION_MIN = 2**30


@dataclass(frozen=True)
class Region:
    start: int
    end: int
    perms: str


def _regions() -> list[Region]:
    out = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            out.append(Region(start, end, perms))
    return out


def linear_memories() -> list[tuple[int, int]]:
    """(start, end) of the accessible part of every wasm linear memory mapped in this process."""
    regions = _regions()
    found = []
    for i, r in enumerate(regions):
        if r.perms != "---p" or r.end - r.start < RESERVATION_MIN or i == 0:
            continue
        j, end = i - 1, r.start
        while j >= 0 and regions[j].perms.startswith("rw") and regions[j].end == regions[j + 1].start:
            j -= 1
        start = regions[j + 1].start
        if start < end:
            found.append((start, end))
    return found


def linear_memory_contains(needle: bytes) -> list[tuple[int, int]]:
    """The linear memories (start, end) in which `needle` occurs."""
    hits = []
    with open("/proc/self/mem", "rb", buffering=0) as mem:
        for start, end in linear_memories():
            mem.seek(start)
            data = mem.read(end - start)
            if needle in data:
                hits.append((start, end))
    return hits
