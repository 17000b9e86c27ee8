#!/usr/bin/env bash
# Two jcsync binaries and DuckDB side by side on the anchor's job (benches/duckdb_anchor.sh):
# alternating in each round, on the same generated CSV company, so that a change's cost is
# measured against the binary before it under the same machine load.
#
#   benches/anchor_ab.sh OLD_JCSYNC NEW_JCSYNC       # ROUNDS=5 N=2000000 JOBS=50 by default
#
# Run benches/duckdb_anchor.sh once first: it generates the company and installs DuckDB into
# the venv this script reuses.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:?usage: benches/anchor_ab.sh OLD_JCSYNC NEW_JCSYNC}
NEW=${2:?usage: benches/anchor_ab.sh OLD_JCSYNC NEW_JCSYNC}
N=${N:-2000000}
JOBS=${JOBS:-50}
ROUNDS=${ROUNDS:-5}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
DATA=$TARGET/duckdb-anchor/data-$N-$JOBS
PY=$TARGET/bench-venv/bin/python
[ -f "$DATA/procore/company.json" ] && [ -x "$PY" ] || {
  echo "no anchor data or venv under $TARGET: run benches/duckdb_anchor.sh first" >&2
  exit 1
}
WORK=$TARGET/anchor-ab
mkdir -p "$WORK"
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
wall() { awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$1"; }
rss() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }
for r in $(seq 1 "$ROUNDS"); do
  for who in old new duckdb; do
    rm -rf "$WORK/runs" "$WORK/duckdb.parquet"
    case $who in
      old) /usr/bin/time -v "$OLD" sync "$WORK/pipeline.toml" --stage-only >/dev/null 2>"$WORK/time" ;;
      new) /usr/bin/time -v "$NEW" sync "$WORK/pipeline.toml" --stage-only >/dev/null 2>"$WORK/time" ;;
      duckdb) /usr/bin/time -v "$PY" benches/duckdb_anchor.py "$DATA" "$WORK/duckdb.parquet" >/dev/null 2>"$WORK/time" ;;
    esac
    echo "round $r: $who $(wall "$WORK/time")s $(rss "$WORK/time") KiB"
  done
done
