//! The one driver every stage runs under: a thread per stage, bounded channels between them,
//! rejects routed to the quarantine writer, and the error that explains a failure picked by
//! its kind.
//!
//! Backpressure: a stage reserves a slot in its output channel *before* it takes an input
//! batch, so no stage ever holds a batch while blocked. With a stalled consumer the source can
//! therefore produce at most (sum of channel capacities + 1) batches: one per slot, plus the one
//! it is blocked sending.

use std::time::Instant;

use arrow::array::RecordBatch;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Rows, StageTiming, Transform};
use crate::error::{Error, Result};
use crate::quarantine::QuarantineBatch;

/// Run one stage on the current (blocking) thread: reserve an output slot, then take an input,
/// then process it. `f` returns None when a batch produced no output rows.
pub fn run_stage<I: Rows + Send, O: Rows + Send>(
    stage: &'static str,
    mut rx: mpsc::Receiver<I>,
    tx: mpsc::Sender<O>,
    mut f: impl FnMut(I) -> Result<Option<O>>,
) -> Result<StageTiming> {
    let handle = Handle::current();
    let mut timing = StageTiming::default();
    loop {
        let permit = handle
            .block_on(tx.reserve())
            .map_err(|_| Error::NextStageStopped { stage })?;
        let Some(item) = rx.blocking_recv() else {
            break;
        };
        let started = Instant::now();
        timing.rows_in += item.rows();
        let out = f(item)?;
        timing.busy += started.elapsed();
        if let Some(o) = out {
            timing.rows_out += o.rows();
            permit.send(o);
        }
    }
    Ok(timing)
}

/// The error of a task that ended abnormally (panicked or was cancelled).
pub fn task_failed(stage: &'static str, e: tokio::task::JoinError) -> Error {
    Error::TaskFailed {
        stage,
        message: e.to_string(),
    }
}

/// Starts stages: each between the channel it is given and a new bounded channel of
/// `capacity` batches, its rejects sent to the quarantine writer.
#[derive(Clone)]
pub struct Driver {
    capacity: usize,
    rejects: mpsc::Sender<QuarantineBatch>,
}

impl Driver {
    /// A driver whose channels hold `capacity` batches, sending rejects to `rejects`.
    pub fn new(capacity: usize, rejects: mpsc::Sender<QuarantineBatch>) -> Driver {
        Driver { capacity, rejects }
    }

    /// A bounded channel of the driver's capacity (for a source or the last stage).
    pub fn channel<T>(&self) -> (mpsc::Sender<T>, mpsc::Receiver<T>) {
        mpsc::channel(self.capacity)
    }

    /// Where rejects go, for a stage that runs outside the driver (the source, the
    /// dimensions, the load).
    pub fn rejects(&self) -> mpsc::Sender<QuarantineBatch> {
        self.rejects.clone()
    }

    /// Run `stage` on a blocking thread, taking batches from `input`; its kept rows come out
    /// of the returned receiver (empty batches are dropped).
    pub fn spawn<I, T>(
        &self,
        input: mpsc::Receiver<I>,
        mut stage: T,
    ) -> (
        mpsc::Receiver<RecordBatch>,
        Running<(StageTiming, T::Summary)>,
    )
    where
        I: Rows + Send + 'static,
        T: Transform<I>,
    {
        let (tx, rx) = self.channel::<RecordBatch>();
        let rejects = self.rejects.clone();
        let name = stage.name();
        let handle = tokio::task::spawn_blocking(move || {
            stage.start()?;
            let timing = run_stage(name, input, tx, |batch| {
                let out = stage.process(batch)?;
                if let Some(q) = out.rejects {
                    rejects
                        .blocking_send(q)
                        .map_err(|_| Error::NextStageStopped { stage: name })?;
                }
                Ok((out.batch.num_rows() > 0).then_some(out.batch))
            })?;
            Ok((timing, stage.finish()?))
        });
        (rx, Running { name, handle })
    }
}

/// A stage (or any task of a run) that is running: join it for its result.
pub struct Running<T> {
    name: &'static str,
    handle: JoinHandle<Result<T>>,
}

impl<T> Running<T> {
    /// Run `f` on a blocking thread as task `name` (a source, the dimensions, the load).
    pub fn blocking(
        name: &'static str,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Running<T>
    where
        T: Send + 'static,
    {
        Running {
            name,
            handle: tokio::task::spawn_blocking(f),
        }
    }

    /// Wait for the task: its result, or its error (a panic becomes [`Error::TaskFailed`]).
    pub async fn join(self) -> Result<T> {
        self.handle
            .await
            .map_err(|e| task_failed(self.name, e))
            .and_then(|r| r)
    }
}

/// The results of a run's stages, gathered so that a failure reports the error that explains
/// it: a stage's own error beats one that only follows from another's
/// ([`Error::is_consequence`]: "the next stage stopped", "the dimensions were not loaded").
#[derive(Default)]
pub struct Outcomes {
    errors: Vec<Error>,
}

impl Outcomes {
    /// The value, or None with the error kept.
    pub fn take<T>(&mut self, result: Result<T>) -> Option<T> {
        result.map_err(|e| self.errors.push(e)).ok()
    }

    /// The error that explains the failure: the first that is not a consequence, else the
    /// first.
    pub fn first_real_error(self) -> Error {
        let mut errors = self.errors;
        match errors.iter().position(|e| !e.is_consequence()) {
            Some(i) => errors.swap_remove(i),
            None => errors.into_iter().next().unwrap_or(Error::TaskFailed {
                stage: "pipeline",
                message: "a stage failed without an error".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stages_own_error_explains_the_failure_not_its_consequences() {
        let mut o = Outcomes::default();
        assert!(o
            .take::<()>(Err(Error::NextStageStopped { stage: "extract" }))
            .is_none());
        assert!(o.take::<()>(Err(Error::DimensionsMissing)).is_none());
        assert!(o
            .take::<()>(Err(Error::BatchShape {
                message: "the batch lacks column job".into()
            }))
            .is_none());
        assert_eq!(o.take(Ok(7)), Some(7));
        let e = o.first_real_error();
        assert!(matches!(e, Error::BatchShape { .. }), "{e}");

        let mut only = Outcomes::default();
        only.take::<()>(Err(Error::NextStageStopped { stage: "type" }));
        only.take::<()>(Err(Error::DimensionsMissing));
        assert!(matches!(
            only.first_real_error(),
            Error::NextStageStopped { stage: "type" }
        ));
    }
}
