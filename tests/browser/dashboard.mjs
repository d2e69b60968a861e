// Drives the dashboard in a real headless Chromium (playwright-core + the system's chromium):
//   node tests/browser/dashboard.mjs BASE_URL SCREENSHOT.png
// 1. The overview loads with no console errors, failed requests or page errors, and every
//    headline number on it equals the API's (exact wei / counts, read from data-value).
//    The retention triangle and net-flow leaders equal the API's; the cards' window selector
//    (7 days, 30 days, all) shows the API's windowed overviews.
// 2. A screenshot of the page is written.
// 3. The subject page of the top subject shows the API's supply, holders, holder rows and
//    current buy/sell prices, and its three charts (the holders chart: the API's days, ending
//    at today's holders and supply). The overview's price index chart holds the API's days.
// 4. The SQL box (bottom of the overview): a typed query's result table equals the API's
//    POST /v1/sql answer, "Download CSV" saves the API's CSV, a bad query shows the database's
//    error in words; a screenshot of the box is written (SQL_SCREENSHOT, or beside SCREENSHOT).
// 3b. Addresses as wallets check them (EIP-55): the header's subject box and a #/subject/ link
//    refuse the top subject's address with one letter's case flipped, naming the checksummed
//    form; its all-uppercase form goes to its page.
// 4b. The download links: the daily CSV saved from the page equals GET /v1/export/daily.csv, and
//    the trades' Parquet link saves a whole Parquet file.
// 5. Live updates: prints "waiting-for-change", then (after the test indexed new trades) reads a
//    line on stdin and waits until the page shows the API's new trade count.
// Exits non-zero with a message on any mismatch; prints one JSON line of what it checked.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { readFile } from "node:fs/promises";
import { getAddress } from "ethers";

const [base, screenshot] = process.argv.slice(2);
if (!base || !screenshot) {
  console.error("usage: node dashboard.mjs BASE_URL SCREENSHOT.png");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
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

const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1500 } });
  // While the SQL box is shown a bad query on purpose, its 400 is expected.
  let expectSqlError = false;
  page.on("console", (m) => {
    if (expectSqlError && /\b40[03]\b/.test(m.text())) return;
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", (r) => {
    if (expectSqlError && [400, 403].includes(r.status()) && r.url().endsWith("/v1/sql")) return;
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });

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
  }
  if (windows["7d"] >= windows.all) fail(`the 7-day window holds every trade (${JSON.stringify(windows)}): the test data must span more than a week`);
  const analyst = { cohorts: wantCohorts.length, leaders, windows };
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
  await page.waitForSelector('#sql-result[data-state="error"]', { timeout: 20000 });
  const error = await page.evaluate(() => ({
    text: document.getElementById("sql-error").textContent,
    hidden: document.getElementById("sql-error").hidden,
  }));
  if (error.hidden || !error.text.includes("no such column: nope")) fail(`SQL box error: ${JSON.stringify(error)}`);
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
  // Holders over time: one point per day of the API's series, ending at today's holders.
  const history = await getJson(`/v1/subjects/${top.subject}/holders/daily`);
  await page.waitForFunction((n) => {
    const c = state.charts["chart-holders"];
    return c && c.data[0].length === n;
  }, history.days.length, { timeout: 20000 }).catch(() => fail(`holders chart: expected ${history.days.length} days`));
  const holdersChart = await page.evaluate(() => {
    const c = state.charts["chart-holders"];
    return { days: c.data[0].length, lastHolders: c.data[1][c.data[1].length - 1], lastSupply: c.data[2][c.data[2].length - 1] };
  });
  if (holdersChart.lastHolders !== subj.holders) fail(`holders chart ends at ${holdersChart.lastHolders}, API holders ${subj.holders}`);
  if (holdersChart.lastSupply !== subj.supply) fail(`holders chart supply ends at ${holdersChart.lastSupply}, API supply ${subj.supply}`);
  const wei = (a) => (a ? a.wei : "");
  if (shown.buyPrice !== wei(subj.buyPrice)) fail(`subject buy price: page ${shown.buyPrice}, API ${wei(subj.buyPrice)}`);
  if (shown.sellPrice !== wei(subj.sellPrice)) fail(`subject sell price: page ${shown.sellPrice}, API ${wei(subj.sellPrice)}`);
  if (shown.charts < 3) fail(`subject page: expected 3 charts, found ${shown.charts}`);
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
  await page.goto(base, { waitUntil: "load" });
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

  // Live: back to the overview, wait for new trades to be indexed, then for the page to show them.
  await page.goto(base, { waitUntil: "load" });
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
  console.log(JSON.stringify({ ok: true, sqlBox, downloads, stats: got, topSubject: top.subject, subject: shown, liveTrades: after.trades, charts: chartCanvases, analyst, priceIndex, holdersChart, checksums }));
} finally {
  await browser.close();
}
