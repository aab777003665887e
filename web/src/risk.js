// Pure helpers of the risk page: unit conversion, formatting, distance to liquidation.
// Units on chain (see interfaces/*.sol): WAD (1e18) for prices, sizes, fractions and USD values;
// collateral in token units (10^decimals).

export const WAD = 10n ** 18n;

/** A WAD bigint as a JS number (display only). */
export function wad(x) {
  if (x === undefined || x === null) return NaN;
  const neg = x < 0n;
  const a = neg ? -x : x;
  const v = Number(a / WAD) + Number(a % WAD) / 1e18;
  return neg ? -v : v;
}

/** Token units as a number, given the token's scale to WAD (10^(18 - decimals)). */
export function tokens(x, tokenScale) {
  return wad(BigInt(x) * BigInt(tokenScale));
}

const usdFmt = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', maximumFractionDigits: 2 });
const numFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 4 });

export function usd(v) {
  return Number.isFinite(v) ? usdFmt.format(v) : '—';
}

export function num(v, digits = 4) {
  if (!Number.isFinite(v)) return '—';
  return digits === 4 ? numFmt.format(v) : v.toLocaleString('en-US', { maximumFractionDigits: digits });
}

export function pct(v, digits = 2) {
  return Number.isFinite(v) ? `${(v * 100).toFixed(digits)}%` : '—';
}

export function lev(v) {
  return Number.isFinite(v) ? `${v.toFixed(1)}x` : '—';
}

export function short(addr) {
  return addr ? `${addr.slice(0, 6)}…${addr.slice(-4)}` : '';
}

/** Maintenance fraction of a position (MarginMath.positionMaintenance). */
export function positionMmf(mmfBaseWad, slipSnapWad, maxMmfWad) {
  const m = mmfBaseWad + slipSnapWad;
  return m < maxMmfWad ? m : maxMmfWad;
}

/**
 * Price move (fraction, signed) of one position's market that brings the account to its
 * maintenance requirement, the other prices held: equity E + s*n*x = M + n*mmf*x, so
 * x = (E - M) / (n * (mmf - s)) with s = +1 long, -1 short and n the position's notional.
 * Funding accrual and ramping maintenance are ignored (a snapshot). Returns null without a position,
 * and 0 when the account is already liquidatable.
 */
export function liquidationMove(equity, maintenance, notional, mmf, isLong) {
  if (!(notional > 0)) return null;
  if (equity < maintenance) return 0;
  const s = isLong ? 1 : -1;
  const denom = notional * (mmf - s);
  if (denom === 0) return null;
  return (equity - maintenance) / denom;
}

export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}
