//! How the API renders direct costs, their lines and budget codes (typed rather than
//! `serde_json::Value`, because a 1000-record sync answer is the sandbox's hottest path).

use serde::Serialize;

use super::state::{Db, DirectCost, LineItem, WbsCode};

/// A vendor as a direct cost names it.
#[derive(Debug, Clone, Serialize)]
pub struct VendorRef {
    /// Procore id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Origin id.
    pub origin_id: Option<String>,
}

/// A budget code as the API renders it.
#[derive(Debug, Clone, Serialize)]
pub struct WbsCodeView {
    /// Procore id.
    pub id: i64,
    /// Flat code.
    pub flat_code: String,
    /// Description.
    pub description: String,
    /// Always `active` in the sandbox.
    pub status: &'static str,
}

/// `holder_type` of a direct cost's line (Procore's documentation names the field, not its
/// values; this one is an educated guess).
pub const DIRECT_COST_HOLDER: &str = "DirectCost::Item";

/// The record a line item belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct HolderRef {
    /// The direct cost's id.
    pub id: i64,
    /// [`DIRECT_COST_HOLDER`].
    pub holder_type: &'static str,
}

/// A line item as the API renders it. Typed rather than a `serde_json::Value` because a
/// 1000-record sync answer is the sandbox's hottest path.
#[derive(Debug, Clone, Serialize)]
pub struct LineItemView {
    /// Procore id.
    pub id: i64,
    /// Owning direct cost.
    pub direct_cost_id: i64,
    /// Owning direct cost, as Procore's line item lists name it.
    pub holder: HolderRef,
    /// Amount, as a decimal string.
    pub amount: String,
    /// Quantity, as a decimal string.
    pub quantity: Option<String>,
    /// Unit cost, as a decimal string.
    pub unit_cost: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Origin id.
    pub origin_id: Option<String>,
    /// Origin data.
    pub origin_data: Option<String>,
    /// Budget code.
    pub wbs_code: Option<WbsCodeView>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A direct cost as the API renders it (`grand_total` is the sum of its lines).
#[derive(Debug, Clone, Serialize)]
pub struct DirectCostView {
    /// Procore id.
    pub id: i64,
    /// `invoice`, `expense` or `payroll`.
    pub direct_cost_type: String,
    /// Status.
    pub status: String,
    /// Vendor.
    pub vendor: Option<VendorRef>,
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
    /// Origin id.
    pub origin_id: Option<String>,
    /// Origin data.
    pub origin_data: Option<String>,
    /// Sum of the line amounts, as a decimal string.
    pub grand_total: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Lines, in the answer to a `POST` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_items: Option<Vec<LineItemView>>,
}

/// Renders a direct cost, with its lines when `with_lines`.
pub fn direct_cost_json(db: &Db, dc: &DirectCost, with_lines: bool) -> DirectCostView {
    DirectCostView {
        id: dc.id,
        direct_cost_type: dc.direct_cost_type.clone(),
        status: dc.status.clone(),
        vendor: dc
            .vendor_id
            .and_then(|id| db.vendors.get(&id))
            .map(|v| VendorRef {
                id: v.id,
                name: v.name.clone(),
                origin_id: v.origin_id.clone(),
            }),
        invoice_number: dc.invoice_number.clone(),
        direct_cost_date: dc.direct_cost_date.clone(),
        received_date: dc.received_date.clone(),
        payment_date: dc.payment_date.clone(),
        description: dc.description.clone(),
        origin_id: dc.origin_id.clone(),
        origin_data: dc.origin_data.clone(),
        grand_total: db.grand_total(dc.id).to_string(),
        created_at: dc.created_at.clone(),
        updated_at: dc.updated_at.clone(),
        line_items: with_lines.then(|| db.lines_of(dc.id).map(|l| line_item_json(db, l)).collect()),
    }
}

/// Renders a budget code.
pub fn wbs_code_json(w: &WbsCode) -> WbsCodeView {
    WbsCodeView {
        id: w.id,
        flat_code: w.flat_code.clone(),
        description: w.description.clone(),
        status: "active",
    }
}

/// Renders a line item.
pub fn line_item_json(db: &Db, li: &LineItem) -> LineItemView {
    LineItemView {
        id: li.id,
        direct_cost_id: li.direct_cost_id,
        holder: HolderRef {
            id: li.direct_cost_id,
            holder_type: DIRECT_COST_HOLDER,
        },
        amount: li.amount.to_string(),
        quantity: li.quantity.map(|d| d.to_string()),
        unit_cost: li.unit_cost.map(|d| d.to_string()),
        description: li.description.clone(),
        origin_id: li.origin_id.clone(),
        origin_data: li.origin_data.clone(),
        wbs_code: db.wbs_codes.get(&li.wbs_code_id).map(wbs_code_json),
        created_at: li.created_at.clone(),
        updated_at: li.updated_at.clone(),
    }
}
