"""`allele venue`: real venues and a local stand-in for one.

    allele venue emulator [--port 8765] [--api-key emu-key] [--symbols BTCUSDT:60000,ETHUSDT:3000] [--tick 0.25]

The emulator speaks the Binance spot and USD-M perpetuals REST and WebSocket API subset that ccxt's
`binance` class and the bundled `binance_spot` plugin use (docs/venues.md), on 127.0.0.1 only, backed by
the simulated matching engine with synthetic background liquidity. It runs in the foreground until
Ctrl-C. The API secret it verifies signatures against is read from $ALLELE_EMULATOR_SECRET, else from
stdin (piped, or typed without echo); it is never a command-line argument, so it stays out of shell
history and `ps`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated

import typer

from allele.kernel import cli as _cli
from allele.kernel.cli import _fail, err
from allele.kernel.emulator.server import EmulatorServer
from allele.kernel.emulator.state import Account, EmulatorConfig, EmulatorState, SymbolSpec

SECRET_ENV = "ALLELE_EMULATOR_SECRET"
QUOTES = ("USDT", "USDC", "BUSD", "BTC", "ETH", "EUR", "USD")

app: typer.Typer = _cli.app
venue_app = typer.Typer(help="Real venues, and `emulator`: a local Binance-spot stand-in to rehearse against.",
                        no_args_is_help=True)
app.add_typer(venue_app, name="venue")


def parse_symbols(text: str) -> tuple[SymbolSpec, ...]:
    """"BTCUSDT:60000,ETHUSDT:3000" -> symbol specs; ValueError naming the bad item."""
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, price = item.partition(":")
        name = name.upper()
        quote = next((q for q in QUOTES if name.endswith(q) and len(name) > len(q)), None)
        if quote is None or not name.isalnum():
            raise ValueError(f"symbol {item!r} is not BASEQUOTE with a quote asset among {', '.join(QUOTES)}")
        try:
            start = float(price) if price else 100.0
        except ValueError:
            raise ValueError(f"symbol {item!r}: start price {price!r} is not a number") from None
        if not start > 0:
            raise ValueError(f"symbol {item!r}: start price must be positive")
        specs.append(SymbolSpec(name, name[:-len(quote)], quote, start))
    if not specs:
        raise ValueError("no symbols given")
    return tuple(specs)


def read_secret() -> str:
    secret = os.environ.get(SECRET_ENV)
    if secret is None:
        if sys.stdin.isatty():
            secret = typer.prompt("API secret the emulator verifies signatures with", hide_input=True,
                                  confirmation_prompt=True)
        else:
            secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise _fail(f"no API secret: set {SECRET_ENV}, pipe it on stdin, or type it when asked")
    return secret


@venue_app.command("emulator")
def emulator(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1; 0 = any free port", min=0, max=65535)] = 8765,
    api_key: Annotated[str, typer.Option(help="the API key accounts sign with (the secret: env or stdin)")] = "emu-key",
    symbols: Annotated[str, typer.Option(help="SYMBOL:start price, comma-separated")] = "BTCUSDT:60000,ETHUSDT:3000",
    balances: Annotated[str, typer.Option(help="starting balances, ASSET:amount comma-separated")] =
        "USDT:100000,BTC:1,ETH:10",
    tick: Annotated[float, typer.Option(help="seconds between two steps of the synthetic market", min=0.01)] = 0.25,
    seed: Annotated[int, typer.Option(help="seed of the synthetic market", min=0)] = 7,
) -> None:
    """Run a local Binance-spot stand-in in the foreground (Ctrl-C stops it)."""
    try:
        specs = parse_symbols(symbols)
        funds = {a.upper(): float(v) for a, _, v in (item.partition(":") for item in balances.split(",") if item)}
    except ValueError as exc:
        raise _fail(str(exc)) from None
    secret = read_secret()
    state = EmulatorState(EmulatorConfig(symbols=specs, seed=seed), {api_key: Account(secret, funds)})
    server = EmulatorServer(state, port=port, tick_s=tick)

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        while not server._server.started and not task.done():
            await asyncio.sleep(0.05)
        if task.done():
            await task
            return
        server.port = server._bound_port()
        names = ", ".join(f'"{s.base}-{s.quote}"' for s in specs)
        # Plain write, not rich: the config snippet must not be re-wrapped to the terminal's width.
        sys.stdout.write(f"venue emulator (Binance spot and USD-M perpetuals API subset) on 127.0.0.1:{server.port}\n"
                  f"  REST       {server.rest_url}\n"
                  f"  WebSocket  {server.ws_url}/0\n"
                  f"  perpetuals {server.base_url}/fapi/v1 and {server.futures_ws_url}\n"
                  f"  API key    {api_key} (the secret you gave); balances {funds}\n\n"
                  "Point Allele at it: store the credentials, then in .allele/config.toml\n"
                  f"  allele vault add emulator --exchange binance    (API key {api_key}, then the secret)\n\n"
                  "  [exchange]\n  id = \"binance\"\n  account = \"emulator\"\n"
                  "  market_type = \"spot\"    # or \"swap\" for the perpetuals\n"
                  f"  symbols = [{names}]\n"
                  f"  urls = {server.ccxt_urls_toml()}\n\n"
                  "Ctrl-C stops it.\n")
        sys.stdout.flush()
        await task

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise _fail(f"the emulator could not listen on 127.0.0.1:{port}: {exc}; choose another --port") from None
    err.print("venue emulator stopped")
