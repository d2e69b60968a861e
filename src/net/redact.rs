//! Credentials in URLs are never printed. Providers put API keys in the URL (Alchemy and
//! Infura in the path, others as `https://key@host` or a query parameter); such a URL is shown
//! with its userinfo and every path or query segment of 16 or more key-like characters as
//! `***`, and those secrets are scrubbed from every log line and error the process prints.

use std::{
    io::Write,
    sync::{OnceLock, RwLock},
};

/// The shortest run of key-like characters treated as a credential.
const KEY_LEN: usize = 16;

/// The secrets found in the URLs this process was given.
fn secrets() -> &'static RwLock<Vec<String>> {
    static SECRETS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Vec::new()))
}

fn key_like(s: &str) -> bool {
    s.len() >= KEY_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The credentials in `url`: its userinfo and its key-like path and query segments.
fn credentials(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Some((_, rest)) = url.split_once("://") else {
        return found;
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        found.push(userinfo.to_string());
        found.extend(
            userinfo
                .split(':')
                .filter(|p| !p.is_empty())
                .map(str::to_string),
        );
    }
    for segment in tail.split(['/', '?', '&', '=', '#']) {
        if key_like(segment) {
            found.push(segment.to_string());
        }
    }
    found
}

/// Remembers the credentials of `url`, to be scrubbed from everything printed from now on.
pub(crate) fn register(url: &str) {
    let mut found = credentials(url);
    if found.is_empty() {
        return;
    }
    let mut all = secrets().write().unwrap_or_else(|e| e.into_inner());
    all.append(&mut found);
    // Longest first, so a userinfo is replaced whole before its parts.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    all.dedup();
}

/// `text` with every credential of the registered URLs (and of `url`-looking parts of its own)
/// replaced by `***`.
pub(crate) fn scrub(text: &str) -> String {
    let all = secrets().read().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for s in all.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// `url` as it may be shown.
pub(crate) fn url(url: &str) -> String {
    let mut out = url.to_string();
    for s in credentials(url) {
        out = out.replace(&s, "***");
    }
    out
}

/// The log writer: stderr, every line scrubbed (tracing's fmt layer writes an event in one call).
pub(crate) struct ScrubbedStderr;

impl Write for ScrubbedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_hidden() {
        let cases = [
            (
                "https://base-mainnet.g.alchemy.com/v2/AbCdEfGhIjKlMnOpQrStUv12",
                "https://base-mainnet.g.alchemy.com/v2/***",
            ),
            (
                "https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef",
                "https://mainnet.infura.io/v3/***",
            ),
            (
                "https://user:pass@rpc.example.com/",
                "https://***@rpc.example.com/",
            ),
            (
                "https://token@rpc.example.com",
                "https://***@rpc.example.com",
            ),
            (
                "wss://rpc.example.com/ws?apikey=0123456789abcdef0123",
                "wss://rpc.example.com/ws?apikey=***",
            ),
            // Nothing key-like: shown as given.
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
            (
                "https://mainnet.base.org/rpc",
                "https://mainnet.base.org/rpc",
            ),
        ];
        for (given, shown) in cases {
            assert_eq!(url(given), shown, "{given}");
        }
    }

    #[test]
    fn registered_credentials_are_scrubbed_from_text() {
        register("https://rpc.example.com/v2/SeCrEtKeYoFsIxTeEnChArS");
        let line =
            "error sending request for url (https://rpc.example.com/v2/SeCrEtKeYoFsIxTeEnChArS)";
        assert_eq!(
            scrub(line),
            "error sending request for url (https://rpc.example.com/v2/***)"
        );
        assert_eq!(scrub("nothing secret here"), "nothing secret here");
    }
}
