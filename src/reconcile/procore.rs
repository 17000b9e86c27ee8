//! The Procore side of a reconciliation: every direct cost and line item of the mapped projects,
//! read back with the load's client (login, rate limits, retries, pagination).
//!
//! Lines are read with the project-wide list, `GET /rest/v1.0/projects/{pid}/direct_costs/line_items`,
//! which names each line's direct cost (`holder` in Procore's answer, `direct_cost_id` in the
//! sandbox's): one paginated read per project (two with the direct costs), where the per-direct-cost
//! list (`…/direct_costs/{id}/line_items`) would cost one read per direct cost, thousands for a
//! deep sync, under an hourly limit of 600 to 3600 requests.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::config::ProjectMatch;
use crate::error::{Error, Result};
use crate::load::client::ProcoreClient;

/// One line item as Procore holds it.
#[derive(Debug, Clone)]
pub struct ProcoreLine {
    pub id: i64,
    pub direct_cost_id: i64,
    /// The origin_id of its direct cost, if it has one.
    pub direct_cost_origin_id: Option<String>,
    pub origin_id: Option<String>,
    /// `wbs_code.flat_code`.
    pub budget_code: Option<String>,
    pub amount: Decimal,
    pub description: Option<String>,
}

/// What one project holds.
#[derive(Debug, Clone, Default)]
pub struct ProcoreProject {
    pub project_id: i64,
    pub lines: Vec<ProcoreLine>,
    /// Direct cost id → origin_id (None: entered by hand or by another integration).
    pub direct_costs: HashMap<i64, Option<String>>,
}

/// Sage job → Procore project id, matched as the load's directory matches them
/// (`[load] project_match`; see `load::procore::directory`).
pub async fn project_ids(
    client: &ProcoreClient,
    matching: ProjectMatch,
) -> Result<HashMap<String, i64>> {
    crate::load::procore::Directory::fetch_projects(client, matching).await
}

/// A decimal from a JSON string or number, exactly (never through f64).
pub fn decimal_of(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => Decimal::from_str(s.trim()).ok(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    }
}

fn text_of(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// Read one project's direct costs and lines.
pub async fn read_project(client: &ProcoreClient, project_id: i64) -> Result<ProcoreProject> {
    let base = format!("/rest/v1.0/projects/{project_id}/direct_costs");
    let mut direct_costs = HashMap::new();
    for dc in client.get_all(&base, &[], "GET direct_costs").await? {
        if let Some(id) = dc["id"].as_i64() {
            direct_costs.insert(id, text_of(&dc["origin_id"]));
        }
    }
    let mut lines = Vec::new();
    for li in client
        .get_all(
            &format!("{base}/line_items"),
            &[],
            "GET direct_costs/line_items",
        )
        .await?
    {
        let bad = |what: &str| Error::Procore {
            endpoint: "GET direct_costs/line_items".into(),
            status: 200,
            message: format!("a line item of project {project_id} has no {what}"),
            request_id: None,
        };
        let id = li["id"].as_i64().ok_or_else(|| bad("id"))?;
        let direct_cost_id = li["direct_cost_id"]
            .as_i64()
            .or_else(|| li["holder"]["id"].as_i64())
            .ok_or_else(|| bad("direct cost (direct_cost_id or holder)"))?;
        let amount = decimal_of(&li["amount"]).ok_or_else(|| bad("decimal amount"))?;
        lines.push(ProcoreLine {
            id,
            direct_cost_id,
            direct_cost_origin_id: direct_costs.get(&direct_cost_id).cloned().flatten(),
            origin_id: text_of(&li["origin_id"]),
            budget_code: text_of(&li["wbs_code"]["flat_code"]),
            amount,
            description: text_of(&li["description"]),
        });
    }
    Ok(ProcoreProject {
        project_id,
        lines,
        direct_costs,
    })
}

/// Progress of the read-back: a bar on a terminal, log lines otherwise.
pub struct ReadProgress {
    bar: Option<indicatif::ProgressBar>,
    items: u64,
}

impl ReadProgress {
    /// Progress over `projects` projects.
    pub fn new(projects: u64) -> ReadProgress {
        let bar = (std::io::stderr().is_terminal() && !crate::logging::json_enabled()).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(projects),
                indicatif::ProgressDrawTarget::stderr_with_hz(4),
            );
            let style = indicatif::ProgressStyle::with_template(
                "read back {bar:30} {pos}/{len} projects  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        ReadProgress { bar, items: 0 }
    }

    /// One project read.
    pub fn project_done(&mut self, job: &str, p: &ProcoreProject) {
        self.items += (p.lines.len() + p.direct_costs.len()) as u64;
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(format!("{} items read", self.items));
            }
            None => tracing::info!(
                job,
                project = p.project_id,
                direct_costs = p.direct_costs.len(),
                lines = p.lines.len(),
                items_so_far = self.items,
                "project read back"
            ),
        }
    }

    /// All projects read.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        tracing::info!(items = self.items, "Procore read back");
    }
}
