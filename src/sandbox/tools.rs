//! Project tools: which of a project's tools are active, as Procore's "List project tools"
//! (`GET /rest/v1.0/projects/{project_id}/tools`) and "Update project tools" (`PATCH` the same
//! path) describe them: `[{"id", "engine_name", "is_active", "position", "required", "title"}]`.
//!
//! The sandbox serves one fixed catalog of tools for every project, all active unless the seed's
//! optional `project_tools.json`, a `PATCH …/tools` or [`super::SandboxHandle::set_tool_active`]
//! turned one off. A project whose Direct Costs tool is off answers 403 on every direct cost
//! route, as Procore does for a tool that is not enabled (DOMAIN.md section 3: "403 permission
//! or tool disabled").

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::seed::{Seed, SeedError};
use super::state::Db;

/// The engine name of the Direct Costs tool.
pub const DIRECT_COSTS: &str = "direct_costs";

/// One tool of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// Procore's id of the tool.
    pub id: i64,
    /// `engine_name`, e.g. `direct_costs`.
    pub engine_name: &'static str,
    /// `title`, e.g. `Direct Costs`.
    pub title: &'static str,
    /// A tool that cannot be turned off (Procore: admin, home and connection_hub).
    pub required: bool,
}

const fn tool(id: i64, engine_name: &'static str, title: &'static str, required: bool) -> Tool {
    Tool {
        id,
        engine_name,
        title,
        required,
    }
}

/// Every project's tools, in menu order (`position` is the index from 1). [G] Procore's list
/// holds many more; these are the ones a cost integration touches, plus the required three.
pub const CATALOG: [Tool; 9] = [
    tool(1, "home", "Home", true),
    tool(2, "directory", "Directory", false),
    tool(3, "documents", "Documents", false),
    tool(4, "budgeting", "Budget", false),
    tool(5, "commitments", "Commitments", false),
    tool(6, "change_orders", "Change Orders", false),
    tool(7, DIRECT_COSTS, "Direct Costs", false),
    tool(8, "connection_hub", "Connection Manager", true),
    tool(9, "admin", "Admin", true),
];

/// The catalog's tool of an engine name.
pub fn by_engine(engine_name: &str) -> Option<&'static Tool> {
    CATALOG.iter().find(|t| t.engine_name == engine_name)
}

/// The catalog's tool of an id.
pub fn by_id(id: i64) -> Option<&'static Tool> {
    CATALOG.iter().find(|t| t.id == id)
}

/// A tool as the API renders it for a project.
pub fn tool_json(t: &Tool, position: usize, active: bool) -> Value {
    json!({
        "id": t.id,
        "engine_name": t.engine_name,
        "is_active": active,
        "position": position,
        "required": t.required,
        "title": t.title,
    })
}

/// One entry of the seed's optional `project_tools.json`: a tool of a project (by
/// `project_id` or `project_number`) and whether it is active.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedProjectTool {
    /// The project, by id...
    #[serde(default)]
    pub project_id: Option<i64>,
    /// ...or by project number.
    #[serde(default)]
    pub project_number: Option<String>,
    /// The tool, e.g. `direct_costs`.
    pub engine_name: String,
    /// Whether it is active.
    pub is_active: bool,
}

/// The file name of the optional fifth seed file.
pub const SEED_FILE: &str = "project_tools.json";

/// Reads `project_tools.json` of a seed directory (none: every tool active).
pub fn load_seed_file(dir: &Path) -> Result<Vec<SeedProjectTool>, SeedError> {
    let path = dir.join(SEED_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bytes = std::fs::read(&path).map_err(|source| SeedError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| SeedError::Json { path, source })
}

/// Applies the seed's project tools to a fresh state: each names a known project and a tool
/// of the catalog, and a required tool cannot be turned off.
pub fn apply_seed(db: &mut Db, seed: &Seed, tools: &[SeedProjectTool]) -> Result<(), SeedError> {
    let invalid = |message: String| SeedError::Invalid {
        file: SEED_FILE,
        message,
    };
    for (i, t) in tools.iter().enumerate() {
        let project = match (t.project_id, &t.project_number) {
            (Some(id), None) => seed.projects.iter().find(|p| p.id == id),
            (None, Some(n)) => seed.projects.iter().find(|p| &p.project_number == n),
            _ => None,
        }
        .ok_or_else(|| invalid(format!("entry {i} names no known project")))?;
        set_active(db, project.id, &t.engine_name, t.is_active)
            .map_err(|m| invalid(format!("entry {i}: {m}")))?;
    }
    Ok(())
}

/// Turns one tool of a project on or off; the reason when the project or tool is unknown, or
/// the tool is required.
pub fn set_active(
    db: &mut Db,
    project_id: i64,
    engine_name: &str,
    active: bool,
) -> Result<(), String> {
    let tool = by_engine(engine_name).ok_or_else(|| format!("no tool {engine_name:?}"))?;
    if tool.required && !active {
        return Err(format!(
            "{engine_name} is a tool that can't be disabled (admin, home and connection_hub)"
        ));
    }
    let project = db
        .projects
        .get_mut(&project_id)
        .ok_or_else(|| format!("no project {project_id}"))?;
    if active {
        project.inactive_tools.remove(engine_name);
    } else {
        project.inactive_tools.insert(engine_name.to_string());
    }
    Ok(())
}

/// True when the project's tool is active (a project the sandbox does not hold: false).
pub fn is_active(db: &Db, project_id: i64, engine_name: &str) -> bool {
    db.projects
        .get(&project_id)
        .is_some_and(|p| !p.inactive_tools.contains(engine_name))
}

/// A project's tools as the API lists them, in catalog order.
pub fn project_tools(db: &Db, project_id: i64) -> Vec<(Tool, usize, bool)> {
    CATALOG
        .iter()
        .enumerate()
        .map(|(i, t)| (*t, i + 1, is_active(db, project_id, t.engine_name)))
        .collect()
}
