//! The comparison: Sage's staged lines against Procore's lines, per project and budget code to the
//! cent, and each line that differs in one class (see [`DriftClass`]).

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde::Serialize;

use super::procore::{ProcoreLine, ProcoreProject};
use super::sage::{SageException, SageLine, SageSnapshot};
use super::scope::{Scope, Unchecked};

/// How a line differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftClass {
    /// A Sage line (its origin_id) not in Procore.
    Missing,
    /// In Procore under its origin_id, with another amount, budget code, direct cost or
    /// description (`fields` says which).
    Changed,
    /// A Procore line with a jcsync origin_id that has no Sage row.
    Orphaned,
    /// A second (third, …) Procore line with the same origin_id.
    Duplicated,
    /// A Procore line without a jcsync origin_id: entered by hand or by another integration.
    /// Reported, never touched.
    Foreign,
}

impl DriftClass {
    /// The name used in the JSON and the reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftClass::Missing => "missing",
            DriftClass::Changed => "changed",
            DriftClass::Orphaned => "orphaned",
            DriftClass::Duplicated => "duplicated",
            DriftClass::Foreign => "foreign",
        }
    }
}

/// A line's facts on one side.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LineFacts {
    /// Exact decimal text, e.g. `"1250.00"`.
    pub amount: String,
    pub budget_code: Option<String>,
    pub description: Option<String>,
    pub direct_cost_origin_id: Option<String>,
    /// Procore's ids (Procore side only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_cost_id: Option<i64>,
    /// The transaction's line in the source (Sage side only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_line: Option<u64>,
    /// The incremental run laid over the snapshot whose staged row this is (Sage side only;
    /// absent: the snapshot run's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// One line that differs.
#[derive(Debug, Clone, Serialize)]
pub struct DriftLine {
    pub class: DriftClass,
    pub origin_id: Option<String>,
    pub job: String,
    pub project_id: Option<i64>,
    /// Budget code of the line (Sage's when it has a Sage row).
    pub budget_code: String,
    /// For `changed`: which of `amount`, `budget_code`, `direct_cost`, `description` differ.
    pub fields: Vec<&'static str>,
    pub sage: Option<LineFacts>,
    pub procore: Option<LineFacts>,
}

/// Totals of one budget code of one project.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BudgetTotals {
    pub budget_code: String,
    /// Sage lines jcsync loads (exceptions apart).
    pub sage: String,
    /// Every Procore line of the budget code that was compared, foreign ones included (the
    /// Budget counts them all, and also `unchecked`).
    pub procore: String,
    /// `procore - sage`.
    pub difference: String,
    pub sage_lines: u64,
    pub procore_lines: u64,
    /// The part of `procore` in foreign lines.
    pub foreign: String,
    pub foreign_lines: u64,
    /// Lines of this budget code in `drift` (foreign ones included).
    pub drift_lines: u64,
    /// Sage lines set aside at load (not in `sage`).
    pub exceptions: String,
    pub exception_lines: u64,
    /// jcsync lines in Procore the snapshot does not cover (see [`Unchecked`]): not compared,
    /// not in `procore`.
    pub unchecked: String,
    pub unchecked_lines: u64,
}

/// One project (Sage job).
#[derive(Debug, Clone, Serialize)]
pub struct ProjectTotals {
    pub job: String,
    /// None: the job has no Procore project (its lines are exceptions).
    pub project_id: Option<i64>,
    pub sage: String,
    pub procore: String,
    pub difference: String,
    /// Procore lines not compared (not in `procore`).
    pub unchecked: String,
    pub budget_codes: Vec<BudgetTotals>,
}

/// jcsync lines of one project the snapshot does not cover, for one reason: not compared,
/// not drift, never deleted by `--repair`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UncheckedTotal {
    pub job: String,
    pub project_id: Option<i64>,
    pub reason: Unchecked,
    pub lines: u64,
    pub amount: String,
}

/// A job with jcsync lines in Procore (the ledger says so) and not one row in the snapshot.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VanishedJobTotal {
    pub job: String,
    pub project_id: Option<i64>,
    /// `keep` (`[sync] vanished_jobs = "keep"`: its lines are not drift) or `remove` (they are
    /// orphaned).
    pub action: &'static str,
    pub lines: u64,
    pub amount: String,
}

/// Foreign lines of one project and budget code.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ForeignTotal {
    pub job: String,
    pub project_id: i64,
    pub budget_code: String,
    pub amount: String,
    pub lines: u64,
}

/// A Sage line jcsync cannot load (quarantined at load): not drift, never in the exit status.
#[derive(Debug, Clone, Serialize)]
pub struct ExceptionLine {
    pub origin_id: String,
    pub job: String,
    pub budget_code: String,
    pub reason_code: String,
    pub reason: String,
    pub amount: String,
    pub description: Option<String>,
    pub source_line: u64,
}

/// Lines per class.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DriftCounts {
    pub missing: u64,
    pub changed: u64,
    pub orphaned: u64,
    pub duplicated: u64,
    pub foreign: u64,
    pub exceptions: u64,
    /// jcsync lines not compared (not drift): dated before the run's `since` window, of
    /// unknown date with a window, of a vanished job kept by `[sync] vanished_jobs = "keep"`.
    pub out_of_window: u64,
    pub date_unknown: u64,
    pub vanished_kept: u64,
}

impl DriftCounts {
    /// True when Procore equals Sage: no drift of any class (exceptions and lines not compared
    /// apart).
    pub fn equal(&self) -> bool {
        self.missing + self.changed + self.orphaned + self.duplicated + self.foreign == 0
    }
}

/// The whole result of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub equal: bool,
    pub counts: DriftCounts,
    pub sage: String,
    pub procore: String,
    pub sage_lines: u64,
    pub procore_lines: u64,
    pub projects: Vec<ProjectTotals>,
    pub drift: Vec<DriftLine>,
    pub foreign: Vec<ForeignTotal>,
    pub exceptions: Vec<ExceptionLine>,
    /// The run's `since` window (`beginning-of-time` or a date).
    pub since: String,
    /// Lines not compared, per project and reason.
    pub unchecked: Vec<UncheckedTotal>,
    /// Jobs with jcsync lines in Procore and none in the snapshot.
    pub vanished_jobs: Vec<VanishedJobTotal>,
}

/// Cents as a decimal.
pub fn cents(c: i128) -> Decimal {
    Decimal::from_i128_with_scale(c, 2)
}

/// Exact decimal text with at least two decimals (`12.5` → `12.50`).
pub fn money(d: Decimal) -> String {
    let mut d = d.normalize();
    if d.scale() < 2 {
        d.rescale(2);
    }
    d.to_string()
}

fn sage_facts(l: &SageLine, snapshot: &SageSnapshot) -> LineFacts {
    LineFacts {
        run_id: snapshot.overlaid_run(l).map(str::to_string),
        amount: money(cents(l.amount)),
        budget_code: Some(l.budget_code.clone()),
        description: l.description.clone(),
        direct_cost_origin_id: Some(l.direct_cost_origin_id.clone()),
        line_id: None,
        direct_cost_id: None,
        source_line: Some(l.source_line),
    }
}

fn procore_facts(l: &ProcoreLine) -> LineFacts {
    LineFacts {
        amount: money(l.amount),
        budget_code: l.budget_code.clone(),
        description: l.description.clone(),
        direct_cost_origin_id: l.direct_cost_origin_id.clone(),
        line_id: Some(l.id),
        direct_cost_id: Some(l.direct_cost_id),
        source_line: None,
        run_id: None,
    }
}

/// The fields of a Procore line that differ from its Sage row.
pub fn changed_fields(s: &SageLine, p: &ProcoreLine) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if cents(s.amount) != p.amount {
        fields.push("amount");
    }
    if p.budget_code.as_deref() != Some(s.budget_code.as_str()) {
        fields.push("budget_code");
    }
    if p.direct_cost_origin_id.as_deref() != Some(s.direct_cost_origin_id.as_str()) {
        fields.push("direct_cost");
    }
    // Procore may answer an absent description as "" or null: the same thing.
    let norm = |d: Option<&str>| d.filter(|d| !d.is_empty()).map(str::to_string);
    if norm(s.description.as_deref()) != norm(p.description.as_deref()) {
        fields.push("description");
    }
    fields
}

const NO_BUDGET_CODE: &str = "(no budget code)";

#[derive(Default)]
struct Acc {
    sage: Decimal,
    procore: Decimal,
    foreign: Decimal,
    exceptions: Decimal,
    unchecked: Decimal,
    unchecked_lines: u64,
    sage_lines: u64,
    procore_lines: u64,
    foreign_lines: u64,
    exception_lines: u64,
    drift_lines: u64,
}

/// Compare a snapshot with what Procore holds. `projects`: Sage job → Procore project id;
/// `procore`: what each project read back holds; `ledger_ids`: for each origin_id in
/// duplicate, the Procore id the ledger holds (the copy to keep). `line_prefix` is
/// `jcsync:{company}:line:`. `scope`: what the snapshot covers; a jcsync line it does not
/// cover (every copy of its origin_id) is counted apart, not compared.
pub fn compare(
    snapshot: &SageSnapshot,
    projects: &HashMap<String, i64>,
    procore: &BTreeMap<String, ProcoreProject>,
    keep_ids: &HashMap<String, i64>,
    line_prefix: &str,
    scope: &Scope,
) -> Comparison {
    let mut acc: BTreeMap<(String, String), Acc> = BTreeMap::new();
    let mut drift = Vec::new();
    let mut exceptions: Vec<ExceptionLine> = Vec::new();
    let exception = |e: &SageException| ExceptionLine {
        origin_id: e.line.origin_id.clone(),
        job: e.line.job.clone(),
        budget_code: e.line.budget_code.clone(),
        reason_code: e.reason_code.clone(),
        reason: e.reason.clone(),
        amount: money(cents(e.line.amount)),
        description: e.line.description.clone(),
        source_line: e.line.source_line,
    };
    for e in &snapshot.exceptions {
        let a = acc
            .entry((e.line.job.clone(), e.line.budget_code.clone()))
            .or_default();
        a.exceptions += cents(e.line.amount);
        a.exception_lines += 1;
        exceptions.push(exception(e));
    }
    let in_snapshot: std::collections::HashSet<&str> = snapshot
        .lines
        .iter()
        .chain(snapshot.exceptions.iter().map(|e| &e.line))
        .map(|l| l.origin_id.as_str())
        .collect();
    let mut unchecked: BTreeMap<(String, Unchecked), (u64, Decimal)> = BTreeMap::new();
    let mut vanished: BTreeMap<String, (u64, Decimal)> = BTreeMap::new();
    // Procore lines by origin_id, jcsync's only.
    let mut by_origin: HashMap<&str, Vec<(&str, &ProcoreLine)>> = HashMap::new();
    for (job, p) in procore {
        for l in &p.lines {
            let code = l
                .budget_code
                .as_deref()
                .unwrap_or(NO_BUDGET_CODE)
                .to_string();
            let a = acc.entry((job.clone(), code.clone())).or_default();
            let jcsync = l
                .origin_id
                .as_deref()
                .filter(|o| o.starts_with(line_prefix));
            if let Some(o) = jcsync.filter(|o| !in_snapshot.contains(o)) {
                let why = scope.unchecked(o, job);
                if scope.vanished.contains(job)
                    && matches!(why, None | Some(Unchecked::VanishedKept))
                {
                    let v = vanished.entry(job.clone()).or_default();
                    v.0 += 1;
                    v.1 += l.amount;
                }
                if let Some(why) = why {
                    a.unchecked += l.amount;
                    a.unchecked_lines += 1;
                    let u = unchecked.entry((job.clone(), why)).or_default();
                    u.0 += 1;
                    u.1 += l.amount;
                    continue;
                }
            }
            a.procore += l.amount;
            a.procore_lines += 1;
            match jcsync {
                Some(o) => by_origin.entry(o).or_default().push((job.as_str(), l)),
                None => {
                    a.foreign += l.amount;
                    a.foreign_lines += 1;
                    a.drift_lines += 1;
                    drift.push(DriftLine {
                        class: DriftClass::Foreign,
                        origin_id: l.origin_id.clone(),
                        job: job.clone(),
                        project_id: Some(p.project_id),
                        budget_code: code,
                        fields: Vec::new(),
                        sage: None,
                        procore: Some(procore_facts(l)),
                    });
                }
            }
        }
    }
    let exception_ids: std::collections::HashSet<&str> = snapshot
        .exceptions
        .iter()
        .map(|e| e.line.origin_id.as_str())
        .collect();
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for s in &snapshot.lines {
        let project_id = projects.get(&s.job).copied();
        let a = acc
            .entry((s.job.clone(), s.budget_code.clone()))
            .or_default();
        a.sage += cents(s.amount);
        a.sage_lines += 1;
        seen.insert(s.origin_id.as_str());
        let mut push = |class, fields, procore: Option<&ProcoreLine>, a: &mut Acc| {
            a.drift_lines += 1;
            drift.push(DriftLine {
                class,
                origin_id: Some(s.origin_id.clone()),
                job: s.job.clone(),
                project_id,
                budget_code: s.budget_code.clone(),
                fields,
                sage: Some(sage_facts(s, snapshot)),
                procore: procore.map(procore_facts),
            });
        };
        let Some(copies) = by_origin.get(s.origin_id.as_str()) else {
            push(DriftClass::Missing, Vec::new(), None, a);
            continue;
        };
        let keep = keeper(copies, keep_ids.get(&s.origin_id).copied());
        let fields = changed_fields(s, copies[keep].1);
        if !fields.is_empty() {
            push(DriftClass::Changed, fields, Some(copies[keep].1), a);
        }
        for (i, (job, l)) in copies.iter().enumerate() {
            if i != keep {
                duplicate(&mut drift, &mut acc, job, procore, l, Some((s, snapshot)));
            }
        }
    }
    for (origin, copies) in &by_origin {
        if seen.contains(origin) || exception_ids.contains(origin) {
            continue;
        }
        let keep = keeper(copies, keep_ids.get(*origin).copied());
        for (i, (job, l)) in copies.iter().enumerate() {
            let code = l
                .budget_code
                .as_deref()
                .unwrap_or(NO_BUDGET_CODE)
                .to_string();
            if i == keep {
                if let Some(a) = acc.get_mut(&(job.to_string(), code.clone())) {
                    a.drift_lines += 1;
                }
                drift.push(DriftLine {
                    class: DriftClass::Orphaned,
                    origin_id: Some(origin.to_string()),
                    job: job.to_string(),
                    project_id: procore.get(*job).map(|p| p.project_id),
                    budget_code: code,
                    fields: Vec::new(),
                    sage: None,
                    procore: Some(procore_facts(l)),
                });
            } else {
                duplicate(&mut drift, &mut acc, job, procore, l, None);
            }
        }
    }
    drift.sort_by(|a, b| {
        (&a.job, a.class, &a.budget_code, &a.origin_id).cmp(&(
            &b.job,
            b.class,
            &b.budget_code,
            &b.origin_id,
        ))
    });
    let mut out = summarize(acc, drift, exceptions, projects);
    let project_of = |job: &str| procore.get(job).map(|p| p.project_id);
    for ((job, reason), (lines, amount)) in unchecked {
        match reason {
            Unchecked::OutOfWindow => out.counts.out_of_window += lines,
            Unchecked::DateUnknown => out.counts.date_unknown += lines,
            Unchecked::VanishedKept => out.counts.vanished_kept += lines,
        }
        out.unchecked.push(UncheckedTotal {
            project_id: project_of(&job),
            job,
            reason,
            lines,
            amount: money(amount),
        });
    }
    out.since = scope
        .since
        .map_or_else(|| "beginning-of-time".into(), |d| d.to_string());
    out.vanished_jobs = vanished
        .into_iter()
        .map(|(job, (lines, amount))| VanishedJobTotal {
            project_id: project_of(&job),
            job,
            action: if scope.keep_vanished {
                "keep"
            } else {
                "remove"
            },
            lines,
            amount: money(amount),
        })
        .collect();
    out
}

/// Which copy of a duplicated origin_id is kept: the one whose Procore id the ledger holds,
/// else the oldest (lowest id).
fn keeper(copies: &[(&str, &ProcoreLine)], ledger_id: Option<i64>) -> usize {
    copies
        .iter()
        .position(|(_, l)| Some(l.id) == ledger_id)
        .or_else(|| {
            copies
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, l))| l.id)
                .map(|(i, _)| i)
        })
        .unwrap_or(0)
}

fn duplicate(
    drift: &mut Vec<DriftLine>,
    acc: &mut BTreeMap<(String, String), Acc>,
    job: &str,
    procore: &BTreeMap<String, ProcoreProject>,
    l: &ProcoreLine,
    sage: Option<(&SageLine, &SageSnapshot)>,
) {
    let code = sage
        .map(|(s, _)| s.budget_code.clone())
        .or_else(|| l.budget_code.clone())
        .unwrap_or_else(|| NO_BUDGET_CODE.into());
    let own = l
        .budget_code
        .as_deref()
        .unwrap_or(NO_BUDGET_CODE)
        .to_string();
    if let Some(a) = acc.get_mut(&(job.to_string(), own)) {
        a.drift_lines += 1;
    }
    drift.push(DriftLine {
        class: DriftClass::Duplicated,
        origin_id: l.origin_id.clone(),
        job: job.to_string(),
        project_id: procore.get(job).map(|p| p.project_id),
        budget_code: code,
        fields: Vec::new(),
        sage: sage.map(|(s, snapshot)| sage_facts(s, snapshot)),
        procore: Some(procore_facts(l)),
    });
}

fn summarize(
    acc: BTreeMap<(String, String), Acc>,
    drift: Vec<DriftLine>,
    exceptions: Vec<ExceptionLine>,
    projects: &HashMap<String, i64>,
) -> Comparison {
    let mut counts = DriftCounts {
        exceptions: exceptions.len() as u64,
        ..DriftCounts::default()
    };
    for d in &drift {
        match d.class {
            DriftClass::Missing => counts.missing += 1,
            DriftClass::Changed => counts.changed += 1,
            DriftClass::Orphaned => counts.orphaned += 1,
            DriftClass::Duplicated => counts.duplicated += 1,
            DriftClass::Foreign => counts.foreign += 1,
        }
    }
    let mut out: Vec<ProjectTotals> = Vec::new();
    let mut foreign = Vec::new();
    let (mut sage_all, mut procore_all) = (Decimal::ZERO, Decimal::ZERO);
    let (mut sage_lines, mut procore_lines) = (0, 0);
    let mut per_project: HashMap<String, (Decimal, Decimal, Decimal)> = HashMap::new();
    for ((job, code), a) in acc {
        if out.last().is_none_or(|p| p.job != job) {
            out.push(ProjectTotals {
                job: job.clone(),
                project_id: projects.get(&job).copied(),
                sage: String::new(),
                procore: String::new(),
                difference: String::new(),
                unchecked: String::new(),
                budget_codes: Vec::new(),
            });
        }
        sage_all += a.sage;
        procore_all += a.procore;
        let sums = per_project.entry(job.clone()).or_default();
        sums.0 += a.sage;
        sums.1 += a.procore;
        sums.2 += a.unchecked;
        sage_lines += a.sage_lines;
        procore_lines += a.procore_lines;
        if a.foreign_lines > 0 {
            if let Some(pid) = projects.get(&job) {
                foreign.push(ForeignTotal {
                    job: job.clone(),
                    project_id: *pid,
                    budget_code: code.clone(),
                    amount: money(a.foreign),
                    lines: a.foreign_lines,
                });
            }
        }
        if let Some(p) = out.last_mut() {
            p.budget_codes.push(BudgetTotals {
                budget_code: code,
                sage: money(a.sage),
                procore: money(a.procore),
                difference: money(a.procore - a.sage),
                sage_lines: a.sage_lines,
                procore_lines: a.procore_lines,
                foreign: money(a.foreign),
                foreign_lines: a.foreign_lines,
                drift_lines: a.drift_lines,
                exceptions: money(a.exceptions),
                exception_lines: a.exception_lines,
                unchecked: money(a.unchecked),
                unchecked_lines: a.unchecked_lines,
            });
        }
    }
    for p in &mut out {
        let (sage, procore, unchecked) = per_project.get(&p.job).copied().unwrap_or_default();
        p.sage = money(sage);
        p.procore = money(procore);
        p.difference = money(procore - sage);
        p.unchecked = money(unchecked);
    }
    Comparison {
        equal: counts.equal(),
        counts,
        sage: money(sage_all),
        procore: money(procore_all),
        sage_lines,
        procore_lines,
        projects: out,
        drift,
        foreign,
        exceptions,
        since: String::new(),
        unchecked: Vec::new(),
        vanished_jobs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sage(origin: &str, amount: i128, description: Option<&str>) -> SageLine {
        SageLine {
            origin_id: origin.into(),
            direct_cost_origin_id: "jcsync:X:dc:1".into(),
            job: "1001".into(),
            budget_code: "01-100.L".into(),
            amount,
            description: description.map(str::to_string),
            source_line: 2,
            run: 0,
        }
    }

    fn line(id: i64, origin: Option<&str>, amount: &str) -> ProcoreLine {
        ProcoreLine {
            id,
            direct_cost_id: 7,
            direct_cost_origin_id: Some("jcsync:X:dc:1".into()),
            origin_id: origin.map(str::to_string),
            budget_code: Some("01-100.L".into()),
            amount: amount.parse().expect("decimal"),
            description: None,
        }
    }

    fn run(lines: Vec<SageLine>, procore: Vec<ProcoreLine>, keep: &[(&str, i64)]) -> Comparison {
        let snapshot = SageSnapshot {
            lines,
            ..SageSnapshot::default()
        };
        let projects = HashMap::from([("1001".to_string(), 42)]);
        let read = BTreeMap::from([(
            "1001".to_string(),
            ProcoreProject {
                project_id: 42,
                lines: procore,
                direct_costs: HashMap::from([(7, Some("jcsync:X:dc:1".into()))]),
            },
        )]);
        let keep = keep.iter().map(|(o, i)| (o.to_string(), *i)).collect();
        compare(
            &snapshot,
            &projects,
            &read,
            &keep,
            "jcsync:X:line:",
            &Scope::default(),
        )
    }

    #[test]
    fn an_absent_description_equals_an_empty_one_and_amounts_compare_exactly() {
        let c = run(
            vec![sage("jcsync:X:line:a", 1005, None)],
            vec![ProcoreLine {
                description: Some(String::new()),
                ..line(1, Some("jcsync:X:line:a"), "10.050")
            }],
            &[],
        );
        assert!(c.equal, "{:#?}", c.drift);
        assert_eq!((c.sage.as_str(), c.procore.as_str()), ("10.05", "10.05"));
        let c = run(
            vec![sage("jcsync:X:line:a", 1005, None)],
            vec![line(1, Some("jcsync:X:line:a"), "10.051")],
            &[],
        );
        assert_eq!(c.drift[0].fields, vec!["amount"]);
        assert_eq!(c.projects[0].budget_codes[0].difference, "0.001");
    }

    #[test]
    fn the_copy_the_ledger_holds_is_kept_and_the_other_is_the_duplicate() {
        let c = run(
            vec![sage("jcsync:X:line:a", 100, None)],
            vec![
                line(1, Some("jcsync:X:line:a"), "9.99"),
                line(2, Some("jcsync:X:line:a"), "1.00"),
            ],
            &[("jcsync:X:line:a", 2)],
        );
        assert_eq!(c.counts.duplicated, 1);
        assert_eq!(c.counts.changed, 0, "the kept copy (id 2) equals Sage");
        assert_eq!(c.drift[0].procore.as_ref().and_then(|p| p.line_id), Some(1));
        assert_eq!(c.projects[0].budget_codes[0].procore, "10.99");
    }

    #[test]
    fn another_companys_origin_id_is_foreign() {
        let c = run(Vec::new(), vec![line(1, Some("jcsync:Y:line:a"), "5")], &[]);
        assert_eq!(c.counts.foreign, 1);
        assert_eq!(c.foreign[0].amount, "5.00");
    }
}
