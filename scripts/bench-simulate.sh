#!/usr/bin/env bash
# Benchmark of the trading simulator: starts a fresh anvil, deploys, sends N trades (default
# 1,000,000) and prints the rate measured from the chain's receipts. The chain can be dumped for
# reuse (e.g. by the indexer benchmark) with DUMP=path/to/state.json.
#   scripts/bench-simulate.sh [TRADES]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source "$root/scripts/lib/anvil.sh"
trades="${1:-1000000}"
port="${PORT:-8547}"
scripts/setup.sh
# The real binaries (the npm wrappers exit 0 on errors and do not forward signals).
cargo build --release --locked --bin keymarket
anvil_args=(--port "$port" --accounts 60 "${KEYMARKET_ANVIL_ARGS[@]}")
[[ -n "${DUMP:-}" ]] && anvil_args+=(--dump-state "$DUMP")
node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil "${anvil_args[@]}" &
anvil_pid=$!
trap 'kill $anvil_pid 2>/dev/null; wait $anvil_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do node_modules/@foundry-rs/cast-linux-amd64/bin/cast chain-id --rpc-url "http://127.0.0.1:$port" >/dev/null 2>&1 && break; sleep 0.2; done
dep="$(mktemp -d)/deployment.json"
target/release/keymarket deploy --rpc-url "http://127.0.0.1:$port" --out "$dep" >/dev/null
echo "[bench] simulating $trades trades on anvil (nproc=$(nproc))"
/usr/bin/time -v target/release/keymarket simulate --rpc-url "http://127.0.0.1:$port" --deployment "$dep" \
  --trades "$trades" --seed 1 --batch-size 1000 --profile flat 2> >(grep -E "Maximum resident|Elapsed" >&2)
