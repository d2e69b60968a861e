// Drives the dashboard in a real headless Chromium (playwright-core + the system's chromium):
//   node tests/browser/dashboard.mjs BASE_URL SCREENSHOT.png
// 1. The overview loads with no console errors, failed requests or page errors, and every
//    headline number on it equals the API's (exact wei / counts, read from data-value).
//    The retention triangle and net-flow leaders equal the API's; the window selector (7 days,
//    30 days, all) shows the API's windowed overviews on the cards and drives the charts: each
//    windowed chart holds the API's days of that window (fewer over 7 days than over all time).
//    The recent trades show each trade's UTC time beside its block; every trader address in the
//    tables links to its trader page; no link, script or style leaves the server, and the SQL
//    box's reference is served at /docs/sql. The charts follow the browser window's width.
// 2. A screenshot of the page is written; then the overview, a subject page and a trader page
//    at 390 px wide, none wider than the screen, and a screenshot of the overview at that width
//    (PHONE_SCREENSHOT, or beside SCREENSHOT with -phone).
// 2b. A trader page, opened by clicking a trader address in the recent trades: the API's
//    totals, holdings and latest trades.
// 3. The subject page of the top subject shows the API's supply, holders, holder rows and
//    current buy/sell prices, and its four charts (holders and supply apart: the API's days,
//    ending at today's holders and supply). The overview's price index chart holds the API's
//    days. Its holders and trades link their traders' pages.
// 4. The SQL box (bottom of the overview): a typed query's result table equals the API's
//    POST /v1/sql answer, "Download CSV" saves the API's CSV, a bad query shows the database's
//    error in words in place of the previous result; a screenshot of the box is written
//    (SQL_SCREENSHOT, or beside SCREENSHOT).
// 3b. Addresses as wallets check them (EIP-55): the header's subject box and a #/subject/ link
//    refuse the top subject's address with one letter's case flipped, naming the checksummed
//    form; its all-uppercase form goes to its page.
// 4b. The download links: the daily CSV saved from the page equals GET /v1/export/daily.csv, and
//    the trades' Parquet link saves a whole Parquet file.
// 5. Live updates: prints "waiting-for-change", then (after the test indexed new trades) reads a
//    line on stdin and waits until the page shows the API's new trade count.
// Exits non-zero with a message on any mismatch; prints one JSON line of what it checked.
import { launch } from "./chromium.mjs";
import { createInterface } from "node:readline";
import { readFile } from "node:fs/promises";
import { getAddress } from "ethers";

const [base, screenshot] = process.argv.slice(2);
if (!base || !screenshot) {
  console.error("usage: node dashboard.mjs BASE_URL SCREENSHOT.png");
  process.exit(2);
}
const problems = [];
const fail = (msg) => {
  console.error(`dashboard test failed: ${msg}`);
  if (problems.length) console.error(`browser problems:\n${problems.join("\n")}`);
  process.exit(1);
};
const getJson = async (path) => {
  const res = await fetch(new URL(path, base));
  if (!res.ok) fail(`${path}: HTTP ${res.status}`);
  return res.json();
};

const browser = await launch();
try {
  // While the SQL box is shown a bad query on purpose, its 400 is expected.
  let expectSqlError = false;
  // Pages being navigated away from (or closed) by the test: a refresh of theirs still in flight
  // is cut short then (net::ERR_ABORTED), as expected.
  const leaving = new Set();
  const leave = async (p, url) => {
    leaving.add(p);
    try {
      await p.goto(url, { waitUntil: "load" });
    } finally {
      leaving.delete(p);
    }
  };
  // `name`: the page's, in the problems.
  const watch = (page, name = "page") => {
    page.on("console", (m) => {
      if (expectSqlError && /\b40[03]\b/.test(m.text())) return;
      if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) => {
      if (leaving.has(page) && r.failure()?.errorText === "net::ERR_ABORTED") return;
      problems.push(`${name}: request failed: ${r.url()} ${r.failure()?.errorText}`);
    });
    page.on("response", (r) => {
      if (expectSqlError && [400, 403].includes(r.status()) && r.url().endsWith("/v1/sql")) return;
      if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
    });
    return page;
  };
  const page = watch(await browser.newPage({ viewport: { width: 1400, height: 1500 } }));

  await page.goto(base, { waitUntil: "load" });
  await page.waitForSelector('body[data-ready="1"]', { timeout: 20000 });
  const stats = async () => page.evaluate(() => Object.fromEntries(
    [...document.querySelectorAll("[id^=stat-]")].map((e) => [e.id, e.dataset.value])));
  // The page refreshes on its own; read it and the API until both come from the same data.
  const ov = await getJson("/v1/overview");
  const want = {
    "stat-protocol-revenue": ov.protocolRevenue.wei,
    "stat-subject-revenue": ov.subjectRevenue.wei,
    "stat-volume": ov.volume.wei,
    "stat-tvl": ov.netVolume.wei,
    "stat-trades": String(ov.trades),
    "stat-traders": String(ov.traders),
    "stat-subjects": String(ov.subjects),
  };
  const got = await stats();
  for (const [k, v] of Object.entries(want)) if (got[k] !== v) fail(`${k}: page shows ${got[k]}, API says ${v}`);
  const topRows = await page.locator("#top-subjects tbody tr").count();
  const chartCanvases = await page.locator(".charts canvas").count();
  if (topRows === 0) fail("no top subjects rows");
  if (chartCanvases < 6) fail(`expected 6 charts, found ${chartCanvases}`);

  // Nothing leaves the server: every link, script, style and image of the page is of its origin
  // (or a data: URL), and the SQL box's "tables and limits" is the server's own /docs/sql.
  const foreign = await page.evaluate(() => [...document.querySelectorAll("a[href], link[href], script[src], img[src], iframe[src], form[action]")]
    .map((e) => e.href || e.src || e.action)
    .filter((u) => !u.startsWith("data:") && new URL(u, location.href).origin !== location.origin));
  if (foreign.length) fail(`the page links outside the server: ${foreign.join(", ")}`);
  const html = await (await fetch(new URL("/", base))).text();
  if (/(href|src|action)\s*=\s*["']?(https?:)?\/\//i.test(html)) fail("index.html holds a link to another host");
  const docsHref = await page.getAttribute("#sql-docs", "href");
  if (docsHref !== "/docs/sql") fail(`the SQL box's reference link is ${docsHref}`);
  const docsRes = await fetch(new URL(docsHref, base));
  const docsText = await docsRes.text();
  if (docsRes.status !== 200 || !/^text\/html/.test(docsRes.headers.get("content-type") || "")
    || !docsText.includes("POST /v1/sql") || !docsText.includes("&lt;")) {
    fail(`/docs/sql: HTTP ${docsRes.status} ${docsRes.headers.get("content-type")}: ${docsText.slice(0, 200)}`);
  }
  const docs = { status: docsRes.status, bytes: docsText.length };

  // The recent trades: each row's UTC time (to the minute) beside its block, as the API has them,
  // and every trader address in the overview's tables links to its page.
  const utc = (secs) => `${new Date(secs * 1000).toISOString().slice(0, 16).replace("T", " ")} UTC`;
  const recent = (await getJson("/v1/trades?limit=15")).trades;
  const recentShown = await page.evaluate(() => [...document.querySelectorAll("#recent-trades tbody tr")]
    .map((tr) => ({ time: tr.cells[0].textContent, block: tr.cells[1].textContent, trader: tr.cells[3].querySelector("a")?.getAttribute("href") })));
  const recentWant = recent.map((t) => ({ time: utc(t.time), block: String(t.block), trader: `#/trader/${t.trader}` }));
  if (JSON.stringify(recentShown) !== JSON.stringify(recentWant)) fail(`recent trades: page ${JSON.stringify(recentShown)}, API ${JSON.stringify(recentWant)}`);
  if (!/^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$/.test(recentShown[0].time)) fail(`recent trade time ${recentShown[0].time}`);
  const traderLinks = async (tables, column) => page.evaluate(([ids, col]) => ids.flatMap((id) => [...document.querySelectorAll(`#${id} tbody tr`)]
    .map((tr) => ({ id, text: tr.cells[col].textContent, href: tr.cells[col].querySelector("a")?.getAttribute("href") || null }))), [tables, column]);
  const overviewTraders = await traderLinks(["top-traders", "top-referrers", "netflow-buyers", "netflow-sellers"], 0);
  overviewTraders.push(...await traderLinks(["recent-trades"], 3));
  for (const t of overviewTraders) if (!/^#\/trader\/0x[0-9a-f]{40}$/.test(t.href || "")) fail(`a trader address without a link to its page: ${JSON.stringify(t)}`);
  const timeAndLinks = { recentTrades: recentShown.length, traderLinks: overviewTraders.length, firstTime: recentShown[0].time };

  // The charts take their box's width, and follow the browser window's.
  const chartFit = () => page.evaluate(() => Object.entries(state.charts).map(([id, u]) => ({
    id, chart: u.width, box: Math.floor(document.getElementById(id).clientWidth),
  })));
  const fits = async (what) => {
    try {
      await page.waitForFunction(() => Object.entries(state.charts).every(([id, u]) => u.width === Math.floor(document.getElementById(id).clientWidth)), null, { timeout: 10000 });
    } catch {
      fail(`${what}: the charts' widths are not their boxes' ${JSON.stringify(await chartFit())}`);
    }
    return (await chartFit())[0].chart;
  };
  const wide = await fits("at 1400 px");
  await page.setViewportSize({ width: 700, height: 1500 });
  const narrow = await fits("at 700 px");
  await page.setViewportSize({ width: 1400, height: 1500 });
  if (await fits("back at 1400 px") !== wide || narrow >= wide) fail(`the charts did not follow the window: ${wide} px, then ${narrow} px at 700`);
  const resize = { wide, narrow };
  if ((await page.locator("#chart-concentration canvas").count()) !== 1) fail("no concentration chart");

  // The analyst views: the retention triangle and the net-flow leaders show the API's numbers,
  // and the cards' window selector shows the API's 7- and 30-day overviews, then all time again.
  const retention = await getJson("/v1/retention?weeks=12");
  if (retention.cohorts.length === 0) fail("no retention cohorts");
  const wantCohorts = retention.cohorts.map((c) => ({ week: c.week, counts: [c.size, ...c.active] }));
  const shownCohorts = await page.evaluate(() => [...document.querySelectorAll("#retention tbody tr")].map((tr) => ({
    week: tr.dataset.week,
    counts: [...tr.querySelectorAll("td[data-count]")].map((td) => Number(td.dataset.count)),
  })));
  if (JSON.stringify(shownCohorts) !== JSON.stringify(wantCohorts)) fail(`retention: page ${JSON.stringify(shownCohorts)}, API ${JSON.stringify(wantCohorts)}`);
  const shaded = await page.locator("#retention td.cohort-cell[style*=background]").count();
  if (shaded < wantCohorts.length) fail(`retention: ${shaded} shaded cells`);
  const leaders = {};
  for (const side of ["buyers", "sellers"]) {
    const want = (await getJson(`/v1/traders/netflow?side=${side}&limit=10`)).leaders.map((t) => t.netFlow.wei);
    if (want.length === 0) fail(`no net ${side}`);
    const shown = await page.evaluate((id) => [...document.querySelectorAll(`#${id} tbody tr td:nth-child(2) span`)]
      .map((e) => e.dataset.value), `netflow-${side}`);
    if (JSON.stringify(shown) !== JSON.stringify(want)) fail(`net ${side}: page ${shown}, API ${want}`);
    leaders[side] = want.length;
  }
  const cardsOf = (o) => ({
    "stat-protocol-revenue": o.protocolRevenue.wei,
    "stat-subject-revenue": o.subjectRevenue.wei,
    "stat-volume": o.volume.wei,
    "stat-tvl": o.netVolume.wei,
    "stat-trades": String(o.trades),
    "stat-traders": String(o.traders),
    "stat-subjects": String(o.subjects),
  });
  const windows = {};
  // The window drives the charts too: each windowed chart holds the API's days of the window.
  const chartDays = {};
  const windowedCharts = { "chart-volume": "/v1/daily", "chart-concentration": "/v1/concentration", "chart-price-index": "/v1/price-index?top=10" };
  const chartData = () => page.evaluate((ids) => Object.fromEntries(ids.map((id) => [id, state.charts[id].data[0].length])), Object.keys(windowedCharts));
  for (const w of ["7d", "30d", ""]) {
    const o = await getJson(`/v1/overview${w ? `?window=${w}` : ""}`);
    await page.click(`#overview-window button[data-window="${w}"]`);
    try {
      await page.waitForFunction(([label, cards]) => document.getElementById("overview-page").dataset.window === label
        && Object.entries(cards).every(([id, v]) => document.getElementById(id).dataset.value === v),
      [w || "all", cardsOf(o)], { timeout: 20000 });
    } catch {
      fail(`window ${w || "all"}: the cards show ${JSON.stringify(await stats())}, the API ${JSON.stringify(cardsOf(o))}`);
    }
    windows[w || "all"] = o.trades;
    if (w && !(o.from && o.to)) fail(`window ${w}: the overview names no days: ${JSON.stringify(o)}`);
    const want = {};
    for (const [id, path] of Object.entries(windowedCharts)) {
      const ranged = w ? `${path}${path.includes("?") ? "&" : "?"}from=${o.from}&to=${o.to}` : path;
      want[id] = (await getJson(ranged)).days.length;
    }
    try {
      await page.waitForFunction(([label, n]) => document.getElementById("overview-page").dataset.chartsWindow === label
        && Object.entries(n).every(([id, days]) => state.charts[id] && state.charts[id].data[0].length === days),
      [w || "all", want], { timeout: 20000 });
    } catch {
      fail(`window ${w || "all"}: the charts hold ${JSON.stringify(await chartData())} days, the API's window ${JSON.stringify(want)}`);
    }
    const caption = await page.textContent("figure:has(#chart-volume) .window-scope");
    const wantCaption = `window: ${w ? `${o.from} – ${o.to}` : "all time"}`;
    if (caption !== wantCaption) fail(`window ${w || "all"}: the volume chart's caption says ${JSON.stringify(caption)}`);
    chartDays[w || "all"] = want;
  }
  if (windows["7d"] >= windows.all) fail(`the 7-day window holds every trade (${JSON.stringify(windows)}): the test data must span more than a week`);
  if (chartDays["7d"]["chart-volume"] >= chartDays.all["chart-volume"]) fail(`the 7-day window's volume chart holds every day: ${JSON.stringify(chartDays)}`);
  const allTime = await page.locator("#overview-page .scope.all-time").count();
  if (allTime < 4) fail(`only ${allTime} figures marked all-time`);
  const analyst = { cohorts: wantCohorts.length, leaders, windows, chartDays, allTimeMarks: allTime };
  // The price index chart holds the API's days (median and mean per day).
  const index = await getJson("/v1/price-index?top=10");
  if (index.days.length === 0) fail("the price index has no days");
  await page.waitForFunction((n) => {
    const c = state.charts["chart-price-index"];
    return c && c.data[0].length === n && c.data[1].every((v) => v > 0);
  }, index.days.length, { timeout: 20000 }).catch(() => fail(`price index chart: expected ${index.days.length} days with prices`));
  const priceIndex = await page.evaluate(() => {
    const c = state.charts["chart-price-index"];
    return { days: c.data[0].length, lastMedian: c.data[1][c.data[1].length - 1] };
  });
  if (priceIndex.lastMedian !== Number(index.days[index.days.length - 1].median.eth)) fail(`price index: last median ${priceIndex.lastMedian}, API ${index.days[index.days.length - 1].median.eth}`);
  await page.screenshot({ path: screenshot, fullPage: true });

  // The SQL box.
  const postSql = async (sql, accept) => {
    const res = await fetch(new URL("/v1/sql", base), {
      method: "POST",
      headers: { "content-type": "application/json", accept },
      body: JSON.stringify({ sql }),
    });
    if (!res.ok) fail(`POST /v1/sql: HTTP ${res.status} ${await res.text()}`);
    return accept === "text/csv" ? res.text() : res.json();
  };
  const query = "SELECT subject, count(*) AS trades, sum(is_buy) AS buys, max(supply) AS top_supply\n"
    + "FROM trades GROUP BY subject ORDER BY trades DESC, subject LIMIT 8";
  await page.locator("#sql-box").scrollIntoViewIfNeeded();
  await page.fill("#sql-text", query);
  await page.click("#sql-run");
  await page.waitForSelector('#sql-result[data-state="ok"]', { timeout: 20000 });
  const table = await page.evaluate(() => ({
    head: [...document.querySelectorAll("#sql-result thead th")].map((th) => th.textContent),
    rows: [...document.querySelectorAll("#sql-result tbody tr")].map((tr) => [...tr.cells].map((td) => td.textContent)),
    status: document.getElementById("sql-status").textContent,
  }));
  const apiResult = await postSql(query, "application/json");
  if (JSON.stringify(table.head) !== JSON.stringify(apiResult.columns)) fail(`SQL box columns ${table.head}, API ${apiResult.columns}`);
  const apiRows = apiResult.rows.map((r) => r.map((v) => (v === null ? "NULL" : String(v))));
  if (apiRows.length === 0) fail("the SQL box's query returned no rows");
  if (JSON.stringify(table.rows) !== JSON.stringify(apiRows)) fail(`SQL box rows ${JSON.stringify(table.rows)}, API ${JSON.stringify(apiRows)}`);
  if (!table.status.startsWith(`${apiResult.rowCount} rows`)) fail(`SQL box status: ${table.status}`);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#sql-csv")]);
  const csv = await readFile(await download.path(), "utf8");
  const apiCsv = await postSql(query, "text/csv");
  if (csv !== apiCsv) fail(`downloaded CSV differs from the API's:\n${csv}\n---\n${apiCsv}`);
  if (download.suggestedFilename() !== "query.csv") fail(`CSV file name ${download.suggestedFilename()}`);
  const sqlShot = process.env.SQL_SCREENSHOT || screenshot.replace(/(\.png)?$/, "-sql.png");
  await page.locator("#sql-box").screenshot({ path: sqlShot });
  expectSqlError = true;
  await page.fill("#sql-text", "SELECT nope FROM trades");
  await page.click("#sql-run");
  // (The result table is empty then, so not "visible".)
  await page.waitForSelector('#sql-result[data-state="error"]', { state: "attached", timeout: 20000 });
  const error = await page.evaluate(() => ({
    text: document.getElementById("sql-error").textContent,
    hidden: document.getElementById("sql-error").hidden,
    rows: document.querySelectorAll("#sql-result tbody tr").length,
    columns: document.querySelectorAll("#sql-result thead th").length,
    status: document.getElementById("sql-status").textContent,
  }));
  if (error.hidden || !error.text.includes("no such column: nope")) fail(`SQL box error: ${JSON.stringify(error)}`);
  // The previous query's result is gone: the error is not shown over it.
  if (error.rows || error.columns || error.status) fail(`SQL box: the previous result stays under the error: ${JSON.stringify(error)}`);
  await page.fill("#sql-text", "DELETE FROM trades");
  await page.click("#sql-run");
  await page.waitForFunction(() => document.getElementById("sql-error").textContent.startsWith("Not allowed"), null, { timeout: 20000 });
  expectSqlError = false;
  const sqlBox = { columns: table.head, rows: table.rows.length, csvBytes: csv.length, error: error.text };

  // The download links (Dune's layouts): the daily CSV saved from the page is the API's, and the
  // trades' Parquet link saves a whole Parquet file.
  const [dailyDl] = await Promise.all([page.waitForEvent("download"), page.click("#dl-daily-csv")]);
  const dailyCsv = await readFile(await dailyDl.path(), "utf8");
  const apiDaily = await (await fetch(new URL("/v1/export/daily.csv", base))).text();
  if (!dailyCsv.startsWith("day,trades,buys,sells,") || dailyCsv !== apiDaily) fail(`downloaded daily CSV differs from the API's:\n${dailyCsv}\n---\n${apiDaily}`);
  const [tradesDl] = await Promise.all([page.waitForEvent("download"), page.click("#dl-trades-parquet")]);
  const parquet = await readFile(await tradesDl.path());
  if (!tradesDl.suggestedFilename().endsWith(".parquet") || parquet.subarray(0, 4).toString() !== "PAR1"
    || parquet.subarray(-4).toString() !== "PAR1") fail(`trades Parquet download: ${tradesDl.suggestedFilename()}, ${parquet.length} bytes`);
  const downloads = { dailyCsvLines: dailyCsv.trim().split("\n").length, parquetBytes: parquet.length };

  // 2b. A trader page: a click on the trader of the latest trade.
  const traderAddress = recent[0].trader;
  await page.click("#recent-trades tbody tr:first-child td:nth-child(4) a");
  await page.waitForFunction((a) => document.getElementById("trader-address").textContent === a
    && document.body.dataset.ready === "1" && !document.getElementById("trader-page").hidden
    && document.getElementById("overview-page").hidden, traderAddress, { timeout: 20000 })
    .catch(() => fail(`the trader page of ${traderAddress} did not open`));
  if (await page.evaluate(() => location.hash) !== `#/trader/${traderAddress}`) fail("the trader link went elsewhere");
  const apiTrader = await getJson(`/v1/traders/${traderAddress}`);
  const apiTraderTrades = (await getJson(`/v1/trades?trader=${traderAddress}&limit=50`)).trades;
  const traderShown = await page.evaluate(() => ({
    trades: document.getElementById("trader-trades-count").dataset.value,
    volume: document.getElementById("trader-volume").dataset.value,
    fees: document.getElementById("trader-fees").dataset.value,
    pnl: document.getElementById("trader-pnl").dataset.value,
    holdings: [...document.querySelectorAll("#trader-holdings tbody tr")].map((tr) => [tr.cells[0].querySelector("a").getAttribute("href"), tr.cells[1].textContent]),
    txs: [...document.querySelectorAll("#trader-trades tbody tr")].map((tr) => tr.dataset.tx),
    times: [...document.querySelectorAll("#trader-trades tbody tr")].map((tr) => tr.cells[0].textContent),
  }));
  const t0 = apiTrader.trader;
  for (const [k, v] of [["trades", String(t0.trades)], ["volume", t0.volume.wei], ["fees", t0.feesPaid.wei], ["pnl", t0.realisedPnl.wei]]) {
    if (traderShown[k] !== v) fail(`trader page ${k}: page ${traderShown[k]}, API ${v}`);
  }
  const wantHoldings = apiTrader.holdings.map((h) => [`#/subject/${h.subject}`, String(h.balance)]);
  if (JSON.stringify(traderShown.holdings) !== JSON.stringify(wantHoldings)) fail(`trader holdings: page ${JSON.stringify(traderShown.holdings)}, API ${JSON.stringify(wantHoldings)}`);
  if (traderShown.txs.length === 0) fail("the trader page shows no trades");
  if (JSON.stringify(traderShown.txs) !== JSON.stringify(apiTraderTrades.map((t) => t.txHash))) fail(`trader trades: page ${traderShown.txs}, API ${apiTraderTrades.map((t) => t.txHash)}`);
  if (JSON.stringify(traderShown.times) !== JSON.stringify(apiTraderTrades.map((t) => utc(t.time)))) fail(`trader trade times: page ${traderShown.times}`);
  const traderPage = { trader: traderAddress, holdings: traderShown.holdings.length, trades: traderShown.txs.length, pnl: traderShown.pnl };
  await page.evaluate(() => { location.hash = "#/"; });
  await page.waitForFunction(() => !document.getElementById("overview-page").hidden && document.body.dataset.ready === "1", null, { timeout: 20000 });

  // Subject page of the top subject.
  const top = (await getJson("/v1/subjects/top?by=volume&limit=1")).subjects[0];
  await page.click("#top-subjects tbody tr:first-child a");
  await page.waitForFunction((a) => document.getElementById("subject-address").textContent === a
    && document.body.dataset.ready === "1", top.subject, { timeout: 20000 });
  const subj = (await getJson(`/v1/subjects/${top.subject}`)).subject;
  const shown = await page.evaluate(() => ({
    supply: document.getElementById("subject-supply").dataset.value,
    holders: document.getElementById("subject-holders").dataset.value,
    rows: document.querySelectorAll("#holders tbody tr").length,
    buyPrice: document.getElementById("subject-buy-price").dataset.value,
    sellPrice: document.getElementById("subject-sell-price").dataset.value,
    charts: document.querySelectorAll("#subject-page .charts canvas").length,
  }));
  // Its holders and trades link their traders' pages.
  const subjectTraders = [...await traderLinks(["holders"], 0), ...await traderLinks(["subject-trades"], 3)];
  if (subjectTraders.length === 0) fail("the subject page shows no trader");
  for (const t of subjectTraders) if (!/^#\/trader\/0x[0-9a-f]{40}$/.test(t.href || "")) fail(`a trader address without a link to its page: ${JSON.stringify(t)}`);
  // Holders over time: one point per day of the API's series, ending at today's holders.
  const history = await getJson(`/v1/subjects/${top.subject}/holders/daily`);
  // Holders and supply: two charts, each of one series with its own unit on its axis.
  await page.waitForFunction((n) => {
    const h = state.charts["chart-holders"];
    const s = state.charts["chart-supply"];
    return h && s && h.data[0].length === n && s.data[0].length === n;
  }, history.days.length, { timeout: 20000 }).catch(() => fail(`holders and supply charts: expected ${history.days.length} days`));
  const holdersChart = await page.evaluate(() => {
    const h = state.charts["chart-holders"];
    const s = state.charts["chart-supply"];
    const last = (c) => c.data[1][c.data[1].length - 1];
    return {
      days: h.data[0].length, lastHolders: last(h), lastSupply: last(s),
      series: [h.data.length, s.data.length], axes: [h.axes[1].label, s.axes[1].label],
    };
  });
  if (JSON.stringify(holdersChart.series) !== "[2,2]" || holdersChart.axes[0] === holdersChart.axes[1]) {
    fail(`holders and supply are not two charts with their own axes: ${JSON.stringify(holdersChart)}`);
  }
  if (holdersChart.lastHolders !== subj.holders) fail(`holders chart ends at ${holdersChart.lastHolders}, API holders ${subj.holders}`);
  if (holdersChart.lastSupply !== subj.supply) fail(`holders chart supply ends at ${holdersChart.lastSupply}, API supply ${subj.supply}`);
  const wei = (a) => (a ? a.wei : "");
  if (shown.buyPrice !== wei(subj.buyPrice)) fail(`subject buy price: page ${shown.buyPrice}, API ${wei(subj.buyPrice)}`);
  if (shown.sellPrice !== wei(subj.sellPrice)) fail(`subject sell price: page ${shown.sellPrice}, API ${wei(subj.sellPrice)}`);
  if (shown.charts < 4) fail(`subject page: expected 4 charts, found ${shown.charts}`);
  if (shown.supply !== String(subj.supply)) fail(`subject supply: page ${shown.supply}, API ${subj.supply}`);
  if (shown.holders !== String(subj.holders)) fail(`subject holders: page ${shown.holders}, API ${subj.holders}`);
  if (shown.rows !== Math.min(20, subj.holders)) fail(`holder rows: page ${shown.rows}, API holders ${subj.holders}`);

  // 3b. A mistyped address (one letter's case flipped) in the subject box, then in a link.
  const checksummed = getAddress(top.subject);
  const letter = checksummed.slice(2).search(/[a-fA-F]/) + 2;
  const c = checksummed[letter];
  const mistyped = checksummed.slice(0, letter) + (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase()) + checksummed.slice(letter + 1);
  const refusal = `address ${mistyped} has a wrong EIP-55 checksum (a mistyped character?); the checksummed form of these digits is ${checksummed}, but check the address itself before using it`;
  const addressError = () => page.evaluate(() => {
    const el = document.getElementById("address-error");
    return el.hidden ? null : el.textContent;
  });
  await leave(page, base);
  await page.waitForSelector('body[data-ready="1"]', { timeout: 20000 });
  await page.fill("#subject-search", mistyped);
  await page.press("#subject-search", "Enter");
  await page.waitForSelector("#address-error:not([hidden])", { timeout: 5000 }).catch(() => fail("the subject box took a wrong checksum"));
  const boxError = await addressError();
  if (boxError !== refusal) fail(`subject box, wrong checksum: ${boxError}`);
  if (!(await page.isHidden("#subject-page"))) fail("the subject page opened for a refused address");
  if (await page.evaluate(() => location.hash) !== "") fail("the subject box followed a refused address");
  await page.fill("#subject-search", `0x${checksummed.slice(2).toUpperCase()}`);
  await page.press("#subject-search", "Enter");
  await page.waitForFunction((a) => document.getElementById("subject-address").textContent === a
    && document.body.dataset.ready === "1" && !document.getElementById("subject-page").hidden, top.subject, { timeout: 20000 });
  if ((await addressError()) !== null) fail(`an uppercase address was refused: ${await addressError()}`);
  await page.evaluate((h) => { location.hash = h; }, `#/subject/${mistyped}`);
  await page.waitForSelector("#address-error:not([hidden])", { timeout: 5000 }).catch(() => fail("a link with a wrong checksum was followed"));
  const linkError = await addressError();
  if (linkError !== refusal) fail(`#/subject/ link, wrong checksum: ${linkError}`);
  if (!(await page.isHidden("#subject-page"))) fail("the subject page opened for a refused address");
  // (The overview it shows instead finishes loading before the page is left.)
  await page.waitForSelector('body[data-ready="1"]', { timeout: 20000 });
  const checksums = { boxError, linkError };

  // 390 px wide (a phone): the overview, a subject page and a trader page fit the screen (no
  // horizontal scrolling), the charts take their boxes' width; a screenshot of the overview.
  const phoneShot = process.env.PHONE_SCREENSHOT || screenshot.replace(/(\.png)?$/, "-phone.png");
  const phone = watch(await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 }), "390 px page");
  const overflow = () => phone.evaluate(() => ({
    doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,
    wide: [...document.querySelectorAll("main:not([hidden]) *, header *")].filter((e) => e.getBoundingClientRect().right > 391)
      .slice(0, 5).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`),
  }));
  const narrowPages = {};
  for (const [name, hash, charts] of [["overview", "", 6], ["subject", `#/subject/${top.subject}`, 4], ["trader", `#/trader/${traderAddress}`, 0]]) {
    await leave(phone, `${base}${hash}`);
    await phone.waitForSelector('body[data-ready="1"]', { timeout: 20000 });
    try {
      await phone.waitForFunction((n) => Object.keys(state.charts).length >= n
        && Object.entries(state.charts).every(([id, u]) => document.getElementById(id).offsetParent === null
          || u.width === Math.floor(document.getElementById(id).clientWidth)), charts, { timeout: 10000 });
    } catch {
      fail(`390 px, ${name}: charts ${JSON.stringify(await phone.evaluate(() => Object.entries(state.charts).map(([id, u]) => [id, u.width, document.getElementById(id).clientWidth])))}`);
    }
    const o = await overflow();
    if (o.doc > 390 || o.body > 390) fail(`390 px, ${name}: the page is ${o.doc} px wide (body ${o.body}); wider: ${o.wide.join(", ")}`);
    // (Its first two screens: the header, the window selector, the cards and the first charts.)
    if (name === "overview") await phone.screenshot({ path: phoneShot, fullPage: true, clip: { x: 0, y: 0, width: 390, height: 1690 } });
    narrowPages[name] = o.doc;
  }
  leaving.add(phone);
  await phone.close();

  // Live: back to the overview, wait for new trades to be indexed, then for the page to show them.
  await leave(page, base);
  await page.waitForSelector('body[data-ready="1"]', { timeout: 20000 });
  console.log("waiting-for-change");
  const rl = createInterface({ input: process.stdin });
  await new Promise((resolve) => rl.once("line", resolve));
  rl.close();
  // (The API serves the overview from a snapshot up to 1 s old.)
  let after = await getJson("/v1/overview");
  for (let i = 0; i < 50 && after.trades === ov.trades; i++) {
    await new Promise((r) => setTimeout(r, 200));
    after = await getJson("/v1/overview");
  }
  if (after.trades === ov.trades) fail("the test did not add trades");
  try {
    await page.waitForFunction((n) => document.getElementById("stat-trades").dataset.value === String(n),
      after.trades, { timeout: 20000 });
  } catch {
    fail(`the page did not update to ${after.trades} trades (shows ${(await stats())["stat-trades"]})`);
  }
  if (problems.length) fail("the browser reported problems");
  console.log(JSON.stringify({ ok: true, sqlBox, downloads, stats: got, topSubject: top.subject, subject: shown, liveTrades: after.trades, charts: chartCanvases, analyst, priceIndex, holdersChart, checksums, docs, timeAndLinks, resize, traderPage, narrowPages }));
} finally {
  await browser.close();
}
