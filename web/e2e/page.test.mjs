// Browser side of the risk page's end-to-end test (tests/integration/test_risk_page.py drives it).
//
// Launches the system's Chromium (Debian's `chromium` package) through playwright-core, headless,
// and answers one JSON command per stdin line with one JSON line on stdout:
//   {"cmd": "goto", "url": "..."}                          -> {}
//   {"cmd": "snapshot"}                                    -> {testid: {text, value}}; table rows as lists:
//                                                             "liq-row", "settled-row", "order-row": [...]
//   {"cmd": "waitFor", "testid": "...", "op": "eq|ne|lt|gt|gte|exists|textIncludes", "value": x, "timeoutMs": n}
//   {"cmd": "fill", "selector": "...", "value": "..."} / {"cmd": "click", "selector": "..."}
//   {"cmd": "screenshot", "path": "..."} / {"cmd": "errors"} (page errors and console errors) / {"cmd": "close"}
// Every reply carries the command's "id" and "ok" (false with "error" on failure).
//
// Environment: BALLAST_CHROMIUM (default /usr/bin/chromium).

import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const executablePath = process.env.BALLAST_CHROMIUM || '/usr/bin/chromium';
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
});
const context = await browser.newContext({ viewport: { width: 1360, height: 1000 } });
const page = await context.newPage();
const errors = [];
page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });

function snapshotInPage() {
  const out = {};
  for (const el of document.querySelectorAll('[data-testid]')) {
    const id = el.dataset.testid;
    if (id === 'liq-row' || id === 'settled-row' || id === 'order-row') {
      (out[id] ||= []).push({ ...el.dataset, text: el.textContent.replace(/\s+/g, ' ').trim() });
    } else {
      out[id] = { text: el.textContent.trim(), value: el.dataset.value ?? null };
    }
  }
  return out;
}

function conditionInPage({ testid, op, value }) {
  const el = document.querySelector(`[data-testid="${testid}"]`);
  if (op === 'exists') return !!el;
  if (!el) return false;
  if (op === 'textIncludes') return el.textContent.includes(value);
  const raw = el.dataset.value ?? el.textContent;
  if (op === 'eq') return raw === String(value);
  if (op === 'ne') return raw !== String(value);
  const v = Number(raw);
  if (raw === '' || Number.isNaN(v)) return false;
  if (op === 'lt') return v < value;
  if (op === 'gt') return v > value;
  if (op === 'gte') return v >= value;
  throw new Error(`unknown op ${op}`);
}

async function handle(msg) {
  switch (msg.cmd) {
    case 'goto':
      await page.goto(msg.url, { waitUntil: 'load' });
      return {};
    case 'snapshot':
      return page.evaluate(snapshotInPage);
    case 'waitFor':
      await page.waitForFunction(conditionInPage, { testid: msg.testid, op: msg.op, value: msg.value },
        { timeout: msg.timeoutMs ?? 15000, polling: 100 });
      return page.evaluate(snapshotInPage);
    case 'fill':
      await page.fill(msg.selector, msg.value);
      return {};
    case 'click':
      await page.click(msg.selector);
      return {};
    case 'screenshot':
      await page.screenshot({ path: msg.path, fullPage: true });
      return { path: msg.path };
    case 'errors':
      return errors;
    case 'close':
      return {};
    default:
      throw new Error(`unknown command ${msg.cmd}`);
  }
}

const send = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
send({ id: 0, ok: true, result: { browser: browser.version() } });

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let msg;
  try {
    msg = JSON.parse(line);
    const result = await handle(msg);
    send({ id: msg.id, ok: true, result });
    if (msg.cmd === 'close') break;
  } catch (e) {
    send({ id: msg?.id ?? null, ok: false, error: String(e?.message || e) });
  }
}
await browser.close();
process.exit(0);
