//! SQL Server values over the wire into Arrow, against the pySQLbridge peer.
//!
//! pySQLbridge puts only some TDS types on the wire: int (INTN 4 and 8), float (FLTN 8),
//! nvarchar, bit, datetime and NULL; a CAST to decimal, numeric, money or real arrives as a float
//! and a CAST to date or datetime2 as a datetime (its own documentation says so, and the first
//! test pins it). The decoding of every other SQL Server type (decimal/numeric, real, money,
//! tinyint, smallint, date, time, datetime2, smalldatetime) is tested on the values tiberius
//! produces for them, in `src/extract/mssql/values.rs`.

mod common;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt64Array};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float64Type, Int64Type, Schema,
    Time64MicrosecondType,
};
use common::peer::{Peer, PEER_USER};
use common::repo;
use jcsync::config::{MssqlEncrypt, MssqlSource};
use jcsync::extract::convert::{parse_date, parse_time};
use jcsync::extract::mssql::{connect, values::ColumnCollector};
use jcsync::extract::{type_batch, RawBatch};
use jcsync::model::schema::{TableRole, SOURCE_LINE};
use jcsync::model::values::date_to_days;
use tiberius::ColumnData;

fn source(peer: &Peer) -> MssqlSource {
    MssqlSource {
        host: "127.0.0.1".into(),
        port: peer.port,
        database: "types".into(),
        user: PEER_USER.into(),
        password_env: peer.password_env.clone(),
        encrypt: MssqlEncrypt::Required,
        trust_server_certificate: true,
        connect_timeout_secs: 20,
        query_timeout_secs: 60,
        partitions: 1,
        schema: "dbo".into(),
    }
}

/// One typed-per-column CSV table: what a Sage copy's columns look like once pySQLbridge
/// has inferred them (numbers become int/float, everything else nvarchar).
fn types_csv() -> String {
    "id,amount_float,amount_text,qty_int,big_int,flag,code,when_text,time_text,empty\n\
     1,2.675,2.675,201,5000000000,1,01-100      ,2024-02-29,14:03:22,\n\
     2,-2999.995,12.5,-7,1,0,Béton ø,2024-01-22 08:30:01,08:30:00.5,\n"
        .to_string()
}

/// Run a query and collect every cell of each column through jcsync's converter.
fn columns(peer: &Peer, sql: &str) -> (Vec<Vec<ColumnData<'static>>>, Vec<ArrayRef>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let src = source(peer);
    let rows = rt.block_on(async {
        let mut client = connect(&src)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", peer.log()));
        client
            .simple_query(sql)
            .await
            .expect("query")
            .into_first_result()
            .await
            .expect("rows")
    });
    let n = rows.first().map(|r| r.len()).unwrap_or(0);
    let mut cells: Vec<Vec<ColumnData<'static>>> = vec![Vec::new(); n];
    for row in rows {
        for (i, c) in row.into_iter().enumerate() {
            cells[i].push(c);
        }
    }
    let arrays = cells
        .iter()
        .map(|col| {
            let mut c = ColumnCollector::default();
            for v in col {
                c.push(v.clone()).expect("one kind");
            }
            c.finish()
        })
        .collect();
    (cells, arrays)
}

#[test]
fn what_the_peer_sends_for_each_sql_type() {
    let peer = Peer::start(&repo().join("fixtures/sage"), &[("TYPES", types_csv())]);
    let (cells, arrays) = columns(
        &peer,
        "SELECT amount_float, qty_int, big_int, CAST(flag AS bit) AS b, code, \
         CAST(amount_text AS decimal(10,3)) AS d, CAST(amount_text AS money) AS m, \
         CAST(amount_text AS real) AS r, CAST(when_text AS datetime) AS dt, \
         CAST(when_text AS date) AS da, CAST(NULL AS int) AS n, empty \
         FROM TYPES ORDER BY id",
    );
    let kinds: Vec<&str> = cells
        .iter()
        .map(|c| match &c[0] {
            ColumnData::F64(_) => "float",
            ColumnData::I32(_) => "int",
            ColumnData::I64(_) => "bigint",
            ColumnData::Bit(_) => "bit",
            ColumnData::String(_) => "nvarchar",
            ColumnData::DateTime(_) => "datetime",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "float", "int", "bigint", "bit", "nvarchar", "float", "float", "float", "datetime",
            "datetime", "int", "nvarchar"
        ]
    );
    // float
    let f = arrays[0].as_primitive::<Float64Type>();
    assert_eq!((f.value(0), f.value(1)), (2.675, -2999.995));
    // int, bigint
    assert_eq!(
        arrays[1].as_primitive::<Int64Type>().values().to_vec(),
        vec![201, -7]
    );
    assert_eq!(
        arrays[2].as_primitive::<Int64Type>().values().to_vec(),
        vec![5_000_000_000, 1]
    );
    // bit → 1 / 0
    assert_eq!(
        arrays[3].as_primitive::<Int64Type>().values().to_vec(),
        vec![1, 0]
    );
    // nvarchar keeps its padding until typing trims it, and its non-ASCII letters.
    let s = arrays[4].as_string::<i32>();
    assert_eq!((s.value(0), s.value(1)), ("01-100      ", "Béton ø"));
    // datetime → Timestamp(µs)
    assert!(matches!(
        arrays[8].data_type(),
        DataType::Timestamp(_, None)
    ));
    // NULL (typed int) and an all-empty column
    assert!(arrays[10].is_null(0) && arrays[10].is_null(1));
    assert!(arrays[11].is_null(0) && arrays[11].is_null(1));
}

/// Type one column as a transaction column through the same `type_batch` as the file source.
fn typed(arrow_name: &str, raw: ArrayRef) -> (ArrayRef, usize) {
    let n = raw.len();
    let mut fields = vec![Field::new(SOURCE_LINE, DataType::UInt64, false)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from_iter_values(1..=n as u64))];
    for s in TableRole::Transaction.columns() {
        let a: ArrayRef = if s.name == arrow_name {
            raw.clone()
        } else {
            let v = match s.name {
                "job" | "transaction_type" => Some("x"),
                "accounting_date" => Some("2024-01-01"),
                "amount" => Some("1"),
                _ => None,
            };
            Arc::new(arrow::array::StringArray::from(vec![v; n]))
        };
        fields.push(Field::new(s.name, a.data_type().clone(), true));
        cols.push(a);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("batch");
    let t = type_batch(
        TableRole::Transaction,
        "T",
        RawBatch {
            batch,
            problems: vec![],
            not_cost_type: Default::default(),
            decoded_lossily: Default::default(),
        },
    )
    .expect("typed");
    let q = t.quarantine.map(|q| q.len()).unwrap_or(0);
    (t.batch.column_by_name(arrow_name).expect("col").clone(), q)
}

#[test]
fn peer_values_type_like_the_file_source() {
    let peer = Peer::start(&repo().join("fixtures/sage"), &[("TYPES", types_csv())]);
    let (_, a) = columns(
        &peer,
        "SELECT amount_float, CAST(amount_text AS decimal(10,3)) AS d, CAST(amount_text AS money) AS m, \
         qty_int, code, CAST(when_text AS datetime) AS dt, when_text, time_text, CAST(flag AS bit) AS b \
         FROM TYPES ORDER BY id",
    );
    // float money: 2.675 → 2.68, -2999.995 → -3000.00 (half away from zero on the decimal text).
    let (m, q) = typed("amount", a[0].clone());
    assert_eq!(q, 0);
    assert_eq!(
        m.as_primitive::<Decimal128Type>().values().to_vec(),
        vec![268, -300_000]
    );
    // decimal and money (sent as float by the peer) give the same cents.
    for i in [1, 2] {
        let (m, _) = typed("amount", a[i].clone());
        assert_eq!(
            m.as_primitive::<Decimal128Type>().values().to_vec(),
            vec![268, 1250]
        );
    }
    // int into an integer column and into a quantity column.
    let (r, _) = typed("run", a[3].clone());
    assert_eq!(
        r.as_primitive::<Int64Type>().values().to_vec(),
        vec![201, -7]
    );
    let (u, _) = typed("units", a[3].clone());
    assert_eq!(u.as_primitive::<Decimal128Type>().value(0), 2_010_000);
    // nvarchar: trimmed.
    let (c, _) = typed("cost_code", a[4].clone());
    assert_eq!(c.as_string::<i32>().value(0), "01-100");
    // datetime → its date part for a date column, its time part for a time column.
    let (d, q) = typed("accounting_date", a[5].clone());
    assert_eq!(q, 0);
    assert_eq!(
        d.as_primitive::<Date32Type>().values().to_vec(),
        vec![
            parse_date("2024-02-29").expect("d"),
            parse_date("2024-01-22").expect("d")
        ]
    );
    let (t, _) = typed("time_stamp", a[5].clone());
    assert_eq!(
        t.as_primitive::<Time64MicrosecondType>().value(1),
        parse_time("08:30:01").expect("t")
    );
    // Dates and times stored as text parse as the file source parses them.
    let (d, _) = typed("date_stamp", a[6].clone());
    assert_eq!(
        d.as_primitive::<Date32Type>().value(0),
        date_to_days(chrono::NaiveDate::from_ymd_opt(2024, 2, 29).expect("d"))
    );
    let (t, _) = typed("time_stamp", a[7].clone());
    assert_eq!(
        t.as_primitive::<Time64MicrosecondType>().values().to_vec(),
        vec![
            parse_time("14:03:22").expect("t"),
            parse_time("08:30:00.5").expect("t")
        ]
    );
    // bit into an integer column.
    let (b, _) = typed("sequence", a[8].clone());
    assert_eq!(b.as_primitive::<Int64Type>().values().to_vec(), vec![1, 0]);
}
