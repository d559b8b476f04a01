// Browser tests of the dashboard against a real, running engine (driven by tests/test_dashboard.py).
//
// Environment:
//   ALLELE_URL      the API's base URL (http://127.0.0.1:PORT); it serves the built dashboard at /
//   ALLELE_TOKEN    the API token (<ALLELE_HOME>/api.token)
//   ALLELE_WASM     a strategy .wasm to deploy through the plugin manager (a variant of momentum_c)
//   ALLELE_PROOF    its proof document
//   SCREENSHOTS     where to write screenshots (default: ../build/screenshots)
//   CHROMIUM        the browser (default /usr/bin/chromium)
//
// Every wait polls the page or the API with a generous timeout; nothing asserts how long anything took.
// The steps run in order and share one engine: the restart step comes last.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const URL_ = need("ALLELE_URL").replace(/\/$/, "");
const TOKEN = need("ALLELE_TOKEN");
const SHOTS = process.env.SCREENSHOTS ?? path.resolve(here, "../../build/screenshots");
const LONG = 180_000; // an engine start compiles plugins on a busy machine: be patient
const DESKTOP = { width: 1440, height: 960 };
const PHONE = { width: 390, height: 844 };
const VIEWS = ["markets", "portfolio", "arena", "activity", "risk", "plugins", "health"];

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is required (see the header of ${import.meta.url})`);
  return v;
}

let browser;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
});

async function api(pathname, init = {}) {
  const r = await fetch(URL_ + pathname, {
    ...init, headers: { Authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) },
  });
  const text = await r.text();
  assert.equal(r.status, 200, `${pathname}: HTTP ${r.status} ${text}`);
  return JSON.parse(text);
}

/** Poll `check` until it returns a truthy value; fail naming `what` after `timeout` ms. */
async function until(what, check, timeout = 60_000, interval = 300) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last.message ?? last})` : ""}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

async function openDashboard(viewport = DESKTOP) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  await page.goto(`${URL_}/#token=${encodeURIComponent(TOKEN)}`);
  await page.getByTestId("engine-state").waitFor({ timeout: LONG });
  return { context, page, errors };
}

async function tab(page, id) {
  await page.getByTestId(`tab-${id}`).click();
  await page.getByTestId(`view-${id}`).waitFor();
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

function textOf(page, testId) {
  return page.getByTestId(testId).first().innerText();
}

test("without a token the dashboard asks for one, and the API refuses", async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  await page.goto(`${URL_}/`);
  await page.getByTestId("token-missing").waitFor({ timeout: 30_000 });
  assert.match(await page.getByTestId("token-missing").innerText(), /allele ui/);
  await shot(page, "token-missing-desktop");
  const r = await page.evaluate(async () => (await fetch("/api/status")).status);
  assert.equal(r, 401, "GET /api/status without a token must be refused");
  await context.close();
});

test("a wrong token is refused with a clear screen", async () => {
  const context = await browser.newContext({ viewport: PHONE });
  const page = await context.newPage();
  await page.goto(`${URL_}/#token=not-the-token-${"x".repeat(20)}`);
  await page.getByTestId("token-refused").waitFor({ timeout: 30_000 });
  assert.match(await page.getByTestId("token-refused").innerText(), /refused/);
  await shot(page, "token-refused-phone");
  await context.close();
});

test("with the token it loads, hides the token from the address bar and keeps it on reload", async () => {
  const { context, page, errors } = await openDashboard();
  await until("the engine state to read running",
    async () => /running|halted/.test(await textOf(page, "engine-state")), LONG);
  assert.ok(!page.url().includes("token"), `the token is still in the URL: ${page.url()}`);
  await page.reload();
  await until("running after a reload", async () => /running|halted/.test(await textOf(page, "engine-state")), LONG);
  assert.equal(await page.getByTestId("token-missing").count(), 0);
  assert.deepEqual(errors, []);
  await context.close();
});

test("prices and the leaderboard update live", async () => {
  const { context, page, errors } = await openDashboard();
  await tab(page, "markets");
  const first = Number(await until("ticks on the price chart", async () => {
    const n = Number(await textOf(page, "tick-count"));
    return n > 0 ? String(n) : null;
  }, LONG));
  await until("more ticks (the chart is live)", async () => Number(await textOf(page, "tick-count")) > first + 3,
    LONG);
  const price = await textOf(page, "last-price");
  assert.match(price, /\d/);
  // the chart canvas is drawn
  assert.ok(await page.locator('[data-testid="price-chart"] canvas').count() > 0, "no chart canvas");
  await until("order/fill markers", async () => /[1-9]\d* (orders|fills)/.test(
    await page.getByTestId("price-panel").innerText()), LONG);

  await tab(page, "arena");
  const board = page.getByTestId("live-leaderboard");
  await until("organisms in the leaderboard", async () => (await board.locator("tbody tr").count()) > 0, LONG);
  const before = await board.locator('[data-testid="organism-equity"]').allInnerTexts();
  await until("the leaderboard's equity to change", async () => {
    const now = await board.locator('[data-testid="organism-equity"]').allInnerTexts();
    return now.join("|") !== before.join("|");
  }, LONG);
  assert.deepEqual(errors, []);
  await context.close();
});

/** The order book table as numbers, read at one instant: bid prices best first, ask prices as shown (the best
 * last, nearest the middle), and every quantity. */
function readBook(page) {
  return page.evaluate(() => {
    const num = (el) => Number(el.textContent.replace(/,/g, ""));
    const prices = (side) => [...document.querySelectorAll(`[data-testid="book-${side}"] [data-testid="book-price"]`)]
      .map(num);
    const qty = [...document.querySelectorAll('[data-testid="book-table"] [data-testid="book-qty"]')].map(num);
    return { bids: prices("bid"), asks: prices("ask"), qty };
  });
}

test("the order book shows the venue's depth, our resting levels highlighted", async (t) => {
  const { context, page, errors } = await openDashboard();
  await tab(page, "markets");
  const symbol = (await until("the book's symbol", async () => (await textOf(page, "book-symbol"))
    .replace(/^[·\s]+/, "").trim(), LONG));
  const book = await api(`/api/book/${encodeURIComponent(symbol)}?depth=10`);
  assert.equal(book.symbol, symbol);
  assert.ok(book.bids.length > 0 && book.asks.length > 0, `the venue's book of ${symbol} is empty: ${JSON.stringify(book)}`);
  const { bids, asks, qty } = await until("bid and ask levels in the book", async () => {
    const b = await readBook(page);
    return b.bids.length > 0 && b.asks.length > 0 ? b : null;
  }, LONG);
  for (const p of [...bids, ...asks]) assert.ok(Number.isFinite(p) && p > 0, `not a price: ${p} (${bids} / ${asks})`);
  // asks above bids, each side ordered away from the middle
  assert.ok(Math.min(...asks) > Math.max(...bids), `crossed book on the page: bids ${bids}, asks ${asks}`);
  assert.deepEqual([...bids].sort((x, y) => y - x), bids, `bids not best first: ${bids}`);
  assert.deepEqual([...asks].sort((x, y) => y - x), asks, `asks not best last: ${asks}`);
  assert.equal(qty.length, bids.length + asks.length);
  assert.ok(qty.every((q) => Number.isFinite(q) && q > 0), `not quantities: ${qty}`);
  assert.ok(!(await textOf(page, "order-book")).includes("not served"), "the old 'depth is not served' note is shown");

  // A highlighted level is one where the ledger holds an open limit order of ours at that price. The organisms
  // may have none resting at a given moment: then nothing may be highlighted.
  const TERMINAL = new Set(["filled", "cancelled", "rejected", "expired"]);
  let seen = 0;
  let resting = 0;
  await until("a highlighted level of ours (or none resting)", async () => {
    const highlighted = (await page.locator('[data-testid="order-book"] tr[data-ours="true"] [data-testid="book-price"]')
      .allInnerTexts()).map((c) => Number(c.replace(/,/g, "")));
    const open = (await api("/api/orders?limit=2000")).filter((o) => !TERMINAL.has(o.status) && o.symbol === symbol
      && o.limit_price !== null);
    resting = Math.max(resting, open.length);
    const prices = open.map((o) => Number(o.limit_price));
    for (const h of highlighted) {
      // the page polls the orders every 2 s: a level may just have been filled or cancelled; tolerate only that
      if (prices.some((p) => Math.abs(p - h) <= 1e-9 * Math.max(1, Math.abs(p)))) seen += 1;
    }
    return seen > 0;
  }, 30_000).catch((err) => {
    if (resting > 0) throw err;
  });
  t.diagnostic(`book of ${symbol}: ${bids.length} bid / ${asks.length} ask levels; our resting limit orders seen: ` +
    `${resting}; highlighted levels matching them: ${seen}`);
  await shot(page, "markets-book-desktop");
  assert.deepEqual(errors, []);
  await context.close();
});

test("the arena shows its standing and an organism's lineage", async () => {
  const { context, page, errors } = await openDashboard();
  await tab(page, "arena");
  const standing = page.getByTestId("arena-leaderboard");
  await until("the arena's standing", async () => (await standing.locator("tbody tr.clickable").count()) > 0, 60_000);
  const header = await standing.locator("thead").innerText();
  for (const column of ["fitness", "Sortino", "deflated Sharpe", "status", "capital"]) {
    assert.ok(header.includes(column), `the standing has no ${column} column: ${header}`);
  }
  const board = await api("/api/arena/leaderboard");
  await standing.locator("tbody tr.clickable").first().click();
  const lineage = page.getByTestId("lineage");
  await until("the lineage", async () => (await lineage.locator("li").count()) > 0, 60_000);
  assert.ok((await lineage.innerText()).includes(board[0].fingerprint.slice(0, 12)));
  // the MAP-Elites niches of the arena run tests/test_dashboard.py made (the API stores its archive at the end)
  const archive = await api("/api/arena/archive");
  assert.ok(archive.cells.length > 0, `the archive of run ${archive.run_id} has no cell`);
  const niches = page.getByTestId("niches");
  await until("filled niches in the grid", async () => (await niches.locator('[data-testid="niche-cell"]').count()) > 0,
    60_000);
  assert.ok((await textOf(page, "archive-run")).includes(archive.run_id));
  assert.match(await niches.locator('[data-testid="niche-cell"]').first().innerText(), /\d/);
  assert.equal(await page.getByTestId("no-arena-run").count(), 0);
  assert.deepEqual(errors, []);
  await context.close();
});

test("every view renders on a desktop and a phone (screenshots)", async () => {
  for (const [label, viewport] of [["desktop", DESKTOP], ["phone", PHONE]]) {
    const { context, page, errors } = await openDashboard(viewport);
    await until("live data", async () => /running|halted/.test(await textOf(page, "engine-state")), LONG);
    for (const view of VIEWS) {
      await tab(page, view);
      // let the polls fill the panels: wait for no "Loading" text, then one more redraw of the charts
      await until(`${view} to load`, async () => !(await page.getByTestId(`view-${view}`).innerText())
        .includes("Loading"), 60_000);
      if (view === "markets") {
        await until("ticks", async () => Number(await textOf(page, "tick-count")) > 5, LONG);
        await until("the order book's levels", async () => (await page.getByTestId("book-bid").count()) > 0, LONG);
      }
      if (view === "arena") {
        await until("the niches", async () => (await page.getByTestId("niche-cell").count()) > 0, 60_000);
      }
      await page.waitForTimeout(600);
      // nothing may stick out sideways on a phone
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `${view} on ${label} is ${overflow}px wider than the screen`);
      await shot(page, `${view}-${label}`);
    }
    await tab(page, "activity");
    for (const sub of ["fills", "signals", "rejections"]) {
      await page.getByTestId(`activity-tab-${sub}`).click();
      await page.getByTestId(`activity-${sub}`).waitFor();
      await page.waitForTimeout(300);
      if (label === "desktop") await shot(page, `activity-${sub}-${label}`);
    }
    assert.deepEqual(errors, []);
    await context.close();
  }
});

test("the tables filter", async () => {
  const { context, page } = await openDashboard();
  await tab(page, "activity");
  await page.getByTestId("activity-tab-orders").click();
  const table = page.getByTestId("orders-table");
  await until("orders", async () => (await table.locator("tbody tr td.mono").count()) > 0, LONG);
  const organisms = await table.locator('select[aria-label="organism"] option').allInnerTexts();
  const one = organisms.find((o) => !o.startsWith("any"));
  assert.ok(one, `no organism to filter on: ${organisms}`);
  await table.locator('select[aria-label="organism"]').selectOption(one);
  await until("only that organism's orders", async () => {
    const cells = await table.locator("tbody tr td:nth-child(2)").allInnerTexts();
    return cells.length > 0 && cells.every((c) => c === one);
  });
  await table.locator('input[type="search"]').fill("no-such-order-anywhere");
  await until("an empty result", async () => (await table.locator("tbody td.empty").count()) === 1);
  await context.close();
});

test("the kill switch, after confirmation, halts trading; clearing resumes it", async () => {
  const { context, page, errors } = await openDashboard();
  await tab(page, "risk");
  await until("the kill switch to be off", async () => /off/.test(await textOf(page, "kill-switch-state")), LONG);
  await page.getByTestId("kill-switch-engage").click();
  // a confirmation comes first: nothing is engaged yet
  await page.getByRole("dialog").waitFor();
  assert.equal((await api("/api/kill-switch")).engaged, false);
  await shot(page, "risk-confirm-desktop");
  await page.getByTestId("kill-switch-reason").fill("e2e: halt trading");
  await page.getByTestId("kill-switch-confirm").click();
  await until("the panel to show it engaged", async () => /ENGAGED/.test(await textOf(page, "kill-switch-state")),
    60_000);
  await page.getByTestId("halted-banner").waitFor({ timeout: 30_000 });
  const ks = await until("the engine to apply it", async () => {
    const k = await api("/api/kill-switch");
    return k.engaged && k.applied ? k : null;
  }, 60_000);
  assert.equal(ks.reason, "e2e: halt trading");
  await shot(page, "risk-halted-desktop");

  // Halted: the organisms keep signalling, every intent is refused, and no order is sent.
  const s0 = await api("/api/status");
  await until("intents refused while halted", async () => {
    const s = await api("/api/status");
    assert.equal(s.counters.orders, s0.counters.orders, "an order was sent while the kill switch was engaged");
    return s.counters.refused >= s0.counters.refused + 3;
  }, LONG);
  const risk = await api("/api/risk");
  assert.equal(risk.open_orders, 0, "open orders remain after the kill switch");
  const s1 = await api("/api/status");
  assert.equal(s1.counters.orders, s0.counters.orders);

  await page.getByTestId("kill-switch-clear").click();
  await page.getByTestId("kill-switch-confirm").click();
  await until("the panel to show it off", async () => /off/.test(await textOf(page, "kill-switch-state")), 60_000);
  await until("orders to flow again", async () => (await api("/api/status")).counters.orders > s1.counters.orders,
    LONG);
  assert.deepEqual(errors, []);
  await context.close();
});

test("a .wasm uploaded through the plugin manager appears and runs", async () => {
  const wasm = need("ALLELE_WASM");
  const proof = need("ALLELE_PROOF");
  const sha = createHash("sha256").update(readFileSync(wasm)).digest("hex");
  const { context, page, errors } = await openDashboard();
  await tab(page, "plugins");
  await page.getByTestId("deploy-wasm").setInputFiles(wasm);
  await page.getByTestId("deploy-proof").setInputFiles(proof);
  await page.getByTestId("deploy-submit").click();
  const result = await page.getByTestId("deploy-result").or(page.getByTestId("deploy-error"));
  await result.first().waitFor({ timeout: LONG });
  const said = await result.first().innerText();
  assert.match(said, new RegExp(`Deployed strategy.*momentum_c.*${sha.slice(0, 12)}`), said);
  await shot(page, "plugins-deployed-desktop");

  const table = page.getByTestId("plugins-table");
  const row = table.locator("tr", { hasText: sha.slice(0, 12) });
  await until("the plugin in the list, running in an organism", async () => {
    const text = await row.first().innerText();
    return /deployed/.test(text) && /momentum-c/.test(text);
  }, LONG);
  // its proof: served under /api (so the browser alone would be refused), fetched by the page with the token
  const listed = (await api("/api/plugins")).find((p) => p.sha256 === sha);
  assert.ok(listed?.proof_url, `the deployed plugin has no proof_url: ${JSON.stringify(listed)}`);
  assert.equal((await fetch(URL_ + listed.proof_url)).status, 401, "the proof is served without the token");
  await row.first().getByTestId("proof-link").click();
  const dialog = page.getByTestId("proof-dialog");
  await dialog.waitFor({ timeout: 30_000 });
  const proofText = await until("the proof text", async () => {
    const err = await dialog.getByTestId("proof-error").count();
    assert.equal(err, 0, await dialog.innerText());
    return (await dialog.getByTestId("proof-text").count()) ? dialog.getByTestId("proof-text").innerText() : null;
  }, 30_000);
  const expected = readFileSync(proof, "utf8");
  const firstLine = expected.split("\n").find((l) => l.trim());
  assert.ok(proofText.includes(firstLine.trim()), `the dialog does not show the proof (${firstLine}): ${proofText.slice(0, 200)}`);
  assert.ok(proofText.length >= expected.trim().length * 0.9, "the proof is cut short");
  await shot(page, "plugins-proof-desktop");
  await dialog.getByTestId("proof-close").click();
  await until("the dialog to close", async () => (await page.getByTestId("proof-dialog").count()) === 0);

  // it runs: the organism trades with the new build and keeps signalling
  const org = await until("momentum-c to run the new build", async () => {
    const s = await api("/api/status");
    const o = s.organisms.find((x) => x.plugin_sha256 === sha);
    return o ?? null;
  }, LONG);
  await until("the new build to signal", async () => {
    const s = await api("/api/status");
    const o = s.organisms.find((x) => x.id === org.id);
    return o.plugin_sha256 === sha && o.signals > org.signals;
  }, LONG);
  assert.deepEqual(errors, []);
  await context.close();
});

test("the page shows the engine down and recovers by itself after a restart", async () => {
  const { context, page, errors } = await openDashboard();
  await tab(page, "health");
  const before = await api("/api/status");
  await until("running", async () => /running|halted/.test(await textOf(page, "engine-state")), LONG);
  // The engine dies hard; the watchdog starts a new one on the same port.
  process.kill(before.pid, "SIGKILL");
  await page.getByTestId("engine-down").waitFor({ timeout: 60_000 });
  assert.match(await textOf(page, "engine-down"), /not reachable/);
  await shot(page, "engine-down-desktop");
  await until("the banner to go away (engine back)", async () =>
    (await page.getByTestId("engine-down").count()) === 0, LONG * 2, 1000);
  const after = await api("/api/status");
  assert.notEqual(after.pid, before.pid, "the engine did not restart");
  await until("the new session in the header",
    async () => (await textOf(page, "engine-state")).includes(after.session), 60_000);
  await until("the watchdog restart counted", async () => Number(await textOf(page, "watchdog-restarts")) >= 1,
    60_000);
  // live again: prices move on the markets view without a reload
  await tab(page, "markets");
  const n = await until("ticks of the new engine", async () => {
    const v = Number(await textOf(page, "tick-count"));
    return v > 0 ? v : null;
  }, LONG);
  await until("more ticks", async () => Number(await textOf(page, "tick-count")) > n, LONG);
  await tab(page, "health");
  await shot(page, "health-recovered-desktop");
  assert.deepEqual(errors, []);
  await context.close();
});
