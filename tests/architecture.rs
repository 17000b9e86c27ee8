//! Architecture checks (docs/architecture.md): modules depend on each other one way, and no
//! source file grows past what a reader can hold.
//!
//! The dependency graph is read from the sources: every `crate::a::b` path and every
//! `super::` path in non-test code of `src/`, resolved to the module it names. Two graphs are
//! checked for cycles: between the top-level modules (`model`, `load`, `pipeline`, ...) and,
//! inside each folder module, between its children (`load::plan`, `load::procore`, ...).
//! `error` and `config` are the crate's shared vocabulary (every layer reports errors and reads
//! its settings); they may depend on nothing but `model`, and are left out of the cycle check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest source file allowed, in lines (the "about 800"; the sandbox, a self-contained
/// peer that could become its own crate, is held to the same bound).
const MAX_LINES: usize = 850;

/// Folders that are a program of their own inside the crate, not a layer of the pipeline: the
/// embedded Procore sandbox (it could become its own crate; its routes and app refer to each
/// other as an axum app's do). Its dependencies on the rest are still checked.
const SELF_CONTAINED: [&str; 1] = ["sandbox"];

/// Modules every layer may use, which themselves use only `model` (and each other).
const SHARED: [&str; 2] = ["error", "config"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/load/plan/queue.rs` → ["load", "plan", "queue"]; `mod.rs` and `lib.rs` name their
/// folder.
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its `#[cfg(test)]` modules (tests may
/// reach across layers; the code they test may not).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut pending_test = false;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(depth) = skip_depth.as_mut() {
            *depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
            if *depth <= 0 {
                skip_depth = None;
            }
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        if t.starts_with("#[cfg(test)]") {
            pending_test = true;
            continue;
        }
        if pending_test {
            pending_test = false;
            if t.starts_with("mod ")
                || t.starts_with("pub mod ")
                || t.starts_with("pub(crate) mod ")
            {
                if t.ends_with(';') {
                    continue;
                }
                let depth = line.matches('{').count() as i32 - line.matches('}').count() as i32;
                if depth > 0 {
                    skip_depth = Some(depth);
                }
                continue;
            }
        }
        let line = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every module path a file's code names: `crate::a::b…` and `super::…` (resolved against
/// the file's own module), including the items of `use crate::a::{b, c}` groups.
fn references(module: &[String], code: &str) -> BTreeSet<Vec<String>> {
    let mut refs = BTreeSet::new();
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    for (start, prefix) in code
        .match_indices("crate::")
        .map(|(i, _)| (i, "crate"))
        .chain(code.match_indices("super::").map(|(i, _)| (i, "super")))
    {
        if start > 0 && (ident(bytes[start - 1]) || bytes[start - 1] == b':') {
            continue;
        }
        let mut segs: Vec<String> = Vec::new();
        let mut i = start;
        // Walk `seg::seg::…`
        loop {
            let s = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            segs.push(code[s..i].to_string());
            if code[i..].starts_with("::") {
                i += 2;
                if code[i..].starts_with('{') {
                    // A group: take the first segment of each item.
                    let end = code[i..].find('}').map_or(code.len(), |e| i + e);
                    for item in code[i + 1..end].split(',') {
                        let first: String = item
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !first.is_empty() && first != "self" {
                            let mut s = segs.clone();
                            s.push(first);
                            refs.insert(resolve(module, prefix, &s));
                        }
                    }
                    break;
                }
                continue;
            }
            break;
        }
        refs.insert(resolve(module, prefix, &segs));
    }
    refs
}

fn resolve(module: &[String], prefix: &str, segs: &[String]) -> Vec<String> {
    match prefix {
        "crate" => segs[1..].to_vec(),
        _ => {
            // A file's module path names the file (`load::plan::queue`), a folder's its folder
            // (`load::plan` for plan/mod.rs): either way `super` is one step up.
            let mut base: Vec<String> = module.to_vec();
            let mut rest = segs;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            base
        }
    }
}

struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
    /// (from, to) → a file that makes the edge, for the failure message.
    witness: BTreeMap<(String, String), String>,
}

fn graphs() -> (Graph, BTreeMap<String, Graph>) {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut top = Graph {
        edges: BTreeMap::new(),
        witness: BTreeMap::new(),
    };
    let mut inner: BTreeMap<String, Graph> = BTreeMap::new();
    for file in &files {
        let module = module_path(file);
        if module.is_empty() {
            continue; // lib.rs, main.rs
        }
        let text = std::fs::read_to_string(file).expect("read source");
        let name = file.strip_prefix(src()).expect("src").display().to_string();
        for r in references(&module, &code(&text)) {
            let Some(to_top) = r.first() else { continue };
            let from_top = &module[0];
            if to_top != from_top {
                top.edges
                    .entry(from_top.clone())
                    .or_default()
                    .insert(to_top.clone());
                top.witness
                    .entry((from_top.clone(), to_top.clone()))
                    .or_insert_with(|| name.clone());
            } else if module.len() > 1 && r.len() > 1 && r[1] != module[1] {
                let g = inner.entry(from_top.clone()).or_insert_with(|| Graph {
                    edges: BTreeMap::new(),
                    witness: BTreeMap::new(),
                });
                g.edges
                    .entry(module[1].clone())
                    .or_default()
                    .insert(r[1].clone());
                g.witness
                    .entry((module[1].clone(), r[1].clone()))
                    .or_insert_with(|| name.clone());
            }
        }
    }
    (top, inner)
}

/// A cycle of `g` without the `skip` nodes, as a path a → … → a.
fn cycle(g: &Graph, skip: &[&str]) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        skip: &[&str],
        n: &str,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.edges.get(n).into_iter().flatten() {
            if skip.contains(&m.as_str()) {
                continue;
            }
            match state.get(m.as_str()) {
                Some(1) => {
                    let i = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut c = stack[i..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(g, skip, m, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.edges.keys() {
        if skip.contains(&n.as_str()) || state.contains_key(n) {
            continue;
        }
        if let Some(c) = visit(g, skip, n, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn explain(g: &Graph, c: &[String]) -> String {
    c.windows(2)
        .map(|w| {
            format!(
                "{} → {} (in src/{})",
                w[0],
                w[1],
                g.witness
                    .get(&(w[0].clone(), w[1].clone()))
                    .map_or("?", String::as_str)
            )
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

#[test]
fn modules_depend_on_each_other_one_way() {
    let (top, inner) = graphs();
    assert!(
        top.edges.len() > 8,
        "the dependency reader found almost no edges: {:?}",
        top.edges
    );
    if let Some(c) = cycle(&top, &SHARED) {
        panic!(
            "an import cycle between top-level modules:\n  {}\nsee docs/architecture.md for the direction",
            explain(&top, &c)
        );
    }
    for (folder, g) in &inner {
        if SELF_CONTAINED.contains(&folder.as_str()) {
            continue;
        }
        if let Some(c) = cycle(g, &[]) {
            panic!(
                "an import cycle inside src/{folder}/:\n  {}",
                explain(g, &c)
            );
        }
    }
}

#[test]
fn the_model_layer_and_the_shared_modules_depend_on_nothing_above_them() {
    let (top, _) = graphs();
    for (module, allowed) in [
        ("model", &["error"][..]),
        ("error", &["model"][..]),
        ("config", &["error", "model"][..]),
        ("quarantine", &["error", "model", "staging", "config"][..]),
    ] {
        for to in top.edges.get(module).into_iter().flatten() {
            assert!(
                allowed.contains(&to.as_str()),
                "{module} depends on {to} (in src/{}): {module} may use only {allowed:?}",
                top.witness
                    .get(&(module.to_string(), to.clone()))
                    .map_or("?", String::as_str)
            );
        }
    }
}

#[test]
fn the_cycle_check_can_fail() {
    // A graph with a cycle through three nodes, and one without.
    let mut g = Graph {
        edges: BTreeMap::new(),
        witness: BTreeMap::new(),
    };
    for (a, b) in [("run", "pipeline"), ("pipeline", "load"), ("load", "run")] {
        g.edges.entry(a.into()).or_default().insert(b.into());
    }
    let c = cycle(&g, &[]).expect("a cycle");
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4);
    g.edges.entry("load".into()).or_default().remove("run");
    assert!(cycle(&g, &[]).is_none());
    // And the reader resolves the paths it must.
    let refs = references(
        &["load".into(), "plan".into(), "queue".into()],
        "use super::records::{HeaderRef, Parts};\nuse crate::model::{ids, view::Group};\n",
    );
    assert!(refs.contains(&vec![
        "load".to_string(),
        "plan".into(),
        "records".into(),
        "HeaderRef".into()
    ]));
    assert!(refs.contains(&vec!["model".to_string(), "ids".into()]));
    assert!(refs.contains(&vec!["model".to_string(), "view".into()]));
}

#[test]
fn no_source_file_is_longer_than_a_reader_can_hold() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).expect("read").lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "source files over {MAX_LINES} lines; split them by concern: {long:?}"
    );
}
