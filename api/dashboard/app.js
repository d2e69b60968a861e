// keymarket dashboard: reads the JSON API of the same origin and refreshes every 2 seconds.
// Amounts arrive as {eth, wei} strings; they are formatted with BigInt (exact) and only the
// charts convert them to floating point.
"use strict";

const REFRESH_MS = 2000;
const state = { market: null, charts: {}, timer: null, page: null, holdersCursor: null };
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

// Every day of a daily series, following the API's cursor (pages of at most a year).
async function allDays(path) {
  const days = [];
  let cursor = null;
  do {
    const page = await api(path, { cursor });
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

function chart(id, series, data, extra = {}) {
  const el = $(id);
  if (state.charts[id]) {
    state.charts[id].setData(data);
    return;
  }
  const opts = {
    width: Math.max(320, el.clientWidth || 520),
    height: 220,
    series: [{}, ...series],
    axes: [{}, { size: 70 }],
    scales: { x: { time: true, range: dayRange } },
    legend: { live: false },
    ...extra,
  };
  state.charts[id] = new uPlot(opts, data, el);
}

const bars = () => uPlot.paths.bars({ size: [0.7, 60] });

async function refreshOverview() {
  const [ov, days, subjects, traders, trades, referrers, conc, , prices] = await Promise.all([
    api("/v1/overview", overviewWindow()), // cohorts.js: the window selector
    allDays("/v1/daily"),
    api("/v1/subjects/top", { by: "volume", limit: 10 }),
    api("/v1/traders/top", { by: "volume", limit: 10 }),
    api("/v1/trades", { limit: 15 }),
    api("/v1/referrers/top", { limit: 10 }),
    panel(api("/v1/concentration"), "concentration"),
    panel(refreshCohorts(), "cohorts"), // cohorts.js: retention cohorts, net-flow leaders
    panel(api("/v1/price-index", { top: 10 }), "price index"),
  ]);
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

  const x = days.map((d) => dayToSecs(d.date));
  let cum = 0;
  const rev = days.map((d) => Number(d.protocolRevenue.eth));
  const cumRev = rev.map((v) => (cum += v));
  chart("chart-revenue", [
    { label: "daily", stroke: "#2f6fed", fill: "#2f6fed55", paths: bars(), scale: "y" },
    { label: "cumulative", stroke: "#c2372b", width: 2, scale: "cum" },
  ], [x, rev, cumRev], { axes: [{}, { size: 70, scale: "y" }, { side: 1, size: 70, scale: "cum", grid: { show: false } }] });
  chart("chart-volume", [
    { label: "buys", stroke: "#118a4e", width: 2 },
    { label: "sells", stroke: "#c2372b", width: 2 },
  ], [x, days.map((d) => Number(d.buyVolume.eth)), days.map((d) => Number(d.sellVolume.eth))]);
  chart("chart-trades", [{ label: "trades", stroke: "#2f6fed", fill: "#2f6fed55", paths: bars() }],
    [x, days.map((d) => d.trades)]);
  chart("chart-traders", [
    { label: "active", stroke: "#2f6fed", width: 2 },
    { label: "new", stroke: "#e08a00", width: 2 },
  ], [x, days.map((d) => d.activeTraders), days.map((d) => d.newTraders)]);
  // Shares are exact decimal strings (null on a day without volume: a gap).
  const share = (v) => (v === null ? null : Number(v));
  if (conc) chart("chart-concentration", [
    { label: "top-10 share", stroke: "#2f6fed", width: 2 },
    { label: "HHI", stroke: "#c2372b", width: 2 },
  ], [conc.days.map((d) => dayToSecs(d.date)), conc.days.map((d) => share(d.top10Share)), conc.days.map((d) => share(d.hhi))],
  { scales: { x: { time: true, range: dayRange }, y: { range: [0, 1] } } });
  if (prices) chart("chart-price-index", [
    { label: "median", stroke: "#2f6fed", width: 2 },
    { label: "mean", stroke: "#e08a00", width: 2 },
  ], [prices.days.map((d) => dayToSecs(d.date)), prices.days.map((d) => Number(d.median.eth)), prices.days.map((d) => Number(d.mean.eth))]);

  fillTable("top-subjects", subjects.subjects.map((s) => [
    link(`#/subject/${s.subject}`, short(s.subject)), formatEth(s.volume), formatEth(s.feesEarned), s.holders, s.supply,
  ]));
  fillTable("top-traders", traders.traders.map((t) => [
    short(t.trader), formatEth(t.volume), formatEth(t.feesPaid), formatEth(t.realisedPnl), t.trades,
  ]));
  fillTable("top-referrers", referrers.referrers.map((r) => [
    short(r.address), formatEth(r.amount), r.referrals,
  ]));
  fillTable("recent-trades", trades.trades.map((t) => [
    t.block, side(t.side), short(t.trader), link(`#/subject/${t.subject}`, short(t.subject)), t.shares, formatEth(t.ethAmount),
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
  { axes: [{}, { size: 70, scale: "y" }, { side: 1, size: 70, scale: "fees", grid: { show: false } }] });
  if (holders) chart("chart-holders", [
    { label: "holders", stroke: "#2f6fed", width: 2, scale: "y" },
    { label: "supply", stroke: "#118a4e", width: 2, scale: "keys" },
  ], [holders.days.map((d) => dayToSecs(d.date)), holders.days.map((d) => d.holders), holders.days.map((d) => d.supply)],
  { axes: [{}, { size: 70, scale: "y" }, { side: 1, size: 70, scale: "keys", grid: { show: false } }] });
  // Price per key at each trade, ordered by supply (uPlot needs ascending x).
  const points = trades.trades
    .filter((t) => t.shares > 0)
    .map((t) => [t.side === "buy" ? t.supply - t.shares / 2 : t.supply + t.shares / 2, Number(t.ethAmount.eth) / t.shares])
    .sort((a, b) => a[0] - b[0]);
  chart("chart-price", [{ label: "ETH per key", stroke: "#2f6fed", width: 2, points: { show: true, size: 5 } }],
    [points.map((p) => p[0]), points.map((p) => p[1])], { scales: { x: { time: false } } });
  const latest = trades.trades.slice(0, 20);
  fillTable("subject-trades", latest.map((t) => [
    t.block, side(t.side), short(t.trader), t.shares, formatEth(t.ethAmount), t.supply,
  ]), latest.map((t) => t.txHash));
  if (typeof noteIndexedTrades === "function") noteIndexedTrades();
  if (state.holdersCursor === null) await loadHolders(address, false);
}

async function loadHolders(address, append) {
  const page = await api(`/v1/subjects/${address}/holders`, { limit: 20, cursor: append ? state.holdersCursor : null });
  const rows = page.holders.map((h) => [short(h.trader), h.balance]);
  if (append) {
    const body = $("holders").tBodies[0];
    const old = [...body.rows].map((r) => [r.cells[0].textContent, r.cells[1].textContent]);
    fillTable("holders", old.concat(rows));
  } else {
    fillTable("holders", rows);
  }
  state.holdersCursor = append || page.nextCursor ? page.nextCursor : null;
  $("more-holders").hidden = !page.nextCursor;
}

async function refresh() {
  try {
    const health = await api("/healthz");
    if (state.page === "overview") await refreshOverview();
    else await refreshSubject(state.page.slice("subject:".length));
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
  const m = location.hash.match(/^#\/subject\/(0x[0-9a-fA-F]{40})$/);
  // A link with a mistyped (wrong-checksum) address is refused, not followed.
  const checked = m ? checkAddress(m[1]) : {};
  showAddressError(checked.error);
  const subject = checked.address;
  state.page = subject ? `subject:${subject}` : "overview";
  state.holdersCursor = null;
  $("overview-page").hidden = !!subject;
  $("subject-page").hidden = !subject;
  for (const id of ["chart-price", "chart-subject-daily", "chart-holders"]) {
    if (state.charts[id]) {
      state.charts[id].destroy();
      delete state.charts[id];
    }
  }
  document.body.dataset.ready = "0";
  refresh();
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
    for (const id of Object.keys(state.charts)) { state.charts[id].destroy(); delete state.charts[id]; }
    route();
  });
  $("more-holders").addEventListener("click", () => loadHolders(state.page.slice("subject:".length), true));
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

main().catch((e) => {
  $("status").textContent = `error: ${e.message}`;
  console.error(e);
});
