#!/usr/bin/env bash
# Memory flat from run to run in one `sync --every` process: the demo pipeline (the bundled
# Sage fixtures into the embedded Procore sandbox, its state kept in a file) run every second
# for RUNS slots, VmRSS of the process sampled from /proc after each slot's log line.
#
#   benches/every_memory.sh                    # 50 runs
#   RUNS=200 EVERY=1s benches/every_memory.sh
#   JCSYNC=/path/to/jcsync benches/every_memory.sh   # another binary (no build)
#
# The pipeline is pipelines/demo.toml with its paths made absolute and its run directories and
# sandbox state in a temporary directory (the repo's runs/ is left alone). Prints one line per
# run (run, VmRSS kB, VmHWM kB) and, at the end, the runs 1, 10, 25 and last.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-50}
EVERY=${EVERY:-1s}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
if [ -z "${JCSYNC:-}" ]; then
  cargo build --release --quiet
  JCSYNC=$TARGET/release/jcsync
fi
WORK=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
sed -e "s|\.\./fixtures|$PWD/fixtures|g" -e "s|\.\./runs|$WORK/runs|g" pipelines/demo.toml >"$WORK/demo.toml"

JCSYNC_LOG=info "$JCSYNC" sync "$WORK/demo.toml" --every "$EVERY" >/dev/null 2>"$WORK/every.log" &
PID=$!
rss() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$PID/status"; }
declare -a SAMPLES
seen=0
deadline=$((SECONDS + RUNS * 10 + 60))
while [ "$seen" -lt "$RUNS" ]; do
  kill -0 "$PID" 2>/dev/null || { echo "jcsync exited early:"; cat "$WORK/every.log"; exit 1; }
  [ "$SECONDS" -lt "$deadline" ] || { echo "too slow:"; tail "$WORK/every.log"; exit 1; }
  n=$(grep -c ': run .* (exit ' "$WORK/every.log" || true)
  if [ "$n" -gt "$seen" ]; then
    seen=$n
    SAMPLES[$seen]="$(rss VmRSS) $(rss VmHWM)"
    echo "run $seen: VmRSS $(rss VmRSS) kB, VmHWM $(rss VmHWM) kB"
  fi
  sleep 0.05
done
kill -TERM "$PID"
wait "$PID" && status=0 || status=$?
echo "exit status after SIGTERM: $status"
fails=$(grep ': run .* (exit ' "$WORK/every.log" | grep -vc '(exit 0)' || true)
echo "slots not exiting 0: $fails"
echo
echo "| run | VmRSS (kB) | VmHWM (kB) |"
echo "|---|---|---|"
for r in 1 10 25 "$RUNS"; do
  set -- ${SAMPLES[$r]}
  echo "| $r | $1 | $2 |"
done
