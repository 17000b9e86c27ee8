//! `[target] kind = "dry-run"`: the requests that would be sent, one JSON object a line, in
//! `runs/<run-id>/requests.ndjson`. Procore ids are not resolved: each request names the Sage keys
//! they will come from under `unresolved`.
//!
//! The records are written by the load's own serializer ([`HeaderRecord`], [`LineRecord`] in
//! [`crate::load::procore::payload`], which says where the two forms differ), straight from the
//! planner's queued records, borrowed for the request, into one reused buffer (no owned record,
//! no `serde_json::Value` tree per record). This file adds the envelope of each request.
//!
//! Each header's `status` is the pipeline's `[load] status`, as the load sends it (the default,
//! `approved`, writes the bytes it always did: the digests pinned in
//! `tests/origin_ids_pinned.rs` hold).

use serde::{Serialize, Serializer};

use super::plan::{Headers, Lines, PlannedRequest, RequestSink};
use super::procore::payload::{HeaderIds, HeaderRecord, LineIds, LineRecord};
pub use super::procore::payload::{HEADER_SYNC_PATH, LINE_SYNC_PATH};
use crate::config::LoadConfig;
use crate::error::Result;
use crate::staging::HashedFile;

/// Writes planned requests as NDJSON.
pub struct DryRunSink {
    file: HashedFile,
    /// `[load] status`: the status of every header, as the load would send it.
    status: String,
    seq: u64,
    buf: Vec<u8>,
}

impl DryRunSink {
    /// Write to `file` (renamed into place on [`DryRunSink::finish`]) the requests the load
    /// of `config` would send.
    pub fn new(file: HashedFile, config: &LoadConfig) -> DryRunSink {
        DryRunSink {
            file,
            status: config.status.clone(),
            seq: 0,
            buf: Vec::new(),
        }
    }

    /// Close the file and return its manifest entry.
    pub fn finish(self) -> Result<crate::staging::FileEntry> {
        self.file.finish(Some(self.seq))
    }
}

/// The records of one request, serialized one by one; headers with their `status`.
enum Updates<'a> {
    Headers(Headers<'a>, &'a str),
    Lines(Lines<'a>),
}

impl Serialize for Updates<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Updates::Headers(h, status) => s.collect_seq(h.iter().map(|header| HeaderRecord {
                header,
                status,
                ids: HeaderIds::Unresolved,
            })),
            Updates::Lines(l) => s.collect_seq(l.iter().map(|line| LineRecord {
                line,
                ids: LineIds::Unresolved,
            })),
        }
    }
}

#[derive(Serialize)]
struct SageJob<'a> {
    sage_job: &'a str,
}

#[derive(Serialize)]
struct ProjectRef<'a> {
    project_id: SageJob<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    updates: Updates<'a>,
}

/// One line of requests.ndjson.
#[derive(Serialize)]
struct Request<'a> {
    seq: u64,
    method: &'static str,
    path: &'static str,
    unresolved: ProjectRef<'a>,
    records: usize,
    body: Body<'a>,
}

impl RequestSink for DryRunSink {
    fn send(&mut self, request: PlannedRequest<'_>) -> Result<()> {
        self.seq += 1;
        let records = request.records();
        let (path, job, updates) = match request {
            PlannedRequest::HeaderSync { job, headers } => (
                HEADER_SYNC_PATH,
                job,
                Updates::Headers(headers, &self.status),
            ),
            PlannedRequest::LineSync { job, lines } => (LINE_SYNC_PATH, job, Updates::Lines(lines)),
        };
        let line = Request {
            seq: self.seq,
            method: "PATCH",
            path,
            unresolved: ProjectRef {
                project_id: SageJob { sage_job: job },
            },
            records,
            body: Body { updates },
        };
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, &line)?;
        self.file.write_line(&self.buf)
    }
}
