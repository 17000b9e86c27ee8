//! The Procore directory of a load: the company's project and vendor ids, looked up once at the
//! start, by which Sage jobs and vendors are resolved.

use std::collections::HashMap;

use crate::config::ProjectMatch;
use crate::error::Result;
use crate::load::client::ProcoreClient;
use crate::load::plan::HeaderRef;
use crate::model::cost_type::DirectCostKind;
use crate::quarantine::ReasonCode;

/// Project and vendor ids, looked up once at the start of a load.
pub struct Directory {
    /// Sage job (by `[load] project_match`) → Procore project id.
    pub(super) projects: HashMap<String, i64>,
    /// Sage vendor (Procore vendor origin_id) → Procore vendor id.
    pub(super) vendors: HashMap<String, i64>,
}

impl Directory {
    /// Sage job → Procore project id.
    pub fn projects(&self) -> &HashMap<String, i64> {
        &self.projects
    }

    /// Every project of the company: Sage job (by `[load] project_match`) → Procore project id.
    pub async fn fetch_projects(
        client: &ProcoreClient,
        matching: ProjectMatch,
    ) -> Result<HashMap<String, i64>> {
        let company = vec![("company_id".to_string(), client.company_id().to_string())];
        let mut projects = HashMap::new();
        for p in client
            .get_all("/rest/v1.0/projects", &company, "GET projects")
            .await?
        {
            let key = match matching {
                ProjectMatch::ProjectNumber => p["project_number"].as_str(),
                ProjectMatch::OriginId => p["origin_id"].as_str(),
            };
            if let (Some(k), Some(id)) = (key, p["id"].as_i64()) {
                projects.insert(k.trim().to_string(), id);
            }
        }
        Ok(projects)
    }

    /// Fetch every project and vendor of the company.
    pub async fn fetch(client: &ProcoreClient, matching: ProjectMatch) -> Result<Directory> {
        let company = vec![("company_id".to_string(), client.company_id().to_string())];
        let projects = Directory::fetch_projects(client, matching).await?;
        let mut vendors = HashMap::new();
        for v in client
            .get_all("/rest/v1.0/vendors", &company, "GET vendors")
            .await?
        {
            if let (Some(k), Some(id)) = (v["origin_id"].as_str(), v["id"].as_i64()) {
                vendors.insert(k.trim().to_string(), id);
            }
        }
        tracing::info!(
            projects = projects.len(),
            vendors = vendors.len(),
            "Procore directory loaded"
        );
        Ok(Directory { projects, vendors })
    }

    /// The Procore vendor of a header: an invoice's (found by the Sage vendor as origin_id), or
    /// none for the other kinds; the reason when an invoice's vendor is not in Procore.
    pub(super) fn vendor_of(
        &self,
        h: HeaderRef<'_>,
    ) -> std::result::Result<Option<i64>, (ReasonCode, String)> {
        if h.kind != DirectCostKind::Invoice {
            return Ok(None);
        }
        let vendor = h.vendor.unwrap_or("");
        match self.vendors.get(vendor) {
            Some(id) => Ok(Some(*id)),
            None => Err((
                ReasonCode::UnmappedVendor,
                format!("Sage vendor {vendor:?} has no Procore vendor (by origin_id)"),
            )),
        }
    }
}
