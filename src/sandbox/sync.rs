//! Procore's write rules for direct costs, independent of HTTP: per-item validation, origin_id
//! matching and the JSON the API answers with.

use std::collections::HashSet;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::routes::error::{ApiError, FieldErrors};
use super::state::{Db, DirectCost, LineItem};
pub use super::views::{
    direct_cost_json, line_item_json, wbs_code_json, DirectCostView, LineItemView, VendorRef,
    WbsCodeView,
};

/// `direct_cost_type` values.
pub const DIRECT_COST_TYPES: [&str; 3] = ["invoice", "expense", "payroll"];
/// `status` values.
pub const STATUSES: [&str; 4] = ["draft", "pending", "revise_and_resubmit", "approved"];

const BLANK: &str = "can't be blank";
const INVALID: &str = "is invalid";
const TAKEN: &str = "has already been taken";
const NOT_IN_LIST: &str = "is not included in the list";
const NOT_A_DATE: &str = "is not a valid date (expected YYYY-MM-DD)";
const NOT_A_NUMBER: &str = "is not a number";

/// What one sync call did: created or updated records, and the rejected inputs with their errors.
#[derive(Debug)]
pub struct SyncResult<T> {
    /// Saved records, as the API renders them.
    pub entities: Vec<T>,
    /// Rejected inputs, each with an `errors` object.
    pub errors: Vec<Value>,
}

fn add(errs: &mut FieldErrors, field: &str, message: &str) {
    errs.entry(field.to_owned())
        .or_default()
        .push(message.to_owned());
}

/// Parses a money or quantity value: a JSON number or a decimal string, kept exactly.
pub fn parse_decimal(v: &Value) -> Option<Decimal> {
    let s = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    if s.is_empty() {
        return None;
    }
    Decimal::from_str(&s)
        .or_else(|_| Decimal::from_scientific(&s))
        .ok()
}

/// Whether `s` is a real calendar date written `YYYY-MM-DD`.
pub fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// A text field: absent → `None`; null → `Some(None)`; string or number → `Some(Some(text))`.
fn text(obj: &Map<String, Value>, key: &str, errs: &mut FieldErrors) -> Option<Option<String>> {
    match obj.get(key)? {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.clone())),
        Value::Number(n) => Some(Some(n.to_string())),
        _ => {
            add(errs, key, INVALID);
            None
        }
    }
}

fn parse_id(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An id field: absent → `None`; null → `Some(None)`; integer or numeric string → `Some(Some(id))`.
fn id_field(obj: &Map<String, Value>, key: &str, errs: &mut FieldErrors) -> Option<Option<i64>> {
    match obj.get(key)? {
        Value::Null => Some(None),
        v => match parse_id(v) {
            Some(id) => Some(Some(id)),
            None => {
                add(errs, key, INVALID);
                None
            }
        },
    }
}

fn date(obj: &Map<String, Value>, key: &str, errs: &mut FieldErrors) -> Option<Option<String>> {
    let value = text(obj, key, errs)?;
    match value {
        Some(s) if !is_iso_date(&s) => {
            add(errs, key, NOT_A_DATE);
            None
        }
        v => Some(v),
    }
}

fn decimal(obj: &Map<String, Value>, key: &str, errs: &mut FieldErrors) -> Option<Option<Decimal>> {
    match obj.get(key)? {
        Value::Null => Some(None),
        v => match parse_decimal(v) {
            Some(d) => Some(Some(d)),
            None => {
                add(errs, key, NOT_A_NUMBER);
                None
            }
        },
    }
}

/// The `origin_id` field, as [`text`]; `taken` says whether another record already holds it
/// (origin ids are unique across the company).
fn origin_id(
    obj: &Map<String, Value>,
    errs: &mut FieldErrors,
    taken: impl Fn(&str) -> bool,
) -> Option<Option<String>> {
    let value = text(obj, "origin_id", errs)?;
    if value.as_deref().is_some_and(taken) {
        add(errs, "origin_id", TAKEN);
    }
    Some(value)
}

fn origin_of(obj: &Map<String, Value>) -> Option<String> {
    match obj.get("origin_id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Where an input goes.
enum Target {
    Create,
    Update(i64),
    Reject(FieldErrors),
}

/// Procore's matching: an `id` must exist in the project; without one, a known `origin_id`
/// updates (if it lives in this project) and an unknown one creates.
fn match_target(
    obj: &Map<String, Value>,
    project_id: i64,
    project_of_id: impl Fn(i64) -> Option<i64>,
    by_origin: impl Fn(&str) -> Option<(i64, i64)>,
) -> Target {
    let mut errs = FieldErrors::new();
    let origin = origin_of(obj);
    match obj.get("id") {
        Some(Value::Null) | None => {}
        Some(v) => {
            let Some(id) = parse_id(v) else {
                add(&mut errs, "id", INVALID);
                return Target::Reject(errs);
            };
            if project_of_id(id) != Some(project_id) {
                add(&mut errs, "id", "does not exist");
                return Target::Reject(errs);
            }
            if let Some((other, _)) = origin.as_deref().and_then(&by_origin) {
                if other != id {
                    add(&mut errs, "origin_id", TAKEN);
                    return Target::Reject(errs);
                }
            }
            return Target::Update(id);
        }
    }
    match origin.as_deref().and_then(&by_origin) {
        Some((id, p)) if p == project_id => Target::Update(id),
        Some(_) => {
            add(&mut errs, "origin_id", TAKEN);
            Target::Reject(errs)
        }
        None => Target::Create,
    }
}

/// The input with its errors, as a sync or bulk create response lists it.
pub(crate) fn error_entry(input: &Value, errs: FieldErrors) -> Value {
    match input {
        Value::Object(obj) => {
            let mut out = obj.clone();
            out.insert("errors".into(), json!(errs));
            Value::Object(out)
        }
        other => json!({"input": other, "errors": errs}),
    }
}

fn not_an_object() -> FieldErrors {
    let mut errs = FieldErrors::new();
    add(&mut errs, "base", "must be a JSON object");
    errs
}

/// Applies header fields to `dc`, collecting errors. `creating` enables the create-only rules.
fn apply_header(
    db: &Db,
    dc: &mut DirectCost,
    obj: &Map<String, Value>,
    creating: bool,
    errs: &mut FieldErrors,
) {
    match obj.get("direct_cost_type") {
        None | Some(Value::Null) => {
            if creating {
                add(errs, "direct_cost_type", BLANK);
            }
        }
        Some(Value::String(t)) if DIRECT_COST_TYPES.contains(&t.as_str()) => {
            if creating {
                dc.direct_cost_type = t.clone();
            } else if *t != dc.direct_cost_type {
                add(errs, "direct_cost_type", "can't be changed");
            }
        }
        Some(_) => add(errs, "direct_cost_type", NOT_IN_LIST),
    }
    match obj.get("status") {
        None => {}
        Some(Value::String(s)) if STATUSES.contains(&s.as_str()) => dc.status = s.clone(),
        Some(_) => add(errs, "status", NOT_IN_LIST),
    }
    if let Some(v) = id_field(obj, "vendor_id", errs) {
        match v {
            Some(id) if !db.vendors.contains_key(&id) => add(errs, "vendor", "does not exist"),
            v => dc.vendor_id = v,
        }
    }
    if let Some(v) = text(obj, "invoice_number", errs) {
        dc.invoice_number = v;
    }
    if let Some(v) = text(obj, "description", errs) {
        dc.description = v;
    }
    if let Some(v) = text(obj, "origin_data", errs) {
        dc.origin_data = v;
    }
    let taken = |o: &str| {
        db.direct_cost_by_origin(o)
            .is_some_and(|other| other.id != dc.id || creating)
    };
    if let Some(v) = origin_id(obj, errs, taken) {
        dc.origin_id = v;
    }
    if let Some(v) = date(obj, "direct_cost_date", errs) {
        dc.direct_cost_date = v;
    }
    if let Some(v) = date(obj, "received_date", errs) {
        dc.received_date = v;
    }
    if let Some(v) = date(obj, "payment_date", errs) {
        dc.payment_date = v;
    }
    if dc.direct_cost_date.is_none() && !errs.contains_key("direct_cost_date") {
        add(errs, "direct_cost_date", BLANK);
    }
    if dc.direct_cost_type == "invoice" && dc.vendor_id.is_none() && !errs.contains_key("vendor") {
        add(errs, "vendor", BLANK);
    }
}

/// Applies line fields to `li`. `parent` is the direct cost a `POST` creates the line with; sync
/// lines name their direct cost themselves.
fn apply_line(
    db: &Db,
    project_id: i64,
    li: &mut LineItem,
    obj: &Map<String, Value>,
    creating: bool,
    parent: Option<i64>,
    errs: &mut FieldErrors,
) {
    if parent.is_none() {
        match id_field(obj, "direct_cost_id", errs) {
            None | Some(None) => {
                if creating && !errs.contains_key("direct_cost_id") {
                    add(errs, "direct_cost_id", BLANK);
                }
            }
            Some(Some(id)) => {
                let exists = db
                    .direct_costs
                    .get(&id)
                    .is_some_and(|dc| dc.project_id == project_id);
                if !exists {
                    add(errs, "direct_cost_id", "does not exist");
                } else if creating {
                    li.direct_cost_id = id;
                } else if id != li.direct_cost_id {
                    add(errs, "direct_cost_id", "can't be changed");
                }
            }
        }
    }
    match id_field(obj, "wbs_code_id", errs) {
        None | Some(None) => {
            if creating && !errs.contains_key("wbs_code_id") {
                let why = if obj.contains_key("cost_code_id") {
                    "can't be blank (the sandbox supports wbs_code_id, not cost_code_id + line_item_type_id)"
                } else {
                    BLANK
                };
                add(errs, "wbs_code_id", why);
            }
        }
        Some(Some(id)) => {
            if db
                .wbs_codes
                .get(&id)
                .is_some_and(|w| w.project_id == project_id)
            {
                li.wbs_code_id = id;
            } else {
                add(errs, "wbs_code_id", "does not exist in this project");
            }
        }
    }
    match decimal(obj, "amount", errs) {
        Some(Some(a)) => li.amount = a,
        Some(None) => add(errs, "amount", BLANK),
        None => {
            if creating && !errs.contains_key("amount") {
                add(errs, "amount", BLANK);
            }
        }
    }
    if let Some(v) = decimal(obj, "quantity", errs) {
        li.quantity = v;
    }
    if let Some(v) = decimal(obj, "unit_cost", errs) {
        li.unit_cost = v;
    }
    if let Some(v) = text(obj, "description", errs) {
        li.description = v;
    }
    if let Some(v) = text(obj, "origin_data", errs) {
        li.origin_data = v;
    }
    let taken = |o: &str| {
        db.line_item_by_origin(o)
            .is_some_and(|other| other.id != li.id || creating)
    };
    if let Some(v) = origin_id(obj, errs, taken) {
        li.origin_id = v;
    }
}

/// A record the two sync endpoints create or update. [`sync_records`] holds what they share:
/// Procore's matching, all-or-nothing validation per input, new ids and the rendered answer.
trait SyncRecord: Clone {
    /// How the API renders it.
    type View;
    /// The record with this id, in any project.
    fn get(db: &Db, id: i64) -> Option<&Self>;
    /// The record with this origin id, in any project.
    fn by_origin<'a>(db: &'a Db, origin: &str) -> Option<&'a Self>;
    /// Its id and its project's.
    fn id_and_project(&self) -> (i64, i64);
    /// A record about to be created in `project_id`.
    fn fresh(project_id: i64, now: &str) -> Self;
    /// Applies the input's fields, collecting errors.
    fn apply(
        &mut self,
        db: &Db,
        project_id: i64,
        obj: &Map<String, Value>,
        creating: bool,
        errs: &mut FieldErrors,
    );
    /// Sets the id and `updated_at` of a record about to be saved.
    fn stamp(&mut self, id: i64, now: &str);
    /// The answer's rendering.
    fn render(&self, db: &Db) -> Self::View;
    /// Inserts or replaces it.
    fn put(self, db: &mut Db);
}

impl SyncRecord for DirectCost {
    type View = DirectCostView;
    fn get(db: &Db, id: i64) -> Option<&Self> {
        db.direct_costs.get(&id)
    }
    fn by_origin<'a>(db: &'a Db, origin: &str) -> Option<&'a Self> {
        db.direct_cost_by_origin(origin)
    }
    fn id_and_project(&self) -> (i64, i64) {
        (self.id, self.project_id)
    }
    fn fresh(project_id: i64, now: &str) -> Self {
        DirectCost {
            project_id,
            status: "draft".into(),
            created_at: now.to_owned(),
            ..DirectCost::default()
        }
    }
    fn apply(
        &mut self,
        db: &Db,
        _project_id: i64,
        obj: &Map<String, Value>,
        creating: bool,
        errs: &mut FieldErrors,
    ) {
        apply_header(db, self, obj, creating, errs);
    }
    fn stamp(&mut self, id: i64, now: &str) {
        self.id = id;
        self.updated_at = now.to_owned();
    }
    fn render(&self, db: &Db) -> DirectCostView {
        direct_cost_json(db, self, false)
    }
    fn put(self, db: &mut Db) {
        db.put_direct_cost(self);
    }
}

impl SyncRecord for LineItem {
    type View = LineItemView;
    fn get(db: &Db, id: i64) -> Option<&Self> {
        db.line_items.get(&id)
    }
    fn by_origin<'a>(db: &'a Db, origin: &str) -> Option<&'a Self> {
        db.line_item_by_origin(origin)
    }
    fn id_and_project(&self) -> (i64, i64) {
        (self.id, self.project_id)
    }
    fn fresh(project_id: i64, now: &str) -> Self {
        LineItem {
            project_id,
            created_at: now.to_owned(),
            ..LineItem::default()
        }
    }
    fn apply(
        &mut self,
        db: &Db,
        project_id: i64,
        obj: &Map<String, Value>,
        creating: bool,
        errs: &mut FieldErrors,
    ) {
        apply_line(db, project_id, self, obj, creating, None, errs);
    }
    fn stamp(&mut self, id: i64, now: &str) {
        self.id = id;
        self.updated_at = now.to_owned();
    }
    fn render(&self, db: &Db) -> LineItemView {
        line_item_json(db, self)
    }
    fn put(self, db: &mut Db) {
        db.put_line_item(self);
    }
}

/// Creates or updates each input: an input that does not match or validate is listed in
/// `errors` with its errors and changes nothing; the others are saved and rendered.
fn sync_records<R: SyncRecord>(
    db: &mut Db,
    project_id: i64,
    updates: &[Value],
    now: &str,
) -> SyncResult<R::View> {
    let mut out = SyncResult {
        entities: Vec::new(),
        errors: Vec::new(),
    };
    for input in updates {
        let Some(obj) = input.as_object() else {
            out.errors.push(error_entry(input, not_an_object()));
            continue;
        };
        let target = match_target(
            obj,
            project_id,
            |id| R::get(db, id).map(|r| r.id_and_project().1),
            |o| R::by_origin(db, o).map(R::id_and_project),
        );
        let (mut record, creating) = match target {
            Target::Reject(errs) => {
                out.errors.push(error_entry(input, errs));
                continue;
            }
            Target::Create => (R::fresh(project_id, now), true),
            Target::Update(id) => match R::get(db, id) {
                Some(r) => (r.clone(), false),
                None => continue,
            },
        };
        let mut errs = FieldErrors::new();
        record.apply(db, project_id, obj, creating, &mut errs);
        if !errs.is_empty() {
            out.errors.push(error_entry(input, errs));
            continue;
        }
        let id = if creating {
            db.allocate_id()
        } else {
            record.id_and_project().0
        };
        record.stamp(id, now);
        out.entities.push(record.render(db));
        record.put(db);
    }
    out
}

/// `PATCH /rest/v1.0/projects/{id}/direct_costs/sync`: creates or updates each header.
pub fn sync_direct_costs(
    db: &mut Db,
    project_id: i64,
    updates: &[Value],
    now: &str,
) -> SyncResult<DirectCostView> {
    sync_records::<DirectCost>(db, project_id, updates, now)
}

/// `PATCH /rest/v1.0/projects/{id}/direct_costs/line_items/sync`: creates or updates each line.
pub fn sync_line_items(
    db: &mut Db,
    project_id: i64,
    updates: &[Value],
    now: &str,
) -> SyncResult<LineItemView> {
    sync_records::<LineItem>(db, project_id, updates, now)
}

/// `POST /rest/v1.1/projects/{id}/direct_costs`: a header with its lines, all or nothing.
pub fn create_direct_cost(
    db: &mut Db,
    project_id: i64,
    body: &Value,
    max_lines: usize,
    now: &str,
) -> Result<DirectCostView, ApiError> {
    let Some(obj) = body.get("direct_cost").and_then(Value::as_object) else {
        return Err(ApiError::BadRequest(
            "param is missing or the value is empty: direct_cost".into(),
        ));
    };
    let lines: &[Value] = match obj.get("line_items") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::field("line_items", "must be an array")),
    };
    if lines.len() > max_lines {
        return Err(ApiError::field(
            "line_items",
            &format!("must contain at most {max_lines} line items"),
        ));
    }
    let mut errs = FieldErrors::new();
    let mut dc = DirectCost {
        project_id,
        status: "draft".into(),
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
        ..DirectCost::default()
    };
    apply_header(db, &mut dc, obj, true, &mut errs);
    let mut new_lines = Vec::with_capacity(lines.len());
    let mut origins = HashSet::new();
    for (i, line) in lines.iter().enumerate() {
        let mut line_errs = FieldErrors::new();
        let mut li = LineItem {
            project_id,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
            ..LineItem::default()
        };
        match line.as_object() {
            Some(lobj) => apply_line(db, project_id, &mut li, lobj, true, Some(0), &mut line_errs),
            None => line_errs = not_an_object(),
        }
        if let Some(o) = &li.origin_id {
            if !origins.insert(o.clone()) && !line_errs.contains_key("origin_id") {
                add(&mut line_errs, "origin_id", TAKEN);
            }
        }
        for (field, messages) in line_errs {
            errs.insert(format!("line_items[{i}].{field}"), messages);
        }
        new_lines.push(li);
    }
    if !errs.is_empty() {
        return Err(ApiError::Unprocessable(errs));
    }
    dc.id = db.allocate_id();
    for mut li in new_lines {
        li.id = db.allocate_id();
        li.direct_cost_id = dc.id;
        db.put_line_item(li);
    }
    let rendered = direct_cost_json(db, &dc, true);
    db.put_direct_cost(dc);
    Ok(rendered)
}

/// Direct costs a header sync would write to (for the 409 rule).
pub fn headers_touched(db: &Db, updates: &[Value]) -> HashSet<i64> {
    updates
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|obj| {
            obj.get("id")
                .and_then(parse_id)
                .filter(|id| db.direct_costs.contains_key(id))
                .or_else(|| origin_of(obj).and_then(|o| db.direct_cost_by_origin(&o).map(|d| d.id)))
        })
        .collect()
}

/// Direct costs a line sync would write to (for the 409 rule).
pub fn lines_touched(db: &Db, updates: &[Value]) -> HashSet<i64> {
    let mut ids = HashSet::new();
    for obj in updates.iter().filter_map(Value::as_object) {
        if let Some(id) = obj.get("direct_cost_id").and_then(parse_id) {
            if db.direct_costs.contains_key(&id) {
                ids.insert(id);
            }
        }
        let existing = obj
            .get("id")
            .and_then(parse_id)
            .and_then(|id| db.line_items.get(&id))
            .or_else(|| origin_of(obj).and_then(|o| db.line_item_by_origin(&o)));
        if let Some(li) = existing {
            ids.insert(li.direct_cost_id);
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_from_numbers_and_strings() {
        assert_eq!(
            parse_decimal(&json!("1234.56")),
            Decimal::from_str("1234.56").ok()
        );
        assert_eq!(parse_decimal(&json!(0.1)), Decimal::from_str("0.1").ok());
        assert_eq!(parse_decimal(&json!(-7)), Decimal::from_str("-7").ok());
        assert_eq!(parse_decimal(&json!("12,00")), None);
        assert_eq!(parse_decimal(&json!(true)), None);
    }

    #[test]
    fn dates_must_be_zero_padded_calendar_dates() {
        assert!(is_iso_date("2024-02-29"));
        assert!(!is_iso_date("2023-02-29"));
        assert!(!is_iso_date("2024-2-09"));
        assert!(!is_iso_date("02/09/2024"));
        assert!(!is_iso_date("2024-02-09T00:00:00Z"));
    }
}
