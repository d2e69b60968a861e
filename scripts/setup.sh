#!/usr/bin/env bash
# Installs what keymarket needs, idempotently, and says what it does:
#   - the Foundry tools (forge, anvil, cast) and solc 0.8.37 from npm, pinned by package-lock.json;
#   - OpenZeppelin contracts (npm), used by the Solidity sources; uPlot and ethers (npm), the
#     dashboard's charts and its wallet panel's client, embedded in the binary; playwright-core
#     (npm), which drives the browser tests;
#   - checks for cargo and node.
# With --tests (scripts/test.sh), also what only the tests use:
#   - Chromium from the system's package manager (apt-get, when missing), for the dashboard test;
#   - schemathesis from PyPI (pinned in tests/api-fuzz/requirements.txt) in .keymarket/venv, which
#     fuzzes the API against its OpenAPI document, and DuckDB (pinned in tests/dune/requirements.txt),
#     which runs Dune queries over the exports.
# A second run with nothing changed takes well under a second.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf '[setup] %s\n' "$*"; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "[setup] error: '$1' is required but not installed ($2)" >&2; exit 1; }; }

need node "Node.js 20+ from your package manager"
need npm "comes with Node.js"
need cargo "Rust via rustup: https://rustup.rs"

stamp="node_modules/.keymarket-lock-sha"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x node_modules/.bin/forge && -x node_modules/.bin/anvil ]]; then
  say "toolchain up to date (node_modules matches package-lock.json)"
else
  say "installing the pinned toolchain with npm ci (forge, anvil, cast 1.7.1; solc 0.8.37; OpenZeppelin 5.7.0)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

say "forge: $(node_modules/.bin/forge --version | head -n1)"
say "anvil: $(node_modules/.bin/anvil --version | head -n1)"
say "solc:  $(scripts/solc --version | tail -n1)"

if [[ "${1:-}" != --tests ]]; then
  exit 0
fi

if command -v chromium >/dev/null 2>&1 || [[ -x "${CHROMIUM:-/usr/bin/chromium}" ]]; then
  say "chromium: $("${CHROMIUM:-chromium}" --version 2>/dev/null | head -n1)"
elif command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
  say "installing chromium with apt-get (headless browser for the dashboard test)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  say "chromium: $(chromium --version | head -n1)"
else
  echo "[setup] warning: chromium is missing and cannot be installed here (needs apt-get as root);" >&2
  echo "[setup]          the dashboard test needs it: install chromium, or set CHROMIUM=/path/to/chrome" >&2
fi

venv=".keymarket/venv"
reqs=(tests/api-fuzz/requirements.txt tests/dune/requirements.txt)
want_py="$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)"
if [[ -x "$venv/bin/schemathesis" && "$(cat "$venv/.requirements-sha" 2>/dev/null)" == "$want_py" ]]; then
  say "schemathesis and duckdb up to date ($venv)"
else
  need python3 "Python 3.9+ with venv, for the API fuzz test and the DuckDB export test"
  say "installing schemathesis and duckdb into $venv (pip, pinned by ${reqs[*]})"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${reqs[@]/#/-r}"
  echo "$want_py" > "$venv/.requirements-sha"
fi
say "schemathesis: $("$venv/bin/schemathesis" --version)"
say "duckdb: $("$venv/bin/python" -c 'import duckdb; print(duckdb.__version__)')"
