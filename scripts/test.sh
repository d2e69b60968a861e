#!/usr/bin/env bash
# Runs every test of the project, installing what they need first:
#   1. the Solidity tests (unit, differential, attack, fuzz, invariant) with forge;
#   2. the gas snapshot check (the six friend.tech cases, committed in contracts/snapshots/);
#   3. the Rust tests: unit tests and the end-to-end tests over a real anvil, the indexer on a
#      SQLite file and on the machine's PostgreSQL (127.0.0.1:5432, trust auth; override with
#      KEYMARKET_TEST_POSTGRES=postgres://user@host:port/admin-db), SIGKILL crash tests and a
#      fault-injecting RPC proxy;
#   4. the disruptive tests, alone: the indexer riding out restarts of the machine's PostgreSQL
#      (pg_ctlcluster restart; the server is started again even if the test fails).
# Set FOUNDRY_PROFILE=ci for the longer fuzz/invariant campaigns (.ci/run does).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { printf '\n[test] %s\n' "$*"; }

scripts/setup.sh --tests
export PATH="$root/node_modules/.bin:$PATH"

pg="${KEYMARKET_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! psql "$pg" -qtAc "SELECT 1" >/dev/null 2>&1; then
  echo "[test] error: PostgreSQL is not reachable at $pg; the indexer tests need it." >&2
  echo "[test]        start it (e.g. pg_ctlcluster <version> main start) or set KEYMARKET_TEST_POSTGRES" >&2
  exit 1
fi
say "PostgreSQL reachable at $pg"

say "formatting and lints (cargo fmt --check, forge fmt --check, clippy -D warnings)"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  say "installing rustfmt and clippy (rustup component add)"
  rustup component add rustfmt clippy
fi
cargo fmt --all --check
(cd contracts && forge fmt --check)
cargo clippy --workspace --all-targets --locked -- -D warnings

say "forge tests (profile: ${FOUNDRY_PROFILE:-default})"
(cd contracts && FORGE_SNAPSHOT_CHECK=true forge test)

say "cargo tests (workspace: bindings, simulator, indexer; end-to-end over anvil, SQLite, PostgreSQL)"
# anvil writes older blocks' states to disk and a killed anvil leaves them: the tests' anvils
# keep them under the target's tmp folder, emptied before and after.
anvil_cache="${CARGO_TARGET_DIR:-$root/target}/tmp/anvil"
rm -rf "$anvil_cache"
trap 'rm -rf "$anvil_cache"' EXIT
cargo test --workspace --locked

say "disruptive tests, one at a time (restart the machine's PostgreSQL under a running indexer)"
# The ignored tests of crash.rs only: other ignored tests are measurements, run by hand.
cargo test --locked --test it -- --ignored --test-threads=1 crash::

say "all tests passed"
