"""DuckDB's equivalent of jcsync's extract -> project -> enrich -> stage, on the same files.

Reads the five Sage CSVs, drops the eight excluded columns, types and trims the values, keeps the
six cost types, does the four left joins of DOMAIN.md section 2 (Job, GL prefix and GL account
through the job, Invoice on AP cost rows only, the '.~' template row ignored) and writes one zstd
Parquet file. Usage: duckdb_anchor.py DATA_DIR OUT_FILE
"""

import sys
import time

import duckdb

data, out = sys.argv[1], sys.argv[2]


def csv(table):
    return f"read_csv('{data}/{table}.csv', header=true, all_varchar=true)"


def text(col):
    return f"nullif(trim({col}), '')"


sql = f"""
COPY (
  WITH t AS (
    SELECT * EXCLUDE (Commitment_CO, Credit_Account, Debit_Account, Employee, Equipment,
                      Pay_ID, Ref_1, Ref_2)
    FROM {csv('JCT_CURRENT__TRANSACTION')}
  ),
  job AS (SELECT {text('Job')} AS job, {text('Description')} AS description,
                 {text('Status')} AS status, {text('Cost_Account_Prefix')} AS cost_account_prefix,
                 {text('Cost_Account')} AS cost_account
          FROM {csv('JCM_MASTER__JOB')}),
  prefix AS (SELECT {text('Account_Prefix_A')} AS account_prefix,
                    {text('Account_Prefix_A_Description')} AS description
             FROM {csv('GLM_MASTER__ACCOUNT_PREFIX_A')}),
  account AS (SELECT {text('Account')} AS account, {text('Account_Title')} AS title,
                     {text('Account_Type')} AS account_type
              FROM {csv('GLM_MASTER__ACCOUNT')}),
  invoice AS (SELECT {text('Vendor')} AS vendor, {text('Invoice')} AS invoice,
                     {text('Description')} AS description, {text('Status')} AS status,
                     TRY_CAST(Invoice_Date AS DATE) AS invoice_date,
                     TRY_CAST(Date_Received AS DATE) AS date_received,
                     TRY_CAST(Payment_Date AS DATE) AS payment_date
              FROM {csv('APM_MASTER__INVOICE')}
              WHERE NOT (trim(Vendor) = '.~' AND trim(Invoice) = '.~')),
  typed AS (
    SELECT {text('Job')} AS job, {text('Extra')} AS extra, {text('Cost_Code')} AS cost_code,
           {text('Category')} AS category, {text('Transaction_Type')} AS transaction_type,
           TRY_CAST(Transaction_Date AS DATE) AS transaction_date,
           TRY_CAST(Accounting_Date AS DATE) AS accounting_date,
           {text('Description')} AS description,
           TRY_CAST(Units AS DECIMAL(18,4)) AS units,
           TRY_CAST(Unit_Cost AS DECIMAL(18,4)) AS unit_cost,
           TRY_CAST(Amount AS DECIMAL(18,2)) AS amount,
           {text('Vendor')} AS vendor, {text('Invoice')} AS invoice,
           TRY_CAST(Dist_Sequence AS BIGINT) AS dist_sequence,
           {text('Application_of_Origin')} AS application_of_origin, {text('Batch')} AS batch,
           TRY_CAST(Run AS BIGINT) AS run, TRY_CAST(Sequence AS BIGINT) AS sequence,
           {text('Commitment')} AS commitment,
           TRY_CAST(Commitment_Line_Item AS BIGINT) AS commitment_line_item,
           TRY_CAST(Period_End_Date AS DATE) AS period_end_date,
           TRY_CAST(Date_Stamp AS DATE) AS date_stamp,
           TRY_CAST(Time_Stamp AS TIME) AS time_stamp
    FROM t
    WHERE trim(Transaction_Type) IN ('AP cost', 'PR cost', 'EQ cost', 'JC cost', 'IV cost', 'SM cost')
  )
  SELECT typed.*,
         job.description AS job_description, job.status AS job_status,
         job.cost_account_prefix AS job_cost_account_prefix, job.cost_account AS job_cost_account,
         prefix.account_prefix AS gl_prefix, prefix.description AS gl_prefix_description,
         account.account AS gl_account, account.title AS gl_account_title,
         account.account_type AS gl_account_type,
         invoice.invoice_date, invoice.date_received AS invoice_received_date,
         invoice.payment_date AS invoice_payment_date,
         invoice.description AS invoice_description, invoice.status AS invoice_status
  FROM typed
  LEFT JOIN job ON typed.job = job.job
  LEFT JOIN prefix ON job.cost_account_prefix = prefix.account_prefix
  LEFT JOIN account ON job.cost_account = account.account
  LEFT JOIN invoice ON typed.transaction_type = 'AP cost'
                   AND typed.vendor = invoice.vendor AND typed.invoice = invoice.invoice
) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
"""

started = time.perf_counter()
con = duckdb.connect()
con.execute(sql)
rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
print(f"duckdb {duckdb.__version__}: {rows} rows staged in {time.perf_counter() - started:.2f} s",
      file=sys.stderr)
