//! The planner's batching, queue bound and header cache.

use super::*;

use arrow::array::{ArrayRef, Date32Array, Decimal128Array, Int64Array, StringArray, UInt64Array};

use crate::model::schema::{DIRECT_COST_ORIGIN_ID, LINE_ORIGIN_ID};

/// One synthetic row: (job, direct cost origin_id, amount in cents).
type Row<'a> = (&'a str, &'a str, i128);

/// An enriched batch of expense lines (one batch per direct cost, so the header key follows
/// the origin_id).
fn batch(rows: &[Row], first_line: usize) -> RecordBatch {
    let n = rows.len();
    let text = |f: &dyn Fn(usize) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter((0..n).map(f)))
    };
    let dates = |v: Option<i32>| -> ArrayRef { Arc::new(Date32Array::from(vec![v; n])) };
    let dec = |f: &dyn Fn(usize) -> Option<i128>| -> ArrayRef {
        Arc::new(Decimal128Array::from_iter((0..n).map(f)))
    };
    let seq = |f: &dyn Fn(usize) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values((0..n).map(f)))
    };
    let line = |i: usize| first_line + i;
    RecordBatch::try_from_iter([
        ("job", text(&|i| Some(rows[i].0.to_string()))),
        ("extra", text(&|_| None)),
        ("cost_code", text(&|i| Some(format!("01-{}", line(i) % 7)))),
        ("category", text(&|_| Some("E".into()))),
        ("transaction_type", text(&|_| Some("EQ cost".into()))),
        ("description", text(&|i| Some(format!("line {}", line(i))))),
        ("vendor", text(&|_| None)),
        ("invoice", text(&|_| None)),
        ("batch", text(&|i| Some(rows[i].1.to_string()))),
        ("accounting_date", dates(Some(19_727))),
        ("period_end_date", dates(None)),
        ("amount", dec(&|i| Some(rows[i].2))),
        ("units", dec(&|_| None)),
        ("unit_cost", dec(&|_| None)),
        ("run", seq(&|_| 1)),
        ("sequence", seq(&|i| line(i) as i64)),
        ("dist_sequence", seq(&|_| 1)),
        (
            crate::model::schema::SOURCE_LINE,
            Arc::new(UInt64Array::from_iter_values(
                (0..n).map(|i| line(i) as u64),
            )),
        ),
        ("invoice_date", dates(None)),
        ("invoice_received_date", dates(None)),
        ("invoice_payment_date", dates(None)),
        ("invoice_description", text(&|_| None)),
        (LINE_ORIGIN_ID, text(&|i| Some(format!("line:{}", line(i))))),
        (
            DIRECT_COST_ORIGIN_ID,
            text(&|i| Some(rows[i].1.to_string())),
        ),
    ])
    .expect("batch")
}

/// Checks every request as it arrives: the size limit, and that each line's header was sent
/// before it (in an earlier request of the same project).
#[derive(Default)]
struct Checking {
    max_records: usize,
    sent_headers: HashSet<(String, String)>,
    header_records: Vec<String>,
    lines: Vec<String>,
    cents: i128,
    requests: usize,
}

impl RequestSink for Checking {
    fn send(&mut self, request: PlannedRequest<'_>) -> Result<()> {
        self.requests += 1;
        assert!(request.records() >= 1 && request.records() <= self.max_records);
        match request {
            PlannedRequest::HeaderSync { job, headers } => {
                let mut in_request = HashSet::new();
                for h in headers.iter() {
                    assert_eq!(h.job, job);
                    assert!(in_request.insert(h.origin_id.clone()), "twice in a request");
                    self.sent_headers
                        .insert((job.to_string(), h.origin_id.to_string()));
                    self.header_records.push(h.origin_id.to_string());
                }
            }
            PlannedRequest::LineSync { job, lines } => {
                for l in lines.iter() {
                    assert_eq!(**l.job, *job);
                    assert!(
                        self.sent_headers
                            .contains(&(job.to_string(), l.direct_cost_origin_id.to_string())),
                        "line {} before its header {}",
                        l.origin_id,
                        l.direct_cost_origin_id
                    );
                    self.cents += l.amount;
                    self.lines.push(l.origin_id.to_string());
                }
            }
        }
        Ok(())
    }
}

fn plan(limits: PlanLimits, rows: &[Row], batch_rows: usize) -> (Checking, Planner) {
    let mut planner = Planner::with_limits(limits);
    let mut sink = Checking {
        max_records: planner.limits().max_records,
        ..Checking::default()
    };
    for (i, chunk) in rows.chunks(batch_rows).enumerate() {
        planner
            .process(&batch(chunk, i * batch_rows), &mut sink)
            .expect("process");
        assert!(planner.queued <= planner.limits().max_queued_lines);
    }
    planner.finish(&mut sink).expect("finish");
    (sink, planner)
}

/// `lines` lines over `jobs` interleaved projects, `per_header` consecutive lines (of one
/// project) per direct cost.
fn stream(lines: usize, jobs: usize, per_header: usize) -> (Vec<String>, Vec<String>) {
    let job: Vec<String> = (0..lines)
        .map(|i| format!("{}", 1001 + (i / per_header) % jobs))
        .collect();
    let dc = (0..lines)
        .map(|i| format!("dc:{}", i / per_header))
        .collect();
    (job, dc)
}

fn rows<'a>(job: &'a [String], dc: &'a [String]) -> Vec<Row<'a>> {
    job.iter()
        .zip(dc)
        .enumerate()
        .map(|(i, (j, d))| (j.as_str(), d.as_str(), (i % 500) as i128 - 100))
        .collect()
}

#[test]
fn one_header_request_serves_several_line_requests() {
    // 5 lines a direct cost: 200 new headers per 1000 lines. Flushing headers with every
    // line request would give 2 requests per 1000 lines (500 a request, less the tails).
    let (job, dc) = stream(100_000, 4, 5);
    let rows = rows(&job, &dc);
    let (sink, planner) = plan(PlanLimits::default(), &rows, 4096);
    assert_eq!(sink.lines.len(), 100_000);
    let distinct: HashSet<&String> = sink.lines.iter().collect();
    assert_eq!(distinct.len(), 100_000, "every line exactly once");
    assert_eq!(
        sink.header_records.len(),
        20_000,
        "every header exactly once"
    );
    let expected: i128 = rows.iter().map(|r| r.2).sum();
    assert_eq!(sink.cents, expected);
    assert_eq!(planner.stats.amount_cents, expected);
    assert_eq!(planner.totals().values().sum::<i128>(), expected);
    let per_request = sink.lines.len() as f64 / sink.requests as f64;
    assert!(per_request >= 800.0, "{per_request} lines a request");
    assert_eq!(
        sink.requests as u64,
        planner.stats.header_requests + planner.stats.line_requests
    );
}

#[test]
fn a_queued_line_stays_small() {
    // PlanLimits::max_queued_lines documents 128 bytes inline a line.
    assert!(std::mem::size_of::<Queued>() <= 128);
}

#[test]
fn the_queue_limit_holds_with_many_projects() {
    // 40 projects, a small queue: projects are sent early, still headers first.
    let (job, dc) = stream(60_000, 40, 3);
    let rows = rows(&job, &dc);
    let limits = PlanLimits {
        max_queued_lines: 5_000,
        ..PlanLimits::default()
    };
    let (sink, planner) = plan(limits, &rows, 1000);
    assert_eq!(sink.lines.len(), 60_000);
    assert_eq!(sink.header_records.len(), 20_000);
    assert_eq!(planner.stats.lines, 60_000);
    assert_eq!(planner.totals().len(), 40 * 7);
}

#[test]
fn a_forgotten_header_is_sent_again_never_lost() {
    // A cache of 4 direct costs; 2 records a request. dc:0 comes back after 5 others have
    // pushed it out of the cache: its header is sent again before its second line.
    let job = vec!["1001".to_string(); 8];
    let dc: Vec<String> = [0, 1, 2, 3, 4, 5, 6, 0]
        .iter()
        .map(|d| format!("dc:{d}"))
        .collect();
    let rows = rows(&job, &dc);
    let limits = PlanLimits {
        max_records: 2,
        chunks_per_project: 1,
        max_queued_lines: 2,
        header_cache: 4,
    };
    let (sink, planner) = plan(limits, &rows, 8);
    assert_eq!(sink.lines.len(), 8);
    assert!(planner.headers_forgotten() >= 1);
    let sent = |id: &str| sink.header_records.iter().filter(|h| *h == id).count();
    assert_eq!(sent("dc:0"), 2, "{:?}", sink.header_records);
    assert_eq!(planner.stats.direct_costs, 8);
}

#[test]
fn a_header_forgotten_while_pending_is_sent_once() {
    // Nothing is sent before the end: dc:0 is forgotten while still pending and planned
    // again; the header request carries it once.
    let job = vec!["1001".to_string(); 6];
    let dc: Vec<String> = [0, 1, 2, 3, 4, 0]
        .iter()
        .map(|d| format!("dc:{d}"))
        .collect();
    let rows = rows(&job, &dc);
    let limits = PlanLimits {
        header_cache: 4,
        ..PlanLimits::default()
    };
    let (sink, planner) = plan(limits, &rows, 6);
    // dc:4 pushes dc:0 out; dc:0 planned again pushes dc:1 out.
    assert_eq!(planner.headers_forgotten(), 2);
    assert_eq!(planner.stats.direct_costs, 6);
    assert_eq!(sink.header_records.len(), 5);
    assert_eq!(sink.lines.len(), 6);
    assert_eq!(sink.requests, 2);
}
