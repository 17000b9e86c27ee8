//! The alert's text and its retry budget.

use super::payload::{Alert, AlertCounts, QuarantineReason, ReadBack};
use super::send::total_budget;
use crate::config::{NotifyConfig, NotifyOn};

fn alert() -> Alert {
    Alert {
        text: String::new(),
        run_id: Some("20261201T180000Z-ab12".into()),
        outcome: "incomplete",
        exit_code: 3,
        pipeline: "pipelines/demo.toml".into(),
        company: "DEMO".into(),
        host: "sage01".into(),
        started_at: "2026-12-01T18:00:00Z".into(),
        duration_secs: 12.3,
        counts: Some(AlertCounts {
            extracted: 50,
            staged: 40,
            planned: 35,
            loaded: Some(0),
            pending: 35,
            quarantined: 5,
            ..AlertCounts::default()
        }),
        quarantine_reasons: vec![QuarantineReason {
            reason: "unknown_job".into(),
            rows: 3,
            amount: "0".into(),
            amount_unreadable: 0,
        }],
        run_dir: Some("runs/20261201T180000Z-ab12".into()),
        error: Some("procore GET projects: still failing after retrying for 2 s".into()),
    }
}

#[test]
fn the_text_says_what_ended_how_with_counts_reasons_amounts_and_the_error() {
    let mut a = alert();
    let amounts = [(
        "unknown_job".to_string(),
        ("1200.50".parse().expect("dec"), 1),
    )];
    a.add(ReadBack::Amounts(amounts.into_iter().collect()));
    a.finish();
    assert_eq!(a.quarantine_reasons[0].amount, "1200.50");
    assert_eq!(a.quarantine_reasons[0].amount_unreadable, 1);
    assert_eq!(
        a.text,
        "jcsync DEMO (pipelines/demo.toml): run 20261201T180000Z-ab12 did NOT complete its load \
         (exit 3) after 12.3 s on sage01. 50 rows extracted, 40 staged, 35 planned, 0 in Procore \
         (0 sent, 0 unchanged), 35 pending, 0 removed, 5 quarantined (unknown_job: 3 rows, \
         1200.50). Error: procore GET projects: still failing after retrying for 2 s. Run \
         directory: runs/20261201T180000Z-ab12"
    );
}

#[test]
fn a_failed_run_without_a_report_gets_its_id_from_the_history() {
    let mut a = alert();
    (a.run_id, a.counts, a.run_dir, a.outcome) = (None, None, None, "failed");
    a.quarantine_reasons.clear();
    a.error = Some("source table JCM_MASTER__JOB: file x not found".into());
    a.finish();
    assert_eq!(
        a.text,
        "jcsync DEMO (pipelines/demo.toml): a run FAILED (exit 3) after 12.3 s on sage01. \
         Error: source table JCM_MASTER__JOB: file x not found."
    );
    a.add(ReadBack::RunId(Some("r9".into())));
    assert_eq!(a.run_id.as_deref(), Some("r9"));
    let json = serde_json::to_value(&a).expect("json");
    assert_eq!(json["counts"], serde_json::Value::Null);
    assert_eq!(json["run_id"], "r9");
}

#[test]
fn a_notification_is_bounded_in_time() {
    let config = NotifyConfig {
        webhook_url_env: "W".into(),
        on: NotifyOn::Failure,
        timeout_secs: 10,
        retries: 2,
    };
    assert_eq!(total_budget(&config).as_secs(), 40);
}
