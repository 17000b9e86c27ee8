//! Load planning: enriched transactions → Procore direct costs (DOMAIN.md section 4).
//!
//! Each transaction becomes one line item; lines group into direct costs by type:
//! AP cost → invoice per (Job, Vendor, Invoice); PR cost → payroll per (Job, Period_End_Date or
//! Accounting_Date, Batch); other costs → expense per (Job, Transaction_Type, Accounting_Date, Batch).
//! Headers and lines carry deterministic origin_ids: the same input gives the same ids on any
//! machine, so re-sending is an update, never a duplicate.

mod queue;
mod recent;
mod records;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use arrow::array::RecordBatch;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};
use crate::model::ids::feed_buf;
use crate::model::view::TransactionView;

use queue::{bit, push_text, Budget, HeaderChunk, LineChunk, Project, Queued, NO_BUDGET};
use recent::{IdKey, PreHashed, PreHashedMap, RecentHeaders, WAYS};
pub use records::{
    DirectCostHeader, HeaderRef, Headers, LineCode, LineItem, LineRef, LineText, Lines, NaturalKey,
    PlannedRequest, RequestSink,
};

/// Records per sync request (Procore's limit for `…/sync`).
pub const MAX_SYNC_RECORDS: usize = 1000;
/// Budget code key: (job, extra, cost_code, category).
pub type BudgetKey = (String, Option<String>, Option<String>, Option<String>);

/// Counts of a plan.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PlanStats {
    pub lines: u64,
    /// Header records planned: one per direct cost, plus one for each direct cost planned again
    /// because the bounded cache of recent direct costs had forgotten it (a harmless upsert).
    pub direct_costs: u64,
    pub header_requests: u64,
    pub line_requests: u64,
    /// Sum of all line amounts, cents.
    #[serde(skip)]
    pub amount_cents: i128,
}

/// How the planner batches requests and bounds its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Records per request (1 to [`MAX_SYNC_RECORDS`]).
    pub max_records: usize,
    /// Full line requests a project holds before its pending headers are sent (in as few
    /// requests as they fit) followed by those lines: one header request serves several line
    /// requests.
    pub chunks_per_project: usize,
    /// Lines queued over all projects before the biggest queues are sent early. Each queued
    /// line costs ~200 bytes (128 inline, its origin_id and description in its chunk's text;
    /// plus ~30 for its share of pending headers), so the default 65,536 bounds the queue near
    /// 15 MB; sent chunks are kept for reuse, so that peak stays allocated. Twice that saves header requests (2M generated rows:
    /// 399 instead of 1,053; 790 transactions a request instead of 597) but planned slower
    /// (0.92M rows/s instead of ~1.2M in `cargo bench --bench stages -- plan`) and held 23 MB more.
    pub max_queued_lines: usize,
    /// Direct costs remembered as already planned (rounded up to a power of two). One that has
    /// been forgotten is planned again when another of its lines comes: an upsert, never a loss.
    pub header_cache: usize,
}

impl Default for PlanLimits {
    fn default() -> PlanLimits {
        PlanLimits {
            max_records: MAX_SYNC_RECORDS,
            chunks_per_project: 8,
            max_queued_lines: 64 * 1024,
            header_cache: 64 * 1024,
        }
    }
}

/// Groups lines into direct costs and emits sync requests per project. Invariant: a line is sent
/// only after the header of its direct cost (in an earlier request of the same project), since
/// every flush of a project sends all its pending headers before any of its lines.
///
/// Memory is bounded by [`PlanLimits`] and the chart of accounts (budget codes, projects), not by
/// the number of rows.
pub struct Planner {
    limits: PlanLimits,
    recent: RecentHeaders,
    projects: Vec<Project>,
    project_index: HashMap<Arc<str>, u32>,
    budgets: Vec<Budget>,
    budget_heads: PreHashedMap<u32>,
    transaction_types: Vec<Arc<str>>,
    /// Shown for a transaction type or job a line cannot have (its index is always valid).
    no_text: Arc<str>,
    /// Sent line chunks, emptied for reuse (their buffers keep their capacity).
    spare: Vec<LineChunk>,
    /// Lines queued over all projects.
    queued: usize,
    scratch: Vec<u8>,
    /// Running counts.
    pub stats: PlanStats,
}

impl Planner {
    /// A planner with `max_records` per request (at most [`MAX_SYNC_RECORDS`]) and the default
    /// batching and memory limits.
    pub fn new(max_records: usize) -> Planner {
        Planner::with_limits(PlanLimits {
            max_records,
            ..PlanLimits::default()
        })
    }

    /// A planner with explicit limits (each clamped to a workable value).
    pub fn with_limits(limits: PlanLimits) -> Planner {
        let max_records = limits.max_records.clamp(1, MAX_SYNC_RECORDS);
        let limits = PlanLimits {
            max_records,
            chunks_per_project: limits.chunks_per_project.max(1),
            max_queued_lines: limits.max_queued_lines.max(max_records),
            header_cache: limits.header_cache.max(WAYS),
        };
        Planner {
            limits,
            recent: RecentHeaders::new(limits.header_cache),
            projects: Vec::new(),
            project_index: HashMap::new(),
            budgets: Vec::new(),
            budget_heads: PreHashedMap::default(),
            transaction_types: Vec::new(),
            no_text: Arc::from(""),
            spare: Vec::new(),
            queued: 0,
            scratch: Vec::new(),
            stats: PlanStats::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> PlanLimits {
        self.limits
    }

    /// Direct costs the bounded cache has forgotten so far (each is planned again if another of
    /// its lines comes).
    pub fn headers_forgotten(&self) -> u64 {
        self.recent.evictions
    }

    /// Cents per budget code, in key order.
    pub fn totals(&self) -> BTreeMap<BudgetKey, i128> {
        let own = |v: &Option<Arc<str>>| v.as_deref().map(str::to_string);
        let mut totals = BTreeMap::new();
        for b in &self.budgets {
            *totals
                .entry((
                    b.job.to_string(),
                    own(&b.extra),
                    own(&b.cost_code),
                    own(&b.category),
                ))
                .or_insert(0) += b.cents;
        }
        totals
    }

    fn project_of(&mut self, job: &str) -> Result<u32> {
        if let Some(&p) = self.project_index.get(job) {
            return Ok(p);
        }
        let p = u32::try_from(self.projects.len()).map_err(|_| Error::Capacity {
            what: "more than 4 billion projects".into(),
        })?;
        let job: Arc<str> = Arc::from(job);
        self.projects.push(Project {
            job: job.clone(),
            headers: HeaderChunk::default(),
            sealed: Vec::new(),
            open: LineChunk::default(),
            epoch: 0,
            maybe_twice: false,
        });
        self.project_index.insert(job, p);
        Ok(p)
    }

    /// The budget code of row `r`, found by hash (exact comparison on a hit).
    fn budget_of(&mut self, view: &TransactionView, r: usize) -> Result<usize> {
        let job = view.job(r);
        let extra = view.extra(r);
        let cost_code = view.cost_code(r);
        let category = view.category(r);
        self.scratch.clear();
        for part in [Some(job), extra, cost_code, category] {
            feed_buf(&mut self.scratch, part.map(str::as_bytes));
        }
        let hash = xxh3_64(&self.scratch);
        let head = self.budget_heads.get(&hash).copied().unwrap_or(NO_BUDGET);
        let mut i = head;
        while let Some(b) = self.budgets.get(i as usize) {
            // The framing is unambiguous: equal bytes are equal parts.
            if *b.framed == *self.scratch {
                return Ok(i as usize);
            }
            i = b.next;
        }
        let project = self.project_of(job)?;
        let index = u32::try_from(self.budgets.len())
            .ok()
            .filter(|&i| i != NO_BUDGET)
            .ok_or_else(|| Error::Capacity {
                what: "more than 4 billion budget codes".into(),
            })?;
        let shared = |s: Option<&str>| s.map(Arc::<str>::from);
        self.budgets.push(Budget {
            job: self.projects[project as usize].job.clone(),
            extra: shared(extra),
            cost_code: shared(cost_code),
            category: shared(category),
            cents: 0,
            project,
            next: head,
            framed: self.scratch.as_slice().into(),
        });
        self.budget_heads.insert(hash, index);
        Ok(index as usize)
    }

    fn transaction_type(&mut self, ty: &str) -> Result<u16> {
        if let Some(i) = self
            .transaction_types
            .iter()
            .position(|t| t.len() == ty.len() && **t == *ty)
        {
            return Ok(i as u16);
        }
        // Projection lets the six cost types through: this bound is never near.
        let i = u16::try_from(self.transaction_types.len()).map_err(|_| Error::Capacity {
            what: "more than 65,536 transaction types".into(),
        })?;
        self.transaction_types.push(Arc::from(ty));
        Ok(i)
    }

    /// Plan one enriched batch.
    pub fn process(&mut self, batch: &RecordBatch, sink: &mut dyn RequestSink) -> Result<()> {
        let view = TransactionView::new(batch)?;
        let enriched = view.enriched().ok_or_else(|| Error::BatchShape {
            message: "planning needs enriched batches (with origin ids)".into(),
        })?;
        let max_records = self.limits.max_records;
        for r in 0..view.len() {
            let b = self.budget_of(&view, r)?;
            let p = self.budgets[b].project;
            let epoch = self.projects[p as usize].epoch;
            let (dc_id, new, evicted) =
                self.recent
                    .get_or_insert(enriched.direct_cost_origin_id(r), p, epoch);
            if let Some((q, e)) = evicted {
                // Forgotten while still pending (planned since its project's last flush)?
                if let Some(q) = self.projects.get_mut(q as usize) {
                    q.maybe_twice |= q.epoch == e;
                }
            }
            if new {
                self.stats.direct_costs += 1;
                self.projects[p as usize]
                    .headers
                    .push(&view, r, dc_id.clone())?;
            }
            let transaction_type = self.transaction_type(view.transaction_type(r))?;
            let amount = view.amount(r).unwrap_or(0);
            self.budgets[b].cents += amount;
            self.stats.lines += 1;
            self.stats.amount_cents += amount;
            let project = &mut self.projects[p as usize];
            let text = &mut project.open.text;
            let origin_id = push_text(text, enriched.line_origin_id(r))?;
            let description = view.description(r);
            let mut present = u8::from(description.is_some()) << 5;
            let description = push_text(text, description.unwrap_or(""))?;
            project.open.lines.push(Queued {
                direct_cost: dc_id,
                amount,
                quantity: bit(view.units(r), 0, &mut present),
                unit_cost: bit(view.unit_cost(r), 1, &mut present),
                run: bit(view.run(r), 2, &mut present),
                sequence: bit(view.sequence(r), 3, &mut present),
                dist_sequence: bit(view.dist_sequence(r), 4, &mut present),
                accounting_date: bit(view.accounting_date(r), 6, &mut present),
                source_line: view.source_line(r),
                origin_id,
                description,
                budget: b as u32,
                transaction_type,
                present,
            });
            self.queued += 1;
            if project.open.lines.len() >= max_records {
                // A project that filled one request is likely to fill the next.
                let next = self
                    .spare
                    .pop()
                    .unwrap_or_else(|| LineChunk::with_capacity(max_records));
                let full = std::mem::replace(&mut project.open, next);
                project.sealed.push(full);
            }
            if project.headers.headers.len() >= max_records
                || project.sealed.len() >= self.limits.chunks_per_project
            {
                self.flush(p as usize, false, sink)?;
            }
            if self.queued > self.limits.max_queued_lines {
                self.shed(sink)?;
            }
        }
        Ok(())
    }

    /// Send project `p`'s pending headers, then its full line requests (and the one being filled
    /// when `include_open`).
    fn flush(&mut self, p: usize, include_open: bool, sink: &mut dyn RequestSink) -> Result<()> {
        let max = self.limits.max_records;
        let Some(project) = self.projects.get_mut(p) else {
            return Ok(());
        };
        if project.maybe_twice {
            let headers = &mut project.headers.headers;
            let first: Vec<bool> = {
                let mut seen: HashSet<IdKey, BuildHasherDefault<PreHashed>> =
                    HashSet::with_capacity_and_hasher(headers.len(), Default::default());
                headers
                    .iter()
                    .map(|h| seen.insert(IdKey(&h.origin_id)))
                    .collect()
            };
            let mut first = first.into_iter();
            headers.retain(|_| first.next().unwrap_or(true));
            project.maybe_twice = false;
        }
        project.epoch = project.epoch.wrapping_add(1);
        let mut chunks = std::mem::take(&mut project.sealed);
        if include_open && !project.open.lines.is_empty() {
            // A spare if there is one; a project flushed at the end gets no new buffer.
            let next = self.spare.pop().unwrap_or_default();
            chunks.push(std::mem::replace(&mut project.open, next));
        }
        let project = &self.projects[p];
        let job: &str = &project.job;
        // The open chunk too: its lines go later, after these headers.
        let line_budgets = line_budgets(
            &project.headers.headers,
            chunks.iter().chain(std::iter::once(&project.open)),
        );
        // Records are lent to the sink, not moved: a sink that keeps them copies them.
        for (headers, line_budgets) in project
            .headers
            .headers
            .chunks(max)
            .zip(line_budgets.chunks(max))
        {
            self.stats.header_requests += 1;
            sink.send(PlannedRequest::HeaderSync {
                job,
                headers: Headers {
                    headers,
                    text: &project.headers.text,
                    job,
                    line_budgets,
                    budgets: &self.budgets,
                },
            })?;
        }
        for chunk in &chunks {
            self.queued -= chunk.lines.len();
            self.stats.line_requests += 1;
            sink.send(PlannedRequest::LineSync {
                job,
                lines: Lines {
                    lines: &chunk.lines,
                    text: &chunk.text,
                    budgets: &self.budgets,
                    types: &self.transaction_types,
                    no_type: &self.no_text,
                },
            })?;
        }
        self.projects[p].headers.clear();
        // Keep as many emptied chunks as the queue can fill.
        let keep = self.limits.max_queued_lines / max + 1;
        for mut chunk in chunks.drain(..) {
            if self.spare.len() < keep {
                chunk.clear();
                self.spare.push(chunk);
            }
        }
        self.projects[p].sealed = chunks;
        Ok(())
    }

    /// Too many lines queued: send the biggest projects' full requests (then, if that is not
    /// enough, the partly filled ones) until the queue is down to 7/8 of the limit. Sending
    /// the biggest first keeps the requests of the others filling.
    fn shed(&mut self, sink: &mut dyn RequestSink) -> Result<()> {
        let target = self.limits.max_queued_lines / 8 * 7;
        let mut order: Vec<(usize, usize)> = self
            .projects
            .iter()
            .enumerate()
            .map(|(p, pr)| (pr.queued(), p))
            .collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        for include_open in [false, true] {
            for &(_, p) in &order {
                if self.queued <= target {
                    return Ok(());
                }
                let pr = &self.projects[p];
                let has_lines =
                    !pr.sealed.is_empty() || (include_open && !pr.open.lines.is_empty());
                if has_lines {
                    self.flush(p, include_open, sink)?;
                }
            }
        }
        Ok(())
    }

    /// Send everything still queued, project by project in job order.
    pub fn finish(&mut self, sink: &mut dyn RequestSink) -> Result<()> {
        let mut order: Vec<usize> = (0..self.projects.len()).collect();
        order.sort_by(|&a, &b| self.projects[a].job.cmp(&self.projects[b].job));
        for p in order {
            self.flush(p, true, sink)?;
        }
        Ok(())
    }
}

/// Per pending header, the distinct budget codes of its lines among `chunks` (a header's lines
/// come in the flush that sends it; later ones find it sent or deferred by the load).
fn line_budgets<'a>(
    headers: &[queue::QueuedHeader],
    chunks: impl Iterator<Item = &'a LineChunk>,
) -> Vec<Vec<u32>> {
    if headers.is_empty() {
        return Vec::new();
    }
    let index: HashMap<&str, usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (&*h.origin_id, i))
        .collect();
    let mut codes = vec![Vec::new(); headers.len()];
    for q in chunks.flat_map(|c| &c.lines) {
        if let Some(list) = index.get(&*q.direct_cost).and_then(|&i| codes.get_mut(i)) {
            if !list.contains(&q.budget) {
                list.push(q.budget);
            }
        }
    }
    codes
}

#[cfg(test)]
mod tests;
