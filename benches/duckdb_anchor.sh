#!/usr/bin/env bash
# The side-by-side anchor: DuckDB's equivalent job and jcsync's extract -> stage, on the same
# generated files, in the same run. Prints both wall times, both peak RSS and the ratios.
#
#   benches/duckdb_anchor.sh            # 2M transactions, CSV, 3 alternating rounds
#   N=1000000 ROUNDS=1 benches/duckdb_anchor.sh
#
# Creates a venv under the target dir and installs duckdb from PyPI into it; installs GNU time
# with apt when /usr/bin/time is missing (the script runs as root on the bench machines).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000000}
JOBS=${JOBS:-50}
ROUNDS=${ROUNDS:-3}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
WORK=$TARGET/duckdb-anchor
mkdir -p "$WORK"

if [ ! -x /usr/bin/time ]; then
  apt-get install -y time >/dev/null || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
fi
VENV=$TARGET/bench-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -c 'import duckdb' 2>/dev/null || "$VENV/bin/pip" install --quiet duckdb

cargo build --release --quiet
JCSYNC=$TARGET/release/jcsync
DATA=$WORK/data-$N-$JOBS
if [ ! -f "$DATA/procore/company.json" ]; then
  "$JCSYNC" generate --transactions "$N" --jobs "$JOBS" --seed 1 --out "$DATA" --format csv >/dev/null
fi

cat > "$WORK/pipeline.toml" <<TOML
company = "GEN"
[source]
kind = "files"
dir = "$DATA"
format = "csv"
[stage]
dir = "$WORK/runs"
[target]
kind = "dry-run"
[report]
quarantine_exit_code = 0
TOML

# seconds and peak RSS (KiB) from a `/usr/bin/time -v` log
wall_s() { awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$1"; }
rss_kib() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }

best_j=""; best_d=""; rss_j=0; rss_d=0
for round in $(seq 1 "$ROUNDS"); do
  rm -rf "$WORK/runs" "$WORK/duckdb.parquet"
  # extract -> project -> enrich -> stage, the job DuckDB does (no planning, nothing sent)
  /usr/bin/time -v "$JCSYNC" sync "$WORK/pipeline.toml" --stage-only >"$WORK/jcsync.out" 2>"$WORK/jcsync.time"
  /usr/bin/time -v "$VENV/bin/python" benches/duckdb_anchor.py "$DATA" "$WORK/duckdb.parquet" 2>"$WORK/duckdb.time"
  j=$(wall_s "$WORK/jcsync.time"); d=$(wall_s "$WORK/duckdb.time")
  rj=$(rss_kib "$WORK/jcsync.time"); rd=$(rss_kib "$WORK/duckdb.time")
  echo "round $round: jcsync ${j}s ${rj} KiB, duckdb ${d}s ${rd} KiB"
  if [ -z "$best_j" ] || awk "BEGIN{exit !($j < $best_j)}"; then best_j=$j; fi
  if [ -z "$best_d" ] || awk "BEGIN{exit !($d < $best_d)}"; then best_d=$d; fi
  [ "$rj" -gt "$rss_j" ] && rss_j=$rj
  [ "$rd" -gt "$rss_d" ] && rss_d=$rd
done
grep -h "rows staged" "$WORK/duckdb.time" || true
# jcsync stages fewer rows: it quarantines bad values, unknown jobs and repeated keys, which
# DuckDB's TRY_CAST turns into NULLs and keeps.
grep -hE "^  (staged|quarantined) " "$WORK/jcsync.out" || true
awk -v n="$N" -v j="$best_j" -v d="$best_d" -v rj="$rss_j" -v rd="$rss_d" 'BEGIN {
  printf "%-8s %10s %14s %14s\n", "engine", "wall s", "rows/s", "peak RSS MiB"
  printf "%-8s %10.2f %14.0f %14.0f\n", "duckdb", d, n / d, rd / 1024
  printf "%-8s %10.2f %14.0f %14.0f\n", "jcsync", j, n / j, rj / 1024
  printf "throughput jcsync/duckdb %.2fx (target >= 1.0x, aim 1.5x); peak RSS jcsync/duckdb %.2f (target <= 0.25)\n", d / j, rj / rd
}'
rm -rf "$WORK/runs" "$WORK/duckdb.parquet"
