//! What the trader's commands print. The result goes to stdout in one piece at the end — text,
//! or exactly one JSON object with `--json` — and progress to stderr. A failure is `error: …` on
//! stderr, or with `--json` `{"error": {"message": …}}` on stdout (plus `"tx"` when a
//! transaction was sent). A closed pipe (`| head`) ends the process quietly (status 141, as
//! for SIGPIPE); another write error (a full disk) is an error in words (status 1).

use std::{io::Write, process::ExitCode};

use alloy::primitives::{TxHash, U256};
use keymarket_contracts::revert::eth;
use serde_json::{Value, json};

/// A command's result.
pub(crate) enum Output {
    /// Nothing more to print (the command printed as it went).
    Done,
    /// Lines for a person.
    Text(String),
    /// One JSON object for a script.
    Json(Value),
}

/// Why a sent transaction's outcome is unknown: it was sent (or may have been) and may still be
/// mined. Its hash is always told.
#[derive(Debug, thiserror::Error)]
#[error(
    "tx {hash} {} and may still be mined: {why}; check it with `keymarket tx {hash}`",
    if *.surely_sent { "was sent" } else { "may have been sent" }
)]
pub(crate) struct Unconfirmed {
    pub(crate) hash: TxHash,
    /// Whether the RPC accepted it (else its answer never came).
    pub(crate) surely_sent: bool,
    pub(crate) why: String,
    /// Ctrl-C (exit status 130) rather than a timeout.
    pub(crate) interrupted: bool,
}

/// The exit status of a closed stdout, as a shell reports a process killed by SIGPIPE.
const SIGPIPE_STATUS: u8 = 141;

/// Prints `out` on stdout; the exit status.
pub(crate) fn print(out: Output) -> ExitCode {
    let text = match out {
        Output::Done => return ExitCode::SUCCESS,
        Output::Text(t) => t,
        Output::Json(v) => format!("{v}\n"),
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(SIGPIPE_STATUS),
        Err(e) => {
            eprintln!("error: cannot write the output: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a failure (`json`: as a JSON object on stdout); the exit status (130 after Ctrl-C).
pub(crate) fn fail(e: &eyre::Report, json: bool) -> ExitCode {
    let scrub = crate::net::redact::scrub;
    let unconfirmed = e.downcast_ref::<Unconfirmed>();
    let status = if unconfirmed.is_some_and(|u| u.interrupted) {
        ExitCode::from(130)
    } else {
        ExitCode::FAILURE
    };
    if json {
        let mut error = json!({ "message": scrub(&e.to_string()) });
        let causes: Vec<String> = e.chain().skip(1).map(|c| scrub(&c.to_string())).collect();
        if !causes.is_empty() {
            error["causes"] = json!(causes);
        }
        if let Some(u) = unconfirmed {
            error["tx"] = json!(u.hash.to_string());
        }
        let _ = print(Output::Json(json!({ "error": error })));
    } else if std::env::var("KEYMARKET_BACKTRACE").is_ok_and(|v| v == "1") {
        eprintln!("{}", scrub(&format!("error: {e:?}")));
    } else {
        eprintln!("error: {}", scrub(&e.to_string()));
        let mut last = e.to_string();
        for cause in e.chain().skip(1).map(|c| c.to_string()) {
            if cause != last {
                eprintln!("  caused by: {}", scrub(&cause));
            }
            last = cause;
        }
    }
    status
}

/// `println!` panics when stdout is closed or full; commands that print as they go (index,
/// export, up) end then as `print` would: quietly on a closed pipe, with the error otherwise.
pub(crate) fn quiet_stdout_failures() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if let Some(why) = message.strip_prefix("failed printing to stdout: ") {
            if why.contains("Broken pipe") {
                std::process::exit(i32::from(SIGPIPE_STATUS));
            }
            eprintln!("error: cannot write the output: {why}");
            std::process::exit(1);
        }
        default(info);
    }));
}

/// An amount as every JSON answer shows one: ETH as a decimal string and wei as an integer
/// string.
pub(crate) fn amount(wei: U256) -> Value {
    json!({ "eth": eth_digits(wei), "wei": wei.to_string() })
}

/// A `Trade` event as every JSON answer shows one.
pub(crate) fn trade_event(t: &keymarket_contracts::KeyMarket::Trade) -> Value {
    json!({
        "trader": t.trader.to_string(),
        "subject": t.subject.to_string(),
        "isBuy": t.isBuy,
        "shareAmount": t.shareAmount.to_string(),
        "ethAmount": amount(t.ethAmount),
        "protocolEthAmount": amount(t.protocolEthAmount),
        "subjectEthAmount": amount(t.subjectEthAmount),
        "supply": t.supply.to_string(),
    })
}

/// A signed amount (a PnL) in the same shape.
pub(crate) fn signed_amount(wei: i128) -> Value {
    let sign = if wei < 0 { "-" } else { "" };
    let abs = U256::from(wei.unsigned_abs());
    json!({ "eth": format!("{sign}{}", eth_digits(abs)), "wei": wei.to_string() })
}

/// A signed amount for a person: "-2.5 ETH".
pub(crate) fn signed_eth(wei: i128) -> String {
    let sign = if wei < 0 { "-" } else { "" };
    format!("{sign}{}", eth(U256::from(wei.unsigned_abs())))
}

fn eth_digits(wei: U256) -> String {
    eth(wei).trim_end_matches(" ETH").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_have_one_shape() {
        assert_eq!(
            amount(U256::from(1_500_000_000_000_000_000u64)),
            json!({"eth": "1.5", "wei": "1500000000000000000"})
        );
        assert_eq!(
            signed_amount(-2_500_000_000_000_000_000),
            json!({"eth": "-2.5", "wei": "-2500000000000000000"})
        );
        assert_eq!(signed_eth(-1_000_000_000_000_000_000), "-1 ETH");
    }
}
