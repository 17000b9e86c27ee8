//! The SQL jcsync sends to SQL Server, built in one place.
//!
//! Nothing from a pipeline file or from the data is formatted into SQL text except table and
//! column identifiers, which are checked against `^[A-Za-z_][A-Za-z0-9_]*$` first and then
//! bracket-quoted. Every value (dates, job keys, schema and table names in catalog queries) is a
//! parameter (`@P1`, `@P2`, ...).

use chrono::{NaiveDate, NaiveDateTime};

/// A value bound to a `@Pn` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlParam {
    Text(String),
    Int(i64),
}

/// A statement and its parameters, in `@P1..` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<SqlParam>,
}

pub use crate::config::check_identifier;

/// `[name]`. Only called on names that passed [`check_identifier`] (or the constant column names
/// of `schema.rs`), so no `]` can occur; it is escaped anyway.
pub fn quote(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// `[schema].[table]`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote(schema), quote(table))
}

/// The catalog query for a table's columns: `(COLUMN_NAME)` rows.
pub fn columns_of(schema: &str, table: &str) -> Statement {
    Statement {
        sql: "SELECT COLUMN_NAME FROM INFORMATION_SCHEMA.COLUMNS \
              WHERE TABLE_SCHEMA = @P1 AND TABLE_NAME = @P2 ORDER BY ORDINAL_POSITION"
            .into(),
        params: vec![
            SqlParam::Text(schema.to_string()),
            SqlParam::Text(table.to_string()),
        ],
    }
}

/// `SELECT COUNT(*)` of a table.
pub fn count_rows(schema: &str, table: &str) -> Statement {
    Statement {
        sql: format!("SELECT COUNT_BIG(*) AS n FROM {}", qualified(schema, table)),
        params: vec![],
    }
}

/// Which rows of the transaction table a run reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadWindow {
    /// Accounting_Date on or after this day (rows with no Accounting_Date are still read: they
    /// are quarantined as `missing_value`, not silently dropped).
    pub since: Option<NaiveDate>,
    /// Date_Stamp + Time_Stamp at or after this moment (incremental syncs: watermark - overlap).
    pub changed_since: Option<NaiveDateTime>,
}

impl ReadWindow {
    /// The WHERE conditions of the window; their values are appended to `params`, and each
    /// condition refers to them by position (`@Pn`).
    fn conditions(&self, params: &mut Vec<SqlParam>) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(since) = self.since {
            params.push(SqlParam::Text(since.format("%Y-%m-%d").to_string()));
            let p = params.len();
            out.push(format!(
                "({a} >= @P{p} OR {a} IS NULL)",
                a = quote("Accounting_Date")
            ));
        }
        if let Some(from) = self.changed_since {
            // Whole seconds: flooring a lower bound only widens the window.
            params.push(SqlParam::Text(from.date().format("%Y-%m-%d").to_string()));
            let d = params.len();
            params.push(SqlParam::Text(from.time().format("%H:%M:%S").to_string()));
            let t = params.len();
            out.push(format!(
                "({ds} > @P{d} OR ({ds} = @P{d} AND {ts} >= @P{t}))",
                ds = quote("Date_Stamp"),
                ts = quote("Time_Stamp")
            ));
        }
        out
    }
}

fn select_list(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A dimension table, whole, in the order of its key.
pub fn read_dimension(schema: &str, table: &str, columns: &[&str], key: &[&str]) -> Statement {
    Statement {
        sql: format!(
            "SELECT {} FROM {} ORDER BY {}",
            select_list(columns),
            qualified(schema, table),
            select_list(key)
        ),
        params: vec![],
    }
}

/// The distinct Jobs of the transaction rows in the window: one partition each.
pub fn list_jobs(schema: &str, table: &str, window: &ReadWindow) -> Statement {
    let mut params = Vec::new();
    let conditions = window.conditions(&mut params);
    let mut sql = format!(
        "SELECT DISTINCT {job} FROM {t}",
        job = quote("Job"),
        t = qualified(schema, table)
    );
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY {}", quote("Job")));
    Statement { sql, params }
}

/// The key of one partition of the transaction table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobKey {
    /// Rows without a Job (they are quarantined as `missing_value`, but they are read).
    Null,
    Text(String),
    Int(i64),
}

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobKey::Null => f.write_str("NULL"),
            JobKey::Text(s) => write!(f, "{s:?}"),
            JobKey::Int(i) => write!(f, "{i}"),
        }
    }
}

/// One Job's transactions in the window, in the partition's deterministic order: the rest of
/// the natural key, then the change stamp (so of two rows with the same natural key, the one
/// written first comes first and loads; the repeat is quarantined).
pub fn read_partition(
    schema: &str,
    table: &str,
    columns: &[&str],
    order: &[&str],
    job: &JobKey,
    window: &ReadWindow,
) -> Statement {
    let mut params = Vec::new();
    let mut conditions = vec![match job {
        JobKey::Null => format!("{} IS NULL", quote("Job")),
        JobKey::Text(s) => {
            params.push(SqlParam::Text(s.clone()));
            format!("{} = @P1", quote("Job"))
        }
        JobKey::Int(i) => {
            params.push(SqlParam::Int(*i));
            format!("{} = @P1", quote("Job"))
        }
    }];
    conditions.extend(window.conditions(&mut params));
    let mut sql = format!(
        "SELECT {} FROM {} WHERE {}",
        select_list(columns),
        qualified(schema, table),
        conditions.join(" AND ")
    );
    if !order.is_empty() {
        sql.push_str(&format!(" ORDER BY {}", select_list(order)));
    }
    Statement { sql, params }
}

/// Every character Rust's `str::trim` (and so the typing of a text cell) removes: Unicode
/// White_Space.
const WHITESPACE: &str = "\u{9}\u{a}\u{b}\u{c}\u{d} \u{85}\u{a0}\u{1680}\u{2000}\u{2001}\u{2002}\
    \u{2003}\u{2004}\u{2005}\u{2006}\u{2007}\u{2008}\u{2009}\u{200a}\u{2028}\u{2029}\u{202f}\
    \u{205f}\u{3000}";

/// The key scan of the transaction table: `columns` (the natural key and Accounting_Date, by
/// the server's names) of every row that may be a cost transaction in the `since` bound, in one
/// statement, in no order. No change-stamp condition: it is what a deep sync would see.
///
/// The cost-type condition only ever keeps more rows than the typing's filter does (which runs
/// on the client after it, exactly): a type that contains one of the six cost types (whatever
/// surrounds it, whatever the collation's case rules), or that is NULL or only whitespace (such a
/// row is counted as unreadable, not silently dropped).
pub fn read_keys(
    schema: &str,
    table: &str,
    columns: &[&str],
    transaction_type: &str,
    since: Option<NaiveDate>,
) -> Statement {
    let ty = quote(transaction_type);
    let mut params = Vec::new();
    let mut cost = Vec::new();
    for t in crate::model::cost_type::COST_TRANSACTION_TYPES {
        params.push(SqlParam::Text(format!("%{t}%")));
        cost.push(format!("{ty} LIKE @P{}", params.len()));
    }
    cost.push(format!("{ty} IS NULL"));
    params.push(SqlParam::Text(format!("%[^{WHITESPACE}]%")));
    cost.push(format!("{ty} NOT LIKE @P{}", params.len()));
    let mut conditions = vec![format!("({})", cost.join(" OR "))];
    let window = ReadWindow {
        since,
        changed_since: None,
    };
    conditions.extend(window.conditions(&mut params));
    Statement {
        sql: format!(
            "SELECT {} FROM {} WHERE {}",
            select_list(columns),
            qualified(schema, table),
            conditions.join(" AND ")
        ),
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_scan_selects_the_key_columns_with_cost_types_and_since_and_no_change_stamp() {
        let since = NaiveDate::from_ymd_opt(2024, 2, 10);
        let st = read_keys("dbo", "JCT", &["Job", "Run"], "Transaction_Type", since);
        assert!(
            st.sql.starts_with(
                "SELECT [Job], [Run] FROM [dbo].[JCT] WHERE ([Transaction_Type] LIKE @P1 OR "
            ),
            "{}",
            st.sql
        );
        assert!(st
            .sql
            .contains("[Transaction_Type] IS NULL OR [Transaction_Type] NOT LIKE @P7)"));
        assert!(st
            .sql
            .ends_with("AND ([Accounting_Date] >= @P8 OR [Accounting_Date] IS NULL)"));
        assert!(!st.sql.contains("Date_Stamp"));
        assert_eq!(st.params[0], SqlParam::Text("%AP cost%".into()));
        assert_eq!(st.params[7], SqlParam::Text("2024-02-10".into()));
        let SqlParam::Text(blank) = &st.params[6] else {
            panic!("text")
        };
        // Every character `str::trim` takes off is in the "not only whitespace" set.
        let set: String = blank
            .trim_start_matches("%[^")
            .trim_end_matches("]%")
            .into();
        for c in (0..=0x3000u32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
        {
            assert!(set.contains(c), "{c:?}");
        }
        assert!(set.chars().all(char::is_whitespace));
        let all = read_keys("dbo", "JCT", &["Job"], "Transaction_Type", None);
        assert_eq!(all.params.len(), 7);
        assert!(!all.sql.contains("Accounting_Date"));
    }

    #[test]
    fn identifiers_are_checked_and_bracket_quoted() {
        assert!(check_identifier("tables.job", "JCM_MASTER__JOB").is_ok());
        assert!(check_identifier("tables.job", "_x1").is_ok());
        for bad in [
            "",
            "1abc",
            "a b",
            "a]b",
            "dbo.t",
            "x;DROP TABLE y",
            "a-b",
            "é",
        ] {
            let err = check_identifier("tables.job", bad).unwrap_err();
            assert!(err.contains("tables.job"), "{err}");
        }
        assert_eq!(quote("Job"), "[Job]");
        assert_eq!(quote("a]b"), "[a]]b]");
        assert_eq!(qualified("dbo", "T"), "[dbo].[T]");
    }

    #[test]
    fn partition_query_binds_every_value() {
        let window = ReadWindow {
            since: NaiveDate::from_ymd_opt(2024, 1, 1),
            changed_since: NaiveDate::from_ymd_opt(2024, 3, 1)
                .and_then(|d| d.and_hms_opt(13, 5, 9)),
        };
        let s = read_partition(
            "dbo",
            "JCT_CURRENT__TRANSACTION",
            &["Job", "Amount"],
            &["Extra", "Date_Stamp"],
            &JobKey::Text("1001' OR 1=1 --".into()),
            &window,
        );
        assert_eq!(
            s.sql,
            "SELECT [Job], [Amount] FROM [dbo].[JCT_CURRENT__TRANSACTION] WHERE [Job] = @P1 \
             AND ([Accounting_Date] >= @P2 OR [Accounting_Date] IS NULL) \
             AND ([Date_Stamp] > @P3 OR ([Date_Stamp] = @P3 AND [Time_Stamp] >= @P4)) \
             ORDER BY [Extra], [Date_Stamp]"
        );
        assert!(!s.sql.contains("1001"), "values never reach the SQL text");
        assert_eq!(
            s.params,
            vec![
                SqlParam::Text("1001' OR 1=1 --".into()),
                SqlParam::Text("2024-01-01".into()),
                SqlParam::Text("2024-03-01".into()),
                SqlParam::Text("13:05:09".into()),
            ]
        );
    }

    #[test]
    fn null_job_partition_and_job_list() {
        let s = read_partition(
            "dbo",
            "T",
            &["Job"],
            &[],
            &JobKey::Null,
            &ReadWindow::default(),
        );
        assert_eq!(s.sql, "SELECT [Job] FROM [dbo].[T] WHERE [Job] IS NULL");
        assert!(s.params.is_empty());
        let l = list_jobs("dbo", "T", &ReadWindow::default());
        assert_eq!(l.sql, "SELECT DISTINCT [Job] FROM [dbo].[T] ORDER BY [Job]");
        let c = columns_of("dbo", "T");
        assert_eq!(
            c.params,
            vec![SqlParam::Text("dbo".into()), SqlParam::Text("T".into())]
        );
    }
}
