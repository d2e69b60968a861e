#!/usr/bin/env bash
# Indexer benchmark: builds (once) an anvil chain with N simulated trades (default 1,000,000),
# kept as an anvil state file under .keymarket/bench/, then indexes it from scratch into a fresh
# SQLite file and a fresh PostgreSQL database, printing trades/s end to end, the store stage
# alone, the time spent waiting for the RPC, and peak memory (RSS). Ceilings in the same run, in
# alternating rounds: the raw eth_getLogs pass (the market's logs over ranges of the indexer's
# size, counted, not parsed: the source's own rate) and the RPC side alone (--fetch-only: fetch +
# decode, nothing stored); medians and their ratios at the end. Also indexes the first quarter of
# the chain, so peak memory at N/4 and at N can be compared.
#   scripts/bench-index.sh [TRADES]
# Env: PG_ADMIN (default postgres://postgres@127.0.0.1:5432/postgres), PORT (default 8548),
#      BASELINE_BIN (optional: another keymarket binary, e.g. the previous release's, to index the
#      whole chain into SQLite and PostgreSQL in each round too; ratios of medians are printed),
#      BENCH_CHAIN_ONLY=1 (build and save the chain, then stop),
#      CONCURRENCY (ranges in flight, default 2),
#      ROUNDS (default 3: each round runs every case once, in turn, and the medians are reported;
#      the machine is shared, single runs vary by 15-30%),
#      PROFILE (default flat: anvil's 60 dev accounts trade 1,000 trades a block; `friendtech`: the
#      realistic mode, data shaped like friend.tech's -- a DAYS-day arc (default 60) with a daily
#      cycle as block timestamps ending now, one generated trader per 12 trades and one subject
#      per four traders (override with TRADERS / SUBJECTS), each impersonated and funded by anvil;
#      its chain is kept apart, as chain-N-friendtech.json. Several, space-separated -- e.g.
#      PROFILE="friendtech flat" -- benchmark each chain in turn in one run, each with its own
#      rounds, medians and ratios, then the live latency once).
set -euo pipefail
export RUST_LOG="${RUST_LOG:-warn}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib/anvil.sh
trades="${1:-1000000}"
rounds="${ROUNDS:-3}"
# Ranges in flight. 2, not the indexer's default of 4: anvil runs on the same two cores, answers
# at once, and serving 4 ranges concurrently costs it more CPU (alternating runs: 2 beat 4 in 5 of
# 6 pairs, ~1.13x, peak RSS 262-297 vs 316-336 MB). Against a remote RPC, latency favours more.
concurrency="${CONCURRENCY:-2}"
port="${PORT:-8548}"
pg_admin="${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}"
rpc="http://127.0.0.1:$port"
dir=".keymarket/bench"
profiles="${PROFILE:-flat}"
for profile in $profiles; do
  [[ "$profile" == flat || "$profile" == friendtech ]] || { echo "PROFILE must list flat and/or friendtech, not '$profile'" >&2; exit 2; }
done
mkdir -p "$dir"
scripts/setup.sh
# The real binaries (the npm wrappers exit 0 on errors and do not forward signals).
cargo build --release --locked --bin keymarket
km="${CARGO_TARGET_DIR:-target}/release/keymarket"
anvil=node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil

start_anvil() {
  env -u RUST_LOG "$anvil" --port "$port" --accounts 60 "${KEYMARKET_ANVIL_ARGS[@]}" "$@" &
  anvil_pid=$!
  for _ in $(seq 600); do node_modules/@foundry-rs/cast-linux-amd64/bin/cast chain-id --rpc-url "$rpc" >/dev/null 2>&1 && return; sleep 0.5; done
  echo "anvil did not start" >&2; exit 1
}
stop_anvil() { kill -INT "$anvil_pid" 2>/dev/null || true; wait "$anvil_pid" 2>/dev/null || true; }
trap stop_anvil EXIT

# CPU seconds (user + system) anvil has used so far: what serving the logs costs, on the same cores.
anvil_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$anvil_pid/stat"; }
anvil_cpu_since() { echo "  anvil CPU $(awk -v a="$(anvil_cpu)" -v b="$1" 'BEGIN {printf "%.2f", a - b}') s"; }
time_fmt="  wall %e s, indexer CPU %U s user + %S s system, peak RSS %M KB"
run_index() { # label db-url [extra args]
  local label="$1" url="$2"; shift 2
  echo "[bench] $label"
  local a0; a0=$(anvil_cpu)
  /usr/bin/time -f "$time_fmt" "$km" index --rpc-url "$rpc" --deployment "$dep" --database-url "$url" \
    --quiet --initial-range 50 --max-range 5000 --concurrency "$concurrency" "$@" | grep -E "trades |this run|fetch only" | tee "$dir/last-run.txt"
  last_rate=$(grep -oP '(this run|fetch only)[^(]*\(\K[0-9]+(?= trades/s)' "$dir/last-run.txt" || echo 0)
  anvil_cpu_since "$a0"
}
median() { tr ' ' '\n' <<< "$*" | grep . | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

pg_db="km_bench_$$"
pg_url="${pg_admin%/*}/$pg_db"
fresh_pg() { psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $pg_db" -c "CREATE DATABASE $pg_db" >/dev/null; }

ratio() { awk -v a="$(median $1)" -v b="$(median $2)" 'BEGIN {if (b > 0) printf "%.3f", a / b; else print "n/a"}'; }
summary() { # label rates
  echo "[bench] $1: median $(median $2) /s over $rounds rounds (${2# })"
}
# One chain: built (once) or loaded, then the rounds, then its medians and ratios.
bench_chain() {
  local profile="$1" suffix=""
  [[ "$profile" == friendtech ]] && suffix="-friendtech"
  state="$dir/chain-$trades$suffix.json"
  dep="$dir/deployment-$trades$suffix.json"
  if [[ -f "$state" && -f "$dep" ]]; then
    echo "[bench] loading the chain from $state"
    t0=$(date +%s)
    start_anvil --load-state "$state"
    echo "[bench] anvil loaded the state in $(( $(date +%s) - t0 )) s"
  else
    echo "[bench] building a chain with $trades trades, profile $profile (saved to $state for later runs)"
    sim=(--profile "$profile")
    genesis=()
    if [[ "$profile" == friendtech ]]; then
      days="${DAYS:-60}"
      # The history ends about now: the chain's clock starts DAYS days (and an hour) ago.
      genesis=(--timestamp $(( $(date +%s) - days * 86400 - 3600 )))
      sim+=(--days "$days")
      [[ -n "${TRADERS:-}" ]] && sim+=(--traders "$TRADERS")
      [[ -n "${SUBJECTS:-}" ]] && sim+=(--subjects "$SUBJECTS")
    fi
    # --prune-history: building needs only the latest state, and anvil otherwise writes every
    # older block's state under ~/.foundry/anvil/tmp (24 GB by a third of a 1M friend.tech chain).
    start_anvil --dump-state "$state" --prune-history "${genesis[@]}"
    "$km" deploy --rpc-url "$rpc" --out "$dep" >/dev/null
    RUST_LOG="${RUST_LOG},simulate=info" /usr/bin/time -f "[bench] simulator: %e s wall, peak RSS %M KB" \
      "$km" simulate --rpc-url "$rpc" --deployment "$dep" --trades "$trades" --seed 1 --batch-size 1000 "${sim[@]}"
  fi
  if [[ "${BENCH_CHAIN_ONLY:-}" == 1 ]]; then
    echo "[bench] chain saved to $state (anvil writes it on exit)"
    stop_anvil
    return
  fi
  head=$(node_modules/@foundry-rs/cast-linux-amd64/bin/cast block-number --rpc-url "$rpc")
  echo "[bench] chain $profile: head block $head; machine: $(nproc) cores"

  # The source's own rate: the market's eth_getLogs over ranges of the size the indexer's settle at
  # (its target of 20,000 logs an answer), two in flight, counted and not parsed.
  deploy_block=$(grep -oP '"deployBlock":\s*\K[0-9]+' "$dep")
  raw_range=$(( (20000 * (head - deploy_block + 1) + trades - 1) / trades ))
  (( raw_range < 1 )) && raw_range=1
  (( raw_range > 5000 )) && raw_range=5000
  raw_pass() {
    echo "[bench] raw eth_getLogs, ranges of $raw_range blocks"
    local out; out=$("$km" bench-raw-logs --rpc-url "$rpc" --deployment "$dep" --range "$raw_range" --concurrency "$concurrency")
    echo "$out"
    last_rate=$(grep -oP '\(\K[0-9]+(?= trades/s\))' <<< "$out" || echo 0)
  }
  rm -f "$dir"/bench.db*
  run_index "SQLite, first quarter of the chain" "sqlite:$dir/bench.db" --stop-at $((head / 4))
  # Each round runs every case once, in turn, so that the machine's drift falls on all of them;
  # medians over the rounds, ratios of medians.
  raw_rates="" fetch_rates="" new_rates="" base_rates="" pg_rates="" base_pg_rates=""
  for round in $(seq "$rounds"); do
    echo "[bench] round $round of $rounds"
    raw_pass; raw_rates="$raw_rates $last_rate"
    rm -f "$dir"/bench.db*
    run_index "RPC side only (eth_getLogs + headers + decoding, nothing stored)" "sqlite:$dir/bench.db" --fetch-only
    fetch_rates="$fetch_rates $last_rate"
    rm -f "$dir"/bench.db*
    run_index "SQLite, whole chain" "sqlite:$dir/bench.db"
    new_rates="$new_rates $last_rate"
    fresh_pg
    run_index "PostgreSQL, whole chain" "$pg_url"
    pg_rates="$pg_rates $last_rate"
    if [[ -n "${BASELINE_BIN:-}" ]]; then
      km_new="$km"; km="$BASELINE_BIN"
      rm -f "$dir"/bench.db*
      run_index "SQLite, whole chain, baseline binary $BASELINE_BIN" "sqlite:$dir/bench.db"
      base_rates="$base_rates $last_rate"
      fresh_pg
      run_index "PostgreSQL, whole chain, baseline binary $BASELINE_BIN" "$pg_url"
      base_pg_rates="$base_pg_rates $last_rate"
      km="$km_new"
    fi
  done
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $pg_db" >/dev/null
  # The data's shape, from the last SQLite file: how many traders and subjects, over how many days.
  sqlite3 "$dir/bench.db" "SELECT '[bench] data: ' || COUNT(*) || ' trades, ' || COUNT(DISTINCT trader) || ' traders, ' || COUNT(DISTINCT subject) || ' subjects, ' || (MAX(block_time) / 86400 - MIN(block_time) / 86400 + 1) || ' days' FROM trades"
  echo "[bench] results, chain $profile"
  summary "raw eth_getLogs (trades)" "$raw_rates"
  summary "RPC side only, --fetch-only (trades)" "$fetch_rates"
  summary "SQLite, whole chain (trades)" "$new_rates"
  summary "PostgreSQL, whole chain (trades)" "$pg_rates"
  echo "[bench] ratios of medians: fetch-only/raw $(ratio "$fetch_rates" "$raw_rates"), SQLite/fetch-only $(ratio "$new_rates" "$fetch_rates"), SQLite/raw $(ratio "$new_rates" "$raw_rates"), PostgreSQL/fetch-only $(ratio "$pg_rates" "$fetch_rates"), PostgreSQL/raw $(ratio "$pg_rates" "$raw_rates")"
  if [[ -n "${BASELINE_BIN:-}" ]]; then
    summary "baseline binary, SQLite (trades)" "$base_rates"
    summary "baseline binary, PostgreSQL (trades)" "$base_pg_rates"
    echo "[bench] this binary / baseline: SQLite $(ratio "$new_rates" "$base_rates")x, PostgreSQL $(ratio "$pg_rates" "$base_pg_rates")x"
  fi
  stop_anvil
}

for profile in $profiles; do
  bench_chain "$profile"
done
[[ "${BENCH_CHAIN_ONLY:-}" == 1 ]] && exit 0
db="$pg_db"

# Live: a fresh anvil, blocks of 50 simulated trades mined one at a time while the indexer
# follows; latency from a block's receipts being available to its trades being queryable.
stop_anvil
live_dep="$dir/deployment-live.json"
start_anvil
"$km" deploy --rpc-url "$rpc" --out "$live_dep" >/dev/null
rm -f "$dir"/live.db*
echo "[bench] live latency, SQLite"
"$km" bench-live --rpc-url "$rpc" --deployment "$live_dep" --database-url "sqlite:$dir/live.db" --blocks 200 2>/dev/null
psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
echo "[bench] live latency, PostgreSQL"
"$km" bench-live --rpc-url "$rpc" --deployment "$live_dep" --database-url "${pg_admin%/*}/$db" --blocks 200 2>/dev/null
psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db" >/dev/null
