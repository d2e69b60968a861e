#!/usr/bin/env bash
# Export benchmark: writes a synthetic friend.tech-like SQLite database of N trades (default
# 12,000,000; the generator of scripts/bench-api.sh, `keymarket bench-store`) — or reuses
# bench-api's kept one (REUSE=1, .keymarket/bench-api/api.db) — then exports every trade in
# Dune's `social.trades` layout with `keymarket export trades`, as CSV, as Parquet or both
# (FORMAT=csv|parquet|both, default both), and prints per format the wall time, rows/s, peak
# RSS and the file's size: streaming means the RSS stays flat whatever the number of trades.
#   [FORMAT=csv|parquet|both] [REUSE=1] scripts/bench-export.sh [TRADES]
set -euo pipefail
export RUST_LOG="${RUST_LOG:-warn}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
trades="${1:-12000000}"
case "${FORMAT:-both}" in
  csv | parquet) formats=("$FORMAT") ;;
  both) formats=(csv parquet) ;;
  *) echo "[bench] FORMAT must be csv, parquet or both, not '$FORMAT'" >&2; exit 2 ;;
esac
scripts/setup.sh >/dev/null
cargo build --release --locked --bin keymarket
km="${CARGO_TARGET_DIR:-target}/release/keymarket"
if [[ "${REUSE:-}" == 1 ]]; then
  db=".keymarket/bench-api/api.db"
else
  dir=".keymarket/bench-export"
  mkdir -p "$dir"
  db="$dir/trades-$trades.db"
  if [[ ! -f "$db" ]]; then
    echo "[bench] writing $trades synthetic trades into $db (keymarket bench-store)"
    "$km" bench-store --database-url "sqlite:$db" --trades "$trades" --batch 50000 >/dev/null
  fi
fi
table="| format | trades | wall | rows/s | peak RSS | file size | RSS / file size |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
for format in "${formats[@]}"; do
  out="$(dirname "$db")/trades.$format"
  echo "[bench] exporting $db to $out"
  /usr/bin/time -f "%e %M" -o "$out.time" "$km" export trades --format "$format" \
    --database-url "sqlite:$db" --out "$out" >"$out.log" 2>&1 || { cat "$out.log" >&2; exit 1; }
  read -r wall rss_kb <"$out.time"
  # "N trades written to FILE"
  rows=$(awk '/ trades written to /{print $1}' "$out.log")
  bytes=$(stat -c %s "$out")
  table+=$(awk -v f="$format" -v w="$wall" -v r="$rows" -v k="$rss_kb" -v b="$bytes" 'BEGIN {
    printf "| %s | %d | %.1f s | %.0f | %.1f MB | %.1f MB | %.3f |", f, r, w, r / w, k / 1024, b / 1048576, (k * 1024) / b
  }')"\n"
  rm -f "$out" "$out.time" "$out.log"
done
printf "%b" "$table"
