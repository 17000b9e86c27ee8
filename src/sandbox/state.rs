//! The sandbox's data: what Procore would hold for one company, kept in memory and optionally
//! persisted to a JSON file.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::seed::{Credential, Seed};

/// Ids the sandbox hands out start here, above 2^33, so a client that squeezes ids into 32 bits fails.
pub const FIRST_GENERATED_ID: i64 = 10_000_000_000;

/// The company the sandbox serves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Company {
    /// Procore company id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Apps allowed to act on it.
    pub credentials: Vec<Credential>,
}

/// A project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Project {
    /// Procore id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Project number (the Sage job in jcsync's demo).
    pub project_number: String,
    /// Origin id, if any.
    pub origin_id: Option<String>,
    /// Engine names of the project's tools that are turned off (see [`super::tools`]); every
    /// other tool of the catalog is active.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub inactive_tools: BTreeSet<String>,
}

/// A vendor of the company directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Vendor {
    /// Procore id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Origin id (the Sage vendor in jcsync's demo).
    pub origin_id: Option<String>,
}

/// A budget code (WBS code) of a project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WbsCode {
    /// Procore id.
    pub id: i64,
    /// Owning project.
    pub project_id: i64,
    /// Segments joined by `.`, e.g. `1.01-100.L`.
    pub flat_code: String,
    /// Description.
    pub description: String,
}

/// A direct cost header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct DirectCost {
    /// Procore id.
    pub id: i64,
    /// Owning project.
    pub project_id: i64,
    /// `invoice`, `expense` or `payroll`; set on create only.
    pub direct_cost_type: String,
    /// `draft`, `pending`, `revise_and_resubmit` or `approved`.
    pub status: String,
    /// Vendor (required for invoices).
    pub vendor_id: Option<i64>,
    /// Invoice number.
    pub invoice_number: Option<String>,
    /// `YYYY-MM-DD`.
    pub direct_cost_date: Option<String>,
    /// `YYYY-MM-DD`.
    pub received_date: Option<String>,
    /// `YYYY-MM-DD`.
    pub payment_date: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Caller's id, unique across the company.
    pub origin_id: Option<String>,
    /// Opaque caller data.
    pub origin_data: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A line item of a direct cost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct LineItem {
    /// Procore id.
    pub id: i64,
    /// Owning project.
    pub project_id: i64,
    /// Owning direct cost.
    pub direct_cost_id: i64,
    /// Budget code.
    pub wbs_code_id: i64,
    /// Amount, exactly as sent.
    pub amount: Decimal,
    /// Quantity.
    pub quantity: Option<Decimal>,
    /// Unit cost.
    pub unit_cost: Option<Decimal>,
    /// Description.
    pub description: Option<String>,
    /// Caller's id, unique across the company.
    pub origin_id: Option<String>,
    /// Opaque caller data.
    pub origin_data: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// Everything the sandbox stores. Serialized as is to the state file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Db {
    /// The company.
    pub company: Company,
    /// Projects by id.
    pub projects: BTreeMap<i64, Project>,
    /// Vendors by id.
    pub vendors: BTreeMap<i64, Vendor>,
    /// Budget codes by id.
    pub wbs_codes: BTreeMap<i64, WbsCode>,
    /// Direct costs by id.
    pub direct_costs: BTreeMap<i64, DirectCost>,
    /// Line items by id.
    pub line_items: BTreeMap<i64, LineItem>,
    /// The next id to hand out.
    pub next_id: i64,
    #[serde(skip)]
    pub(crate) index: Index,
}

/// Lookups rebuilt from the data after a load.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Index {
    pub(crate) direct_cost_by_origin: HashMap<String, i64>,
    pub(crate) line_item_by_origin: HashMap<String, i64>,
    pub(crate) lines_of: HashMap<i64, BTreeSet<i64>>,
    /// Origin ids more than one line holds (a data import's duplicates): the only ones whose
    /// removal has to look for another holder.
    pub(crate) duplicated_line_origins: HashSet<String>,
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Reading or writing failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a sandbox state.
    #[error("state file {path} is not a sandbox state: {source}")]
    Json {
        /// The file.
        path: String,
        /// The cause.
        source: serde_json::Error,
    },
}

impl Db {
    /// The initial state of a seed.
    pub fn from_seed(seed: &Seed) -> Self {
        let mut max_id = 0;
        let mut db = Db {
            company: Company {
                id: seed.company.id,
                name: seed.company.name.clone(),
                credentials: seed.company.credentials.clone(),
            },
            projects: BTreeMap::new(),
            vendors: BTreeMap::new(),
            wbs_codes: BTreeMap::new(),
            direct_costs: BTreeMap::new(),
            line_items: BTreeMap::new(),
            next_id: 0,
            index: Index::default(),
        };
        for p in &seed.projects {
            max_id = max_id.max(p.id);
            db.projects.insert(
                p.id,
                Project {
                    id: p.id,
                    name: p.name.clone(),
                    project_number: p.project_number.clone(),
                    origin_id: p.origin_id.clone(),
                    inactive_tools: BTreeSet::new(),
                },
            );
        }
        for v in &seed.vendors {
            max_id = max_id.max(v.id);
            db.vendors.insert(
                v.id,
                Vendor {
                    id: v.id,
                    name: v.name.clone(),
                    origin_id: v.origin_id.clone(),
                },
            );
        }
        max_id = seed
            .wbs_codes
            .iter()
            .filter_map(|w| w.id)
            .fold(max_id, i64::max);
        db.next_id = (max_id + 1).max(FIRST_GENERATED_ID);
        for w in &seed.wbs_codes {
            // validate() guarantees the project resolves; skip defensively otherwise.
            let Some(project_id) = seed.project_of(w) else {
                continue;
            };
            let id = match w.id {
                Some(id) => id,
                None => db.allocate_id(),
            };
            db.wbs_codes.insert(
                id,
                WbsCode {
                    id,
                    project_id,
                    flat_code: w.flat_code.clone(),
                    description: w.description.clone(),
                },
            );
        }
        db.rebuild_index();
        db
    }

    /// Hands out a fresh id.
    pub fn allocate_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Rebuilds the lookups from the data.
    pub(crate) fn rebuild_index(&mut self) {
        let mut index = Index::default();
        for dc in self.direct_costs.values() {
            if let Some(o) = &dc.origin_id {
                index.direct_cost_by_origin.insert(o.clone(), dc.id);
            }
        }
        for li in self.line_items.values() {
            if let Some(o) = &li.origin_id {
                if index.line_item_by_origin.insert(o.clone(), li.id).is_some() {
                    index.duplicated_line_origins.insert(o.clone());
                }
            }
            index
                .lines_of
                .entry(li.direct_cost_id)
                .or_default()
                .insert(li.id);
        }
        self.index = index;
    }

    /// Inserts or replaces a direct cost, keeping the origin index right.
    pub(crate) fn put_direct_cost(&mut self, dc: DirectCost) {
        if let Some(old) = self.direct_costs.get(&dc.id) {
            if let Some(o) = &old.origin_id {
                self.index.direct_cost_by_origin.remove(o);
            }
        }
        if let Some(o) = &dc.origin_id {
            self.index.direct_cost_by_origin.insert(o.clone(), dc.id);
        }
        self.direct_costs.insert(dc.id, dc);
    }

    /// Inserts or replaces a line item, keeping the indexes right.
    pub(crate) fn put_line_item(&mut self, li: LineItem) {
        if let Some(old) = self.line_items.remove(&li.id) {
            self.unindex_line(&old);
        }
        if let Some(o) = &li.origin_id {
            if let Some(other) = self.index.line_item_by_origin.insert(o.clone(), li.id) {
                if other != li.id {
                    self.index.duplicated_line_origins.insert(o.clone());
                }
            }
        }
        self.index
            .lines_of
            .entry(li.direct_cost_id)
            .or_default()
            .insert(li.id);
        self.line_items.insert(li.id, li);
    }

    /// Drops a line (already out of `line_items`) from the indexes. An origin id another line
    /// also holds moves to that line.
    fn unindex_line(&mut self, old: &LineItem) {
        if let Some(set) = self.index.lines_of.get_mut(&old.direct_cost_id) {
            set.remove(&old.id);
            if set.is_empty() {
                self.index.lines_of.remove(&old.direct_cost_id);
            }
        }
        let Some(o) = &old.origin_id else {
            return;
        };
        if self.index.line_item_by_origin.get(o) != Some(&old.id) {
            return;
        }
        self.index.line_item_by_origin.remove(o);
        if self.index.duplicated_line_origins.contains(o) {
            let holders: Vec<i64> = self
                .line_items
                .values()
                .filter(|li| li.origin_id.as_ref() == Some(o))
                .map(|li| li.id)
                .collect();
            if let Some(last) = holders.last() {
                self.index.line_item_by_origin.insert(o.clone(), *last);
            }
            if holders.len() < 2 {
                self.index.duplicated_line_origins.remove(o);
            }
        }
    }

    /// Removes a line item, keeping the indexes right. Its direct cost stays, even when this was
    /// its last line (Procore keeps an empty direct cost).
    pub fn remove_line_item(&mut self, id: i64) -> Option<LineItem> {
        let li = self.line_items.remove(&id)?;
        self.unindex_line(&li);
        Some(li)
    }

    /// Removes a direct cost and its line items; returns it and how many lines went with it.
    pub fn remove_direct_cost(&mut self, id: i64) -> Option<(DirectCost, usize)> {
        let dc = self.direct_costs.remove(&id)?;
        if let Some(o) = &dc.origin_id {
            if self.index.direct_cost_by_origin.get(o) == Some(&id) {
                self.index.direct_cost_by_origin.remove(o);
            }
        }
        let lines: Vec<i64> = self
            .index
            .lines_of
            .get(&id)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        for line in &lines {
            self.remove_line_item(*line);
        }
        Some((dc, lines.len()))
    }

    /// The direct cost with this origin id, anywhere in the company.
    pub fn direct_cost_by_origin(&self, origin_id: &str) -> Option<&DirectCost> {
        self.index
            .direct_cost_by_origin
            .get(origin_id)
            .and_then(|id| self.direct_costs.get(id))
    }

    /// The line item with this origin id, anywhere in the company.
    pub fn line_item_by_origin(&self, origin_id: &str) -> Option<&LineItem> {
        self.index
            .line_item_by_origin
            .get(origin_id)
            .and_then(|id| self.line_items.get(id))
    }

    /// The line items of a direct cost, by id.
    pub fn lines_of(&self, direct_cost_id: i64) -> impl Iterator<Item = &LineItem> {
        self.index
            .lines_of
            .get(&direct_cost_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.line_items.get(id))
    }

    /// Sum of the line amounts of a direct cost.
    pub fn grand_total(&self, direct_cost_id: i64) -> Decimal {
        self.lines_of(direct_cost_id).map(|l| l.amount).sum()
    }

    /// Loads a state file.
    pub fn load_file(path: &Path) -> Result<Self, StateFileError> {
        let bytes = std::fs::read(path).map_err(|source| StateFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut db: Db = serde_json::from_slice(&bytes).map_err(|source| StateFileError::Json {
            path: path.display().to_string(),
            source,
        })?;
        db.rebuild_index();
        Ok(db)
    }

    /// Serializes the state for [`write_state_file`].
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Direct costs and line totals per project and budget code.
    pub fn cost_summary(&self) -> CostSummary {
        let mut projects: BTreeMap<i64, ProjectCosts> = self
            .projects
            .values()
            .map(|p| {
                (
                    p.id,
                    ProjectCosts {
                        project_id: p.id,
                        project_number: p.project_number.clone(),
                        ..ProjectCosts::default()
                    },
                )
            })
            .collect();
        for dc in self.direct_costs.values() {
            if let Some(p) = projects.get_mut(&dc.project_id) {
                p.direct_costs += 1;
            }
        }
        for li in self.line_items.values() {
            let Some(p) = projects.get_mut(&li.project_id) else {
                continue;
            };
            let code = self
                .wbs_codes
                .get(&li.wbs_code_id)
                .map(|w| w.flat_code.clone())
                .unwrap_or_else(|| format!("#{}", li.wbs_code_id));
            p.line_items += 1;
            p.total += li.amount;
            let c = p.by_budget_code.entry(code).or_default();
            c.line_items += 1;
            c.total += li.amount;
        }
        CostSummary {
            projects: projects.into_values().collect(),
        }
    }
}

/// Atomically replaces the state file (write to a temporary file, then rename).
pub fn write_state_file(path: &Path, bytes: &[u8]) -> Result<(), StateFileError> {
    let io = |source| StateFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Direct costs and line totals of the company, per project and budget code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct CostSummary {
    /// One entry per project, by id.
    pub projects: Vec<ProjectCosts>,
}

/// Direct costs and line totals of one project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ProjectCosts {
    /// Project id.
    pub project_id: i64,
    /// Project number.
    pub project_number: String,
    /// Number of direct cost headers.
    pub direct_costs: u64,
    /// Number of line items.
    pub line_items: u64,
    /// Sum of all line amounts.
    pub total: Decimal,
    /// Line count and total per budget code (flat code).
    pub by_budget_code: BTreeMap<String, CodeTotal>,
}

/// Line count and total of one budget code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct CodeTotal {
    /// Number of line items.
    pub line_items: u64,
    /// Sum of their amounts.
    pub total: Decimal,
}
