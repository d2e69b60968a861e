#!/usr/bin/env bash
# Instruction-count benchmark of the indexer: indexes an anvil chain of N simulated trades
# (default 60,000; built once and kept under .keymarket/bench/ like scripts/bench-index.sh's)
# into a fresh SQLite file under valgrind's callgrind, and prints the instructions the indexer
# executed (all its threads, SQLite's included): in all, per trade, and split by stage. With
# BASELINE_BIN, another keymarket binary does the same and the ratio is printed.
#
# Instruction counts do not depend on what else the machine is doing (the same binary and chain
# give the same count within ~0.2%), so this compares two versions of the indexer's own work
# where wall-clock runs on a shared machine vary by 15-30%. It does not measure waiting, I/O or
# anvil; scripts/bench-index.sh measures the whole pipeline. Below 100,000 trades a backfill
# keeps all its indexes (the path of every backfill's start and of live indexing); above, the
# bulk path drops and rebuilds them, and callgrind runs ~50x slower than native.
#   scripts/bench-instructions.sh [TRADES]
# Env: BASELINE_BIN (optional), PORT (default 8549).
set -euo pipefail
export RUST_LOG="${RUST_LOG:-warn}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source "$root/scripts/lib/anvil.sh"
trades="${1:-60000}"
port="${PORT:-8549}"
rpc="http://127.0.0.1:$port"
dir=".keymarket/bench"
state="$dir/chain-$trades.json"
dep="$dir/deployment-$trades.json"
command -v valgrind >/dev/null || { echo "[bench] error: valgrind is required (Debian: apt-get install valgrind)" >&2; exit 1; }
scripts/setup.sh
cargo build --release --locked --bin keymarket
if [[ ! -f "$state" || ! -f "$dep" ]]; then
  echo "[bench] no chain of $trades trades yet: building it with scripts/bench-index.sh"
  BENCH_CHAIN_ONLY=1 PORT="$port" scripts/bench-index.sh "$trades"
fi
anvil=node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
cast=node_modules/@foundry-rs/cast-linux-amd64/bin/cast
env -u RUST_LOG "$anvil" --port "$port" --accounts 60 "${KEYMARKET_ANVIL_ARGS[@]}" --load-state "$state" &
anvil_pid=$!
out="$(mktemp -d)"
trap 'kill -INT "$anvil_pid" 2>/dev/null || true; wait "$anvil_pid" 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 600); do "$cast" chain-id --rpc-url "$rpc" >/dev/null 2>&1 && break; sleep 0.5; done
echo "[bench] chain of $trades trades loaded: head block $("$cast" block-number --rpc-url "$rpc")"

# Inclusive instructions of the function whose name matches (callgrind_annotate lists a function
# once per source file it spans; the largest figure is the function's own total).
inclusive() { grep -E "$2" "$1" | awk '{gsub(",", "", $1); if ($1 + 0 > m + 0) m = $1} END {print m + 0}'; }
measure() { # label binary -> sets total
  local label="$1" bin="$2"
  rm -f "$out"/idx.db* "$out"/cg.*
  echo "[bench] $label: $bin under callgrind"
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" "$bin" index --rpc-url "$rpc" \
    --deployment "$dep" --database-url "sqlite:$out/idx.db" --quiet --initial-range 50 \
    --max-range 5000 --concurrency 2 2>"$out/valgrind.log" | grep -E "^  trades " | tee "$out/trades.txt"
  callgrind_annotate --inclusive=yes "$out"/cg.* 2>/dev/null > "$out/annotated.txt"
  total=$(grep -oP '^\s*\K[0-9,]+(?= \(100\.0%\)\s+PROGRAM TOTALS)' "$out/annotated.txt" | tr -d ,)
  local indexed
  indexed=$(awk '{print $2}' "$out/trades.txt")
  awk -v t="$total" -v n="$indexed" \
    -v fetch="$(inclusive "$out/annotated.txt" 'keymarket_indexer::(sync::)?batches::\{\{closure\}\}::\{\{closure\}\}')" \
    -v commit="$(inclusive "$out/annotated.txt" '(keymarket_indexer::store::Store|keymarket_store::write::<impl keymarket_store::Store>|keymarket_store::commit::<impl keymarket_store::StoreWriter>)::commit::\{\{closure\}\}')" \
    -v step="$(inclusive "$out/annotated.txt" 'sqlite3\.c:sqlite3_step ')" \
    'BEGIN {
      printf "  %.3f G instructions for %d trades: %.0f per trade\n", t / 1e9, n, t / n
      printf "  by stage (inclusive, %% of all): fetch+decode tasks %.1f%%, store commits on the indexer'"'"'s task %.1f%% (binding, aggregates), SQLite statements %.1f%%\n", 100 * fetch / t, 100 * commit / t, 100 * step / t
    }'
}

measure "this build" target/release/keymarket
new_total=$total
if [[ -n "${BASELINE_BIN:-}" ]]; then
  measure "baseline" "$BASELINE_BIN"
  awk -v a="$new_total" -v b="$total" 'BEGIN {printf "[bench] instructions, this build / baseline: %.3f\n", a / b}'
fi
