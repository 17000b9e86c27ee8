//! Every channel between stages is bounded: with a stalled consumer the source stops after at most
//! (sum of channel capacities + 1) batches, and nothing is lost when the consumer resumes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use jcsync::transform::driver::run_stage;
use tokio::sync::mpsc;

fn batch(i: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("i", DataType::Int64, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![i; 8]))]).expect("batch")
}

fn value(b: &RecordBatch) -> i64 {
    b.column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("i64")
        .value(0)
}

#[test]
fn stalled_consumer_stops_the_source_at_the_sum_of_capacities_plus_one() {
    const LIMIT: i64 = 500;
    let caps = [2usize, 3, 4, 1];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (tx0, rx0) = mpsc::channel::<RecordBatch>(caps[0]);
        let (tx1, rx1) = mpsc::channel::<RecordBatch>(caps[1]);
        let (tx2, rx2) = mpsc::channel::<RecordBatch>(caps[2]);
        let (tx3, mut rx3) = mpsc::channel::<RecordBatch>(caps[3]);
        let produced = Arc::new(AtomicUsize::new(0));
        let source = {
            let produced = produced.clone();
            tokio::task::spawn_blocking(move || {
                for i in 0..LIMIT {
                    produced.fetch_add(1, Ordering::SeqCst);
                    if tx0.blocking_send(batch(i)).is_err() {
                        return;
                    }
                }
            })
        };
        // Three stages as the pipeline runs them (project, enrich, stage all use run_stage).
        let s1 =
            tokio::task::spawn_blocking(move || run_stage("project", rx0, tx1, |b| Ok(Some(b))));
        let s2 =
            tokio::task::spawn_blocking(move || run_stage("enrich", rx1, tx2, |b| Ok(Some(b))));
        let s3 = tokio::task::spawn_blocking(move || run_stage("stage", rx2, tx3, |b| Ok(Some(b))));

        // The consumer is stalled: wait until the source has not moved for a while.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = usize::MAX;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = produced.load(Ordering::SeqCst);
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
        let bound = caps.iter().sum::<usize>() + 1;
        let stalled_at = produced.load(Ordering::SeqCst);
        assert!(
            stalled_at <= bound,
            "source produced {stalled_at} batches, bound is {bound}"
        );
        // And the bound is tight: every slot filled, none held in a stage's hands.
        assert_eq!(stalled_at, bound);

        // The consumer resumes: every batch arrives, in order, none lost.
        let mut received = Vec::new();
        while let Some(b) = rx3.recv().await {
            received.push(value(&b));
        }
        assert_eq!(received, (0..LIMIT).collect::<Vec<_>>());
        source.await.expect("source");
        for s in [s1, s2, s3] {
            let timing = s.await.expect("join").expect("stage ok");
            assert_eq!(timing.rows_in, LIMIT as u64 * 8);
        }
    });
}

#[test]
fn a_stage_error_stops_the_stage_and_is_returned() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (tx0, rx0) = mpsc::channel::<RecordBatch>(1);
        let (tx1, mut rx1) = mpsc::channel::<RecordBatch>(1);
        let stage = tokio::task::spawn_blocking(move || {
            run_stage("enrich", rx0, tx1, |b| {
                if value(&b) == 2 {
                    Err(jcsync::Error::BatchShape {
                        message: "boom on batch 2".into(),
                    })
                } else {
                    Ok(Some(b))
                }
            })
        });
        let feeder = tokio::spawn(async move {
            for i in 0..10 {
                if tx0.send(batch(i)).await.is_err() {
                    return i;
                }
            }
            10
        });
        let mut got = Vec::new();
        while let Some(b) = rx1.recv().await {
            got.push(value(&b));
        }
        assert_eq!(got, vec![0, 1]);
        let err = stage.await.expect("join").expect_err("stage fails");
        assert!(err.to_string().contains("boom on batch 2"));
        let stopped_at = feeder.await.expect("feeder");
        assert!(stopped_at < 10, "the feeder must see the stage stop");
    });
}
