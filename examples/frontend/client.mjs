// Example front-end client of Ballast, written from docs/integrators.md and @ballast/abi alone.
//
//   BALLAST_RPC_URL=http://127.0.0.1:8545 BALLAST_DEPLOYMENT=out/deployments/31337.json node client.mjs
//
// On a local chain (the embedded Anvil: 10 unlocked dev accounts) it plays three roles:
// account 0 is the deployer, a transmitter of every feed, and acts as the keeper (publishes a
// price round, settles orders); account 1 trades; account 2 liquidates. Steps: deposit, size an
// order with MarginLens.maxOrderSize, preview it, commit it, settle it at the next price round,
// read the liquidation price, decode reverts with the package's ABIs, crash the price to the
// liquidation price, flag and liquidate, and reconcile the trader's collateral change from the
// events alone. The last line printed is a JSON summary; the exit code is 1 if a check fails.
import { readFileSync } from "node:fs";
import {
  createPublicClient,
  createTestClient,
  createWalletClient,
  decodeErrorResult,
  encodeFunctionData,
  http,
  keccak256,
  parseEventLogs,
  toHex,
} from "viem";
import { foundry } from "viem/chains";
import {
  deployments,
  marginEngineAbi,
  marginLensAbi,
  mockAggregatorAbi,
  mockUSDAbi,
  MULTICALL3,
} from "@ballast/abi";
import { encodeFeedAnswer, wadToFeedAnswer, FEED_DECIMALS } from "@ballast/abi/feeds";

const url = process.env.BALLAST_RPC_URL ?? "http://127.0.0.1:8545";
const transport = http(url);
const chain = { ...foundry, contracts: { multicall3: { address: MULTICALL3 } } };
const pub = createPublicClient({ chain, transport });
const test = createTestClient({ chain, transport, mode: "anvil" });

const chainId = await pub.getChainId();
// A deployment: the package's (recorded chains, or a local one added with --include-local), or a
// deployments file given by path.
const dep = process.env.BALLAST_DEPLOYMENT
  ? JSON.parse(readFileSync(process.env.BALLAST_DEPLOYMENT, "utf8"))
  : deployments[String(chainId)];
if (!dep) throw new Error(`no deployment for chain ${chainId}: set BALLAST_DEPLOYMENT`);
const MARKET = BigInt(dep.markets?.[0]?.id ?? 0);
const priceFeed = dep.feeds[String(MARKET)].price;

const [keeper, trader, liquidator] = await pub.request({ method: "eth_accounts" });
const wallet = (account) => createWalletClient({ account, chain, transport });
const checks = [];
function check(name, ok, detail = "") {
  checks.push({ name, ok: Boolean(ok), detail: String(detail) });
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${detail ? ": " + detail : ""}`);
}
const fmt = (wad, d = 2) => (Number(wad) / 1e18).toFixed(d);

async function send(account, address, abi, functionName, args) {
  const { request } = await pub.simulateContract({ account, address, abi, functionName, args });
  const hash = await wallet(account).writeContract(request);
  const receipt = await pub.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success") throw new Error(`${functionName} reverted in ${hash}`);
  return receipt;
}
const engine = (fn, args = []) => pub.readContract({ address: dep.engine, abi: marginEngineAbi, functionName: fn, args });
const lens = (fn, args) => pub.readContract({ address: dep.lens, abi: marginLensAbi, functionName: fn, args });

/** The keeper's price round: re-publish `answer` (feed decimals) on the market's price feed. */
async function publish(answer) {
  await send(keeper, priceFeed, mockAggregatorAbi, "transmit", [answer]);
  const [roundId] = await pub.readContract({ address: priceFeed, abi: mockAggregatorAbi, functionName: "latestRoundData" });
  return roundId;
}
async function latestAnswer() {
  const [, answer] = await pub.readContract({ address: priceFeed, abi: mockAggregatorAbi, functionName: "latestRoundData" });
  return answer;
}
/** Waits the engine's minimum delay (on Anvil: moves time forward instead of sleeping). */
async function waitMinDelay() {
  const delay = await engine("orderMinDelaySec");
  await test.increaseTime({ seconds: Number(delay) });
  await test.mine({ blocks: 1 });
}

/** The revert data of a call, decoded with the package's engine ABI alone. */
async function revertName(account, to, data) {
  try {
    await pub.call({ account, to, data });
    return null;
  } catch (e) {
    let err = e;
    while (err && !err.data) err = err.cause;
    const raw = typeof err?.data === "string" ? err.data : err?.data?.data;
    const decoded = decodeErrorResult({ abi: marginEngineAbi, data: raw });
    return { selector: raw.slice(0, 10), name: decoded.errorName, args: decoded.args.map(String) };
  }
}

// ---------------------------------------------------------------- 1. collateral
const deposit = 10_000n * 10n ** 6n; // mock USD has 6 decimals
await send(trader, dep.usd, mockUSDAbi, "mint", [trader, deposit]);
await send(trader, dep.usd, mockUSDAbi, "approve", [dep.engine, deposit]);
await send(trader, dep.engine, marginEngineAbi, "deposit", [deposit]);
// Several reads in one call through Multicall3 at its canonical address.
const [coll, fee, delay] = await pub.multicall({
  allowFailure: false,
  contracts: [
    { address: dep.engine, abi: marginEngineAbi, functionName: "collateralOf", args: [trader] },
    { address: dep.engine, abi: marginEngineAbi, functionName: "settlementFeeTokens" },
    { address: dep.engine, abi: marginEngineAbi, functionName: "orderMinDelaySec" },
  ],
});
check("multicall3 reads collateral", coll === deposit, `${coll} tokens, settlement fee ${fee}, min delay ${delay}s`);

// ---------------------------------------------------------------- 2. size, preview, commit
const maxSize = await lens("maxOrderSize", [trader, MARKET, true]);
check("maxOrderSize > 0", maxSize > 0n, `${fmt(maxSize, 4)} BTC`);
const size = (maxSize * 9n) / 10n; // 90%: the price and funding may move before settlement
const preview = await lens("previewOrder", [trader, MARKET, size, 0n, 0n]);
check("preview passes", preview.ok, `fill ${fmt(preview.fillPriceWad)} fee ${preview.feeTokens} impact ${preview.impactTokens} imf ${fmt(preview.imfWad, 4)}`);
const tooBig = await lens("previewOrder", [trader, MARKET, maxSize + 1n, 0n, 0n]);
/** The error of the package's ABI with this selector (the lens returns the selector only). */
const errorBySelector = (sel) => marginEngineAbi.find((f) => f.type === "error"
  && keccak256(toHex(`${f.name}(${f.inputs.map((i) => i.type).join(",")})`)).slice(0, 10) === sel)?.name;
const tooBigErr = tooBig.ok ? "" : errorBySelector(tooBig.errorSelector);
check("max + 1 wei fails in preview", !tooBig.ok && tooBigErr, `${tooBig.errorSelector} ${tooBigErr}`);
// Bound the effective price (fill with fee and impact) at 1% above the preview's.
const acceptable = (BigInt(preview.effectivePriceWad) * 101n) / 100n;
const commit = await send(trader, dep.engine, marginEngineAbi, "commitOrder", [MARKET, size, acceptable]);
const [committed] = parseEventLogs({ abi: marginEngineAbi, logs: commit.logs, eventName: "OrderCommitted" });
check("order committed", committed, `settle from ${committed.args.settleFromSec}`);

// ---------------------------------------------------------------- 3. settlement (as the keeper)
await waitMinDelay();
const round = await publish(await latestAnswer());
const settled = await send(keeper, dep.engine, marginEngineAbi, "settleOrder", [trader, MARKET, round]);
const [modified] = parseEventLogs({ abi: marginEngineAbi, logs: settled.logs, eventName: "PositionModified" });
const position = await engine("position", [trader, MARKET]);
check("order settled", position.sizeWad === size, `size ${fmt(position.sizeWad, 4)} at ${fmt(modified.args.priceWad)}, fee ${modified.args.feeTokens}, impact ${modified.args.impactTokens}`);

// ---------------------------------------------------------------- 4. liquidation price
const [liqPrice, exists] = await lens("liquidationPrice", [trader, MARKET]);
check("liquidation price below the entry", exists && liqPrice < modified.args.priceWad, `${fmt(liqPrice)} USD`);

// ---------------------------------------------------------------- 5. decode reverts (package only)
const stranger = liquidator;
const noAllowance = await revertName(stranger, dep.engine,
  encodeFunctionData({ abi: marginEngineAbi, functionName: "deposit", args: [1n] }));
check("token error decoded", noAllowance?.name === "ERC20InsufficientAllowance", `${noAllowance?.selector} ${noAllowance?.name}`);
const unlisted = await revertName(trader, dep.engine,
  encodeFunctionData({ abi: marginEngineAbi, functionName: "commitOrder", args: [7n, 10n ** 18n, 0n] }));
check("engine error decoded", unlisted?.name === "MarketNotListed", `${unlisted?.selector} ${unlisted?.name}(${unlisted?.args})`);
const healthy = await revertName(liquidator, dep.engine,
  encodeFunctionData({ abi: marginEngineAbi, functionName: "flagLiquidation", args: [trader] }));
check("healthy account cannot be flagged", healthy?.name === "AccountHealthy", `${healthy?.selector} ${healthy?.name}`);

// ---------------------------------------------------------------- 6. crash, flag, liquidate
// Feed answers are in feed decimals (8), not WAD: round the liquidation price down to a feed unit.
const crash = wadToFeedAnswer(liqPrice, FEED_DECIMALS, false);
check("feed units", crash === encodeFeedAnswer(fmt(crash * 10n ** 10n, 8)), `answer ${crash}`);
await publish(crash);
check("liquidatable at the liquidation price", await engine("isLiquidatable", [trader]));
await send(liquidator, dep.engine, marginEngineAbi, "flagLiquidation", [trader]);
await waitMinDelay();
await publish(crash); // the first round after flag + min delay
const market = await engine("liquidationMarket", [trader]);
const liq = await send(liquidator, dep.engine, marginEngineAbi, "liquidate", [trader, market]);

// Reconcile the trader's collateral change from the events alone.
const logs = parseEventLogs({ abi: marginEngineAbi, logs: liq.logs }).filter((l) => l.args.account?.toLowerCase() === trader.toLowerCase());
let fromEvents = 0n;
const seen = [];
for (const l of logs) {
  if (l.eventName === "FundingSettled") fromEvents -= l.args.fundingTokens;
  if (l.eventName === "Liquidated") fromEvents -= l.args.penaltyTokens;
  if (l.eventName === "LiquidationSettled") fromEvents += l.args.realizedPnlTokens - l.args.impactTokens;
  if (l.eventName === "BadDebt") fromEvents += l.args.amountTokens; // collateral reset to 0
  seen.push(l.eventName);
}
const before = await pub.readContract({ address: dep.engine, abi: marginEngineAbi, functionName: "collateralOf", args: [trader], blockNumber: liq.blockNumber - 1n });
const after = await pub.readContract({ address: dep.engine, abi: marginEngineAbi, functionName: "collateralOf", args: [trader], blockNumber: liq.blockNumber });
check("liquidation reconciled from events", after - before === fromEvents, `${before} -> ${after}: change ${after - before}, events ${fromEvents} (${seen.join(", ")})`);

const ok = checks.every((c) => c.ok);
console.log(JSON.stringify({
  ok,
  chainId,
  maxSize: String(maxSize),
  size: String(size),
  liquidationPrice: String(liqPrice),
  decoded: [noAllowance?.name, unlisted?.name, healthy?.name],
  collateralChange: String(after - before),
  fromEvents: String(fromEvents),
  checks,
}));
process.exit(ok ? 0 : 1);
