//! Load planning at volume: at most 1000 records per sync request, per project, and a direct
//! cost's header is always planned before any of its lines.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use common::*;

#[test]
fn large_plans_respect_the_1000_record_limit_and_send_headers_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sage = dir.path().join("sage");
    copy_dimension_fixtures(&sage);
    let mut csv = String::from(TRANSACTION_HEADER);
    csv.push('\n');
    // Job 1001: 2500 lines of one invoice. Job 1002: 2500 expense lines, one batch each
    // (2500 direct costs). Interleaved, so both projects fill up at once.
    for i in 0..2500 {
        writeln!(csv, "1001,,01-100,M,AP cost,2024-01-05,2024-01-05,line {i},1,1.01,1.01,V100,INV-4471,1,AP,B1,1,{i},,,,2024-01-05,10:00:00").expect("w");
        writeln!(csv, "1002,,02-200,E,EQ cost,2024-01-05,2024-01-05,eq {i},1,2,2.00,,,1,EQ,EQ{i},2,{i},,,,2024-01-05,10:00:00").expect("w");
    }
    std::fs::write(sage.join("JCT_CURRENT__TRANSACTION.csv"), csv).expect("write");
    let pipeline = write_pipeline(
        dir.path(),
        &sage,
        "csv",
        "zstd",
        "[pipeline]\nbatch_rows = 700\n",
    );
    let run = run_sync(&pipeline).expect("run");
    assert_eq!(run.report.counts.planned, 5000);
    assert_eq!(run.report.plan.direct_costs, 2501);
    assert_eq!(run.report.planned_amount, "7525.00");

    let text = std::fs::read_to_string(run.run_dir.join("requests.ndjson")).expect("requests");
    let mut headers_sent: HashSet<String> = HashSet::new();
    let mut per_kind: BTreeMap<(String, bool), Vec<usize>> = BTreeMap::new();
    let mut lines_sent = 0;
    for line in text.lines() {
        let req: serde_json::Value = serde_json::from_str(line).expect("json");
        let job = req["unresolved"]["project_id"]["sage_job"]
            .as_str()
            .expect("job")
            .to_string();
        let updates = req["body"]["updates"].as_array().expect("updates");
        assert!(
            !updates.is_empty() && updates.len() <= 1000,
            "{} records",
            updates.len()
        );
        let is_header = req["path"]
            .as_str()
            .expect("path")
            .ends_with("/direct_costs/sync");
        per_kind
            .entry((job, is_header))
            .or_default()
            .push(updates.len());
        for u in updates {
            if is_header {
                assert!(
                    headers_sent.insert(u["origin_id"].as_str().expect("id").to_string()),
                    "header sent twice"
                );
            } else {
                let dc = u["unresolved"]["direct_cost_id"]["origin_id"]
                    .as_str()
                    .expect("dc");
                assert!(headers_sent.contains(dc), "line before its header");
                lines_sent += 1;
            }
        }
    }
    assert_eq!(lines_sent, 5000);
    assert_eq!(headers_sent.len(), 2501);
    assert_eq!(per_kind[&("1001".to_string(), true)], vec![1]);
    assert_eq!(
        per_kind[&("1001".to_string(), false)],
        vec![1000, 1000, 500]
    );
    assert_eq!(
        per_kind[&("1002".to_string(), true)].iter().sum::<usize>(),
        2500
    );
    assert_eq!(
        per_kind[&("1002".to_string(), false)],
        vec![1000, 1000, 500]
    );
}
