//! The dashboard: one HTML page, its scripts and style, uPlot and ethers (from npm, pinned by
//! package-lock.json), all embedded in the binary at build time. The page reads the JSON API of
//! the same origin; its trade panel talks to the browser's wallet, with KeyMarket's ABI as
//! compiled (`/assets/keymarket-abi.json`: [`keymarket_contracts::KEYMARKET_ABI_JSON`], from the
//! contract's build artifact, not a copy). The SQL box's reference (docs/sql.md) is served at
//! `/docs/sql`, so that the page links to nothing outside the server.

use std::sync::LazyLock;

use axum::{
    Router,
    http::header,
    response::{Html, IntoResponse},
    routing::get,
};

const INDEX: &str = include_str!("../dashboard/index.html");
const APP_JS: &str = include_str!("../dashboard/app.js");
const TRADE_JS: &str = include_str!("../dashboard/trade.js");
const SQL_JS: &str = include_str!("../dashboard/sql.js");
const COHORTS_JS: &str = include_str!("../dashboard/cohorts.js");
const ETHERS_JS: &str = include_str!("../../node_modules/ethers/dist/ethers.umd.min.js");
const APP_CSS: &str = include_str!("../dashboard/app.css");
const UPLOT_JS: &str = include_str!("../../node_modules/uplot/dist/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../node_modules/uplot/dist/uPlot.min.css");
/// The ABI the trade panel builds its `ethers.Contract` with.
const KEYMARKET_ABI_JSON: &str = keymarket_contracts::KEYMARKET_ABI_JSON;
const SQL_DOCS: &str = include_str!("../../docs/sql.md");

/// docs/sql.md as a minimal HTML page: the markdown itself, escaped, in a `<pre>`.
static SQL_DOCS_PAGE: LazyLock<String> = LazyLock::new(sql_docs_page);

fn sql_docs_page() -> String {
    let mut escaped = String::with_capacity(SQL_DOCS.len() + SQL_DOCS.len() / 20);
    for c in SQL_DOCS.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            c => escaped.push(c),
        }
    }
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>keymarket: SQL over HTTP</title>\n<link rel=\"icon\" href=\"data:,\">\n\
         <style>body{{margin:0;padding:1rem;font:14px/1.45 system-ui,sans-serif;color:#1d2330}}\
         pre{{white-space:pre-wrap;overflow-wrap:anywhere;font:13px/1.45 ui-monospace,monospace}}\
         </style>\n</head>\n<body>\n<p><a href=\"/\">← the dashboard</a> · \
         docs/sql.md of this server's build</p>\n<pre>{escaped}</pre>\n</body>\n</html>\n"
    )
}

/// The dashboard's routes: `/`, `/assets/*` and `/docs/sql`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let asset = |mime: &'static str, body: &'static str| {
        get(move || async move {
            (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
                .into_response()
        })
    };
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route(
            "/docs/sql",
            get(|| async {
                (
                    [(header::CACHE_CONTROL, "no-cache")],
                    Html(SQL_DOCS_PAGE.as_str()),
                )
            }),
        )
        .route(
            "/assets/app.js",
            asset("text/javascript; charset=utf-8", APP_JS),
        )
        .route(
            "/assets/trade.js",
            asset("text/javascript; charset=utf-8", TRADE_JS),
        )
        .route(
            "/assets/sql.js",
            asset("text/javascript; charset=utf-8", SQL_JS),
        )
        .route(
            "/assets/cohorts.js",
            asset("text/javascript; charset=utf-8", COHORTS_JS),
        )
        .route(
            "/assets/keymarket-abi.json",
            asset("application/json", KEYMARKET_ABI_JSON),
        )
        .route(
            "/assets/ethers.js",
            asset("text/javascript; charset=utf-8", ETHERS_JS),
        )
        .route("/assets/app.css", asset("text/css; charset=utf-8", APP_CSS))
        .route(
            "/assets/uplot.js",
            asset("text/javascript; charset=utf-8", UPLOT_JS),
        )
        .route(
            "/assets/uplot.css",
            asset("text/css; charset=utf-8", UPLOT_CSS),
        )
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    /// What [`drift`] checked: `(name, line)` of trade.js.
    #[derive(Debug, Default)]
    struct Checked {
        /// `trade.market.<name>(…)`: calls of the contract.
        called: Vec<(String, usize)>,
        /// `send(label, "<name>", [args], value)`: simulated, then sent through the wallet.
        sent: Vec<(String, usize)>,
        /// `case "<name>":` in `explain`: errors put in words.
        errors: Vec<(String, usize)>,
    }

    /// The line of byte `at` of `text`.
    fn line(text: &str, at: usize) -> usize {
        text[..at].matches('\n').count() + 1
    }

    /// `text` starts with an opening `(` or `[`: the top-level comma-separated items up to its
    /// matching closer (trimmed; none for `()` or `[]`). String literals ("…", '…', `…`) are
    /// skipped whole. `None` if the closer is missing.
    fn items(text: &str) -> Option<Vec<&str>> {
        let (mut depth, mut quote, mut escaped) = (0usize, None, false);
        let (mut start, mut items) = (1, vec![]);
        for (i, c) in text.char_indices() {
            if let Some(q) = quote {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    _ if c == q => quote = None,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' | '\'' | '`' => quote = Some(c),
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        let last = text[start..i].trim();
                        if !last.is_empty() {
                            items.push(last);
                        }
                        return Some(items);
                    }
                }
                ',' if depth == 1 => {
                    items.push(text[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        None
    }

    /// The body of the function whose declaration is `head`, as a byte range of `js`: from
    /// `head` to the first `}` alone on a line.
    fn body(js: &str, head: &str) -> Option<std::ops::Range<usize>> {
        let start = js.find(head)?;
        let end = start + js[start..].find("\n}\n")?;
        Some(start..end)
    }

    /// Checks a use of the ABI's function `name` with `args` (its arguments as written; ethers
    /// takes one more, the overrides `{…}`, after the function's own).
    fn check_function(
        abi: &[Value],
        name: &str,
        args: &[&str],
        at: usize,
        problems: &mut Vec<String>,
    ) -> Option<Value> {
        let overloads: Vec<&Value> = abi
            .iter()
            .filter(|e| e["type"] == "function" && e["name"] == name)
            .collect();
        if overloads.is_empty() {
            problems.push(format!(
                "trade.js line {at}: KeyMarket's ABI has no function {name}"
            ));
            return None;
        }
        let inputs = |e: &Value| e["inputs"].as_array().map_or(0, Vec::len);
        let fits: Vec<&Value> = overloads
            .into_iter()
            .filter(|e| {
                args.len() == inputs(e)
                    || (args.len() == inputs(e) + 1
                        && args.last().is_some_and(|a| a.starts_with('{')))
            })
            .collect();
        match fits.as_slice() {
            [one] => Some((*one).clone()),
            [] => {
                problems.push(format!(
                    "trade.js line {at}: {name} with {} argument(s), ({}), which no {name} of \
                     KeyMarket's ABI takes",
                    args.len(),
                    args.join(", ")
                ));
                None
            }
            _ => {
                problems.push(format!(
                    "trade.js line {at}: {name} with {} argument(s) is ambiguous: KeyMarket's ABI \
                     has several (ethers refuses the call)",
                    args.len()
                ));
                None
            }
        }
    }

    /// What `js` (trade.js) uses of the contract that `abi` lacks, and what it checked. Every
    /// `trade.market.<fn>(…)` must be a function of the ABI with as many inputs; every function
    /// `send(label, "<fn>", [args], value)` simulates and sends too, and is payable if `value`
    /// is not `0n`; every error `explain` puts in words must be an error of the ABI with the
    /// arguments it reads (`a[i]`). A use of `trade.market` or of `send(` in a shape this check
    /// cannot read is a problem too, so that nothing is skipped unseen.
    fn drift(js: &str, abi: &[Value]) -> (Vec<String>, Checked) {
        let mut problems = vec![];
        let mut checked = Checked::default();
        let send_body = body(js, "async function send(");
        if send_body.is_none() {
            problems.push("trade.js has no `async function send(`".into());
        }
        for (i, _) in js.match_indices("trade.market") {
            let at = line(js, i);
            let rest = &js[i + "trade.market".len()..];
            if rest.starts_with(".interface.") {
                // ethers' Interface of the contract, not one of its functions.
            } else if let Some(member) = rest.strip_prefix('.') {
                let name_len = member
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
                    .unwrap_or(member.len());
                let (name, after) = member.split_at(name_len);
                match items(after).filter(|_| after.starts_with('(')) {
                    Some(args) => {
                        check_function(abi, name, &args, at, &mut problems);
                        checked.called.push((name.to_string(), at));
                    }
                    None => problems.push(format!(
                        "trade.js line {at}: trade.market.{name} is not called as \
                         trade.market.{name}(…); this check cannot read it"
                    )),
                }
            } else if rest.starts_with("[method]")
                && send_body.as_ref().is_some_and(|b| b.contains(&i))
            {
                // `send`'s calls: checked at send's call sites below.
            } else if rest.starts_with(['[', '?']) {
                problems.push(format!(
                    "trade.js line {at}: a use of trade.market this check cannot read"
                ));
            }
        }
        for (i, _) in js.match_indices("send(") {
            let before = &js[..i];
            if before.ends_with("function ")
                || before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                continue;
            }
            let at = line(js, i);
            let args = items(&js[i + "send".len()..]).unwrap_or_default();
            let name = args
                .get(1)
                .and_then(|a| a.strip_prefix('"'))
                .and_then(|a| a.strip_suffix('"'))
                .filter(|a| !a.contains('"'));
            let call_args = args
                .get(2)
                .filter(|a| a.starts_with('['))
                .and_then(|a| items(a));
            let (Some(name), Some(call_args), 4 | 5) = (name, call_args, args.len()) else {
                problems.push(format!(
                    "trade.js line {at}: send( not in the form send(label, \"function\", [args], \
                     value[, shown]); this check cannot read it"
                ));
                continue;
            };
            if let Some(f) = check_function(abi, name, &call_args, at, &mut problems)
                && args[3] != "0n"
                && f["stateMutability"] != "payable"
            {
                problems.push(format!(
                    "trade.js line {at}: sends {name} with a value ({}), but KeyMarket's {name} \
                     is not payable",
                    args[3]
                ));
            }
            checked.sent.push((name.to_string(), at));
        }
        let Some(explain) = body(js, "function explain(") else {
            problems.push("trade.js has no `function explain(`".into());
            return (problems, checked);
        };
        let mut offset = explain.start;
        for text in js[explain].split_inclusive('\n') {
            let at = line(js, offset);
            offset += text.len();
            let Some(case) = text.trim_start().strip_prefix("case \"") else {
                continue;
            };
            let Some(name) = case.split('"').next() else {
                continue;
            };
            checked.errors.push((name.to_string(), at));
            let Some(error) = abi
                .iter()
                .find(|e| e["type"] == "error" && e["name"] == name)
            else {
                problems.push(format!(
                    "trade.js line {at}: explain puts the error {name} in words, which \
                     KeyMarket's ABI lacks"
                ));
                continue;
            };
            let inputs = error["inputs"].as_array().map_or(0, Vec::len);
            for (j, _) in text.match_indices("a[") {
                let digits: String = text[j + 2..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if digits.parse::<usize>().is_ok_and(|k| k >= inputs) {
                    problems.push(format!(
                        "trade.js line {at}: explain reads a[{digits}] of {name}, which has \
                         {inputs} argument(s) in KeyMarket's ABI"
                    ));
                }
            }
        }
        (problems, checked)
    }

    fn served_abi() -> Vec<Value> {
        serde_json::from_str(KEYMARKET_ABI_JSON).expect("KeyMarket's ABI is a JSON array")
    }

    /// `/assets/keymarket-abi.json`, which trade.js fetches, is the bindings crate's ABI, as
    /// JSON, cached like the other assets.
    #[tokio::test]
    async fn the_abi_is_served_as_json() {
        assert!(TRADE_JS.contains("fetch(\"/assets/keymarket-abi.json\")"));
        let response = routes::<()>()
            .oneshot(
                Request::get("/assets/keymarket-abi.json")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(body, keymarket_contracts::KEYMARKET_ABI_JSON.as_bytes());
        assert!(served_abi().iter().any(|e| e["name"] == "buySharesBounded"));
    }

    /// Every function trade.js calls or sends, and every error it puts in words, is in the ABI
    /// it is served, with the arguments it uses.
    #[test]
    fn trade_js_uses_only_what_the_abi_has() {
        let (problems, checked) = drift(TRADE_JS, &served_abi());
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        // The check read something of each kind: it did not pass by finding nothing.
        assert!(
            !checked.called.is_empty() && !checked.sent.is_empty() && !checked.errors.is_empty(),
            "{checked:?}"
        );
    }

    /// The check fails when trade.js and the ABI part ways: a function or error renamed on either
    /// side, a call with the wrong number of arguments, a value sent to a function not payable.
    #[test]
    fn the_check_finds_drift() {
        let abi = served_abi();
        let edits = [
            (
                "trade.market.quoteSell(",
                "trade.market.quoteSale(",
                "quoteSale",
            ),
            (
                "\"sellSharesBounded\"",
                "\"sellSharesCapped\"",
                "sellSharesCapped",
            ),
            (
                "case \"MaxCostExceeded\"",
                "case \"MaxCostExceed\"",
                "MaxCostExceed",
            ),
            (
                "trade.market.sharesSupply(subject)",
                "trade.market.sharesSupply(subject, 1n)",
                "sharesSupply with 2",
            ),
            (
                "send(\"withdraw\", \"withdraw\", [], 0n)",
                "send(\"withdraw\", \"withdraw\", [], 1n)",
                "withdraw is not payable",
            ),
            (
                "trade.market.withdrawable(trade.account)",
                "trade.market?.withdrawable(trade.account)",
                "cannot read",
            ),
        ];
        for (from, to, said) in edits {
            assert!(TRADE_JS.contains(from), "trade.js no longer has {from}");
            let (problems, _) = drift(&TRADE_JS.replace(from, to), &abi);
            assert!(
                problems.iter().any(|p| p.contains(said)),
                "{to}: {problems:?}"
            );
        }
        // The contract loses a function trade.js calls, or makes one it pays not payable.
        let without: Vec<Value> = abi
            .iter()
            .filter(|e| e["name"] != "withdrawable")
            .cloned()
            .collect();
        let (problems, _) = drift(TRADE_JS, &without);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("no function withdrawable")),
            "{problems:?}"
        );
        let mut unpaid = abi.clone();
        for e in &mut unpaid {
            if e["name"] == "buyFirstShares" {
                e["stateMutability"] = "nonpayable".into();
            }
        }
        let (problems, _) = drift(TRADE_JS, &unpaid);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("buyFirstShares is not payable")),
            "{problems:?}"
        );
    }
}
