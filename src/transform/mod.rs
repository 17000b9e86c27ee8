//! The middle of the pipeline: stages that take a batch and give a kept batch plus rejects.
//!
//! A stage implements [`Transform`]; the [`driver`] runs it on a thread of its own between two
//! bounded channels, owns the backpressure (an output slot is reserved before an input is
//! taken) and routes the rejects to the quarantine writer. The stages here are
//! [`project`] (cost rows in the window, duplicates rejected, with [`dedup`]'s bounded key set)
//! and [`enrich`] (the four joins of DOMAIN.md section 2, the origin ids). Typing (in
//! `extract`) and staging (in `staging`) run under the same driver, wired in `pipeline`.

pub mod dedup;
pub mod driver;
pub mod enrich;
pub mod project;
pub mod spill;

use std::time::Duration;

use arrow::array::RecordBatch;

use crate::error::Result;
use crate::quarantine::QuarantineBatch;

/// What a stage made of one batch: the rows it kept, and the rows it rejected with reasons.
#[derive(Debug)]
pub struct Transformed {
    pub batch: RecordBatch,
    pub rejects: Option<QuarantineBatch>,
}

impl Transformed {
    /// Every row kept, none rejected.
    pub fn kept(batch: RecordBatch) -> Transformed {
        Transformed {
            batch,
            rejects: None,
        }
    }
}

/// One stage of the pipeline. `process` runs once per batch, in order, on the stage's own
/// thread; `finish` once after the last batch, into what the run report needs of it.
pub trait Transform<I = RecordBatch>: Send + 'static {
    /// What the stage reports when it is done.
    type Summary: Send + 'static;

    /// The stage's name in logs, reports and errors.
    fn name(&self) -> &'static str;

    /// Runs on the stage's thread before the first batch (for example to wait for what the
    /// stage joins against). An error here stops the stage before it takes a batch.
    fn start(&mut self) -> Result<()> {
        Ok(())
    }

    /// One input batch into kept rows and rejects. An error stops the stage (and so the run).
    fn process(&mut self, input: I) -> Result<Transformed>;

    /// After the last batch.
    fn finish(self) -> Result<Self::Summary>;
}

/// Time a stage spent working (not waiting on its channels) and the rows it handled.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageTiming {
    pub busy: Duration,
    pub rows_in: u64,
    pub rows_out: u64,
}

/// Rows in a batch, for stage timing.
pub trait Rows {
    fn rows(&self) -> u64;
}

impl Rows for RecordBatch {
    fn rows(&self) -> u64 {
        self.num_rows() as u64
    }
}
