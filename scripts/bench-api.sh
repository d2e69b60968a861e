#!/usr/bin/env bash
# API benchmark at friend.tech scale: writes a synthetic database of N trades (default
# 12,000,000; power-law over 100,000 subjects and 500,000 traders) through the indexer's store
# layer (`keymarket bench-store`, no chain), on SQLite and on PostgreSQL, then loads each API
# endpoint with wrk (2 threads, 16 connections, 10 s, rate limit off) and prints req/s and
# latency percentiles. The machine is shared by the server and wrk.
#   scripts/bench-api.sh [TRADES]
# Env: PG_ADMIN (default postgres://postgres@127.0.0.1:5432/postgres), PORT (default 8090),
#      DBS (default "sqlite postgres"), PG_TRADES (default TRADES), BATCH (trades per committed
#      batch, default 50000), KEEP=1 keeps the databases (under .keymarket/bench-api/) for a
#      rerun with REUSE=1, WRITE_ONLY=1 writes them without loading the API (e.g. to write both
#      databases at once, then load each on a quiet machine with REUSE=1).
set -euo pipefail
export RUST_LOG="${RUST_LOG:-info}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
trades="${1:-12000000}"
port="${PORT:-8090}"
pg_admin="${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}"
dir=".keymarket/bench-api"
mkdir -p "$dir"
scripts/setup.sh
if ! command -v wrk >/dev/null; then
  echo "[bench] installing wrk (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
fi
cargo build --release --locked --bin keymarket
km="${CARGO_TARGET_DIR:-target}/release/keymarket"
base="http://127.0.0.1:$port"

load() { # label url
  local label="$1" url="$2" out
  out=$(wrk -t2 -c16 -d10s --latency "$url")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local non2xx
  non2xx=$(awk '/Non-2xx/ {print $4}' <<<"$out")
  printf '| %s | %s | %s | %s | %s |\n' "$label" "$rps" "$p50" "$p99" "${non2xx:-0}"
}

cold() { # label url: the time of a first, uncached request (the snapshot it builds then serves wrk)
  local t
  t=$(curl -s -o /dev/null -w '%{time_total}' "$2")
  echo "[bench] $1: first (uncached) request ${t} s" >&2
}

bench_db() { # name url trades
  local name="$1" url="$2" n="$3"
  if [[ "${REUSE:-}" != 1 ]]; then
    echo "[bench] $name: writing $n trades through the store"
    /usr/bin/time -f "  wall %e s, peak RSS %M KB" "$km" bench-store --database-url "$url" --trades "$n" --batch "${BATCH:-50000}" 2> >(grep -E "wall|progress|built index" >&2)
  fi
  if [[ "${WRITE_ONLY:-}" == 1 ]]; then return; fi
  "$km" serve --database-url "$url" --listen "127.0.0.1:$port" --rate-limit 0 >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.2; done
  local subject trader day
  subject=$(curl -sf "$base/v1/subjects/top?limit=1" | sed -E 's/.*"subject":"(0x[0-9a-f]{40})".*/\1/')
  trader=$(curl -sf "$base/v1/traders/top?limit=1" | sed -E 's/.*"trader":"(0x[0-9a-f]{40})".*/\1/')
  day=$(curl -sf "$base/v1/daily" | sed -E 's/.*"date":"([0-9-]{10})".*/\1/')
  echo "[bench] $name: wrk -t2 -c16 -d10s per endpoint (top subject $subject, top trader $trader, last day $day)"
  echo "| endpoint | req/s | p50 | p99 | non-2xx |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  load "/v1/overview" "$base/v1/overview"
  load "/v1/daily (a year a page)" "$base/v1/daily"
  load "/v1/daily?limit=30" "$base/v1/daily?limit=30"
  load "/v1/subjects/top?by=volume" "$base/v1/subjects/top?by=volume"
  load "/v1/subjects/top?by=holders" "$base/v1/subjects/top?by=holders"
  load "/v1/subjects/top?by=price" "$base/v1/subjects/top?by=price"
  load "/v1/traders/top?by=volume" "$base/v1/traders/top?by=volume"
  load "/v1/traders/top?by=pnl" "$base/v1/traders/top?by=pnl"
  load "/v1/subjects/{top}" "$base/v1/subjects/$subject"
  load "/v1/subjects/{top}/holders" "$base/v1/subjects/$subject/holders"
  load "/v1/subjects/{top}/daily" "$base/v1/subjects/$subject/daily"
  load "/v1/traders/{top}" "$base/v1/traders/$trader"
  load "/v1/trades" "$base/v1/trades"
  load "/v1/trades?subject={top}" "$base/v1/trades?subject=$subject"
  # The analyst views: aggregations over many rows served from snapshots (their first build is
  # timed apart, then wrk measures the steady state, periodic rebuilds included).
  for path in "/v1/concentration" "/v1/retention" "/v1/traders/netflow" \
    "/v1/traders/netflow?side=sellers" "/v1/overview?window=7d" "/v1/overview?window=30d" \
    "/v1/price-index" "/v1/price-index?top=50"; do
    cold "$path" "$base$path"
    load "$path" "$base$path"
  done
  cold "/v1/subjects/{top}/holders/daily" "$base/v1/subjects/$subject/holders/daily"
  load "/v1/subjects/{top}/holders/daily" "$base/v1/subjects/$subject/holders/daily"
  # Last: a window's distinct subjects are counted from the raw trades (a scan), and requests wrk
  # gave up on keep the server's connections busy for a while.
  load "/v1/overview?from=$day&to=$day" "$base/v1/overview?from=$day&to=$day"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

dbs="${DBS:-sqlite postgres}"
db="km_bench_api"
if [[ " $dbs " == *" sqlite "* ]]; then
  if [[ "${REUSE:-}" != 1 ]]; then rm -f "$dir"/api.db*; fi
  bench_db "SQLite" "sqlite:$dir/api.db" "$trades"
fi
if [[ " $dbs " == *" postgres "* ]]; then
  if [[ "${REUSE:-}" != 1 ]]; then
    psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  fi
  bench_db "PostgreSQL" "${pg_admin%/*}/$db" "${PG_TRADES:-$trades}"
fi
if [[ "${KEEP:-}" != 1 ]]; then
  rm -f "$dir"/api.db*
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db" >/dev/null
fi
