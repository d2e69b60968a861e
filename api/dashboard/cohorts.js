// The overview's analyst views (loaded after app.js, whose helpers it uses): the window selector
// (all time, or the last 30 / 7 days of data through /v1/overview?window=; app.js passes the
// window's days on to the charts and to the views here), the weekly retention cohort triangle
// (/v1/retention) and the net-flow leaders (/v1/traders/netflow).
"use strict";

// Cohorts shown in the triangle (the latest ones) and leaders per table.
const RETENTION_WEEKS = 12;
const NETFLOW_ROWS = 10;

// The window the overview shows: "" (all time), "30d" or "7d". app.js's refreshOverview passes
// it to /v1/overview, then the days it covers to the series.
function overviewWindow() {
  return state.overviewWindow ? { window: state.overviewWindow } : {};
}

// After the overview was read: the range it covers, and the TVL card's meaning (a window's net
// volume is not the TVL).
function showOverviewWindow(ov) {
  $("overview-window-range").textContent = ov.from ? `${ov.from} – ${ov.to} (UTC)` : "all time";
  $("stat-tvl-title").textContent = ov.from ? "Net volume (buys − sells)" : "TVL (net volume)";
  // Which window the cards show, read off the answer itself (a refresh still in flight when the
  // window changed may answer after the new one).
  const days = ov.from ? (Date.parse(ov.to) - Date.parse(ov.from)) / 86400000 + 1 : 0;
  $("overview-page").dataset.window = ov.from ? `${days}d` : "all";
}

// The retention triangle: a row per cohort week, a column per week since, each cell the share
// of the cohort that traded that week, shaded like a heatmap (counts in data-count and title).
function renderRetention(r) {
  const table = $("retention");
  const offsets = Math.max(0, ...r.cohorts.map((c) => c.active.length));
  const head = document.createElement("tr");
  for (const h of ["cohort (week of)", "traders", ...Array.from({ length: offsets }, (_, k) => `week ${k}`)]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.append(th);
  }
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(...r.cohorts.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.week = c.week;
    const week = document.createElement("td");
    week.textContent = c.week;
    const size = document.createElement("td");
    size.textContent = c.size.toLocaleString("en-US");
    size.dataset.count = String(c.size);
    tr.append(week, size);
    for (let k = 0; k < offsets; k++) {
      const td = document.createElement("td");
      td.className = "cohort-cell";
      if (k < c.active.length) {
        const n = c.active[k];
        const share = c.size ? n / c.size : 0;
        td.dataset.count = String(n);
        td.textContent = `${(share * 100).toFixed(share >= 0.1 || share === 0 ? 0 : 1)}%`;
        td.title = `${n} of ${c.size} traders of the week of ${c.week} traded in week ${k}`;
        td.style.background = `rgba(47, 111, 237, ${(0.08 + 0.82 * share).toFixed(3)})`;
        if (share > 0.55) td.style.color = "#fff";
      }
      tr.append(td);
    }
    return tr;
  }));
  $("retention-range").textContent = r.fromWeek
    ? `weeks (Monday–Sunday, UTC) of ${r.fromWeek} to ${r.toWeek}; cells: share of the cohort that traded in that week`
    : "no trades yet";
}

function renderNetFlow(id, n) {
  fillTable(id, n.leaders.map((t) => {
    const net = document.createElement("span");
    net.textContent = formatEth(t.netFlow);
    net.dataset.value = t.netFlow.wei;
    net.className = t.netFlow.wei.startsWith("-") ? "sell" : "buy";
    return [traderLink(t.trader), net, formatEth(t.bought), formatEth(t.sold), t.trades];
  }));
}

// Called by app.js's refreshOverview with the window's days ({from, to}; {} for all time): the
// cohorts of the weeks of the window (all time: the latest RETENTION_WEEKS) and the net flow over
// the window (all time: the API's default, the last 30 days of data, said under the tables).
async function refreshCohorts(range = {}) {
  const [retention, buyers, sellers] = await Promise.all([
    api("/v1/retention", { weeks: RETENTION_WEEKS, ...range }),
    api("/v1/traders/netflow", { side: "buyers", limit: NETFLOW_ROWS, ...range }),
    api("/v1/traders/netflow", { side: "sellers", limit: NETFLOW_ROWS, ...range }),
  ]);
  renderRetention(retention);
  $("retention-scope").textContent = range.from
    ? `window: ${range.from} – ${range.to}`
    : `window: all time, the latest ${RETENTION_WEEKS} weeks`;
  renderNetFlow("netflow-buyers", buyers);
  renderNetFlow("netflow-sellers", sellers);
  const over = range.from
    ? "the selected window"
    : "the last 30 days of data: net flow is not offered over all time";
  $("netflow-range").textContent = buyers.from
    ? `${buyers.from} – ${buyers.to} (${over}): Σ ETH of buys − Σ ETH of sells, price before fees`
    : "no trades yet";
}

for (const b of document.querySelectorAll("#overview-window button")) {
  b.addEventListener("click", () => {
    state.overviewWindow = b.dataset.window;
    for (const o of document.querySelectorAll("#overview-window button")) o.classList.toggle("on", o === b);
    refresh();
  });
}
