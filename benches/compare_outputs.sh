#!/usr/bin/env bash
# Proves a refactor changes no output: runs two jcsync binaries on the same inputs and fails
# (exit 1, naming every difference) unless their outputs are identical.
#
#   benches/compare_outputs.sh OLD_JCSYNC NEW_JCSYNC [ROWS]     # ROWS default 200000
#   benches/compare_outputs.sh OLD_JCSYNC OLD_JCSYNC            # determinism check of one binary
#
# Inputs, each run once by OLD and once by NEW, each binary writing only into its own temp dir
# (own pipeline file, [stage] dir, ledger and sandbox state file):
#   fixtures-dry-run      fixtures/sage through pipelines/demo.toml with a dry-run target
#   fixtures-sandbox      the same with demo.toml's embedded sandbox target: a fresh sandbox,
#                         fresh ledger and fresh state file per binary
#   fixtures-sandbox-2nd  a second sandbox sync on that ledger (the ledger finds nothing changed)
#   generated-dry-run     `jcsync generate --transactions ROWS --seed 1` (by OLD; NEW's generate
#                         must write byte-identical files), synced with a dry-run target
# Compared for each input (benches/compare_outputs.py; its REPORT_STRIP comment lists exactly
# what is stripped as legitimately different between runs: run ids, timestamps, timings, temp
# paths, the sandbox port, sandbox-assigned procore ids):
#   - exit status; stdout summary minus timings; the files each run left behind
#   - every Parquet file set of the run directory (staged/part-*.parquet, quarantine.parquet):
#     schema, row count and DuckDB EXCEPT ALL in both directions (both must be empty)
#   - requests.ndjson byte for byte (two runs of one binary write identical bytes)
#   - origin_ids (line and direct cost) from the staged files, requests.ndjson and the ledger
#   - report.json and manifest.json (counts, amounts, totals, load counts, requests by endpoint)
#   - the ledger's rows (target, origin_id, kind, job, header payload hash) and watermarks
#   - `jcsync inspect` verifies each run directory
# Temp dirs go under ${TMPDIR:-/tmp}; removed on success, kept (and named) on failure.
# DuckDB comes from the venv benches/duckdb_anchor.sh uses (target/bench-venv), created the
# same way when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
usage="usage: benches/compare_outputs.sh OLD_JCSYNC NEW_JCSYNC [ROWS]"
OLD=${1:?$usage}
NEW=${2:?$usage}
ROWS=${3:-200000}
[[ $ROWS =~ ^[0-9]+$ ]] || { echo "$usage (ROWS must be a number)" >&2; exit 2; }
for b in "$OLD" "$NEW"; do
  [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }
done
OLD=$(realpath "$OLD"); NEW=$(realpath "$NEW")

TARGET=${CARGO_TARGET_DIR:-$PWD/target}
VENV=$TARGET/bench-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -c 'import duckdb' 2>/dev/null || "$VENV/bin/pip" install --quiet duckdb
PY="$VENV/bin/python"
HELPER=$REPO/benches/compare_outputs.py

WORK=$(mktemp -d "${TMPDIR:-/tmp}/jcsync-compare.XXXXXX")
status=1
finish() {
  if [ "$status" -eq 0 ]; then
    rm -rf "$WORK"
  else
    echo "FAILED: outputs kept in $WORK (old/ and new/ per input: pipeline.toml, stage/, stdout, stderr)" >&2
  fi
}
trap finish EXIT
SECONDS=0

# run SIDE INPUT BIN ARGS...: one sync into $WORK/SIDE/INPUT, its stdout/stderr/rc kept there
run() {
  local side=$1 input=$2 bin=$3; shift 3
  local dir=$WORK/$side/$input rc=0 t0
  t0=$(date +%s%N)
  "$bin" sync "$dir/pipeline.toml" "$@" >"$dir/stdout" 2>"$dir/stderr" || rc=$?
  echo "$rc" >"$dir/rc"
  if [ "$rc" -ne 0 ]; then
    echo "[$input] $side binary exited $rc (expected 0); its stderr ends:" >&2
    tail -5 "$dir/stderr" >&2
    return 1
  fi
  local run_dir
  run_dir=$(dirname "$(ls "$dir"/stage/*/manifest.json)")
  "$bin" inspect "$run_dir" >"$dir/inspect" 2>&1 || {
    echo "[$input] $side: jcsync inspect does not verify $run_dir" >&2; cat "$dir/inspect" >&2; return 1; }
  printf '  %-22s %s %6.2fs\n' "$input" "$side" "$(( $(date +%s%N) - t0 ))e-9"
}

# pipeline SIDE INPUT SRC_TOML TARGET [helper options]: the input's pipeline file for SIDE
pipeline() {
  local side=$1 input=$2 src=$3 target=$4; shift 4
  local dir=$WORK/$side/$input
  mkdir -p "$dir"
  local extra=()
  [ "$target" = sandbox ] && extra=(--state-file "$dir/sandbox-state.json" --ledger "$dir/ledger.sqlite")
  "$PY" "$HELPER" pipeline "$src" "$dir/pipeline.toml" --stage-dir "$dir/stage" \
    --target "$target" "${extra[@]}" "$@"
}

echo "old: $OLD"
echo "new: $NEW"
echo "work: $WORK"

# the generated company, once per binary: the generator must not change either
"$OLD" generate --transactions "$ROWS" --seed 1 --out "$WORK/data" >/dev/null
"$NEW" generate --transactions "$ROWS" --seed 1 --out "$WORK/data-new" >/dev/null
if ! diff -r -q "$WORK/data" "$WORK/data-new" >&2; then
  echo "[generate] the two binaries' \`generate --transactions $ROWS --seed 1\` differ (above)" >&2
  exit 1
fi
rm -rf "$WORK/data-new"
cat >"$WORK/generated.toml" <<TOML
company = "GEN"
[source]
kind = "files"
dir = "$WORK/data"
format = "csv"
[mappings.transaction_jc]
exclude = ["Commitment_CO", "Credit_Account", "Debit_Account", "Employee",
           "Equipment", "Pay_ID", "Ref_1", "Ref_2"]
[sync]
type = "deep"
since = "beginning-of-time"
[stage]
dir = "runs"
[target]
kind = "dry-run"
[report]
quarantine_exit_code = 0
TOML

INPUTS=(fixtures-dry-run fixtures-sandbox fixtures-sandbox-2nd generated-dry-run)
for side in old new; do
  bin=$OLD; [ $side = new ] && bin=$NEW
  pipeline $side fixtures-dry-run "$REPO/pipelines/demo.toml" dry-run
  run $side fixtures-dry-run "$bin"
  pipeline $side fixtures-sandbox "$REPO/pipelines/demo.toml" sandbox
  run $side fixtures-sandbox "$bin"
  # the second sync: same ledger and state file, its own stage dir
  d=$WORK/$side/fixtures-sandbox-2nd
  mkdir -p "$d"
  sed "s#$WORK/$side/fixtures-sandbox/stage#$d/stage#" "$WORK/$side/fixtures-sandbox/pipeline.toml" >"$d/pipeline.toml"
  run $side fixtures-sandbox-2nd "$bin"
  pipeline $side generated-dry-run "$WORK/generated.toml" dry-run
  run $side generated-dry-run "$bin"
done
# the second sync's ledger is the first one's: compare it where the first one keeps it
for side in old new; do
  for f in "$WORK/$side/fixtures-sandbox"/ledger.sqlite*; do
    ln -s "$f" "$WORK/$side/fixtures-sandbox-2nd/"
  done
done

echo "comparing"
failed=0
for input in "${INPUTS[@]}"; do
  if ! "$PY" "$HELPER" compare "$input" "$WORK/old/$input" "$WORK/new/$input" >"$WORK/$input.summary.json"; then
    failed=1
  fi
done

echo
printf '%-22s %12s %12s %10s %12s %14s  %s\n' input "rows staged" quarantined requests "ledger rows" "origin_ids" result
for input in "${INPUTS[@]}"; do
  "$PY" - "$WORK/$input.summary.json" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception:
    s = {"input": sys.argv[1].rsplit("/", 1)[-1].replace(".summary.json", ""), "identical": False}
def f(k):
    v = s.get(k)
    return "-" if v is None else str(v)
print(f"{s['input']:<22} {f('rows_staged'):>12} {f('rows_quarantined'):>12} {f('requests_lines'):>10} "
      f"{f('ledger_rows'):>12} {f('distinct_origin_ids'):>14}  {'identical' if s.get('identical') else 'DIFFERENT'}")
PY
done
"$PY" - "${INPUTS[@]/#/$WORK/}" <<'PY'
import json, sys
same = []
for f in sys.argv[1:]:
    try:
        s = json.load(open(f + ".summary.json"))
    except Exception:
        continue
    sets = [k.split("/")[0].split(".")[0] for k, v in s.get("parquet_bytes_identical", {}).items() if v]
    if sets:
        same.append(f"{s['input']} ({', '.join(sorted(sets))})")
print("byte-identical Parquet too (not required):", "; ".join(same) or "none")
PY
echo "generated company ($ROWS rows, seed 1): identical files from both binaries' generate"
echo "total ${SECONDS}s"
if [ "$failed" -ne 0 ]; then
  echo "outputs differ (see the lines above naming each difference)" >&2
  exit 1
fi
status=0
