"""The operator's commands of `allele` (start, stop, status, kill-switch, deploy, replay, backtest, ledger), run as a
user runs them: the installed console script in a subprocess with its own ALLELE_HOME.

One paper session (`start --bars 150 --speed 0`) is shared by the tests that only read what it left behind;
the tests of a running engine start their own detached engine and always stop it (or kill it) afterwards."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from test_cli import WIDE, _c_variant, allele, as_json, assert_ok, assert_refused, flat, json_documents, sha256

from allele.kernel.ledger.ledger import OPEN_STATUSES
from allele.kernel.paths import SOURCE_ROOT

ORGANISMS = {"sma-cross": "sma_cross", "mean-reversion": "mean_reversion", "momentum-c": "momentum_c",
             "completeness-arb": "completeness_arb"}
ALL = ("--limit", "1000000")  # `allele ledger orders|fills` show the newest 50 unless told
MOMENTUM_PROOF = '\\"proof\\":\\"docs/strategies/momentum_c.md\\"'


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


# -- helpers ------------------------------------------------------------------------------------------------------


def status_of(home: Path) -> dict[str, Any]:
    report: dict[str, Any] = as_json(allele("status", "--json", home=home))
    return report


def organism(engine: dict[str, Any], org_id: str) -> dict[str, Any]:
    """One organism's row of an engine status."""
    row: dict[str, Any] = next(o for o in engine["organisms"] if o["id"] == org_id)
    return row


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def audit_actions(db: Path) -> list[tuple[str, dict[str, Any]]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT action, details FROM audit_log ORDER BY id").fetchall()
    return [(action, json.loads(details)) for action, details in rows]


def ledger_rows(home: Path, what: str) -> list[dict[str, Any]]:
    args = ("ledger", what, "--json", *(ALL if what in ("orders", "fills") else ()))
    rows: list[dict[str, Any]] = as_json(allele(*args, home=home))
    return rows


def write_csv(path: Path, rows: int = 300, bad: tuple[int, str] | None = None) -> Path:
    """A deterministic daily series (a slow sine on a drift); `bad` = (data row, text) replaces that row's Close."""
    lines = ["Date,Open,High,Low,Close,Volume"]
    prev = 100.0
    for i in range(rows):
        close = 100 + 10 * math.sin(i / 15) + 0.05 * i
        day = time.strftime("%Y-%m-%d", time.gmtime(1_704_067_200 + 86_400 * i))
        close_text = bad[1] if bad is not None and bad[0] == i else f"{close:.2f}"
        lines.append(f"{day},{prev:.2f},{max(prev, close) + 0.5:.2f},{min(prev, close) - 0.5:.2f},{close_text},"
                     f"{1000 + i}")
        prev = close
    path.write_text("\n".join(lines) + "\n")
    return path


# -- one shared paper session ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paper:
    home: Path
    ready: dict[str, Any]
    stopped: dict[str, Any]

    @property
    def session(self) -> str:
        name: str = self.ready["session"]
        return name

    @property
    def recording(self) -> Path:
        return self.home / "historical" / self.session


@pytest.fixture(scope="module")
def paper(built, tmp_path_factory: pytest.TempPathFactory) -> Paper:
    home = tmp_path_factory.mktemp("paper") / "home"
    proc = allele("start", "--bars", "150", "--speed", "0", "--json", home=home)
    assert_ok(proc)
    ready, final = json_documents(proc.stdout)
    return Paper(home.resolve(), ready, final["stopped"])


def test_start_lists_the_organisms_and_ends_after_its_bars(paper: Paper) -> None:
    ready = paper.ready
    assert ready["home"] == str(paper.home)
    assert {o["id"]: o["strategy"] for o in ready["organisms"]} == ORGANISMS
    for org in ready["organisms"]:
        assert org["symbols"] and org["allocation"] > 0, org
    assert ready["ledger"] == str(paper.home / "trading.db")
    assert ready["firehose"] == str(paper.recording)
    assert ready["closed_stale_orders"] == []
    assert isinstance(ready["pid"], int)
    assert {p["status"] for p in ready["plugins"]} == {"ok"}

    stopped = paper.stopped
    assert stopped["session"] == paper.session
    counters = stopped["counters"]
    assert counters["events"] > 0 and counters["orders"] > 0 and counters["fills"] > 0, counters
    assert [o["id"] for o in stopped["organisms"]] == [o["id"] for o in ready["organisms"]]
    assert not (paper.home / "engine.pid").exists()  # removed when the session ended


def test_status_after_the_session_shows_it_stopped(paper: Paper) -> None:
    status = status_of(paper.home)
    engine = status["engine"]
    assert engine["state"] == "stopped"
    assert engine["session"] == paper.session
    assert engine["counters"] == paper.stopped["counters"]
    assert engine["counters"]["events"] > 0
    assert {o["id"] for o in engine["organisms"]} == set(ORGANISMS)
    assert status["kill_switch"] == {"engaged": False, "reason": ""}
    assert status["ledger"]["open_orders"] == 0

    proc = allele("status", home=paper.home, columns=WIDE)
    assert_ok(proc)
    text = flat(proc.stdout)
    assert f"engine: stopped, session {paper.session}" in text
    assert "kill switch: off" in text
    for org in ORGANISMS:
        assert org in text


def test_ledger_orders_fills_positions_and_pnl_agree(paper: Paper) -> None:
    orders = ledger_rows(paper.home, "orders")
    fills = ledger_rows(paper.home, "fills")
    positions = ledger_rows(paper.home, "positions")
    pnl = ledger_rows(paper.home, "pnl")
    counters = paper.stopped["counters"]
    assert len(orders) == counters["orders"] > 0
    assert len(fills) == counters["fills"] > 0
    assert len({o["client_order_id"] for o in orders}) == len(orders)

    by_id = {o["client_order_id"]: o for o in orders}
    filled: dict[str, Decimal] = {}
    held: dict[tuple[str, str], Decimal] = {}
    fees: dict[str, Decimal] = {}
    for f in fills:
        order = by_id.get(f["client_order_id"])
        assert order is not None, f"fill of unknown order {f}"
        assert (f["organism"], f["symbol"], f["side"]) == (order["organism"], order["symbol"], order["side"])
        qty = Decimal(f["quantity"])
        assert qty > 0 and Decimal(f["price"]) > 0
        filled[f["client_order_id"]] = filled.get(f["client_order_id"], Decimal(0)) + qty
        key = (f["organism"], f["symbol"])
        held[key] = held.get(key, Decimal(0)) + (qty if f["side"] == "buy" else -qty)
        fees[f["organism"]] = fees.get(f["organism"], Decimal(0)) + Decimal(f["fee"])
    for order in orders:
        assert Decimal(order["filled"]) == filled.get(order["client_order_id"], Decimal(0)), order
        assert order["status"] not in OPEN_STATUSES, order
        assert order["organism"] in ORGANISMS

    assert {(p["organism"], p["symbol"]): Decimal(p["quantity"]) for p in positions} == \
        {k: v for k, v in held.items() if v}

    assert sorted(r["organism"] for r in pnl) == sorted(ORGANISMS)
    for row in pnl:
        assert Decimal(row["fees"]) == fees.get(row["organism"], Decimal(0)), row
        assert Decimal(row["equity"]) > 0

    # The organism filter and the row limit.
    sma = as_json(allele("ledger", "orders", "--organism", "sma-cross", "--json", *ALL, home=paper.home))
    assert sma == [o for o in orders if o["organism"] == "sma-cross"]
    assert as_json(allele("ledger", "fills", "--limit", "3", "--json", home=paper.home)) == fills[-3:]


def test_the_session_is_recorded_and_listed(paper: Paper) -> None:
    files = sorted(paper.recording.iterdir())
    assert files and all(f.name.endswith((".jsonl", ".jsonl.gz")) for f in files), files
    listed = as_json(allele("replay", "--json", home=paper.home))
    [mine] = [s for s in listed if s["name"] == paper.session]
    assert mine["path"] == str(paper.recording)
    assert mine["files"] == len(files) and mine["bytes"] > 0

    proc = allele("replay", home=paper.home, columns=WIDE)
    assert_ok(proc)
    assert paper.session in proc.stdout and str(paper.recording) in proc.stdout


def _ledger_of(db: Path, tmp: Path, what: str) -> list[dict[str, Any]]:
    """`allele ledger <what>` over a replay's ledger file (put where a home keeps its ledger)."""
    home = tmp / f"view-{db.stem}"
    home.mkdir(exist_ok=True)
    shutil.copyfile(db, home / "trading.db")
    return ledger_rows(home, what)


def test_replay_reproduces_the_sessions_orders_and_fills(paper: Paper, tmp_path: Path) -> None:
    first = as_json(allele("replay", paper.recording, "--json", home=paper.home))
    counters = paper.stopped["counters"]
    assert first["session"] == paper.session
    assert first["counters"]["events"] == counters["events"]
    assert first["counters"]["orders"] == counters["orders"]
    assert first["counters"]["fills"] == counters["fills"]
    ledger = Path(first["ledger"])
    assert ledger.is_file() and ledger.parent == paper.home / "replays"

    def order_key(o: dict[str, Any]) -> tuple[Any, ...]:
        return (o["client_order_id"], o["organism"], o["symbol"], o["side"], o["type"], Decimal(o["quantity"]),
                o["limit_price"] and Decimal(o["limit_price"]), o["status"], Decimal(o["filled"]))

    def fill_key(f: dict[str, Any]) -> tuple[Any, ...]:
        return (f["client_order_id"], f["organism"], f["symbol"], f["side"], Decimal(f["quantity"]),
                Decimal(f["price"]), Decimal(f["fee"]))

    session_orders = [order_key(o) for o in ledger_rows(paper.home, "orders")]
    session_fills = [fill_key(f) for f in ledger_rows(paper.home, "fills")]
    assert [order_key(o) for o in _ledger_of(ledger, tmp_path, "orders")] == session_orders
    assert [fill_key(f) for f in _ledger_of(ledger, tmp_path, "fills")] == session_fills

    # A second replay writes a new ledger and gets the same result; the session's own ledger is untouched.
    second = as_json(allele("replay", paper.recording, "--json", home=paper.home))
    assert Path(second["ledger"]) != ledger and Path(second["ledger"]).is_file() and ledger.is_file()
    assert second["counters"] == first["counters"]
    assert [fill_key(f) for f in _ledger_of(Path(second["ledger"]), tmp_path, "fills")] == session_fills
    assert len(ledger_rows(paper.home, "orders")) == counters["orders"]

    proc = allele("replay", paper.recording, home=paper.home, columns=WIDE)
    assert_ok(proc)
    assert f"{counters['orders']} orders, {counters['fills']} fills" in flat(proc.stdout)


def test_replay_names_its_ledger_after_the_session(paper: Paper) -> None:
    [recorded] = sorted(paper.recording.iterdir())[:1]
    for target, cwd in ((".", paper.recording), (recorded.name, paper.recording), (paper.recording, None)):
        report = as_json(allele("replay", target, "--json", home=paper.home, cwd=cwd))
        ledger = Path(report["ledger"])
        assert ledger.parent == paper.home / "replays" and ledger.name.startswith(f"{paper.session}-"), ledger
        assert report["counters"]["orders"] == paper.stopped["counters"]["orders"]


def test_replay_refuses_what_is_not_a_recording(paper: Paper, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a recording\n")
    assert_refused(allele("replay", notes, home=paper.home, columns=WIDE), "notes.txt",
                   "is not a recording file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_refused(allele("replay", empty, home=paper.home, columns=WIDE), "holds no recording files")
    assert_refused(allele("replay", tmp_path / "nowhere", home=paper.home, columns=WIDE), "does not exist")
    assert_refused(allele("replay", paper.home / "historical", home=paper.home, columns=WIDE),
                   "is it the recordings directory rather than a session?")
    headless = tmp_path / "headless"
    headless.mkdir()
    (headless / "000001.jsonl").write_text(json.dumps({"k": "event"}) + "\n")
    assert_refused(allele("replay", headless, home=paper.home, columns=WIDE), "does not start with a session header")
    assert_refused(allele("replay", paper.recording, "--ledger", paper.home / "trading.db", home=paper.home,
                          columns=WIDE), "trading.db already exists", "a replay writes a fresh ledger")
    assert not (tmp_path / "replays").exists()


def test_ledger_commands_before_any_session(home: Path) -> None:
    for what in ("positions", "orders", "fills", "pnl"):
        proc = allele("ledger", what, "--json", home=home, columns=WIDE)
        assert proc.returncode == 1, proc
        db = home.resolve() / "trading.db"
        assert flat(proc.stderr) == f"error: no ledger at {db} yet: `allele start` creates it"
        assert proc.stdout == ""


# -- a detached engine ------------------------------------------------------------------------------------------


@pytest.fixture
def detached(built, tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """An engine running in the background (no bar limit, 20x speed); stopped, or killed, afterwards."""
    home = (tmp_path / "home").resolve()
    pid: int | None = None
    try:
        proc = allele("start", "--detach", "--speed", "20", home=home, columns=WIDE)
        if (home / "engine.pid").is_file():
            pid = int((home / "engine.pid").read_text())
        assert_ok(proc)
        assert pid is not None
        assert f"engine running in the background: pid {pid}" in flat(proc.stdout)
        yield home, pid
    finally:
        if pid is not None and alive(pid):
            allele("stop", home=home)
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_start_detached_json_reports_the_engine(built, tmp_path: Path) -> None:
    home = (tmp_path / "home").resolve()
    pid: int | None = None
    try:
        proc = allele("start", "--detach", "--json", home=home)
        assert_ok(proc)
        report = json.loads(proc.stdout)
        pid = report["pid"]
        assert report["home"] == str(home) and Path(report["log"]).is_file()
        assert int((home / "engine.pid").read_text()) == pid
    finally:
        if pid is not None and alive(pid):
            allele("stop", home=home)
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_start_detached_status_and_stop(detached: tuple[Path, int]) -> None:
    home, pid = detached
    assert alive(pid)
    engine = wait_for("events to flow", lambda: (s := status_of(home)["engine"])["counters"]["events"] > 0 and s)
    assert (engine["state"], engine["pid"]) == ("running", pid)

    table = allele("status", home=home, columns=WIDE)
    assert_ok(table)
    assert f"engine: running (pid {pid})" in flat(table.stdout)

    for args in (("start", "--detach"), ("start", "--bars", "5", "--speed", "0")):
        assert_refused(allele(*args, home=home, columns=WIDE), "an engine is already running", f"(pid {pid})",
                       "allele stop")
    assert alive(pid)

    proc = allele("stop", home=home)
    assert_ok(proc)
    assert f"engine (pid {pid}) stopped" in flat(proc.stdout)
    wait_for("the engine process to exit", lambda: not alive(pid), timeout=10)
    assert not (home / "engine.pid").exists()
    state = json.loads((home / "engine.json").read_text())
    assert (state["state"], state["pid"]) == ("stopped", pid)
    assert status_of(home)["engine"]["state"] == "stopped"

    again = allele("stop", home=home)
    assert again.returncode == 1, again
    assert flat(again.stderr) == f"error: no engine is running for {home}"
    assert "Traceback" not in again.stdout + again.stderr


def test_stop_with_nothing_running(tmp_path: Path) -> None:
    proc = allele("stop", home=tmp_path / "home", columns=WIDE)
    assert proc.returncode == 1, proc
    assert flat(proc.stderr).startswith("error: no engine is running for")
    assert "Traceback" not in proc.stderr


def test_kill_switch_stops_new_orders_until_cleared(detached: tuple[Path, int]) -> None:
    home, _pid = detached
    wait_for("the first orders", lambda: status_of(home)["engine"]["counters"]["orders"] > 0)

    on = as_json(allele("kill-switch", "on", "--reason", "test halt", "--json", home=home))
    assert on == {"engaged": True, "reason": "test halt", "file": str(home / "KILL_SWITCH")}
    status = wait_for("the engine to engage the switch",
                      lambda: (s := status_of(home))["engine"]["kill_switch"]["engaged"] and s)
    assert status["kill_switch"] == {"engaged": True, "reason": "test halt"}
    assert status["engine"]["kill_switch"] == {"engaged": True, "reason": "test halt"}
    wait_for("open orders to be cancelled", lambda: status_of(home)["ledger"]["open_orders"] == 0, timeout=10)

    before = status_of(home)["engine"]["counters"]
    after = wait_for("more events while engaged",
                     lambda: (c := status_of(home)["engine"]["counters"])["events"] > before["events"] + 300 and c)
    assert after["orders"] == before["orders"], (before, after)  # nothing new sent while engaged
    assert after["events"] > before["events"]
    orders = ledger_rows(home, "orders")
    assert not [o for o in orders if o["status"] in OPEN_STATUSES]
    assert ("kill switch engaged", {"reason": "test halt"}) in audit_actions(home / "trading.db")

    table = allele("status", home=home, columns=WIDE)
    assert_ok(table)
    assert "kill switch: ENGAGED (test halt)" in flat(table.stdout)

    assert_refused(allele("kill-switch", "maybe", home=home), "kill-switch takes 'on' or 'off', not 'maybe'")
    assert (home / "KILL_SWITCH").read_text() == "test halt"  # a refused command changes nothing

    off = allele("kill-switch", "off", home=home)
    assert_ok(off)
    assert "kill switch off" in flat(off.stdout)
    assert not (home / "KILL_SWITCH").exists()
    wait_for("the engine to clear the switch", lambda: not status_of(home)["engine"]["kill_switch"]["engaged"])
    assert status_of(home)["kill_switch"] == {"engaged": False, "reason": ""}
    wait_for("orders again after clearing", lambda: status_of(home)["engine"]["counters"]["orders"] > after["orders"])
    assert "kill switch cleared" in [a for a, _ in audit_actions(home / "trading.db")]


def test_kill_switch_refuses_a_bad_state_word(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for word in ("maybe", "ON", "1"):
        assert_refused(allele("kill-switch", word, home=home), f"not {word!r}")
    assert not (home / "KILL_SWITCH").exists()


def _sma_cross_variant(folder: Path, *replacements: tuple[str, str]) -> Path:
    """A build of plugins/strategies/sma_cross/app.py with `replacements` made (each must occur once); the
    manifest's proof path is made absolute, so that the build is found with its proof."""
    from allele.kernel.sdk.build import build_plugin

    folder = folder / "sma_cross"
    folder.mkdir()
    source = (SOURCE_ROOT / "plugins" / "strategies" / "sma_cross" / "app.py").read_text()
    proof = SOURCE_ROOT / "docs" / "strategies" / "sma_cross.md"
    for old, new in (*replacements, ('proof="docs/strategies/sma_cross.md"', f'proof="{proof}"')):
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    (folder / "app.py").write_text(source)
    return build_plugin(folder).output


@pytest.fixture(scope="module")
def sma_cross_011(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sma_cross as version 0.1.1 (so another sha256)."""
    return _sma_cross_variant(tmp_path_factory.mktemp("variant"), ('version="0.1.0"', 'version="0.1.1"'))


def test_deploy_hot_swaps_a_strategy_into_the_running_engine(detached: tuple[Path, int], sma_cross_011: Path,
                                                             built) -> None:
    home, pid = detached
    new_sha = sha256(sma_cross_011)
    assert new_sha != sha256(built["sma_cross"])
    before = wait_for("events to flow", lambda: (s := status_of(home)["engine"])["counters"]["events"] > 0 and s)
    assert organism(before, "sma-cross")["plugin_sha256"] == sha256(built["sma_cross"])

    info = as_json(allele("deploy", sma_cross_011, "--json", home=home))
    assert info["hot_swap"] is True
    assert info["manifest"]["version"] == "0.1.1"
    assert Path(info["proof"]).read_bytes() == (SOURCE_ROOT / "docs" / "strategies" / "sma_cross.md").read_bytes()

    def swapped() -> dict[str, Any] | None:
        engine: dict[str, Any] = status_of(home)["engine"]
        return engine if organism(engine, "sma-cross")["plugin_sha256"] == new_sha else None

    engine = wait_for("organism sma-cross to run the new build", swapped, timeout=90)
    others = {o["id"]: o["plugin_sha256"] for o in engine["organisms"] if o["id"] != "sma-cross"}
    assert others == {o["id"]: o["plugin_sha256"] for o in before["organisms"] if o["id"] != "sma-cross"}
    wait_for("events after the swap", lambda: (s := status_of(home)["engine"])["counters"]["events"]
             > engine["counters"]["events"] and s["state"] == "running")
    assert alive(pid)
    swaps = [d for a, d in audit_actions(home / "trading.db") if a == "hot swap"]
    assert [(d["organism"], d["sha256"], d["previous"]) for d in swaps] == \
        [("sma-cross", new_sha, sha256(built["sma_cross"]))]


def test_a_hot_swap_that_cannot_be_configured_keeps_the_old_instance(detached: tuple[Path, int], built,
                                                                     tmp_path: Path) -> None:
    home, pid = detached
    # fast may be at most 5 in this build: organism sma-cross's genome (fast = 10) is refused by configure.
    narrow = _sma_cross_variant(tmp_path, ('version="0.1.0"', 'version="0.2.0"'),
                                ('Param.int("fast", 10, 2, 200,', 'Param.int("fast", 3, 2, 5,'))
    before = wait_for("events to flow", lambda: (s := status_of(home)["engine"])["counters"]["events"] > 0 and s)
    info = as_json(allele("deploy", narrow, "--json", home=home))
    assert info["hot_swap"] is True

    log = home / "logs" / "engine.log"
    line = wait_for("the refused swap in the engine's log", lambda: next(
        (x for x in log.read_text().splitlines() if "hot swap" in x and "refused" in x), None), timeout=90)
    assert "organism sma-cross" in line and "'fast' = 10 is outside its range [2, 5]" in line, line
    assert "the old instance keeps trading" in line
    after = wait_for("events after the refusal", lambda: (s := status_of(home)["engine"])["counters"]["events"]
                     > before["counters"]["events"] + 200 and s)
    sma = organism(after, "sma-cross")
    assert sma["plugin_sha256"] == sha256(built["sma_cross"]) and sma["active"] and not sma["quarantined"]
    assert after["state"] == "running" and alive(pid)
    assert "hot swap" not in [a for a, _ in audit_actions(home / "trading.db")]


def test_replay_of_a_session_with_a_hot_swap_reproduces_it(detached: tuple[Path, int], sma_cross_011: Path,
                                                             tmp_path: Path) -> None:
    home, _pid = detached
    wait_for("sma-cross to trade", lambda: organism(status_of(home)["engine"], "sma-cross")["signals"] > 0)
    assert_ok(allele("deploy", sma_cross_011, home=home))
    new_sha = sha256(sma_cross_011)
    swapped = wait_for("the swap", lambda: (s := status_of(home)["engine"]) and
                       organism(s, "sma-cross")["plugin_sha256"] == new_sha and s, timeout=90)
    wait_for("600 events after the swap",
             lambda: status_of(home)["engine"]["counters"]["events"] > swapped["counters"]["events"] + 600)
    assert_ok(allele("stop", home=home))
    session = status_of(home)["engine"]
    replayed = as_json(allele("replay", home / "historical" / session["session"], "--json", home=home))
    assert replayed["counters"]["events"] == session["counters"]["events"]
    assert [(o["client_order_id"], o["organism"], o["side"], o["quantity"]) for o in ledger_rows(home, "orders")] == \
        [(o["client_order_id"], o["organism"], o["side"], o["quantity"])
         for o in _ledger_of(Path(replayed["ledger"]), tmp_path, "orders")]


# -- deploy and proofs ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unproven(built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """momentum_c whose manifest names a proof document that exists nowhere."""
    return _c_variant(tmp_path_factory.mktemp("unproven"), "unproven", MOMENTUM_PROOF,
                      '\\"proof\\":\\"docs/strategies/no_such_proof.md\\"')


def test_deploy_refuses_a_strategy_without_its_proof(unproven: Path, home: Path) -> None:
    message = assert_refused(allele("deploy", unproven, home=home, columns=WIDE), "strategy momentum_c refused",
                             "docs/strategies/no_such_proof.md", "was not found", "--proof FILE",
                             "--allow-unproven")
    assert "Traceback" not in message
    assert not home.exists() or not list(home.rglob("*.wasm"))


def test_deploy_allow_unproven_installs_with_a_warning(unproven: Path, home: Path) -> None:
    proc = allele("deploy", unproven, "--allow-unproven", "--json", home=home, columns=WIDE)
    assert_ok(proc)
    info = json.loads(proc.stdout)
    assert "warning: deploying momentum_c unproven" in flat(proc.stderr)
    target = home.resolve() / "plugins" / "strategies" / f"momentum_c-{sha256(unproven)[:12]}.wasm"
    assert info["deployed"] == str(target) and info["proof"] is None and info["hot_swap"] is False
    assert target.read_bytes() == unproven.read_bytes()
    assert not list(target.parent.glob("*.proof.md"))
    assert status_of(home)["deployed"] == [str(target)]


def test_deploy_with_proof_copies_it_next_to_the_wasm(unproven: Path, tmp_path: Path, home: Path) -> None:
    proof = tmp_path / "momentum_proof.md"
    proof.write_text("# momentum_c\n\n" + "Edge: short-horizon momentum persists in the synthetic market. " * 8)
    info = as_json(allele("deploy", unproven, "--proof", proof, "--json", home=home))
    target = home.resolve() / "plugins" / "strategies" / f"momentum_c-{sha256(unproven)[:12]}.wasm"
    assert info["deployed"] == str(target)
    copied = target.parent / f"momentum_c-{sha256(unproven)[:12]}.proof.md"
    assert info["proof"] == str(copied)
    assert copied.read_text() == proof.read_text()


def test_deploy_finds_a_bundled_strategys_proof(built, home: Path) -> None:
    info = as_json(allele("deploy", built["sma_cross"], "--json", home=home))
    assert Path(info["proof"]).name == f"sma_cross-{sha256(built['sma_cross'])[:12]}.proof.md"
    assert Path(info["proof"]).read_text() == (SOURCE_ROOT / "docs" / "strategies" / "sma_cross.md").read_text()


def test_deploy_refuses_a_template_or_too_short_proof(unproven: Path, tmp_path: Path, home: Path) -> None:
    assert_ok(allele("new", "strategy", "my_idea", "--dir", tmp_path, home=home))
    template = tmp_path / "my_idea" / "proof.md"
    assert_refused(allele("deploy", unproven, "--proof", template, home=home, columns=WIDE),
                   "strategy momentum_c refused", "is still the unedited template from `allele new`",
                   "--allow-unproven")
    short = tmp_path / "short.md"
    short.write_text("# trust me\n")
    assert_refused(allele("deploy", unproven, "--proof", short, home=home, columns=WIDE),
                   "is too short to be a proof document")
    assert_refused(allele("deploy", unproven, "--proof", tmp_path / "missing.md", home=home, columns=WIDE),
                   "was not found")
    assert not list(home.rglob("*.wasm")) and not list(home.rglob("*.proof.md"))


# -- backtest ---------------------------------------------------------------------------------------------------

METRICS = ("return_pct", "final_equity", "trades", "sharpe", "sortino", "max_drawdown_pct", "win_rate_pct", "fees")
SMA_ARGS = ("--strategy", "sma_cross", "--param", "fast=5", "--param", "slow=20")


def test_backtest_json_over_a_csv(built, tmp_path: Path, home: Path) -> None:
    data = write_csv(tmp_path / "prices.csv")
    report = as_json(allele("backtest", *SMA_ARGS, "--data", data, "--cash", "10000", "--commission", "0.001",
                            "--json", home=home))
    for key in METRICS:
        assert isinstance(report[key], int | float) and not isinstance(report[key], bool), (key, report[key])
        assert math.isfinite(report[key]), key
    assert report["final_equity"] == pytest.approx(10_000 * (1 + report["return_pct"] / 100), rel=1e-9, abs=1e-6)
    assert report["trades"] > 0 and report["fees"] > 0
    assert 0 <= report["win_rate_pct"] <= 100 and report["max_drawdown_pct"] >= 0
    assert (report["strategy"], report["params"], report["bars"]) == ("sma_cross", {"fast": 5, "slow": 20}, 300)
    assert (report["cash"], report["commission"]) == (10_000, 0.001)

    # No commission, no fees; the same data and parameters give the same trades.
    free = as_json(allele("backtest", *SMA_ARGS, "--data", data, "--cash", "10000", "--json", home=home))
    assert free["fees"] == 0 and free["trades"] == report["trades"]
    assert free["final_equity"] > report["final_equity"]


def test_backtest_table_names_the_metrics(built, tmp_path: Path, home: Path) -> None:
    data = write_csv(tmp_path / "prices.csv")
    proc = allele("backtest", *SMA_ARGS, "--data", data, "--cash", "10000", "--commission", "0.001",
                  home=home, columns=WIDE)
    assert_ok(proc)
    text = flat(proc.stdout)
    for part in ("total return", "Sharpe", "Sortino", "max drawdown", "trades", "fees", "bars 300"):
        assert part in text, part


def test_backtest_over_synthetic_data(built, home: Path) -> None:
    report = as_json(allele("backtest", "--strategy", "sma_cross", "--data", "synthetic:bars=500,seed=2", "--json",
                            home=home))
    assert report["bars"] == 500 and report["data"]["kind"] == "synthetic"
    assert report["final_equity"] == pytest.approx(10_000 * (1 + report["return_pct"] / 100), rel=1e-9, abs=1e-6)
    again = as_json(allele("backtest", "--strategy", "sma_cross", "--data", "synthetic:bars=500,seed=2", "--json",
                           home=home))
    assert {k: again[k] for k in METRICS} == {k: report[k] for k in METRICS}  # deterministic


@pytest.mark.parametrize(("args", "parts"), [
    (("--strategy", "no_such_strategy", "--data", "DATA"), ("no strategy named 'no_such_strategy'", "sma_cross")),
    (("--strategy", "sma_cross", "--data", "DATA", "--param", "fast=abc"), ("'fast' must be a number, got 'abc'",)),
    (("--strategy", "sma_cross", "--data", "DATA", "--param", "fast=500"),
     ("'fast' = 500 is outside its range [2, 200]",)),
    (("--strategy", "sma_cross", "--data", "DATA", "--param", "fast"), ("--param takes NAME=VALUE, got 'fast'",)),
    (("--strategy", "sma_cross", "--data", "DATA", "--cash", "-5"), ("--cash must be positive",)),
    (("--strategy", "sma_cross", "--data", "synthetic:bars=x"), ("synthetic",)),
])
def test_backtest_refuses_bad_input(built, tmp_path: Path, home: Path, args: tuple[str, ...],
                                    parts: tuple[str, ...]) -> None:
    data = write_csv(tmp_path / "prices.csv", rows=60)
    argv = [str(data) if a == "DATA" else a for a in args]
    assert_refused(allele("backtest", *argv, home=home, columns=WIDE), *parts)


def test_backtest_names_the_line_and_column_of_a_bad_csv_value(built, tmp_path: Path, home: Path) -> None:
    data = write_csv(tmp_path / "prices.csv", bad=(8, "abc"))  # data row 8 is line 10 (header, 1-based)
    assert_refused(allele("backtest", "--strategy", "sma_cross", "--data", data, home=home, columns=WIDE),
                   f"{data} line 10, column Close: 'abc' is not a number")
    assert_refused(allele("backtest", "--strategy", "sma_cross", "--data", tmp_path / "missing.csv", home=home,
                          columns=WIDE), "missing.csv", "no such file")


# -- configuration ----------------------------------------------------------------------------------------------


def test_start_refuses_a_bad_config_value_naming_the_key(built, home: Path) -> None:
    home.mkdir()
    (home / "config.toml").write_text("[engine]\nseed = -1\n")
    for args in (("start", "--bars", "5", "--speed", "0"), ("start", "--detach", "--bars", "5")):
        assert_refused(allele(*args, home=home, columns=WIDE), "config.toml", "[engine]", "'seed'",
                       "greater than or equal to 0")
    assert not (home / "trading.db").exists() and not (home / "engine.pid").exists()


def test_start_refuses_a_bad_environment_override_naming_the_key(built, home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLELE_ENGINE__SPEED", "fast")
    assert_refused(allele("start", "--bars", "5", "--speed", "0", home=home, columns=WIDE),
                   "ALLELE_ENGINE__", "'speed'", "valid number")
    assert not (home / "trading.db").exists()


def test_start_refuses_an_unknown_order_kernel_naming_the_choices(home: Path) -> None:
    assert_refused(allele("start", "--bars", "5", "--order-kernel", "fpga", home=home, columns=WIDE),
                   "bad option: --order-kernel", "'software' or 'rtl-sim'")
    assert not (home / "trading.db").exists()


@pytest.mark.parametrize(("option", "value"), [("--speed", "-1"), ("--seed", "-3"), ("--bars", "-2")])
def test_start_refuses_a_bad_option_naming_it(home: Path, option: str, value: str) -> None:
    args = {"--bars": "5", "--speed": "0", option: value}
    message = assert_refused(allele("start", *[x for kv in args.items() for x in kv], home=home, columns=WIDE),
                             f"bad option: {option}: Input should be greater than or equal to 0")
    assert "pydantic" not in message
    assert not (home / "trading.db").exists()
