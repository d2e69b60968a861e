#!/usr/bin/env bash
# Export benchmark: writes a synthetic friend.tech-like SQLite database of N trades (default
# 12,000,000; the generator of scripts/bench-api.sh, `keymarket bench-store`) — or reuses
# bench-api's kept one (REUSE=1, .keymarket/bench-api/api.db) — then exports every trade in
# Dune's `social.trades` CSV layout with `keymarket export trades`, and prints wall time, rows/s,
# peak RSS and the CSV's size: streaming means the RSS stays a small, fixed fraction of it.
#   scripts/bench-export.sh [TRADES]
set -euo pipefail
export RUST_LOG="${RUST_LOG:-warn}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
trades="${1:-12000000}"
scripts/setup.sh >/dev/null
cargo build --release --locked --bin keymarket
km=target/release/keymarket
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
out="$(dirname "$db")/trades.csv"
echo "[bench] exporting $db to $out"
/usr/bin/time -f "%e %M" -o "$out.time" "$km" export trades --database-url "sqlite:$db" --out "$out" >/dev/null 2>&1
read -r wall rss_kb <"$out.time"
rows=$(( $(wc -l <"$out") - 1 ))
bytes=$(stat -c %s "$out")
awk -v w="$wall" -v r="$rows" -v k="$rss_kb" -v b="$bytes" 'BEGIN {
  printf "| trades | wall | rows/s | peak RSS | CSV size | RSS / CSV size |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n"
  printf "| %d | %.1f s | %.0f | %.1f MB | %.1f MB | %.3f |\n", r, w, r / w, k / 1024, b / 1048576, (k * 1024) / b
}'
rm -f "$out" "$out.time"
