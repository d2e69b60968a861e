// Drives the dashboard's trade panel in a real headless Chromium with a wallet in the page:
//   node tests/browser/trade.mjs BASE_URL RPC_URL ACCOUNT SUBJECT SCREENSHOT.png
// Before the app loads, two wallets announce themselves by EIP-6963 as extensions do: a test wallet
// (an EIP-1193 provider answering accounts with ACCOUNT, an unlocked anvil account, starting on
// chain 1 until asked to switch, forwarding every other request to anvil) and a decoy that also
// holds `window.ethereum` and must never be asked. Then, on SUBJECT's page (the test wallet picked
// by name; the panel must ask it to switch to chain 31337):
// 1. connect; open the account's own keys (launch, 1 key); print "launched" and wait for a line on
//    stdin (the test buys the account's keys from another account, so it earns subject fees);
// 2. withdraw the fees once the panel shows them; buy 2 keys of SUBJECT with a 1% bound and wait
//    for the buy in the subject's latest trades (the test runs the indexer); sell 1;
// 3. quote a 1-key buy with 0% slippage; print "quoted"; wait for a line (the test buys SUBJECT's
//    keys from another account: the price moves); submit: the panel must show the decoded error;
// 4. screenshot;
// 5. a referrer typed in lowercase or with its EIP-55 checksum is taken; with one letter's case
//    flipped (a wrong checksum) the buy is refused before anything reaches the wallet, in words
//    naming the checksummed form beside the field (the status says it was not sent); screenshot of that
//    (SCREENSHOT with -checksum before .png);
// 6. print one JSON line with what the panel showed (transactions, keys, amounts, refusals).
// Exits non-zero with a message on any failure.
import { launch } from "./chromium.mjs";
import { createInterface } from "node:readline";

const [base, rpc, account, subject, screenshot] = process.argv.slice(2);
if (!screenshot) {
  console.error("usage: node trade.mjs BASE_URL RPC_URL ACCOUNT SUBJECT SCREENSHOT.png");
  process.exit(2);
}
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const problems = [];
const fail = (msg) => {
  console.error(`trade panel test failed: ${msg}`);
  if (problems.length) console.error(`browser problems:\n${problems.join("\n")}`);
  process.exit(1);
};

// Never hang the test: the whole run has two minutes.
setTimeout(() => fail("timed out after 120 s"), 120_000).unref();
const step = (what) => console.error(`[trade panel] ${what}`);

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  await page.addInitScript(({ rpc, account }) => {
    let id = 0;
    // The test wallet starts on another chain (mainnet) until the page asks it to switch.
    let chainId = "0x1";
    window.__walletCalls = [];
    window.__switchedTo = null;
    const wallet = {
      async request({ method, params }) {
        window.__walletCalls.push(method);
        if (method === "eth_requestAccounts" || method === "eth_accounts") return [account];
        if (method === "eth_chainId") return chainId;
        if (method === "wallet_switchEthereumChain") {
          chainId = params[0].chainId;
          window.__switchedTo = chainId;
          return null;
        }
        const res = await fetch(rpc, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ jsonrpc: "2.0", id: ++id, method, params: params || [] }),
        });
        const body = await res.json();
        if (body.error) {
          const e = new Error(body.error.message);
          e.code = body.error.code;
          e.data = body.error.data;
          throw e;
        }
        return body.result;
      },
      on() {},
      removeListener() {},
    };
    // A second installed wallet that must not be used: it also took `window.ethereum`, as the
    // last extension to load does.
    window.__decoyCalls = [];
    const decoy = {
      async request({ method }) {
        window.__decoyCalls.push(method);
        throw new Error("the decoy wallet was asked");
      },
      on() {},
      removeListener() {},
    };
    window.ethereum = decoy;
    const icon = "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg'/>";
    const announced = [
      { info: { uuid: "5f0c4c1e-0000-4000-8000-00000000dec0", name: "Decoy Wallet", icon, rdns: "test.decoy" }, provider: decoy },
      { info: { uuid: "5f0c4c1e-0000-4000-8000-000000000001", name: "keymarket test wallet", icon, rdns: "test.keymarket" }, provider: wallet },
    ];
    const announce = () => {
      for (const d of announced) {
        window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail: Object.freeze(d) }));
      }
    };
    window.addEventListener("eip6963:requestProvider", announce);
    announce();
  }, { rpc, account });

  step("opening the subject page");
  await page.goto(`${base}#/subject/${subject}`, { waitUntil: "load" });
  await page.waitForSelector('body[data-ready="1"]', { timeout: 20000 });
  // EIP-6963: both announced wallets are offered by name; the test wallet is chosen.
  await page.waitForSelector("#wallet-pick:not([hidden])", { timeout: 10000 });
  const offered = await page.$$eval("#wallet-pick option", (os) => os.map((o) => o.textContent));
  if (offered.join("|") !== "Decoy Wallet|keymarket test wallet") fail(`wallets offered: ${offered}`);
  await page.selectOption("#wallet-pick", { label: "keymarket test wallet" });
  step("connecting");
  await page.click("#connect");
  await page.waitForSelector("#wallet-on:not([hidden])", { timeout: 20000 });
  const shown = (await page.textContent("#account")).trim();
  if (shown !== account.toLowerCase()) fail(`connected as ${shown}, expected ${account}`);
  const switchedTo = await page.evaluate(() => window.__switchedTo);
  if (switchedTo !== "0x7a69") fail(`the panel should ask the wallet to switch to chain 31337, asked ${switchedTo}`);

  const status = async (what) => {
    await page.waitForFunction(() => ["ok", "error"].includes(document.getElementById("trade-status").className), null, { timeout: 30000 });
    const cls = await page.getAttribute("#trade-status", "class");
    const text = await page.textContent("#trade-status");
    if (cls !== "ok") fail(`${what}: ${text}`);
    const tx = await page.getAttribute("#trade-status", "data-tx");
    await page.evaluate(() => { const s = document.getElementById("trade-status"); s.className = ""; s.textContent = ""; });
    return tx;
  };

  // 1. Open the account's own keys.
  await page.waitForSelector("#launch-box:not([hidden])", { timeout: 10000 });
  step("opening the account's keys");
  await page.click("#launch");
  const launchTx = await status("launch");
  console.log("launched");
  await lines.next();

  // 2. Withdraw the subject fees others paid, then buy 2 keys and sell 1.
  await page.waitForFunction(() => BigInt(document.getElementById("your-withdrawable").dataset.wei || "0") > 0n, null, { timeout: 20000 });
  const withdrawable = await page.getAttribute("#your-withdrawable", "data-wei");
  step("withdrawing");
  await page.click("#withdraw");
  const withdrawTx = await status("withdraw");

  await page.selectOption("#trade-side", "buy");
  await page.fill("#trade-amount", "2");
  await page.fill("#trade-slippage", "1");
  await page.waitForFunction(() => { const d = document.getElementById("trade-quote").dataset; return d.side === "buy" && d.amount === "2"; }, null, { timeout: 10000 });
  const buyQuote = await page.getAttribute("#trade-quote", "data-total");
  await page.click("#trade-submit");
  const buyTx = await status("buy");
  await page.waitForFunction(() => document.getElementById("your-keys").dataset.keys === "2", null, { timeout: 10000 });
  // Once indexed, the buy is in the subject's latest trades, marked as the trader's.
  step("waiting for the buy in the latest trades");
  await page.waitForSelector(`#subject-trades tr.mine[data-tx="${buyTx}"]`, { timeout: 20000 });
  const indexedNote = await page.textContent("#trade-indexed");
  if (!indexedNote.includes("latest trades")) fail(`the panel's note on the indexed trade: ${indexedNote}`);

  await page.selectOption("#trade-side", "sell");
  await page.fill("#trade-amount", "1");
  await page.waitForFunction(() => { const d = document.getElementById("trade-quote").dataset; return d.side === "sell" && d.amount === "1"; }, null, { timeout: 10000 });
  const sellQuote = await page.getAttribute("#trade-quote", "data-total");
  await page.click("#trade-submit");
  const sellTx = await status("sell");
  await page.waitForFunction(() => document.getElementById("your-keys").dataset.keys === "1", null, { timeout: 10000 });
  await page.waitForSelector(`#subject-trades tr.mine[data-tx="${sellTx}"]`, { timeout: 20000 });

  // 3. The price moves between the quote and the click.
  await page.selectOption("#trade-side", "buy");
  await page.fill("#trade-amount", "1");
  await page.fill("#trade-slippage", "0");
  await page.waitForFunction(() => { const d = document.getElementById("trade-quote").dataset; return d.side === "buy" && d.amount === "1"; }, null, { timeout: 10000 });
  console.log("quoted");
  await lines.next();
  await page.click("#trade-submit");
  await page.waitForFunction(() => document.getElementById("trade-status").className === "error", null, { timeout: 20000 });
  const movedError = await page.textContent("#trade-status");
  if (!movedError.includes("the price moved")) fail(`price moved: the panel says ${movedError}`);

  await page.locator("#trade-panel").screenshot({ path: screenshot });

  // 5. A referrer with a wrong EIP-55 checksum (anvil's account 1, one letter's case flipped).
  const referrer = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
  const mistyped = referrer.replace("C5", "c5");
  const referrerError = () => page.evaluate(() => {
    const el = document.getElementById("trade-referrer-error");
    return el.hidden ? null : el.textContent;
  });
  for (const good of [referrer.toLowerCase(), referrer, `0x${referrer.slice(2).toUpperCase()}`]) {
    await page.fill("#trade-referrer", good);
    const error = await referrerError();
    if (error !== null) fail(`referrer ${good} refused: ${error}`);
  }
  step("a referrer with a wrong checksum");
  await page.fill("#trade-referrer", mistyped);
  const expected = `address ${mistyped} has a wrong EIP-55 checksum (a mistyped character?); the checksummed form of these digits is ${referrer}, but check the address itself before using it`;
  const beside = await referrerError();
  if (beside !== expected) fail(`beside the referrer field: ${beside}`);
  const callsBefore = await page.evaluate(() => window.__walletCalls.length);
  await page.click("#trade-submit");
  await page.waitForFunction(() => document.getElementById("trade-status").className === "error", null, { timeout: 10000 });
  const refused = await page.textContent("#trade-status");
  if (refused !== "not sent: the referrer is refused (see above)") fail(`wrong checksum: the panel says ${refused}`);
  const checksumError = await referrerError();
  if (checksumError !== expected) fail(`beside the referrer field, after the click: ${checksumError}`);
  const sentCalls = await page.evaluate((n) => window.__walletCalls.slice(n)
    .filter((m) => ["eth_sendTransaction", "eth_estimateGas", "eth_signTransaction"].includes(m)), callsBefore);
  if (sentCalls.length) fail(`a refused buy reached the wallet: ${sentCalls}`);
  await page.locator("#trade-panel").screenshot({ path: screenshot.replace(/(\.png)?$/, "-checksum.png") });

  const decoyCalls = await page.evaluate(() => window.__decoyCalls);
  if (decoyCalls.length) fail(`the decoy wallet was asked: ${decoyCalls}`);
  if (problems.length) fail("problems in the page");
  console.log(JSON.stringify({ launchTx, withdrawTx, withdrawable, buyTx, buyQuote, sellTx, sellQuote, movedError, checksumError }));
} finally {
  await browser.close();
}
// stdin's reader would keep the process alive.
process.exit(0);
