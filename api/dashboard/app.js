// keymarket dashboard: reads the JSON API of the same origin and refreshes every 2 seconds.
// Amounts arrive as {eth, wei} strings; they are formatted with BigInt (exact) and only the
// charts convert them to floating point.
"use strict";

const REFRESH_MS = 2000;
const state = {
  market: null, charts: {}, timer: null, page: null, holdersCursor: null, holderRows: [],
  // The overview's charts: the window they show ({from, to} or null for all time) and its label.
  chartWindow: null,
  // The trader page's holdings once "more" was pressed (then the refresh leaves them).
  traderHoldings: null,
};
const $ = (id) => document.getElementById(id);

async function api(path, params = {}) {
  const q = new URLSearchParams();
  if (state.market !== null) q.set("market", state.market);
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, v);
  const res = await fetch(`${path}?${q}`);
  const body = await res.json();
  if (!res.ok) throw new Error(`${path}: ${body.error ? body.error.message : res.status}`);
  return body;
}

// An analyst panel's request: a failure (a 429, a 404 for a subject without trades) leaves that
// panel as it was and is reported on the console, instead of blanking the whole page.
function panel(promise, what) {
  return promise.catch((e) => {
    console.warn(`${what}: ${e.message}`);
    return null;
  });
}

// Every day of a daily series (within `range`, {from, to} dates, when given), following the
// API's cursor (pages of at most a year).
async function allDays(path, range = {}) {
  const days = [];
  let cursor = null;
  do {
    const page = await api(path, { ...range, cursor });
    days.push(...page.days);
    cursor = page.nextCursor;
  } while (cursor);
  return days;
}

// Exact ETH formatting of a wei string, rounded to `digits` decimals, with thousands separators.
function formatEth(amount, digits = 4) {
  let wei = BigInt(amount.wei);
  const neg = wei < 0n;
  if (neg) wei = -wei;
  const unit = 10n ** BigInt(18 - digits);
  const scaled = (wei + unit / 2n) / unit;
  const whole = scaled / 10n ** BigInt(digits);
  const frac = (scaled % 10n ** BigInt(digits)).toString().padStart(digits, "0");
  return `${neg ? "-" : ""}${whole.toLocaleString("en-US")}.${frac}`;
}

const short = (a) => `${a.slice(0, 6)}…${a.slice(-4)}`;

// An address typed or linked, checked as wallets check it (and as the API does): "0x" and 40 hex
// digits, all lowercase or all uppercase as it is, mixed case only with a valid EIP-55 checksum
// (ethers.getAddress computes it). → { address } (lowercase, as the API stores it) or { error }
// in words, naming the checksummed form when the checksum is wrong.
function checkAddress(text) {
  const s = text.trim();
  if (!/^0x[0-9a-fA-F]{40}$/.test(s)) return { error: `malformed address ${JSON.stringify(s)}: expected 0x and 40 hex digits` };
  const hex = s.slice(2);
  if (/[a-f]/.test(hex) && /[A-F]/.test(hex)) {
    if (typeof ethers === "undefined") return { error: `cannot check the EIP-55 checksum of ${s} here: type it in lowercase` };
    const checksummed = ethers.getAddress(s.toLowerCase());
    if (checksummed !== s) {
      return { error: `address ${s} has a wrong EIP-55 checksum (a mistyped character?); the checksummed form of these digits is ${checksummed}, but check the address itself before using it`, checksummed };
    }
  }
  return { address: s.toLowerCase() };
}

// The header's refusal of an address (the subject box or a #/subject/ link); null hides it.
function showAddressError(message) {
  $("address-error").textContent = message || "";
  $("address-error").hidden = !message;
}
const dayToSecs = (d) => Date.parse(`${d}T00:00:00Z`) / 1000;

// A block time (unix seconds) in UTC, to the minute: "2026-12-06 14:03 UTC".
function utcTime(secs) {
  const iso = new Date(secs * 1000).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

function timeCell(secs) {
  const span = document.createElement("span");
  span.className = "time";
  span.dataset.time = String(secs);
  span.textContent = utcTime(secs);
  return span;
}

function setStat(id, value, text) {
  const el = $(id);
  el.dataset.value = String(value);
  el.textContent = text;
}

function setEthStat(id, amount) {
  setStat(id, amount.wei, `${formatEth(amount)} ETH`);
}

// Transactions the connected wallet sent from this page (trade.js): their rows are marked.
const myTxs = new Set();

// Fills a table's body; `txs[i]`, when given, is row i's transaction hash (`data-tx`).
function fillTable(id, rows, txs) {
  const body = $(id).tBodies[0];
  body.replaceChildren(...rows.map((cells, i) => {
    const tr = document.createElement("tr");
    if (txs) {
      tr.dataset.tx = txs[i];
      if (myTxs.has(txs[i])) tr.className = "mine";
    }
    for (const c of cells) {
      const td = document.createElement("td");
      if (c instanceof Node) td.append(c); else td.textContent = c;
      tr.append(td);
    }
    return tr;
  }));
}

function link(hash, text) {
  const a = document.createElement("a");
  a.href = hash;
  a.textContent = text;
  return a;
}

// A trader's address, linked to its page.
const traderLink = (a) => link(`#/trader/${a}`, short(a));
const subjectLink = (a) => link(`#/subject/${a}`, short(a));

function side(s) {
  const span = document.createElement("span");
  span.className = s;
  span.textContent = s;
  return span;
}

// A daily chart's x range: the data's days with half a day of padding, so the first and last
// daily bars are whole. (uPlot widens a single time point to 1,000 days; one day of data must
// still show one day.)
function dayRange(u, min, max) {
  const x = u.data && u.data[0];
  if (x && x.length === 1) return [x[0] - 43200, x[0] + 43200];
  return [min - 43200, max + 43200];
}

// The overview's charts span the selected window (half a day of padding each side), not just
// its days with trades; all time: the data's days.
function windowRange(u, min, max) {
  const w = state.chartWindow;
  if (w) return [dayToSecs(w.from) - 43200, dayToSecs(w.to) + 43200];
  return dayRange(u, min, max);
}

// uPlot draws at an explicit size: a chart takes its box's width, and follows it when the window
// (or the layout) changes size.
const CHART_HEIGHT = 220;
const chartWidth = (el) => Math.floor(el.clientWidth);
const observers = {};

function fitChart(id) {
  const u = state.charts[id];
  if (!u) return;
  const w = chartWidth($(id));
  if (w > 0 && w !== u.width) u.setSize({ width: w, height: CHART_HEIGHT });
}

function fitCharts() {
  for (const id of Object.keys(state.charts)) fitChart(id);
}

function dropChart(id) {
  if (observers[id]) {
    observers[id].disconnect();
    delete observers[id];
  }
  if (state.charts[id]) {
    state.charts[id].destroy();
    delete state.charts[id];
  }
}

function chart(id, series, data, extra = {}) {
  const el = $(id);
  if (state.charts[id]) {
    state.charts[id].setData(data);
    return;
  }
  const opts = {
    width: chartWidth(el) || 320,
    height: CHART_HEIGHT,
    series: [{}, ...series],
    axes: [{}, { size: 70 }],
    scales: { x: { time: true, range: dayRange } },
    legend: { live: false },
    ...extra,
  };
  state.charts[id] = new uPlot(opts, data, el);
  if (typeof ResizeObserver === "function") {
    // (Resized on the next frame: resizing inside the observer's callback can loop.)
    observers[id] = new ResizeObserver(() => requestAnimationFrame(() => fitChart(id)));
    observers[id].observe(el);
  }
}

const bars = () => uPlot.paths.bars({ size: [0.7, 60] });

// The overview: the cards, charts, retention cohorts and net-flow leaders follow the window
// selector (cohorts.js); the top tables, the downloads and the latest trades do not (marked
// "all-time" / "latest" on the page). The overview is read first: its from/to (the window's days,
// ending at the last day with trades) are passed to the series.
async function refreshOverview() {
  const asked = state.overviewWindow || "";
  const ov = await api("/v1/overview", overviewWindow()); // cohorts.js: the window selector
  // The window changed while this was in flight: the next refresh draws the new one.
  if ((state.overviewWindow || "") !== asked) return;
  const range = ov.from && ov.to ? { from: ov.from, to: ov.to } : {};
  const [days, subjects, traders, trades, referrers, conc, , prices] = await Promise.all([
    allDays("/v1/daily", range),
    api("/v1/subjects/top", { by: "volume", limit: 10 }),
    api("/v1/traders/top", { by: "volume", limit: 10 }),
    api("/v1/trades", { limit: 15 }),
    api("/v1/referrers/top", { limit: 10 }),
    panel(api("/v1/concentration", range), "concentration"),
    panel(refreshCohorts(range), "cohorts"), // cohorts.js: retention cohorts, net-flow leaders
    panel(api("/v1/price-index", { top: 10, ...range }), "price index"),
  ]);
  if ((state.overviewWindow || "") !== asked) return;
  showOverviewWindow(ov);
  setEthStat("stat-protocol-revenue", ov.protocolRevenue);
  $("stat-protocol-detail").textContent =
    `charged ${formatEth(ov.grossProtocolFees)} − referrals ${formatEth(ov.referralPayouts)} ETH`;
  setEthStat("stat-subject-revenue", ov.subjectRevenue);
  setEthStat("stat-volume", ov.volume);
  setEthStat("stat-tvl", ov.netVolume);
  setStat("stat-trades", ov.trades, ov.trades.toLocaleString("en-US"));
  setStat("stat-traders", ov.traders, ov.traders.toLocaleString("en-US"));
  setStat("stat-subjects", ov.subjects, ov.subjects.toLocaleString("en-US"));

  // Which days the charts show: on each chart's caption, and (for tests) on the page.
  state.chartWindow = range.from ? range : null;
  const label = `window: ${range.from ? `${range.from} – ${range.to}` : "all time"}`;
  for (const el of document.querySelectorAll("#overview-page .window-scope")) el.textContent = label;

  const x = days.map((d) => dayToSecs(d.date));
  let cum = 0;
  const rev = days.map((d) => Number(d.protocolRevenue.eth));
  const cumRev = rev.map((v) => (cum += v));
  const win = { x: { time: true, range: windowRange } };
  chart("chart-revenue", [
    { label: "daily", stroke: "#2f6fed", fill: "#2f6fed55", paths: bars(), scale: "y" },
    { label: "cumulative", stroke: "#c2372b", width: 2, scale: "cum" },
  ], [x, rev, cumRev], { scales: win, axes: [{}, { size: 60, scale: "y" }, { side: 1, size: 60, scale: "cum", grid: { show: false } }] });
  chart("chart-volume", [
    { label: "buys", stroke: "#118a4e", width: 2 },
    { label: "sells", stroke: "#c2372b", width: 2 },
  ], [x, days.map((d) => Number(d.buyVolume.eth)), days.map((d) => Number(d.sellVolume.eth))], { scales: win });
  chart("chart-trades", [{ label: "trades", stroke: "#2f6fed", fill: "#2f6fed55", paths: bars() }],
    [x, days.map((d) => d.trades)], { scales: win });
  chart("chart-traders", [
    { label: "active", stroke: "#2f6fed", width: 2 },
    { label: "new", stroke: "#e08a00", width: 2 },
  ], [x, days.map((d) => d.activeTraders), days.map((d) => d.newTraders)], { scales: win });
  // Shares are exact decimal strings (null on a day without volume: a gap).
  const share = (v) => (v === null ? null : Number(v));
  if (conc) chart("chart-concentration", [
    { label: "top-10 share", stroke: "#2f6fed", width: 2 },
    { label: "HHI", stroke: "#c2372b", width: 2 },
  ], [conc.days.map((d) => dayToSecs(d.date)), conc.days.map((d) => share(d.top10Share)), conc.days.map((d) => share(d.hhi))],
  { scales: { ...win, y: { range: [0, 1] } } });
  if (prices) chart("chart-price-index", [
    { label: "median", stroke: "#2f6fed", width: 2 },
    { label: "mean", stroke: "#e08a00", width: 2 },
  ], [prices.days.map((d) => dayToSecs(d.date)), prices.days.map((d) => Number(d.median.eth)), prices.days.map((d) => Number(d.mean.eth))],
  { scales: win });
  $("overview-page").dataset.chartsWindow = $("overview-page").dataset.window;

  fillTable("top-subjects", subjects.subjects.map((s) => [
    subjectLink(s.subject), formatEth(s.volume), formatEth(s.feesEarned), s.holders, s.supply,
  ]));
  fillTable("top-traders", traders.traders.map((t) => [
    traderLink(t.trader), formatEth(t.volume), formatEth(t.feesPaid), formatEth(t.realisedPnl), t.trades,
  ]));
  fillTable("top-referrers", referrers.referrers.map((r) => [
    traderLink(r.address), formatEth(r.amount), r.referrals,
  ]));
  fillTable("recent-trades", trades.trades.map((t) => [
    timeCell(t.time), t.block, side(t.side), traderLink(t.trader), subjectLink(t.subject), t.shares, formatEth(t.ethAmount),
  ]), trades.trades.map((t) => t.txHash));
}

async function refreshSubject(address) {
  const [s, trades, days, holders] = await Promise.all([
    api(`/v1/subjects/${address}`),
    api("/v1/trades", { subject: address, limit: 100 }),
    allDays(`/v1/subjects/${address}/daily`),
    panel(api(`/v1/subjects/${address}/holders/daily`), "holders over time"),
  ]);
  $("subject-address").textContent = address;
  setStat("subject-supply", s.subject.supply, s.subject.supply.toLocaleString("en-US"));
  setStat("subject-holders", s.subject.holders, s.subject.holders.toLocaleString("en-US"));
  setEthStat("subject-volume", s.subject.volume);
  setEthStat("subject-fees", s.subject.feesEarned);
  for (const [id, price] of [["subject-buy-price", s.subject.buyPrice], ["subject-sell-price", s.subject.sellPrice]]) {
    if (price) setEthStat(id, price); else setStat(id, "", "–");
  }
  chart("chart-subject-daily", [
    { label: "volume", stroke: "#2f6fed", fill: "#2f6fed55", paths: bars(), scale: "y" },
    { label: "fees earned", stroke: "#e08a00", width: 2, scale: "fees" },
  ], [days.map((d) => dayToSecs(d.date)),
    days.map((d) => Number(d.buyVolume.eth) + Number(d.sellVolume.eth)),
    days.map((d) => Number(d.feesEarned.eth))],
  { axes: [{}, { size: 60, scale: "y" }, { side: 1, size: 60, scale: "fees", grid: { show: false } }] });
  // Holders and supply are different quantities (addresses, keys): two charts, each with its own
  // labelled axis, colour and a step line (both change only at trades).
  if (holders) {
    const hx = holders.days.map((d) => dayToSecs(d.date));
    const steps = uPlot.paths.stepped({ align: 1 });
    const countAxis = (label) => [{}, { size: 60, label, labelSize: 18 }];
    const whole = (u, min, max) => [0, Math.max(1, Math.ceil(max * 1.1))];
    chart("chart-holders", [{ label: "holders (addresses)", stroke: "#2f6fed", fill: "#2f6fed22", width: 2, paths: steps }],
      [hx, holders.days.map((d) => d.holders)],
      { axes: countAxis("addresses"), scales: { x: { time: true, range: dayRange }, y: { range: whole } } });
    chart("chart-supply", [{ label: "supply (keys)", stroke: "#118a4e", fill: "#118a4e22", width: 2, dash: [6, 3], paths: steps }],
      [hx, holders.days.map((d) => d.supply)],
      { axes: countAxis("keys"), scales: { x: { time: true, range: dayRange }, y: { range: whole } } });
  }
  // Price per key at each trade, ordered by supply (uPlot needs ascending x).
  const points = trades.trades
    .filter((t) => t.shares > 0)
    .map((t) => [t.side === "buy" ? t.supply - t.shares / 2 : t.supply + t.shares / 2, Number(t.ethAmount.eth) / t.shares])
    .sort((a, b) => a[0] - b[0]);
  chart("chart-price", [{ label: "ETH per key", stroke: "#2f6fed", width: 2, points: { show: true, size: 5 } }],
    [points.map((p) => p[0]), points.map((p) => p[1])], { scales: { x: { time: false } } });
  const latest = trades.trades.slice(0, 20);
  fillTable("subject-trades", latest.map((t) => [
    timeCell(t.time), t.block, side(t.side), traderLink(t.trader), t.shares, formatEth(t.ethAmount), t.supply,
  ]), latest.map((t) => t.txHash));
  if (typeof noteIndexedTrades === "function") noteIndexedTrades();
  if (state.holdersCursor === null) await loadHolders(address, false);
}

async function loadHolders(address, append) {
  const page = await api(`/v1/subjects/${address}/holders`, { limit: 20, cursor: append ? state.holdersCursor : null });
  state.holderRows = (append ? state.holderRows : []).concat(page.holders);
  fillTable("holders", state.holderRows.map((h) => [traderLink(h.trader), h.balance]));
  state.holdersCursor = append || page.nextCursor ? page.nextCursor : null;
  $("more-holders").hidden = !page.nextCursor;
}

// The trader page: its totals, holdings (with their cost) and latest trades.
const TRADER_TRADES = 50;

async function refreshTrader(address) {
  let one;
  try {
    one = await api(`/v1/traders/${address}`);
  } catch (e) {
    // An address without trades (e.g. a referrer that never traded): said on the page.
    $("trader-address").textContent = address;
    $("trader-missing").textContent = e.message;
    $("trader-missing").hidden = false;
    $("trader-body").hidden = true;
    return;
  }
  $("trader-missing").hidden = true;
  $("trader-body").hidden = false;
  const trades = await api("/v1/trades", { trader: address, limit: TRADER_TRADES });
  const t = one.trader;
  $("trader-address").textContent = address;
  setStat("trader-trades-count", t.trades, t.trades.toLocaleString("en-US"));
  setEthStat("trader-volume", t.volume);
  setEthStat("trader-fees", t.feesPaid);
  setEthStat("trader-pnl", t.realisedPnl);
  $("trader-pnl").className = `stat ${t.realisedPnl.wei.startsWith("-") ? "sell" : "buy"}`;
  setStat("trader-first", t.firstTradeTime, utcTime(t.firstTradeTime));
  if (!state.traderHoldings) {
    state.traderHoldings = { rows: one.holdings, cursor: one.holdingsNextCursor, extended: false };
  } else if (!state.traderHoldings.extended) {
    state.traderHoldings.rows = one.holdings;
    state.traderHoldings.cursor = one.holdingsNextCursor;
  }
  showTraderHoldings();
  fillTable("trader-trades", trades.trades.map((r) => [
    timeCell(r.time), r.block, side(r.side), subjectLink(r.subject), r.shares, formatEth(r.ethAmount),
    formatEth({ wei: String(BigInt(r.protocolFee.wei) + BigInt(r.subjectFee.wei)) }),
  ]), trades.trades.map((r) => r.txHash));
  $("trader-trades-scope").textContent = trades.nextCursor ? `latest ${trades.trades.length}` : "";
}

function showTraderHoldings() {
  const h = state.traderHoldings;
  fillTable("trader-holdings", h.rows.map((r) => [subjectLink(r.subject), r.balance, formatEth(r.costBasis)]));
  const keys = h.rows.reduce((n, r) => n + r.balance, 0);
  const cost = h.rows.reduce((n, r) => n + BigInt(r.costBasis.wei), 0n);
  const partial = h.cursor ? " so far (more holdings below)" : "";
  setStat("trader-keys", keys, keys.toLocaleString("en-US"));
  $("trader-keys-detail").textContent = `of ${h.rows.length} subject${h.rows.length === 1 ? "" : "s"}${partial}`;
  setEthStat("trader-cost", { wei: String(cost) });
  $("more-trader-holdings").hidden = !h.cursor;
}

async function moreTraderHoldings() {
  const h = state.traderHoldings;
  const address = state.page.slice("trader:".length);
  if (!h || !h.cursor) return;
  const page = await api(`/v1/traders/${address}/holdings`, { cursor: h.cursor, limit: 100 });
  h.rows = h.rows.concat(page.holdings);
  h.cursor = page.nextCursor;
  h.extended = true;
  showTraderHoldings();
}

// One refresh at a time: a refresh asked for while one runs (the timer, a click) runs after it.
let refreshing = null;
let refreshAgain = false;
async function refresh() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      refreshAgain = false;
      await refreshOnce();
    } while (refreshAgain);
  })();
  try {
    await refreshing;
  } finally {
    refreshing = null;
  }
}

async function refreshOnce() {
  const page = state.page;
  try {
    const health = await api("/healthz");
    if (page === "overview") await refreshOverview();
    else if (page.startsWith("trader:")) await refreshTrader(page.slice("trader:".length));
    else await refreshSubject(page.slice("subject:".length));
    // The page was left meanwhile: its refresh (already asked for) says when it is ready.
    if (state.page !== page) return;
    const m = health.markets.find((m) => m.id === state.market) || health.markets[0];
    const position = m ? `indexed to block ${m.indexedBlock} (${m.state})` : "no market indexed yet";
    $("status").textContent = `${position} · updated ${new Date().toLocaleTimeString("en-GB")}`;
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    document.body.dataset.ready = "1";
  } catch (e) {
    $("status").textContent = `error: ${e.message}`;
    console.error(e);
  }
}

function route() {
  const m = location.hash.match(/^#\/(subject|trader)\/(0x[0-9a-fA-F]{40})$/);
  // A link with a mistyped (wrong-checksum) address is refused, not followed.
  const checked = m ? checkAddress(m[2]) : {};
  showAddressError(checked.error);
  const kind = checked.address ? m[1] : "overview";
  state.page = kind === "overview" ? "overview" : `${kind}:${checked.address}`;
  state.holdersCursor = null;
  state.holderRows = [];
  state.traderHoldings = null;
  $("overview-page").hidden = kind !== "overview";
  $("subject-page").hidden = kind !== "subject";
  $("trader-page").hidden = kind !== "trader";
  if (kind === "trader") {
    $("trader-address").textContent = "";
    $("trader-missing").hidden = true;
    for (const id of ["trader-holdings", "trader-trades"]) fillTable(id, []);
  }
  for (const id of ["chart-price", "chart-subject-daily", "chart-holders", "chart-supply"]) dropChart(id);
  document.body.dataset.ready = "0";
  refresh();
  // The overview's charts kept their width while hidden.
  requestAnimationFrame(fitCharts);
}

// The download links name the selected market.
function downloadLinks() {
  for (const a of document.querySelectorAll("#downloads a")) {
    const url = new URL(a.getAttribute("href"), location.href);
    if (state.market !== null) url.searchParams.set("market", state.market);
    a.href = url.pathname + url.search;
  }
}

async function main() {
  const { markets } = await api("/v1/markets");
  const select = $("market");
  select.replaceChildren(...markets.map((m) => {
    const o = document.createElement("option");
    o.value = m.id;
    o.textContent = `${m.id}: ${short(m.address)} (chain ${m.chainId})`;
    return o;
  }));
  state.market = markets.length ? markets[0].id : null;
  downloadLinks();
  select.addEventListener("change", () => {
    state.market = Number(select.value);
    downloadLinks();
    for (const id of Object.keys(state.charts)) dropChart(id);
    route();
  });
  $("more-holders").addEventListener("click", () => loadHolders(state.page.slice("subject:".length), true));
  $("more-trader-holdings").addEventListener("click", () => moreTraderHoldings().catch((e) => console.error(e)));
  window.addEventListener("resize", fitCharts);
  // The subject box: an address checked before the page goes there.
  $("subject-go").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const checked = checkAddress($("subject-search").value);
    showAddressError(checked.error);
    if (checked.address) location.hash = `#/subject/${checked.address}`;
  });
  $("subject-search").addEventListener("input", () => showAddressError(null));
  window.addEventListener("hashchange", route);
  route();
  state.timer = setInterval(refresh, REFRESH_MS);
}

// Started once every script of the page has run: the refresh calls functions of cohorts.js,
// trade.js and sql.js, loaded after this file, and /v1/markets can answer before they are
// (a dashboard test saw "overviewWindow is not defined" on a loaded machine).
function start() {
  main().catch((e) => {
    $("status").textContent = `error: ${e.message}`;
    console.error(e);
  });
}
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
