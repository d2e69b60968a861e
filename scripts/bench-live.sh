#!/usr/bin/env bash
# Head latency while following a chain with a real block time: a fresh anvil, a block of
# TRADES simulated trades every INTERVAL_MS (default 2000, Base's block time), the indexer
# following with its default head poll (POLL_MS, default 500); per block, the time from its
# receipts being available until a separate database connection sees all its trades.
# On SQLite and on the machine's PostgreSQL. Usage: scripts/bench-live.sh [BLOCKS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/anvil.sh
blocks="${1:-100}"
interval="${INTERVAL_MS:-2000}"
poll="${POLL_MS:-500}"
per_block="${TRADES:-50}"
pg_admin="${KEYMARKET_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
port="${PORT:-8655}"
rpc="http://127.0.0.1:$port"

scripts/setup.sh >/dev/null
echo "[bench-live] building the release binary"
cargo build --release --locked --bin keymarket
km="${CARGO_TARGET_DIR:-target}/release/keymarket"
anvil=node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
dir="$(mktemp -d)"
env -u RUST_LOG "$anvil" --port "$port" --accounts 60 "${KEYMARKET_ANVIL_ARGS[@]}" &
anvil_pid=$!
db="km_bench_live_$$"
cleanup() {
  kill -INT "$anvil_pid" 2>/dev/null || true
  wait "$anvil_pid" 2>/dev/null || true
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 120); do node_modules/@foundry-rs/cast-linux-amd64/bin/cast chain-id --rpc-url "$rpc" >/dev/null 2>&1 && break; sleep 0.5; done
"$km" deploy --rpc-url "$rpc" --out "$dir/deployment.json" >/dev/null
args=(--rpc-url "$rpc" --deployment "$dir/deployment.json" --blocks "$blocks" --trades-per-block "$per_block" --poll-ms "$poll" --interval-ms "$interval")
echo "[bench-live] SQLite: $blocks blocks, one every $interval ms, head polled every $poll ms"
"$km" bench-live "${args[@]}" --database-url "sqlite:$dir/live.db" 2>/dev/null
psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
echo "[bench-live] PostgreSQL: the same"
"$km" bench-live "${args[@]}" --database-url "${pg_admin%/*}/$db" 2>/dev/null
