// Ballast live risk page: reads the engine and the controller through viem with the exported ABI
// (@ballast/abi = ../abi), refreshes on every new block.
//
// URL parameters (all optional when a deployments file of the chain is bundled in abi/deployments):
//   rpc=URL         JSON-RPC endpoint (default VITE_BALLAST_RPC at build time, else http://127.0.0.1:8545)
//   engine=0x..     MarginEngine address; controller=0x.. (default: engine.controller())
//   deployment=URL  a deployments/<chainId>.json to load instead of the bundled ones
//   account=0x..    account to watch; markets=0,1 (default: the deployment's, else MarketListed logs)
//   fromBlock=N     first block to read logs from; logRange=N blocks per eth_getLogs; poll=ms

import { createPublicClient, getAddress, http, isAddress } from 'viem';
import engineAbi from '@ballast/abi/MarginEngine.json';
import controllerAbi from '@ballast/abi/LeverageController.json';
import feedAbi from '@ballast/abi/AggregatorV3Interface.json';
import { escapeHtml, lev, liquidationMove, num, pct, positionMmf, short, tokens, usd, wad } from './risk.js';

const bundled = Object.fromEntries(
  Object.values(import.meta.glob('@ballast/abi/deployments/*.json', { eager: true, import: 'default' }))
    .map((d) => [Number(d.chainId), d]),
);

const params = new URLSearchParams(location.search);
const RPC = params.get('rpc') || import.meta.env.VITE_BALLAST_RPC || 'http://127.0.0.1:8545';
const POLL_MS = Number(params.get('poll') || 1000);
const LOG_RANGE = BigInt(params.get('logRange') || 5000);
const MAX_INITIAL_CHUNKS = 20n;
const MAX_LIQUIDATIONS = 12;
const FEED = { price: 0, volatility: 1, funding: 2, depth: 3, skew: 4 };
const EVENTS = engineAbi.filter((x) => x.type === 'event' && ['Liquidated', 'BadDebt', 'OrderSettled'].includes(x.name));
const MAX_SETTLEMENTS = 12;

const client = createPublicClient({ transport: http(RPC, { batch: true, retryCount: 1 }), pollingInterval: POLL_MS });
const $ = (id) => document.getElementById(id);

const state = {
  chainId: null, engine: null, controller: null, tokenScale: 1n, markets: [], fromBlock: 0n,
  account: null, liquidations: [], settlements: [], scannedTo: null, block: null, busy: false, again: false, values: new Map(),
};

function setStatus(text, kind = 'ok') {
  const el = $('status');
  el.textContent = text;
  el.className = `status ${kind}`;
}

// ---------------------------------------------------------------- setup

async function loadDeployment(chainId) {
  const url = params.get('deployment');
  if (url) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`deployment ${url}: HTTP ${r.status}`);
    return r.json();
  }
  return bundled[chainId] || null;
}

async function discoverMarkets() {
  if (params.get('markets')) return params.get('markets').split(',').map((s) => ({ id: Number(s), symbol: null }));
  const logs = await getLogsChunked(state.controller, controllerAbi.filter((x) => x.name === 'MarketListed'),
    state.fromBlock, await client.getBlockNumber());
  return logs.map((l) => ({ id: Number(l.args.marketId), symbol: null }));
}

async function symbolOf(m) {
  try {
    const cfg = await client.readContract({ address: state.controller, abi: controllerAbi, functionName: 'feedConfig', args: [BigInt(m.id), FEED.price] });
    const d = await client.readContract({ address: cfg.feed, abi: feedAbi, functionName: 'description' });
    return d.split(/[ /]/)[0] || `#${m.id}`;
  } catch {
    return `#${m.id}`;
  }
}

async function init() {
  state.chainId = await client.getChainId();
  $('chain-id').textContent = String(state.chainId);
  const dep = await loadDeployment(state.chainId);
  const engine = params.get('engine') || dep?.engine;
  if (!engine || !isAddress(engine)) {
    setStatus(`no deployment known for chain ${state.chainId}: pass ?engine=0x… (and ?rpc=…)`, 'error');
    return false;
  }
  state.engine = getAddress(engine);
  state.controller = getAddress(params.get('controller') || dep?.controller ||
    await client.readContract({ address: state.engine, abi: engineAbi, functionName: 'controller' }));
  state.tokenScale = await client.readContract({ address: state.engine, abi: engineAbi, functionName: 'tokenScale' });
  state.fromBlock = BigInt(params.get('fromBlock') ?? dep?.startBlock ?? 0);
  state.markets = dep?.markets?.length && !params.get('markets')
    ? dep.markets.map((m) => ({ id: Number(m.id), symbol: m.symbol }))
    : await discoverMarkets();
  for (const m of state.markets) if (!m.symbol) m.symbol = await symbolOf(m);
  $('engine').textContent = state.engine;
  $('controller').textContent = state.controller;
  const acct = params.get('account');
  if (acct && isAddress(acct)) {
    state.account = getAddress(acct);
    $('account-input').value = state.account;
  }
  return true;
}

// ---------------------------------------------------------------- logs

async function getLogsChunked(address, events, from, to) {
  const out = [];
  for (let a = from; a <= to; a += LOG_RANGE) {
    const b = a + LOG_RANGE - 1n < to ? a + LOG_RANGE - 1n : to;
    out.push(...await client.getLogs({ address, events, fromBlock: a, toBlock: b, strict: true }));
  }
  return out;
}

async function scanLiquidations(toBlock) {
  let from = state.scannedTo === null ? state.fromBlock : state.scannedTo + 1n;
  const earliest = toBlock - LOG_RANGE * MAX_INITIAL_CHUNKS;
  if (state.scannedTo === null && from < earliest) from = earliest; // first load: recent history only
  if (from > toBlock) return;
  const logs = await getLogsChunked(state.engine, EVENTS, from, toBlock);
  state.scannedTo = toBlock;
  for (const l of logs.filter((x) => x.eventName === 'OrderSettled')) {
    state.settlements.unshift({ ...l.args, block: l.blockNumber, tx: l.transactionHash });
  }
  state.settlements = state.settlements.slice(0, MAX_SETTLEMENTS);
  const badDebt = new Map(logs.filter((l) => l.eventName === 'BadDebt').map((l) => [l.transactionHash, l.args]));
  for (const l of logs.filter((x) => x.eventName === 'Liquidated')) {
    state.liquidations.push({ ...l.args, block: l.blockNumber, tx: l.transactionHash, logIndex: l.logIndex, badDebt: badDebt.get(l.transactionHash) });
  }
  state.liquidations.sort((x, y) => (x.block === y.block ? y.logIndex - x.logIndex : (y.block > x.block ? 1 : -1)));
  state.liquidations = state.liquidations.slice(0, MAX_LIQUIDATIONS);
}

// ---------------------------------------------------------------- reads

async function readAll(blockNumber) {
  const e = { address: state.engine, abi: engineAbi, blockNumber };
  const c = { address: state.controller, abi: controllerAbi, blockNumber };
  const read = (x, functionName, args = []) => client.readContract({ ...x, functionName, args });
  const settle = (ps) => Promise.allSettled(ps).then((rs) => rs.map((r) => (r.status === 'fulfilled' ? r.value : undefined)));

  const protocolP = settle(['insuranceFund', 'badDebtTotal', 'badDebtCovered', 'badDebtSocialized', 'vaultBalance', 'protocolFees']
    .map((f) => read(e, f)));
  const marketsP = Promise.all(state.markets.map(async (m) => {
    const id = BigInt(m.id);
    const [price, vol, funding, maxL, maxS, qL, qS, oi, fs] = await settle([
      read(c, 'priceWad', [id]), read(c, 'readFeed', [id, FEED.volatility]), read(c, 'readFeed', [id, FEED.funding]),
      read(c, 'maxLeverageWad', [id, true]), read(c, 'maxLeverageWad', [id, false]),
      read(c, 'quote', [id, true, 0n]), read(c, 'quote', [id, false, 0n]),
      read(e, 'openInterest', [id]), read(e, 'fundingState', [id]),
    ]);
    return { ...m, price, vol, funding, maxL, maxS, qL, qS, oi, fs };
  }));
  const accountP = state.account ? readAccount(read, e, c) : Promise.resolve(null);
  const [protocol, markets, account] = await Promise.all([protocolP, marketsP, accountP]);
  return { protocol, markets, account };
}

async function readAccount(read, e, c) {
  const a = state.account;
  const [health, collateral, liquidatable, open] = await Promise.all([
    read(e, 'health', [a]), read(e, 'collateralOf', [a]), read(e, 'isLiquidatable', [a]), read(e, 'openMarkets', [a]),
  ]);
  const positions = await Promise.all(state.markets.filter((m) => (open >> BigInt(m.id)) & 1n).map(async (m) => {
    const pos = await read(e, 'position', [a, BigInt(m.id)]);
    const isLong = pos.sizeWad > 0n;
    const absSize = isLong ? pos.sizeWad : -pos.sizeWad;
    const q = await read(c, 'quote', [BigInt(m.id), isLong, absSize]);
    return { market: m, pos, isLong, q, mmfWad: positionMmf(q.mmfBaseWad, pos.slipSnapWad, q.maxMmfWad) };
  }));
  // Pending orders (engine v2: an order settles at the first price round after commit + min delay).
  const orders = (await Promise.all(state.markets.map(async (m) => ({ market: m, o: await read(e, 'order', [a, BigInt(m.id)]) }))))
    .filter((x) => x.o.commitSec > 0n);
  return { health, collateral, liquidatable, positions, orders };
}

// ---------------------------------------------------------------- rendering

/** A cell with a test id, a raw numeric value and a flash when that value changed. */
function cell(testid, text, value, cls = '') {
  const v = value === undefined || value === null || Number.isNaN(value) ? '' : String(value);
  const prev = state.values.get(testid);
  state.values.set(testid, v);
  const changed = prev !== undefined && prev !== v ? ' changed' : '';
  return `<td data-testid="${testid}" data-value="${escapeHtml(v)}" class="${cls}${changed}">${escapeHtml(text)}</td>`;
}

function renderProtocol(p) {
  const [ins, bdTotal, bdCovered, bdSocial, vault, fees] = p.map((x) => (x === undefined ? NaN : tokens(x, state.tokenScale)));
  $('protocol').innerHTML = `<table><tr>
    <th>Insurance fund</th><th>Bad debt (total)</th><th>covered by insurance</th><th>socialized to the vault</th><th>Vault</th><th>Protocol fees</th></tr><tr>
    ${cell('insurance-fund', usd(ins), ins)}${cell('bad-debt-total', usd(bdTotal), bdTotal, bdTotal > 0 ? 'bad' : '')}
    ${cell('bad-debt-covered', usd(bdCovered), bdCovered)}${cell('bad-debt-socialized', usd(bdSocial), bdSocial, bdSocial > 0 ? 'bad' : '')}
    ${cell('vault-balance', usd(vault), vault)}${cell('protocol-fees', usd(fees), fees)}</tr></table>`;
}

function renderMarkets(markets) {
  const rows = markets.map((m) => {
    const id = m.id;
    const price = wad(m.price);
    const vol = m.vol && m.vol[0] ? wad(m.vol[1]) : NaN;
    const fundingOk = m.funding && m.funding[0];
    const funding = fundingOk ? wad(m.funding[1]) : NaN;
    const mmf = (q) => (q ? wad(positionMmf(q.mmfBaseWad, q.slipWad, q.maxMmfWad)) : NaN);
    const oiL = m.oi ? wad(m.oi[0]) : NaN;
    const oiS = m.oi ? wad(m.oi[1]) : NaN;
    const feedsOk = m.qL ? (m.qL.riskFeedsOk ? 'ok' : 'fail-closed') : 'price invalid';
    const fundingTxt = fundingOk ? `${pct(funding, 4)}/h ${funding > 0 ? '(longs pay)' : funding < 0 ? '(shorts pay)' : ''}` : 'stale';
    return `<tr>
      <th>${escapeHtml(m.symbol)}</th>
      ${cell(`price-${id}`, m.price === undefined ? 'invalid' : usd(price), price, m.price === undefined ? 'bad' : '')}
      ${cell(`vol-${id}`, pct(vol, 1), vol)}
      ${cell(`maxlev-long-${id}`, lev(wad(m.maxL)), wad(m.maxL))}
      ${cell(`maxlev-short-${id}`, lev(wad(m.maxS)), wad(m.maxS))}
      ${cell(`mmf-long-${id}`, pct(mmf(m.qL)), mmf(m.qL))}
      ${cell(`mmf-short-${id}`, pct(mmf(m.qS)), mmf(m.qS))}
      ${cell(`oi-long-${id}`, `${num(oiL)} (${usd(oiL * price)})`, oiL)}
      ${cell(`oi-short-${id}`, `${num(oiS)} (${usd(oiS * price)})`, oiS)}
      ${cell(`funding-${id}`, fundingTxt, funding)}
      ${cell(`feeds-${id}`, feedsOk, feedsOk, feedsOk === 'ok' ? '' : 'bad')}
    </tr>`;
  }).join('');
  $('markets').innerHTML = `<table><tr><th>Market</th><th>Price</th><th>Volatility (ann.)</th><th>Max leverage long</th>
    <th>Max leverage short</th><th>Maint. long</th><th>Maint. short</th><th>Open interest long</th><th>Open interest short</th>
    <th>Funding</th><th>Risk feeds</th></tr>${rows}</table>`;
}

function renderLiquidations() {
  const symbol = (id) => state.markets.find((m) => m.id === Number(id))?.symbol ?? `#${id}`;
  const rows = state.liquidations.map((l) => {
    const closed = wad(l.sizeClosedWad);
    const bd = l.badDebt ? tokens(l.badDebt.amountTokens, state.tokenScale) : 0;
    return `<tr data-testid="liq-row" data-account="${l.account}" data-market="${l.marketId}" data-symbol="${escapeHtml(symbol(l.marketId))}" data-block="${l.block}"
        data-price="${wad(l.priceWad)}" data-bad-debt="${bd}">
      <td>${l.block}</td><td>${escapeHtml(symbol(l.marketId))}</td><td title="${l.account}">${short(l.account)}</td>
      <td>${closed < 0 ? 'long' : 'short'} ${num(Math.abs(closed))}</td><td>${usd(wad(l.notionalClosedUsdWad))}</td>
      <td>${usd(wad(l.priceWad))}</td><td>${usd(tokens(l.penaltyTokens, state.tokenScale))}</td>
      <td>${usd(tokens(l.rewardTokens, state.tokenScale))}</td><td class="${bd > 0 ? 'bad' : ''}">${bd > 0 ? usd(bd) : '—'}</td>
      <td title="${l.liquidator}">${short(l.liquidator)}</td></tr>`;
  }).join('');
  $('liquidations').innerHTML = state.liquidations.length
    ? `<table><tr><th>Block</th><th>Market</th><th>Account</th><th>Closed</th><th>Notional</th><th>Price</th>
       <th>Penalty</th><th>Reward</th><th>Bad debt</th><th>Liquidator</th></tr>${rows}</table>`
    : '<p class="muted" data-testid="no-liquidations">No liquidation since block ' + state.fromBlock + '.</p>';
  $('liq-count').textContent = String(state.liquidations.length);
}

function renderAccount(a) {
  const el = $('account');
  if (!state.account) { el.innerHTML = '<p class="muted">Enter an address to follow its health.</p>'; return; }
  if (!a) { el.innerHTML = '<p class="muted">loading…</p>'; return; }
  const h = a.health;
  const eq = wad(h.equityUsdWad);
  const mm = wad(h.maintenanceUsdWad);
  const im = wad(h.initialUsdWad);
  const notional = wad(h.notionalUsdWad);
  const collateral = tokens(a.collateral, state.tokenScale);
  const status = a.positions.length === 0 ? 'no position' : a.liquidatable ? 'LIQUIDATABLE' : eq < im ? 'below initial margin' : 'healthy';
  let nearest = null;
  const rows = a.positions.map(({ market, pos, isLong, mmfWad }) => {
    const size = wad(pos.sizeWad);
    const mark = wad(a.prices?.[market.id] ?? 0n);
    const n = Math.abs(size) * mark;
    const entry = size !== 0 ? wad(pos.basisUsdWad) / size : NaN;
    const move = liquidationMove(eq, mm, n, wad(mmfWad), isLong);
    if (move !== null && (nearest === null || Math.abs(move) < Math.abs(nearest))) nearest = move;
    const liqPrice = move === null ? NaN : mark * (1 + move);
    const upnl = size * mark - wad(pos.basisUsdWad);
    return `<tr><th>${escapeHtml(market.symbol)}</th>${cell(`pos-size-${market.id}`, `${isLong ? 'long' : 'short'} ${num(Math.abs(size))}`, size)}
      ${cell(`pos-entry-${market.id}`, usd(entry), entry)}${cell(`pos-mark-${market.id}`, usd(mark), mark)}
      ${cell(`pos-notional-${market.id}`, usd(n), n)}${cell(`pos-upnl-${market.id}`, usd(upnl), upnl, upnl < 0 ? 'bad' : '')}
      ${cell(`pos-mmf-${market.id}`, pct(wad(mmfWad)), wad(mmfWad))}
      ${cell(`pos-liqprice-${market.id}`, usd(liqPrice), liqPrice)}
      ${cell(`pos-distance-${market.id}`, move === 0 ? 'liquidatable now' : pct(move), move, move === 0 ? 'bad' : '')}</tr>`;
  }).join('');
  const ratio = mm > 0 ? eq / mm : NaN;
  el.innerHTML = `<table><tr><th>Collateral</th><th>Equity</th><th>Maintenance requirement</th><th>Initial requirement</th>
      <th>Notional</th><th>Equity / maintenance</th><th>Distance to liquidation</th><th>Status</th></tr><tr>
      ${cell('acct-collateral', usd(collateral), collateral)}${cell('acct-equity', usd(eq), eq, eq < mm ? 'bad' : '')}
      ${cell('acct-maintenance', usd(mm), mm)}${cell('acct-initial', usd(im), im)}${cell('acct-notional', usd(notional), notional)}
      ${cell('acct-ratio', Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : '—', ratio)}
      ${cell('acct-distance', nearest === null ? '—' : nearest === 0 ? 'liquidatable now' : `${pct(nearest)} price move`, nearest)}
      ${cell('acct-status', status, status, status === 'healthy' || status === 'no position' ? '' : 'bad')}</tr></table>
    ${a.positions.length ? `<table><tr><th>Market</th><th>Size</th><th>Entry</th><th>Mark</th><th>Notional</th><th>Unrealized PnL</th>
      <th>Maint. fraction</th><th>Liquidation price</th><th>Distance</th></tr>${rows}</table>
      <p class="muted">Distance: the move of that market's price, the others held, that brings equity to the maintenance
      requirement (funding and maintenance ramps ignored).</p>` : ''}
    ${renderOrders(a)}`;
}

/** The account's pending orders and its latest settlements (an order is committed, then settled by a
 * keeper at the first price round published at least the engine's minimum delay after the commit). */
function renderOrders(a) {
  const date = (sec) => new Date(Number(sec) * 1000).toISOString().slice(11, 19);
  const pending = (a.orders || []).map(({ market, o }) => {
    const what = o.closeAll ? 'close all' : `${o.sizeDeltaWad > 0n ? 'buy' : 'sell'} ${num(Math.abs(wad(o.sizeDeltaWad)))}`;
    return `<tr data-testid="order-row" data-market="${market.id}"><th>${escapeHtml(market.symbol)}</th>
      ${cell(`order-what-${market.id}`, what, wad(o.sizeDeltaWad))}
      ${cell(`order-committed-${market.id}`, `${date(o.commitSec)} UTC`, Number(o.commitSec))}
      ${cell(`order-fee-${market.id}`, usd(tokens(o.feeTokens, state.tokenScale)), tokens(o.feeTokens, state.tokenScale))}
      ${cell(`order-status-${market.id}`, 'pending: waits for the next price round', 'pending')}</tr>`;
  }).join('');
  const symbol = (id) => state.markets.find((m) => m.id === Number(id))?.symbol ?? `#${id}`;
  const settled = state.settlements.filter((x) => x.account === state.account).map((x) =>
    `<tr data-testid="settled-row" data-market="${x.marketId}" data-block="${x.block}" data-round="${x.priceRoundId}"
        data-price="${wad(x.fillPriceWad)}"><td>${x.block}</td><td>${escapeHtml(symbol(x.marketId))}</td>
      <td>${x.priceRoundId}</td><td>${usd(wad(x.fillPriceWad))}</td><td>${usd(tokens(x.settlementFeeTokens, state.tokenScale))}</td>
      <td title="${x.settler}">${short(x.settler)}</td></tr>`).join('');
  return `<h3>Orders</h3>${pending ? `<table><tr><th>Market</th><th>Order</th><th>Committed</th><th>Settlement fee</th>
      <th>Status</th></tr>${pending}</table>` : '<p class="muted" data-testid="no-pending-order">No pending order.</p>'}
    ${settled ? `<table><tr><th>Block</th><th>Market</th><th>Price round</th><th>Fill price</th><th>Fee paid</th>
      <th>Settled by</th></tr>${settled}</table>` : ''}`;
}

// ---------------------------------------------------------------- loop

async function refresh(blockNumber) {
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  try {
    const [data] = await Promise.all([readAll(blockNumber), scanLiquidations(blockNumber)]);
    if (data.account) data.account.prices = Object.fromEntries(data.markets.map((m) => [m.id, m.price]));
    state.block = blockNumber;
    renderProtocol(data.protocol);
    renderMarkets(data.markets);
    renderLiquidations();
    renderAccount(data.account);
    const b = $('block');
    b.textContent = String(blockNumber);
    b.dataset.value = String(blockNumber);
    setStatus(`live · updated ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    setStatus(`error: ${err.shortMessage || err.message}`, 'error');
  } finally {
    state.busy = false;
    if (state.again) { state.again = false; refresh(await client.getBlockNumber()); }
  }
}

function watchAccountForm() {
  $('account-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = $('account-input').value.trim();
    if (v && !isAddress(v)) { setStatus(`not an address: ${v}`, 'error'); return; }
    state.account = v ? getAddress(v) : null;
    const u = new URL(location.href);
    if (state.account) u.searchParams.set('account', state.account); else u.searchParams.delete('account');
    history.replaceState(null, '', u);
    renderAccount(null);
    if (state.block !== null) refresh(state.block);
  });
}

async function main() {
  $('rpc').textContent = RPC;
  watchAccountForm();
  try {
    if (!(await init())) return;
  } catch (err) {
    setStatus(`cannot connect to ${RPC}: ${err.shortMessage || err.message}`, 'error');
    return;
  }
  client.watchBlockNumber({
    emitOnBegin: true, emitMissed: false, poll: true, pollingInterval: POLL_MS,
    onBlockNumber: (n) => refresh(n),
    onError: (err) => setStatus(`error: ${err.shortMessage || err.message}`, 'error'),
  });
}

main();
