"""Check a run's staged invoice columns against the invoice table, independently of jcsync.

    target/bench-venv/bin/python benches/invoice_join_check.py DATA_DIR RUN_DIR

DuckDB reads DATA_DIR/APM_MASTER__INVOICE.csv (trimmed keys, the '.~' template row dropped, the
first row of a repeated (vendor, invoice) kept) and left-joins it to every staged AP cost row of
RUN_DIR; it prints how many AP rows matched an invoice and how many carry invoice columns that
differ from the table's (IS DISTINCT FROM, so NULLs count), and how many non-AP rows carry any.
Used to check the spilled invoice index (a 10M company) against the in-memory join.
"""
import duckdb, sys
data, staged = sys.argv[1], sys.argv[2]
c = duckdb.connect()
c.execute("SET preserve_insertion_order=true")
t = lambda col: f"nullif(trim({col}), '')"
c.execute(f"""CREATE TABLE inv AS SELECT * FROM (
  SELECT {t('Vendor')} v, {t('Invoice')} i, TRY_CAST(Invoice_Date AS DATE) d1, TRY_CAST(Date_Received AS DATE) d2,
         TRY_CAST(Payment_Date AS DATE) d3, {t('Description')} descr, {t('Status')} st,
         row_number() OVER () AS rn
  FROM read_csv('{data}/APM_MASTER__INVOICE.csv', header=true, all_varchar=true))
  WHERE NOT (v = '.~' AND i = '.~')""")
c.execute("CREATE TABLE firsts AS SELECT * FROM inv QUALIFY row_number() OVER (PARTITION BY v, i ORDER BY rn) = 1")
print("invoices", c.execute("select count(*) from inv").fetchall()[0][0], "distinct", c.execute("select count(*) from firsts").fetchall()[0][0])
r = c.execute(f"""SELECT count(*) AS ap_rows,
  count(f.v) AS matched,
  count(*) FILTER (WHERE s.invoice_date IS DISTINCT FROM f.d1 OR s.invoice_received_date IS DISTINCT FROM f.d2
     OR s.invoice_payment_date IS DISTINCT FROM f.d3 OR s.invoice_description IS DISTINCT FROM f.descr
     OR s.invoice_status IS DISTINCT FROM f.st) AS mismatched
  FROM read_parquet('{staged}/staged/*.parquet') s
  LEFT JOIN firsts f ON s.vendor = f.v AND s.invoice = f.i
  WHERE s.transaction_type = 'AP cost'""").fetchall()
print("ap rows, matched, mismatched:", r)
r = c.execute(f"""SELECT count(*) FROM read_parquet('{staged}/staged/*.parquet') s
  WHERE s.transaction_type <> 'AP cost' AND (s.invoice_date IS NOT NULL OR s.invoice_description IS NOT NULL OR s.invoice_status IS NOT NULL)""").fetchall()
print("non-AP rows with invoice columns:", r)
