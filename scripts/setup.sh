#!/usr/bin/env bash
# Installs what keymarket needs, idempotently, and says what it does:
#   - the Foundry tools (forge, anvil, cast) and solc 0.8.37 from npm, pinned by package-lock.json;
#   - OpenZeppelin contracts (npm), used by the Solidity sources;
#   - checks for cargo and node.
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
