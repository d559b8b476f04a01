"""`allele build`: a plugin folder to a .wasm, idempotently.

A Python plugin (app.py) becomes a component with componentize-py, WASI
stubbed out (Allele grants no WASI to any kind). A C plugin (one *.c file)
becomes an Extism module with the `ziglang` package's clang. A build is
skipped when a stamp file next to the output records the same inputs
(plugin sources, wit/, the guest SDK, the compiler's version).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from allele.kernel.paths import BUNDLED_PLUGINS_DIR, GUEST_SDK_DIR, WIT_DIR

WORLDS = {"StrategyApi": "strategy", "SensorApi": "sensor", "ExchangeApi": "exchange"}
KIND_DIRS = {"strategy": "strategies", "sensor": "sensors", "exchange": "exchanges"}
# CPython 3.11's ast.parse is not thread-safe ("AST constructor recursion depth mismatch" when two build
# threads parse at once); builds run in a thread pool, so parsing takes turns.
_AST_LOCK = threading.Lock()


def _parse(source: str, filename: str = "<unknown>") -> ast.Module:
    with _AST_LOCK:
        return ast.parse(source, filename=filename)


class BuildError(Exception):
    """A plugin could not be built; the message says what to fix."""


@dataclass(frozen=True)
class BuildResult:
    source: Path
    output: Path
    kind: str
    language: str
    skipped: bool
    seconds: float

    @property
    def size(self) -> int:
        return self.output.stat().st_size


def plugin_language(src: Path) -> str:
    if (src / "app.py").is_file():
        return "python"
    if len(list(src.glob("*.c"))) == 1:
        return "c"
    raise BuildError(f"{src} is not a plugin folder: it needs an app.py (Python) or exactly one .c file (C)")


def python_world(src: Path) -> str:
    """The world an app.py exports: its top-level `XxxApi = export_xxx(...)` (or a class named XxxApi)."""
    app = src / "app.py"
    try:
        tree = _parse(app.read_text(encoding="utf-8"), filename=str(app))
    except SyntaxError as exc:
        raise BuildError(f"{app}:{exc.lineno}: syntax error: {exc.msg}") from None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in WORLDS:
            return WORLDS[node.name]
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in WORLDS:
                    return WORLDS[target.id]
    raise BuildError(f"{app} exports no plugin: end it with `StrategyApi = export_strategy(MyStrategy)` "
                     "(or SensorApi = export_sensor(...), ExchangeApi = export_exchange(...))")


def c_kind(src: Path) -> str:
    """The kind a C plugin declares, from `"kind":"..."` in its manifest string."""
    text = next(src.glob("*.c")).read_text(encoding="utf-8", errors="replace")
    for kind in KIND_DIRS:
        if f'\\"kind\\":\\"{kind}\\"' in text or f'\\"kind\\": \\"{kind}\\"' in text:
            return kind
    raise BuildError(f"{src}: cannot find the plugin kind in its manifest string (\\\"kind\\\":\\\"strategy\\\")")


def _digest(paths: list[Path], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        h.update(str(path.name).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _inputs(src: Path, language: str, stub_wasi: bool) -> str:
    files = [p for p in src.rglob("*") if p.is_file() and p.suffix in (".py", ".c", ".h")
             and "__pycache__" not in p.parts and not p.name.startswith("test_")]
    if language == "python":
        files += list(WIT_DIR.glob("*.wit")) + list(GUEST_SDK_DIR.rglob("*.py"))
        tool = "componentize-py " + importlib.metadata.version("componentize-py")
    else:
        tool = "ziglang " + importlib.metadata.version("ziglang")
    return _digest(files, f"{tool}|stub_wasi={stub_wasi}")


def _stamp(output: Path) -> Path:
    return output.with_name(output.name + ".inputs")


def build_plugin(src: str | Path, output: str | Path | None = None, *, stub_wasi: bool = True,
                 force: bool = False, progress: Callable[[str], None] | None = None,
                 world: str | None = None, wit_dir: Path = WIT_DIR) -> BuildResult:
    """Build the plugin in folder `src` to `output` (default `<src>/build/<name>.wasm`).

    `world` and `wit_dir` override the world read from app.py and Allele's WIT package; tests use
    them to build components of look-alike and foreign worlds.
    """
    src = Path(src).resolve()
    if not src.is_dir():
        raise BuildError(f"{src} is not a folder")
    say = progress or (lambda _msg: None)
    language = plugin_language(src)
    kind = world or (python_world(src) if language == "python" else c_kind(src))
    out = Path(output).resolve() if output else src / "build" / f"{src.name}.wasm"
    inputs = _inputs(src, language, stub_wasi) + (f"|{world}|{wit_dir}" if world else "")
    stamp = _stamp(out)
    if not force and out.is_file() and stamp.is_file() and stamp.read_text() == inputs:
        return BuildResult(src, out, kind, language, skipped=True, seconds=0.0)
    started = time.monotonic()
    if language == "python" and not _uses_raw_bindings(src):
        say(f"{src.name}: checking that app.py imports")
        _check_native_import(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    if language == "python":
        say(f"{src.name}: componentizing for the {kind} world (about 10 s)")
        cmd = [_componentize_py(), "-d", str(wit_dir), "-w", kind, "componentize",
               *(["--stub-wasi"] if stub_wasi else []), "-p", str(src), "-p", str(GUEST_SDK_DIR), "app",
               "-o", str(out)]
    else:
        say(f"{src.name}: compiling C with zig cc to an Extism module")
        cmd = [sys.executable, "-m", "ziglang", "cc", "--target=wasm32-freestanding", "-O2", "-nostdlib",
               "-Wl,--no-entry", "-o", str(out), str(next(src.glob("*.c")))]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=src)
    if proc.returncode != 0 or not out.is_file():
        stamp.unlink(missing_ok=True)
        raise BuildError(f"building {src} failed:\n{_summarize(proc.stderr or proc.stdout)}")
    stamp.write_text(inputs)
    return BuildResult(src, out, kind, language, skipped=False, seconds=time.monotonic() - started)


def _componentize_py() -> str:
    """The componentize-py executable of this environment (the package has no `python -m` entry)."""
    beside = Path(sys.executable).parent / "componentize-py"
    found = str(beside) if beside.is_file() else shutil.which("componentize-py")
    if found is None:
        raise BuildError("componentize-py is not installed: run `make start` (or pip install componentize-py)")
    return found


def _uses_raw_bindings(src: Path) -> bool:
    """Does app.py import componentize-py's generated bindings itself? Then it cannot import natively."""
    tree = _parse((src / "app.py").read_text(encoding="utf-8"))
    modules = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names] + \
              [n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)]
    return any(m.split(".")[0] in ("wit_world", "componentize_py_types") for m in modules)


def _check_native_import(src: Path) -> None:
    """Import app.py in a clean interpreter first: its traceback is far clearer than componentize-py's."""
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import app")
    proc = subprocess.run([sys.executable, "-c", code, str(src), str(GUEST_SDK_DIR)], capture_output=True,
                          text=True, cwd=src)
    if proc.returncode != 0:
        raise BuildError(f"{src / 'app.py'} fails to import, so it cannot be built:\n{_summarize(proc.stderr)}")


def _summarize(text: str, keep: int = 12) -> str:
    """The end of a traceback (where the cause is), without Rust backtrace noise."""
    lines = [ln for ln in text.strip().splitlines()
             if ln.strip() and not ln.lstrip().startswith(("at ", "0:", "1:")) and "rust_begin_unwind" not in ln]
    return "\n".join("    " + ln for ln in lines[-keep:])


def bundled_plugin_dirs(root: Path = BUNDLED_PLUGINS_DIR) -> list[Path]:
    out = []
    for kind_dir in KIND_DIRS.values():
        for d in sorted((root / kind_dir).glob("*")):
            if d.is_dir() and ((d / "app.py").is_file() or any(d.glob("*.c"))):
                out.append(d)
    return out


def build_many(dirs: list[Path], out_dir: Path, *, jobs: int = 2, stub_wasi: bool = True,
               progress: Callable[[str], None] | None = None) -> list[BuildResult]:
    """Build several plugin folders into `out_dir/<kind dir>/<name>.wasm`, `jobs` at a time."""
    def one(d: Path) -> BuildResult:
        kind = python_world(d) if plugin_language(d) == "python" else c_kind(d)
        return build_plugin(d, out_dir / KIND_DIRS[kind] / f"{d.name}.wasm", stub_wasi=stub_wasi, progress=progress)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, dirs))
