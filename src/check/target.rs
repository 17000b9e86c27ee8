//! The Procore side of `check`: logged in as a sync logs in ([`prepare_target`]: the same
//! credentials, client, rate gate and retries), the load's own directory of projects, the
//! company's vendors, and for each project that would receive lines its budget codes and
//! whether its Direct Costs tool is enabled.
//!
//! The Direct Costs tool: Procore's "List project tools" (`GET
//! /rest/v1.0/projects/{project_id}/tools`, Core > Project Tools) returns "all Tools available
//! to the provided Project" as `[{"id", "engine_name", "is_active", "position", "required",
//! "title"}]`. The tool whose `engine_name` is `direct_costs` (or whose `title` is "Direct
//! Costs") must be listed with `is_active: true`; not listed, or inactive, is "not enabled".
//! Listing tools may need more permission than writing direct costs: when that list is refused,
//! the direct costs list of the project is asked for one record, and its 403 ("permission or
//! tool disabled") says the tool cannot be used; any other answer leaves the state unknown.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use reqwest::Method;
use serde_json::Value;

use crate::config::{Pipeline, TargetConfig};
use crate::error::{Error, Result};
use crate::load::client::ProcoreClient;
use crate::pipeline::target::{prepare_target, PreparedTarget};
use crate::pipeline::SyncOptions;

/// Whether a project's Direct Costs tool can receive the lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolState {
    Enabled,
    /// Procore says it is not enabled (the detail says how it said so).
    Disabled(String),
    /// Procore did not say (the detail says why).
    Unknown(String),
}

/// What Procore holds that the mappings need.
#[derive(Debug, Default)]
pub struct ProcoreFacts {
    /// Sage job (by `[load] project_match`) → Procore project id, as the load's directory maps.
    pub projects: HashMap<String, i64>,
    /// Procore vendor origin_ids (trimmed): the Sage vendors an invoice can name.
    pub vendors: HashSet<String>,
    /// Flat budget codes of each project asked about.
    pub budget_codes: HashMap<i64, HashSet<String>>,
    /// The Direct Costs tool of each project asked about.
    pub direct_costs_tool: HashMap<i64, ToolState>,
}

/// A target logged in to, its directory looked up.
pub struct Connected {
    pub label: String,
    client: Arc<ProcoreClient>,
    pub facts: ProcoreFacts,
    /// Keeps an embedded sandbox alive.
    _target: PreparedTarget,
}

/// Why the target could not be used: the message (never a secret) and the HTTP status, when
/// Procore answered one.
#[derive(Debug, Clone)]
pub struct Unreachable {
    pub message: String,
    pub status: Option<u16>,
}

impl Unreachable {
    fn of(e: &Error) -> Unreachable {
        Unreachable {
            status: match e {
                Error::Procore { status, .. } => Some(*status),
                // The login's own message names the status ("refused: HTTP 401: …").
                Error::Credentials { message } => status_in(message),
                Error::ProcoreUnavailable { last, .. } => status_in(last),
                _ => None,
            },
            message: e.to_string(),
        }
    }
}

/// The `HTTP nnn` a client message names, for the JSON's `status`.
fn status_in(message: &str) -> Option<u16> {
    let at = message.find("HTTP ")? + 5;
    message.get(at..at + 3)?.parse().ok()
}

/// Log in to the pipeline's target and fetch the company's projects and vendors. A Procore
/// that refuses the login, is down or unreachable is [`Unreachable`]; a dry-run target is
/// `Ok(None)` (there is no Procore to check).
pub async fn connect(pipeline: &Pipeline) -> std::result::Result<Option<Connected>, Unreachable> {
    if matches!(pipeline.config.target, TargetConfig::DryRun(_)) {
        return Ok(None);
    }
    let options = SyncOptions {
        ledger_untouched: true,
        ..SyncOptions::default()
    };
    let mut target = prepare_target(pipeline, &options)
        .await
        .map_err(|e| Unreachable::of(&e))?;
    let Some(load) = target.load.take() else {
        return Ok(None);
    };
    let client = load.client.clone();
    // A sync stages its snapshot while a Procore that is down at the start comes back; a check
    // says so at once: the login is tried again, without retrying.
    let logged_in = client
        .stats()
        .requests
        .get("POST /oauth/token")
        .is_some_and(|by| by.keys().any(|status| status.starts_with('2')));
    if !logged_in {
        client.log_in().await.map_err(|e| Unreachable::of(&e))?;
    }
    // The load's own directory lookup, started by the login: the projects exactly as a sync
    // maps the jobs.
    let lookup = load.directory;
    let handle = tokio::runtime::Handle::current();
    let directory = tokio::task::spawn_blocking(move || lookup.wait(&handle))
        .await
        .map_err(|e| Unreachable {
            message: e.to_string(),
            status: None,
        })?
        .map_err(|e| Unreachable::of(&e))?;
    let vendors = vendor_origin_ids(&client)
        .await
        .map_err(|e| Unreachable::of(&e))?;
    Ok(Some(Connected {
        label: target.label.clone(),
        client,
        facts: ProcoreFacts {
            projects: directory.projects().clone(),
            vendors,
            ..ProcoreFacts::default()
        },
        _target: target,
    }))
}

/// The company's vendors by origin_id, keyed as the load's directory keys them (the load's
/// `Directory` keeps its vendor map private, so check reads the same list the same way).
async fn vendor_origin_ids(client: &ProcoreClient) -> Result<HashSet<String>> {
    let company = vec![("company_id".to_string(), client.company_id().to_string())];
    Ok(client
        .get_all("/rest/v1.0/vendors", &company, "GET vendors")
        .await?
        .iter()
        .filter_map(|v| v["origin_id"].as_str().map(|o| o.trim().to_string()))
        .collect())
}

impl Connected {
    /// Fetch the budget codes and the Direct Costs tool state of `projects`.
    pub async fn look_up_projects(&mut self, projects: &BTreeSet<i64>) -> Result<()> {
        for &pid in projects {
            let path = format!("/rest/v1.0/projects/{pid}/work_breakdown_structure/wbs_codes");
            // As the load's project worker reads them: every code by its flat code.
            let codes = self
                .client
                .get_all(&path, &[], "GET wbs_codes")
                .await?
                .iter()
                .filter_map(|c| c["flat_code"].as_str().map(str::to_string))
                .collect();
            self.facts.budget_codes.insert(pid, codes);
            let tool = direct_costs_tool(&self.client, pid).await?;
            self.facts.direct_costs_tool.insert(pid, tool);
        }
        Ok(())
    }
}

/// True for the Direct Costs tool of a project tools list.
fn is_direct_costs(tool: &Value) -> bool {
    tool["engine_name"].as_str() == Some("direct_costs")
        || tool["title"]
            .as_str()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("direct costs"))
}

/// Whether project `pid`'s Direct Costs tool is enabled (see the module's doc).
async fn direct_costs_tool(client: &ProcoreClient, pid: i64) -> Result<ToolState> {
    let path = format!("/rest/v1.0/projects/{pid}/tools");
    match client.get_all(&path, &[], "GET project tools").await {
        Ok(tools) => Ok(match tools.iter().find(|t| is_direct_costs(t)) {
            Some(t) if t["is_active"].as_bool() == Some(true) => ToolState::Enabled,
            Some(_) => ToolState::Disabled("inactive in the project's tools".into()),
            None => ToolState::Disabled("not among the project's tools".into()),
        }),
        Err(Error::Procore {
            status: listed @ (403 | 404),
            ..
        }) => {
            let path = format!("/rest/v1.0/projects/{pid}/direct_costs");
            let one = [("per_page".to_string(), "1".to_string())];
            match client
                .call(Method::GET, &path, &one, None, "GET direct_costs")
                .await
            {
                Ok(_) => Ok(ToolState::Enabled),
                Err(Error::Procore { status: 403, .. }) => Ok(ToolState::Disabled(format!(
                    "GET direct_costs answered HTTP 403 (project tools: HTTP {listed})"
                ))),
                Err(Error::Procore { status, .. }) => Ok(ToolState::Unknown(format!(
                    "project tools: HTTP {listed}; direct costs: HTTP {status}"
                ))),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_of_a_refused_login_is_read_from_its_message() {
        assert_eq!(
            status_in("login at http://x/oauth/token with the credentials from env A / B refused: HTTP 401: invalid_client"),
            Some(401)
        );
        assert_eq!(status_in("connection refused"), None);
    }

    #[test]
    fn the_direct_costs_tool_is_found_by_engine_name_or_title() {
        assert!(is_direct_costs(
            &serde_json::json!({"engine_name": "direct_costs"})
        ));
        assert!(is_direct_costs(
            &serde_json::json!({"title": "Direct Costs"})
        ));
        assert!(!is_direct_costs(
            &serde_json::json!({"engine_name": "budgeting", "title": "Budget"})
        ));
    }
}
