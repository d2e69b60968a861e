// keymarket trade panel: a browser wallet (EIP-6963 discovery, else the injected EIP-1193
// `window.ethereum`) trades the subject's keys through KeyMarket's bounded functions, with a live
// quote, a slippage bound, a deadline and an optional referrer (an address checked by its
// EIP-55 checksum); every call is simulated before the wallet is asked to
// send it, and the market's errors are shown in words. Without a wallet the page stays read-only.
// Uses ethers (npm, embedded as /assets/ethers.js).
"use strict";

// KeyMarket's ABI (JSON) as compiled: the server embeds it from the contract's build artifact
// (keymarket_contracts::KEYMARKET_ABI_JSON), so there is no copy of it here to fall behind the
// contract. Fetched once, when a wallet connects; a failed fetch is tried again at the next.
let marketAbi = null;
function loadMarketAbi() {
  marketAbi ??= fetch("/assets/keymarket-abi.json").then(async (res) => {
    if (!res.ok) throw new Error(`cannot load the market's ABI (/assets/keymarket-abi.json): HTTP ${res.status}`);
    return res.json();
  }).catch((e) => {
    marketAbi = null;
    throw e;
  });
  return marketAbi;
}

const trade = { quote: null, eth: null, provider: null, signer: null, account: null, market: null, address: null, chainId: null, providers: [] };

const ethText = (wei) => `${ethers.formatEther(wei)} ETH`;

// The market's error in words (the CLI says the same: keymarket_contracts::revert).
function explain(e) {
  const data = e?.data ?? e?.info?.error?.data ?? e?.error?.data;
  let parsed = null;
  try { if (data) parsed = trade.market.interface.parseError(data); } catch (_) { /* not ours */ }
  if (!parsed) return e?.shortMessage || e?.message || String(e);
  const a = parsed.args;
  switch (parsed.name) {
    case "MaxCostExceeded": return `the price moved: this buy now costs ${ethText(a[0])}, your bound is ${ethText(a[1])}; nothing was sent`;
    case "MinProceedsNotMet": return `the price moved: this sell now pays ${ethText(a[0])}, your bound is ${ethText(a[1])}; nothing was sent`;
    case "DeadlineExpired": return "the deadline passed before the trade was mined; nothing was spent but gas";
    case "InsufficientKeys": return `you hold ${a[0]} of these keys and tried to sell ${a[1]}`;
    case "CannotSellLastKey": return `the last key can never be sold: the supply is ${a[0]} and this sells ${a[1]}`;
    case "InsufficientPayment": return `the payment is short: this buy costs ${ethText(a[0])}`;
    case "OnlySubjectCanBuyFirstKey": return "this subject has no keys yet: only the subject can buy its first key";
    case "NothingToWithdraw": return "there is nothing to withdraw";
    case "SubjectAlreadyExists": return "your keys are already open";
    case "ZeroAmount": return "the amount must be at least one key";
    default: return `the market refused: ${parsed.name}(${a.join(", ")})`;
  }
}

function setTradeStatus(text, kind) {
  const el = $("trade-status");
  el.textContent = text;
  el.className = kind || "";
}

// EIP-6963: wallets announce themselves; `window.ethereum` is the fallback.
function discoverWallets() {
  window.addEventListener("eip6963:announceProvider", (ev) => {
    const d = ev.detail;
    if (d?.provider && !trade.providers.some((p) => p.info.uuid === d.info.uuid)) trade.providers.push(d);
    showConnect();
  });
  window.dispatchEvent(new Event("eip6963:requestProvider"));
  showConnect();
}

function showConnect() {
  const wallets = trade.providers.length + (window.ethereum ? 1 : 0);
  $("wallet-none").hidden = wallets > 0;
  $("connect").hidden = wallets === 0 || trade.account !== null;
  const pick = $("wallet-pick");
  pick.hidden = trade.providers.length < 2 || trade.account !== null;
  pick.replaceChildren(...trade.providers.map((p, i) => {
    const o = document.createElement("option");
    o.value = String(i);
    o.textContent = p.info.name;
    return o;
  }));
}

async function connect() {
  try {
    const chosen = trade.providers.length ? trade.providers[Number($("wallet-pick").value || 0)].provider : window.ethereum;
    trade.eth = chosen;
    const [{ markets }, abi] = await Promise.all([api("/v1/markets"), loadMarketAbi()]);
    const m = markets.find((x) => x.id === state.market) || markets[0];
    trade.address = m.address;
    trade.chainId = m.chainId;
    await chosen.request({ method: "eth_requestAccounts" });
    const current = Number(await chosen.request({ method: "eth_chainId" }));
    if (current !== m.chainId) {
      await chosen.request({ method: "wallet_switchEthereumChain", params: [{ chainId: `0x${m.chainId.toString(16)}` }] });
    }
    trade.provider = new ethers.BrowserProvider(chosen);
    trade.signer = await trade.provider.getSigner();
    trade.account = (await trade.signer.getAddress()).toLowerCase();
    trade.market = new ethers.Contract(trade.address, abi, trade.signer);
    $("account").textContent = trade.account;
    $("wallet-on").hidden = false;
    showConnect();
    await refreshWallet();
  } catch (e) {
    setTradeStatus(`cannot connect: ${e.shortMessage || e.message}`, "error");
  }
}

function currentSubject() {
  return state.page && state.page.startsWith("subject:") ? state.page.slice("subject:".length) : null;
}

// The live quote, the connected account's keys and balances, and whether it can open its keys.
async function refreshWallet() {
  if (!trade.market) return;
  const subject = currentSubject();
  const [owed, ownSupply] = await Promise.all([
    trade.market.withdrawable(trade.account),
    trade.market.sharesSupply(trade.account),
  ]);
  $("your-withdrawable").textContent = ethText(owed);
  $("your-withdrawable").dataset.wei = owed.toString();
  $("withdraw").disabled = owed === 0n;
  $("launch-box").hidden = ownSupply !== 0n;
  if (!subject) return;
  const [held, supply] = await Promise.all([
    trade.market.sharesBalance(subject, trade.account),
    trade.market.sharesSupply(subject),
  ]);
  $("your-keys").textContent = String(held);
  $("your-keys").dataset.keys = String(held);
  $("sell-all").disabled = held === 0n || supply <= 1n;
  if (!trade.quote || trade.quote.subject !== subject) await refreshQuote();
}

async function quoteNow() {
  const subject = currentSubject();
  const side = $("trade-side").value;
  const amount = BigInt($("trade-amount").value || "0");
  if (amount < 1n) throw new Error("the amount must be at least one key");
  if (side === "buy") {
    const [q, spot] = await Promise.all([trade.market.quoteBuy(subject, amount), trade.market.getBuyPrice(subject, 1n)]);
    return { side, subject, amount, price: q.price, protocolFee: q.protocolFee, subjectFee: q.subjectFee, total: q.total, spot };
  }
  const q = await trade.market.quoteSell(subject, amount);
  const spot = (await trade.market.quoteSell(subject, 1n)).price;
  return { side, subject, amount, price: q.price, protocolFee: q.protocolFee, subjectFee: q.subjectFee, total: q.proceeds, spot };
}

// The quote shown is the one a trade is bounded by (plus the slippage): it changes when the
// inputs change or after a trade, not behind the trader's back.
async function refreshQuote() {
  trade.quote = null;
  // Quotes are asynchronous: only the latest request's answer is shown.
  const seq = (trade.quoteSeq = (trade.quoteSeq || 0) + 1);
  try {
    const q = await quoteNow();
    if (seq !== trade.quoteSeq) return;
    trade.quote = q;
    const avg = q.price / q.amount;
    const impact = q.spot === 0n ? 0 : Number(((avg - q.spot) * 10000n) / q.spot) / 100;
    $("trade-quote").textContent =
      `price ${ethText(q.price)} + protocol fee ${ethText(q.protocolFee)} + subject fee ${ethText(q.subjectFee)} → ` +
      `${q.side === "buy" ? "total" : "you receive"} ${ethText(q.total)} · price impact ${impact.toFixed(2)}%`;
    Object.assign($("trade-quote").dataset, { total: q.total.toString(), side: q.side, amount: q.amount.toString() });
  } catch (e) {
    if (seq === trade.quoteSeq) $("trade-quote").textContent = explain(e);
  }
}

async function deadline() {
  const block = await trade.provider.getBlock("latest");
  return BigInt(block.timestamp) + BigInt($("trade-deadline").value || "120");
}

// Simulates, sends through the wallet, waits for the receipt. A trade on this page (`shown`) is
// then followed until the indexer has it.
async function send(label, method, args, value, shown = false) {
  setTradeStatus(`${label}: checking…`, "");
  try {
    await trade.market[method].staticCall(...args, { value });
  } catch (e) {
    setTradeStatus(explain(e), "error");
    return null;
  }
  try {
    setTradeStatus(`${label}: confirm in your wallet…`, "");
    const tx = await trade.market[method](...args, { value });
    setTradeStatus(`${label}: pending ${tx.hash}`, "pending");
    const r = await tx.wait();
    setTradeStatus(`${label}: confirmed in block ${r.blockNumber} (${tx.hash})`, "ok");
    $("trade-status").dataset.tx = tx.hash;
    if (shown) {
      myTxs.add(tx.hash.toLowerCase());
      trade.awaitingIndex = { hash: tx.hash.toLowerCase(), label, block: r.blockNumber };
      $("trade-indexed").textContent = `${label} (block ${r.blockNumber}): waiting for the indexer…`;
    }
    trade.quote = null;
    await refreshWallet();
    return r;
  } catch (e) {
    setTradeStatus(explain(e), "error");
    return null;
  }
}

// A buy's referrer (optional; blank: none), checked as wallets check addresses (EIP-55, see
// checkAddress) and refused in words beside the field, with the checksummed form.
// While typing (`typing`), an address not yet complete is not called malformed.
function checkReferrer(typing = false) {
  const text = $("trade-referrer").value.trim();
  const checked = text ? checkAddress(text) : { address: ethers.ZeroAddress };
  const shown = typing && !checked.checksummed ? null : checked.error;
  $("trade-referrer-error").textContent = shown || "";
  $("trade-referrer-error").hidden = !shown;
  return checked;
}

async function submitTrade(sideOverride, amountOverride) {
  const side = sideOverride || $("trade-side").value;
  if (sideOverride) $("trade-side").value = side;
  const referrer = side === "buy" ? checkReferrer() : { address: ethers.ZeroAddress };
  if (referrer.error) {
    setTradeStatus("not sent: the referrer is refused (see above)", "error");
    return;
  }
  if (amountOverride) $("trade-amount").value = String(amountOverride);
  let q = trade.quote;
  const amount = BigInt($("trade-amount").value || "0");
  if (!q || q.side !== side || q.amount !== amount || q.subject !== currentSubject()) {
    try {
      q = await quoteNow();
    } catch (e) {
      setTradeStatus(explain(e), "error");
      return;
    }
  }
  const bps = BigInt(Math.round(Number($("trade-slippage").value || "1") * 100));
  const until = await deadline();
  if (side === "buy") {
    const bound = (q.total * (10000n + bps) + 9999n) / 10000n;
    await send(`buy ${q.amount} key(s)`, "buySharesBounded", [q.subject, q.amount, bound, referrer.address, until], bound, true);
  } else {
    const bound = (q.total * (10000n - bps)) / 10000n;
    await send(`sell ${q.amount} key(s)`, "sellSharesBounded", [q.subject, q.amount, bound, until], 0n, true);
  }
}

async function sellAll() {
  const subject = currentSubject();
  const [held, supply] = await Promise.all([trade.market.sharesBalance(subject, trade.account), trade.market.sharesSupply(subject)]);
  const n = held < supply - 1n ? held : supply - 1n;
  if (n > 0n) await submitTrade("sell", n);
}

async function launch() {
  const curve = Number($("launch-curve").value);
  const amount = BigInt($("launch-amount").value || "1");
  const price = await trade.market.getPriceOnCurve(curve, 0n, amount);
  const pct = (await trade.market.protocolFeePercent()) + (await trade.market.subjectFeePercent());
  const cost = price + (price * pct) / 10n ** 18n;
  await send(`open your keys (${amount})`, "buyFirstShares", [curve, amount], cost);
}

// Called after the subject's latest trades are drawn: says when the last trade sent from here
// has been indexed (its row is marked in the table).
function noteIndexedTrades() {
  const w = trade.awaitingIndex;
  if (!w || !document.querySelector(`#subject-trades tr[data-tx="${w.hash}"]`)) return;
  $("trade-indexed").textContent = `${w.label} (block ${w.block}) is indexed: marked in the latest trades below`;
  trade.awaitingIndex = null;
}

function initTradePanel() {
  if (typeof ethers === "undefined") return;
  discoverWallets();
  $("connect").addEventListener("click", connect);
  $("trade-submit").addEventListener("click", () => submitTrade());
  $("sell-all").addEventListener("click", sellAll);
  $("withdraw").addEventListener("click", () => send("withdraw", "withdraw", [], 0n));
  $("launch").addEventListener("click", launch);
  const inputsChanged = () => {
    $("trade-submit").textContent = $("trade-side").value === "buy" ? "Buy" : "Sell";
    refreshQuote();
  };
  for (const id of ["trade-side", "trade-amount"]) {
    $(id).addEventListener("input", inputsChanged);
    $(id).addEventListener("change", inputsChanged);
  }
  $("trade-referrer").addEventListener("input", () => checkReferrer(true));
  $("trade-referrer").addEventListener("change", () => checkReferrer());
  setInterval(() => { if (trade.market) refreshWallet().catch(() => {}); }, 2000);
}

initTradePanel();
