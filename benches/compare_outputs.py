"""The comparing half of benches/compare_outputs.sh (see that script for the whole procedure).

  compare_outputs.py pipeline SRC_TOML OUT_TOML --stage-dir D --target dry-run|sandbox
                              [--state-file F] [--ledger L] [--source-dir S] [--company C]
      Write a copy of SRC_TOML (e.g. pipelines/demo.toml) with every relative path made absolute
      (against SRC_TOML's directory) and the run directory, target, sandbox state file and ledger
      overridden, so that each binary writes only into its own temp dir.

  compare_outputs.py compare LABEL OLD_ROOT NEW_ROOT
      OLD_ROOT and NEW_ROOT each hold one binary's run of one input: stage/ (the pipeline's
      [stage] dir, holding exactly one <run-id>/ directory), stdout, rc, and for a sandbox run
      ledger.sqlite. Compares everything and prints one summary line as JSON on stdout; each
      difference goes to stderr, naming what differs, and the exit status is 1 if any was found.

Needs the duckdb Python package (the venv of benches/duckdb_anchor.sh).
"""

import filecmp
import glob
import json
import os
import re
import sqlite3
import sys
import tomllib

RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]+")
PORT = re.compile(r"127\.0\.0\.1:\d+")
ORIGIN_ID = re.compile(rb'"origin_id"\s*:\s*"([^"\\\\]*)"')
MAX_SHOWN = 5


# ---------------------------------------------------------------- pipeline files


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise SystemExit(f"pipeline: cannot write {v!r} as TOML")


def write_toml(doc, path):
    out = []
    for k, v in doc.items():
        if not isinstance(v, dict):
            out.append(f"{k} = {toml_value(v)}")

    def table(prefix, t):
        scalars = {k: v for k, v in t.items() if not isinstance(v, dict)}
        if scalars:
            out.append(f"\n[{prefix}]")
            out.extend(f"{k} = {toml_value(v)}" for k, v in scalars.items())
        for k, v in t.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}", v)

    for k, v in doc.items():
        if isinstance(v, dict):
            table(k, v)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def cmd_pipeline(args):
    import argparse

    p = argparse.ArgumentParser(prog="compare_outputs.py pipeline")
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--stage-dir", required=True)
    p.add_argument("--target", required=True, choices=["dry-run", "sandbox"])
    p.add_argument("--state-file")
    p.add_argument("--ledger")
    p.add_argument("--source-dir")
    p.add_argument("--company")
    a = p.parse_args(args)
    with open(a.src, "rb") as f:
        doc = tomllib.load(f)
    base = os.path.dirname(os.path.abspath(a.src))

    def absolute(section, key):
        v = doc.get(section, {}).get(key)
        if isinstance(v, str) and not os.path.isabs(v):
            doc[section][key] = os.path.normpath(os.path.join(base, v))

    absolute("source", "dir")
    absolute("target", "seed")
    if a.source_dir:
        doc["source"]["dir"] = os.path.abspath(a.source_dir)
    if a.company:
        doc["company"] = a.company
    doc.setdefault("stage", {})["dir"] = os.path.abspath(a.stage_dir)
    target = doc.setdefault("target", {})
    if a.target == "dry-run":
        doc["target"] = {"kind": "dry-run"}
    else:
        target["kind"] = "sandbox"
        if not target.get("seed"):
            raise SystemExit(f"pipeline: {a.src} has no [target] seed for a sandbox run")
        target.pop("state_file", None)
        if a.state_file:
            target["state_file"] = os.path.abspath(a.state_file)
    doc.pop("ledger", None)
    if a.ledger:
        doc["ledger"] = {"path": os.path.abspath(a.ledger)}
    write_toml(doc, a.out)


# ---------------------------------------------------------------- normalizing


def normalize(value, root):
    """Replace the run's own temp dir (and its binary's, the parent: a second sync uses the
    first one's ledger), run id and sandbox port in every string."""
    if isinstance(value, dict):
        return {k: normalize(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v, root) for v in value]
    if isinstance(value, str):
        value = value.replace(root, "<ROOT>").replace(os.path.dirname(root), "<SIDE>")
        value = RUN_ID.sub("<run-id>", value)
        return PORT.sub("127.0.0.1:<port>", value)
    return value


def strip(doc, paths):
    """Delete the keys named by dotted paths; '*' walks every element of a list."""
    for path in paths:
        parts = path.split(".")

        def go(node, i):
            if i == len(parts) - 1:
                if isinstance(node, dict):
                    node.pop(parts[i], None)
                return
            if parts[i] == "*":
                for x in node if isinstance(node, list) else []:
                    go(x, i + 1)
            elif isinstance(node, dict) and parts[i] in node:
                go(node[parts[i]], i + 1)

        go(doc, 0)
    return doc


# What legitimately differs between two runs of the same input, stripped before comparing:
#   report.json:   run_id, started_at, elapsed_ms (identity and wall clock of the run);
#                  stages[].busy_ms, stages[].rows_per_s (timings);
#                  load.http.rate_wait_secs, load.http.backoff_secs (time spent waiting).
#   manifest.json: run_id, created_at (identity, clock); pipeline_path, pipeline_sha256 (each
#                  binary has its own pipeline file, differing only in its temp dir);
#                  files[].sha256 and files[].bytes of report.json (it holds the timings) and
#                  of quarantine.parquet (its row order is not deterministic: the stages
#                  quarantine concurrently; its rows are compared with EXCEPT ALL instead) and
#                  of staged/*.parquet (compared as rows with EXCEPT ALL; byte identity is
#                  reported but not required). Rows per file are kept and compared.
#   both:          the run's temp dir, its run id and the sandbox's port, in any string
#                  (normalized to <ROOT>, <run-id>, <port> rather than deleted).
#   ledger:        run_id, updated_at (identity, clock); procore_id (assigned by the sandbox in
#                  the order its concurrent project workers write, not deterministic even
#                  between two runs of one binary) and the payload_hash of line rows (it hashes
#                  the resolved direct cost id, i.e. a procore_id). Header payload hashes, every
#                  origin_id, kind, job and target are compared, and how many rows have a
#                  procore_id.
#   stdout:        the stage table's busy ms and rows/s columns, the wall time line and the
#                  rate-limit wait ("N.Ns waiting").
REPORT_STRIP = ["run_id", "started_at", "elapsed_ms", "stages.*.busy_ms", "stages.*.rows_per_s",
                "load.http.rate_wait_secs", "load.http.backoff_secs"]
MANIFEST_STRIP = ["run_id", "created_at", "pipeline_path", "pipeline_sha256"]
MANIFEST_FILES_UNHASHED = re.compile(r"^(report\.json|quarantine\.parquet|staged/.*\.parquet)$")


def normalize_stdout(text, root):
    out, in_table = [], False
    for line in normalize(text, root).splitlines():
        if re.match(r"^\s+stage\s+rows in\s+busy ms", line):
            in_table = True
            out.append(line)
            continue
        if in_table:
            m = re.match(r"^\s{4}(\S+)\s+(\d+)\s+\S+\s+\S+\s*$", line)
            if m:
                out.append(f"    {m.group(1)} {m.group(2)} <busy ms> <rows/s>")
                continue
            in_table = False
        if re.match(r"^\s+wall time\s", line):
            out.append("  wall time <stripped>")
            continue
        out.append(re.sub(r"[\d.]+s waiting", "<t>s waiting", line))
    return out


def json_diff(a, b, path="", out=None):
    out = [] if out is None else out
    if type(a) is not type(b):
        out.append(f"{path or '.'}: old {json.dumps(a)[:200]} | new {json.dumps(b)[:200]}")
    elif isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a:
                out.append(f"{path}.{k}: only in new ({json.dumps(b[k])[:200]})")
            elif k not in b:
                out.append(f"{path}.{k}: only in old ({json.dumps(a[k])[:200]})")
            else:
                json_diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} elements in old, {len(b)} in new")
        for i, (x, y) in enumerate(zip(a, b)):
            json_diff(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path or '.'}: old {json.dumps(a)[:200]} | new {json.dumps(b)[:200]}")
    return out


# ---------------------------------------------------------------- one side's run


class Side:
    def __init__(self, name, root):
        self.name, self.root = name, os.path.abspath(root)
        stage = os.path.join(self.root, "stage")
        runs = [d for d in glob.glob(os.path.join(stage, "*", "manifest.json"))]
        if len(runs) != 1:
            raise SystemExit(f"{name}: expected one complete run (<run-id>/manifest.json) "
                             f"under {stage}, found {len(runs)}")
        self.run = os.path.dirname(runs[0])
        self.stage = stage
        self.run_id = os.path.basename(self.run)

    def path(self, rel):
        return os.path.join(self.run, rel)

    def listing(self):
        """Every file and directory the run left in its stage dir (and its root), run id
        normalized."""
        out = []
        for base, tag in ((self.stage, "stage"), (self.root, "root")):
            for dirpath, dirnames, filenames in os.walk(base):
                if tag == "root" and os.path.abspath(dirpath) == self.root:
                    dirnames[:] = [d for d in dirnames if d != "stage"]
                for n in dirnames + filenames:
                    if re.search(r"\.sqlite-(wal|shm|journal)$", n):
                        continue  # SQLite's own files: the ledger's content is compared
                    rel = os.path.relpath(os.path.join(dirpath, n), base)
                    out.append(f"{tag}/{RUN_ID.sub('<run-id>', rel)}")
        return sorted(out)

    def parquet_sets(self):
        """{'staged/part-*.parquet': [files], 'quarantine.parquet': [file], ...}"""
        sets = {}
        for f in sorted(glob.glob(os.path.join(self.run, "**", "*.parquet"), recursive=True)):
            rel = os.path.relpath(f, self.run)
            key = re.sub(r"part-\d+", "part-*", rel)
            sets.setdefault(key, []).append(f)
        return sets

    def json(self, rel, drop):
        with open(self.path(rel)) as f:
            return strip(normalize(json.load(f), self.root), drop)


def sql_list(files):
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def fmt_row(cols, row):
    return "{" + ", ".join(f"{c}={v!r}" for c, v in zip(cols, row)) + "}"


def compare(label, old_root, new_root):
    import duckdb

    old, new = Side("OLD", old_root), Side("NEW", new_root)
    diffs = []

    def differ(what, detail=""):
        diffs.append(f"[{label}] {what}" + (f": {detail}" if detail else ""))

    info = {"input": label}
    con = duckdb.connect()
    con.execute("SET threads = 2")

    # exit status and stdout summary
    rc = [open(os.path.join(s.root, "rc")).read().strip() for s in (old, new)]
    if rc[0] != rc[1]:
        differ("exit status", f"old {rc[0]}, new {rc[1]}")
    out_o, out_n = (normalize_stdout(open(os.path.join(s.root, "stdout")).read(), s.root)
                    for s in (old, new))
    if out_o != out_n:
        lines = [f"line {i + 1}: old {a!r} | new {b!r}"
                 for i, (a, b) in enumerate(zip(out_o, out_n)) if a != b]
        if len(out_o) != len(out_n):
            lines.append(f"{len(out_o)} lines in old, {len(out_n)} in new")
        differ("stdout summary (timings stripped)", "; ".join(lines[:MAX_SHOWN]))

    # files left behind
    lo, ln = set(old.listing()), set(new.listing())
    if lo != ln:
        differ("files written", f"only in old {sorted(lo - ln)[:MAX_SHOWN]}, "
                                f"only in new {sorted(ln - lo)[:MAX_SHOWN]}")

    # staged Parquet sets, quarantine included
    so, sn = old.parquet_sets(), new.parquet_sets()
    if set(so) != set(sn):
        differ("Parquet file sets", f"old {sorted(so)}, new {sorted(sn)}")
    rows = {}
    for key in sorted(set(so) & set(sn)):
        a, b = sql_list(so[key]), sql_list(sn[key])
        if len(so[key]) != len(sn[key]):
            differ(f"{key}: number of files", f"old {len(so[key])}, new {len(sn[key])}")
        desc_a = con.execute(f"DESCRIBE SELECT * FROM read_parquet({a})").fetchall()
        desc_b = con.execute(f"DESCRIBE SELECT * FROM read_parquet({b})").fetchall()
        sch_a, sch_b = [(r[0], r[1]) for r in desc_a], [(r[0], r[1]) for r in desc_b]
        if sch_a != sch_b:
            ta, tb = dict(sch_a), dict(sch_b)
            detail = [f"{c}: old {ta.get(c, 'absent')}, new {tb.get(c, 'absent')}"
                      for c in dict.fromkeys([c for c, _ in sch_a + sch_b]) if ta.get(c) != tb.get(c)]
            if not detail:
                detail = [f"column order: old {[c for c, _ in sch_a]}, new {[c for c, _ in sch_b]}"]
            differ(f"{key}: schema (rows not compared)", "; ".join(detail[:MAX_SHOWN]))
            continue
        cols = [c for c, _ in sch_a]
        n_a = con.execute(f"SELECT count(*) FROM read_parquet({a})").fetchall()[0][0]
        n_b = con.execute(f"SELECT count(*) FROM read_parquet({b})").fetchall()[0][0]
        rows[key] = n_a
        if n_a != n_b:
            differ(f"{key}: row count", f"old {n_a}, new {n_b}")
        only = {}
        for name, x, y in (("old", a, b), ("new", b, a)):
            q = f"SELECT * FROM read_parquet({x}) EXCEPT ALL SELECT * FROM read_parquet({y})"
            n = con.execute(f"SELECT count(*) FROM ({q})").fetchall()[0][0]
            if n:
                only[name] = (n, con.execute(f"{q} LIMIT 1000").fetchall())
        # a row changed in place shows up once each way: pair them by a key and name the
        # columns that differ; show whole rows otherwise
        pk = next((c for c in ("line_origin_id", "source_line") if c in cols), None)
        paired = set()
        if pk and len(only) == 2:
            i = cols.index(pk)
            news = {}
            for r in only["new"][1]:
                news.setdefault(r[i], r)
            changes = []
            for r in only["old"][1]:
                m = news.get(r[i])
                if m is not None and r[i] not in paired:
                    paired.add(r[i])
                    changes.append(f"{pk}={r[i]!r}: " + ", ".join(
                        f"{c} old {x!r} new {y!r}" for c, x, y in zip(cols, r, m) if x != y))
            if changes:
                differ(f"{key}: {len(changes)}{'+' if len(changes) >= 1000 else ''} rows changed",
                       "; ".join(changes[:MAX_SHOWN]))
        for name, (n, got) in only.items():
            rest = [r for r in got if not pk or r[cols.index(pk)] not in paired]
            if rest:
                differ(f"{key}: {n} rows only in {name} (EXCEPT ALL)"
                       + (f", {len(got) - len(rest)} of them changed (above)" if len(rest) < len(got) else ""),
                       "; ".join(fmt_row(cols, r) for r in rest[:3]))
        same_bytes = len(so[key]) == len(sn[key]) and all(
            filecmp.cmp(f, g, shallow=False) for f, g in zip(so[key], sn[key]))
        info.setdefault("parquet_bytes_identical", {})[key] = same_bytes
    staged_key = next((k for k in rows if k.startswith("staged/")), None)
    info["rows_staged"] = rows.get(staged_key)
    info["rows_quarantined"] = rows.get("quarantine.parquet")

    # origin_ids
    origin_ids = set()

    def compare_ids(what, ids_o, ids_n):
        origin_ids.update(ids_o)
        if ids_o != ids_n:
            differ(f"{what} origin_ids",
                   f"{len(ids_o)} in old, {len(ids_n)} in new; only in old "
                   f"{sorted(ids_o - ids_n)[:MAX_SHOWN]}, only in new {sorted(ids_n - ids_o)[:MAX_SHOWN]}")

    if staged_key in sn and staged_key in so:
        for col in ("line_origin_id", "direct_cost_origin_id"):
            got = []
            for s in (so, sn):
                try:
                    got.append({r[0] for r in con.execute(
                        f"SELECT DISTINCT {col} FROM read_parquet({sql_list(s[staged_key])})"
                        f" WHERE {col} IS NOT NULL").fetchall()})
                except duckdb.Error as e:
                    got.append(f"unreadable: {e}".splitlines()[0])
            if isinstance(got[0], str) or isinstance(got[1], str):
                differ(f"staged {col}", f"old {got[0] if isinstance(got[0], str) else 'ok'}, "
                                        f"new {got[1] if isinstance(got[1], str) else 'ok'}")
            else:
                compare_ids(f"staged {col}", got[0], got[1])

    # requests.ndjson (dry run): deterministic between two runs of one binary, so byte identity
    req = [os.path.exists(s.path("requests.ndjson")) for s in (old, new)]
    if req[0] != req[1]:
        differ("requests.ndjson", f"present in old: {req[0]}, in new: {req[1]}")
    elif req[0]:
        ro = open(old.path("requests.ndjson"), "rb").read()
        rn = open(new.path("requests.ndjson"), "rb").read()
        lo_, ln_ = ro.splitlines(), rn.splitlines()
        info["requests_lines"] = len(lo_)
        if ro != rn:
            first = next((i for i, (x, y) in enumerate(zip(lo_, ln_)) if x != y), min(len(lo_), len(ln_)))
            x = lo_[first] if first < len(lo_) else b"<end of file>"
            y = ln_[first] if first < len(ln_) else b"<end of file>"
            col = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            differ("requests.ndjson not byte-identical",
                   f"{len(lo_)} lines in old, {len(ln_)} in new; first difference line {first + 1}"
                   f" byte {col + 1}: old ...{x[max(0, col - 60):col + 60].decode(errors='replace')}..."
                   f" | new ...{y[max(0, col - 60):col + 60].decode(errors='replace')}..."
                   + ("; same lines in another order" if sorted(lo_) == sorted(ln_) else ""))

        def request_ids(data):
            # every "origin_id" value of every request (record ids and the direct cost ids
            # the line items reference); jcsync's ids are plain ASCII, never escaped
            return {m.decode() for m in ORIGIN_ID.findall(data)}

        compare_ids("requests.ndjson", request_ids(ro), request_ids(rn))

    # ledger (sandbox runs)
    led = [os.path.join(s.root, "ledger.sqlite") for s in (old, new)]
    has = [os.path.exists(p) for p in led]
    if has[0] != has[1]:
        differ("ledger", f"present in old: {has[0]}, in new: {has[1]}")
    elif has[0]:
        tables = []
        for side, p in zip((old, new), led):
            c = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
            loaded = c.execute(
                "SELECT target, origin_id, kind, job, procore_id IS NOT NULL,"
                " CASE WHEN kind = 'line' THEN NULL ELSE payload_hash END FROM loaded").fetchall()
            marks = c.execute("SELECT scope, stamp FROM watermarks").fetchall()
            c.close()
            tables.append((sorted(normalize([list(r) for r in loaded], side.root)),
                           sorted(normalize([list(r) for r in marks], side.root))))
        (lo_l, lo_w), (ln_l, ln_w) = tables
        info["ledger_rows"] = len(lo_l)
        compare_ids("ledger", {r[1] for r in lo_l}, {r[1] for r in ln_l})
        if lo_l != ln_l:
            a, b = {tuple(r) for r in lo_l}, {tuple(r) for r in ln_l}
            differ("ledger rows (target, origin_id, kind, job, has procore_id, header payload_hash)",
                   f"{len(lo_l)} in old, {len(ln_l)} in new; only in old {sorted(a - b)[:3]}, "
                   f"only in new {sorted(b - a)[:3]}")
        if lo_w != ln_w:
            differ("ledger watermarks", f"old {lo_w}, new {ln_w}")

    # report.json and manifest.json, minus what legitimately differs (see REPORT_STRIP above)
    for rel, drop in (("report.json", REPORT_STRIP), ("manifest.json", MANIFEST_STRIP)):
        ex = [os.path.exists(s.path(rel)) for s in (old, new)]
        if ex != [True, True]:
            differ(rel, f"present in old: {ex[0]}, in new: {ex[1]}")
            continue
        a, b = old.json(rel, drop), new.json(rel, drop)
        if rel == "manifest.json":
            for m in (a, b):
                for f in m.get("files", []):
                    if MANIFEST_FILES_UNHASHED.match(f.get("path", "")):
                        f.pop("sha256", None)
                        f.pop("bytes", None)
                # keyed by path, so that one file more or less is named, not a shifted list
                m["files"] = {f.get("path"): f for f in m.get("files", [])}
        d = json_diff(a, b)
        if d:
            differ(f"{rel} (timings, ids, paths stripped)", "; ".join(d[:MAX_SHOWN])
                   + (f"; and {len(d) - MAX_SHOWN} more" if len(d) > MAX_SHOWN else ""))
        if rel == "report.json":
            info["planned_amount"] = a.get("planned_amount")

    info["distinct_origin_ids"] = len(origin_ids)
    info["identical"] = not diffs
    for d in diffs:
        print(d, file=sys.stderr)
    print(json.dumps(info))
    return 1 if diffs else 0


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "pipeline":
        cmd_pipeline(sys.argv[2:])
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "compare":
        return compare(*sys.argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
