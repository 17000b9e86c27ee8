#!/usr/bin/env bash
# Memory flat in the number of rows: peak RSS of a deep sync of a 10M-transaction company
# against a 1M one (issue 6 asks for at most 1.2x), for `sync --stage-only` (extract -> stage)
# and `sync --dry-run` (everything but the network: planning included, requests to a file).
#
#   benches/flat_memory.sh                  # 1M and 10M, one round
#   ROUNDS=2 SMALL=1000000 LARGE=10000000 benches/flat_memory.sh
#   JCSYNC=/path/to/jcsync benches/flat_memory.sh   # another binary (no build), e.g. the one
#                                                   # before a change, for a before/after
#
# Generates both companies under the target dir on first use (~4 GB of CSV for 10M); installs
# GNU time with apt when /usr/bin/time is missing. The invoice table grows with the company
# (one invoice per AP document: 122k at 1M, 1.22M at 10M), as it would in a real one.
set -euo pipefail
cd "$(dirname "$0")/.."
SMALL=${SMALL:-1000000}
LARGE=${LARGE:-10000000}
ROUNDS=${ROUNDS:-1}
MODES=${MODES:-"--stage-only --dry-run"}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
WORK=$TARGET/flat-memory
mkdir -p "$WORK"
if [ ! -x /usr/bin/time ]; then
  apt-get install -y time >/dev/null || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
fi
if [ -z "${JCSYNC:-}" ]; then
  cargo build --release --quiet
  JCSYNC=$TARGET/release/jcsync
fi

pipeline() { # rows -> pipeline file
  local data=$WORK/data-$1 toml=$WORK/p-$1.toml
  if [ ! -f "$data/procore/company.json" ]; then
    "$JCSYNC" generate --transactions "$1" --jobs 50 --seed 1 --out "$data" --format csv >/dev/null
  fi
  cat > "$toml" <<TOML
company = "GEN"
[source]
kind = "files"
dir = "$data"
format = "csv"
[stage]
dir = "$WORK/runs-$1"
[target]
kind = "dry-run"
[report]
quarantine_exit_code = 0
TOML
  echo "$toml"
}
rss_kib() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }
wall() { awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$1"; }

declare -A peak
for rows in "$SMALL" "$LARGE"; do
  toml=$(pipeline "$rows")
  for mode in $MODES; do
    for round in $(seq 1 "$ROUNDS"); do
      rm -rf "$WORK/runs-$rows"
      log=$WORK/time-$rows$mode.txt
      /usr/bin/time -v "$JCSYNC" sync "$toml" $mode >"$WORK/out-$rows$mode.txt" 2>"$log"
      kib=$(rss_kib "$log")
      echo "$rows rows $mode round $round: peak RSS $((kib / 1024)) MiB, wall $(wall "$log")"
      key="$rows$mode"
      if [ -z "${peak[$key]:-}" ] || [ "$kib" -gt "${peak[$key]}" ]; then peak[$key]=$kib; fi
    done
  done
  rm -rf "$WORK/runs-$rows"
done
echo
printf '%-14s %12s %12s %7s\n' mode "$SMALL MiB" "$LARGE MiB" ratio
for mode in $MODES; do
  s=${peak[$SMALL$mode]}; l=${peak[$LARGE$mode]}
  printf '%-14s %12d %12d %7.2f\n' "$mode" $((s / 1024)) $((l / 1024)) "$(awk -v l="$l" -v s="$s" 'BEGIN { print l / s }')"
done
echo "(highest peak RSS over the rounds; target: ratio <= 1.2)"
