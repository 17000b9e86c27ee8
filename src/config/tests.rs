//! The pipeline file's parsing and validation.

use super::*;

mod parsing {
    use super::*;

    pub(super) const MINIMAL: &str = r#"
company = "DEMO"
[source]
kind = "files"
dir = "fixtures/sage"
format = "csv"
[target]
kind = "dry-run"
"#;

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let c = PipelineConfig::parse(MINIMAL).expect("parses");
        assert_eq!(c.tables.transaction, "JCT_CURRENT__TRANSACTION");
        assert_eq!(c.mappings.transaction_jc.exclude.len(), 8);
        assert_eq!(c.sync.kind, SyncKind::Deep);
        assert_eq!(c.sync.since, Since::BeginningOfTime);
        assert_eq!(c.stage.compression, Compression::Zstd);
        assert_eq!(c.pipeline.channel_capacity, 2);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MINIMAL.replace("format = \"csv\"", "format = \"csv\"\nfromat = 1");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("fromat"), "{err}");
    }

    #[test]
    fn unknown_source_kind_is_named() {
        let text = MINIMAL.replace("kind = \"files\"", "kind = \"ftp\"");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("ftp") && err.contains("files"), "{err}");
    }

    #[test]
    fn bad_since_says_what_was_expected() {
        let text = format!("{MINIMAL}\n[sync]\nsince = \"last tuesday\"\n");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(
            err.contains("beginning-of-time") && err.contains("since"),
            "{err}"
        );
    }

    #[test]
    fn since_date_parses() {
        let text = format!("{MINIMAL}\n[sync]\ntype = \"deep\"\nsince = \"2024-01-01\"\n");
        let c = PipelineConfig::parse(&text).expect("parses");
        assert_eq!(c.sync.since.to_string(), "2024-01-01");
    }

    #[test]
    fn zstd_level_defaults_to_1_and_is_range_checked() {
        assert_eq!(
            PipelineConfig::parse(MINIMAL)
                .expect("parses")
                .stage
                .zstd_level,
            1
        );
        let ok = format!("{MINIMAL}\n[stage]\nzstd_level = 9\n");
        assert_eq!(
            PipelineConfig::parse(&ok).expect("parses").stage.zstd_level,
            9
        );
        for bad in [0, 23] {
            let text = format!("{MINIMAL}\n[stage]\nzstd_level = {bad}\n");
            let err = PipelineConfig::parse(&text).unwrap_err();
            assert!(
                err.contains("stage.zstd_level") && err.contains(&bad.to_string()),
                "{err}"
            );
        }
    }

    #[test]
    fn quarantine_exit_code_may_not_take_a_status_that_means_something_else() {
        for bad in [1u16, 3, 4, 5, 6, 126, 255] {
            let text = format!("{MINIMAL}\n[report]\nquarantine_exit_code = {bad}\n");
            let err = PipelineConfig::parse(&text).unwrap_err();
            assert!(
                err.contains("key `report.quarantine_exit_code`") && err.contains(&bad.to_string()),
                "{bad}: {err}"
            );
        }
        for good in [0u16, 2, 7, 125] {
            let text = format!("{MINIMAL}\n[report]\nquarantine_exit_code = {good}\n");
            let config = PipelineConfig::parse(&text).expect("a free exit status is accepted");
            assert_eq!(u16::from(config.report.quarantine_exit_code), good);
        }
    }

    #[test]
    fn every_numeric_key_has_an_upper_bound_named_in_its_error() {
        // (section, key, first value past the bound)
        let cases: &[(&str, &str, u64)] = &[
            ("pipeline", "batch_rows", MAX_BATCH_ROWS + 1),
            ("pipeline", "batch_rows", 10_000_000_000),
            ("pipeline", "channel_capacity", MAX_CHANNEL_CAPACITY + 1),
            ("stage", "row_group_rows", MAX_ROW_GROUP_ROWS + 1),
            ("stage", "part_rows", MAX_PART_ROWS + 1),
            ("stage", "zstd_level", 23),
            ("sync", "overlap_minutes", MAX_OVERLAP_MINUTES + 1),
            ("load", "hourly_limit", MAX_HOURLY_LIMIT + 1),
            ("load", "spike_limit", MAX_SPIKE_LIMIT + 1),
            ("load", "spike_window_secs", 3_601),
            ("load", "max_projects_in_flight", MAX_PROJECTS_IN_FLIGHT + 1),
            ("load", "request_timeout_secs", 3_601),
            ("load", "max_retry_secs", MAX_RETRY_SECS + 1),
            ("load", "backoff_base_ms", MAX_BACKOFF_MS + 1),
            ("load", "backoff_cap_ms", MAX_BACKOFF_MS + 1),
        ];
        for (section, key, bad) in cases {
            let text = format!("{MINIMAL}\n[{section}]\n{key} = {bad}\n");
            let err = PipelineConfig::parse(&text).unwrap_err();
            assert!(
                err.contains(&format!("key `{section}.{key}`")) && err.contains(&bad.to_string()),
                "{section}.{key} = {bad}: {err}"
            );
        }
        // The bounds themselves are accepted.
        let text = format!(
            "{MINIMAL}\n[pipeline]\nbatch_rows = {MAX_BATCH_ROWS}\n[load]\nhourly_limit = {MAX_HOURLY_LIMIT}\n"
        );
        assert!(PipelineConfig::parse(&text).is_ok());
        let source_cases: &[(&str, u64)] = &[
            ("partitions", MAX_PARTITIONS + 1),
            ("connect_timeout_secs", MAX_CONNECT_TIMEOUT_SECS + 1),
            ("query_timeout_secs", MAX_QUERY_TIMEOUT_SECS + 1),
            ("port", 0),
        ];
        for (key, bad) in source_cases {
            let text = MSSQL.replace("user = ", &format!("{key} = {bad}\nuser = "));
            let err = PipelineConfig::parse(&text).unwrap_err();
            assert!(
                err.contains(&format!("key `source.{key}`")) && err.contains(&bad.to_string()),
                "source.{key} = {bad}: {err}"
            );
        }
        let procore = MINIMAL.replace(
            "kind = \"dry-run\"",
            "kind = \"procore\"\napi_url = \"https://x\"\nlogin_url = \"https://y\"\ncompany_id = 0\n\
             client_id_env = \"A\"\nclient_secret_env = \"B\"",
        );
        let err = PipelineConfig::parse(&procore).unwrap_err();
        assert!(err.contains("key `target.company_id`"), "{err}");
    }

    #[test]
    fn dropping_a_personal_data_column_from_exclude_is_refused() {
        let text = format!(
            "{MINIMAL}\n[mappings.transaction_jc]\nexclude = [\"Commitment_CO\", \"Credit_Account\"]\n"
        );
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("Debit_Account"), "{err}");
    }

    #[test]
    fn excluding_a_needed_column_is_refused() {
        let mut ex: Vec<String> = EXCLUDED_TRANSACTION_COLUMNS
            .iter()
            .map(|c| format!("{c:?}"))
            .collect();
        ex.push("\"Amount\"".into());
        let text = format!(
            "{MINIMAL}\n[mappings.transaction_jc]\nexclude = [{}]\n",
            ex.join(", ")
        );
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("Amount"), "{err}");
    }

    const MSSQL: &str = r#"
company = "DEMO"
[source]
kind = "mssql"
host = "sql01"
database = "Sage"
user = "reader"
password_env = "SAGE_PW"
[target]
kind = "dry-run"
"#;

    #[test]
    fn mssql_source_gets_safe_defaults() {
        let c = PipelineConfig::parse(MSSQL).expect("parses");
        let SourceConfig::Mssql(m) = &c.source else {
            panic!("mssql source")
        };
        assert_eq!(m.port, 1433);
        assert_eq!(m.encrypt, MssqlEncrypt::Required);
        assert!(!m.trust_server_certificate);
        assert_eq!(m.partitions, 4);
        assert_eq!(m.schema, "dbo");
        assert_eq!(c.sync.overlap_minutes, 60);
        assert_eq!(c.source.describe(), "mssql://reader@sql01:1433/Sage/dbo");
    }

    #[test]
    fn mssql_password_in_the_file_is_refused_and_identifiers_are_checked() {
        let text = MSSQL.replace("password_env", "password = \"x\"\npassword_env");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("password"), "{err}");
        let text = format!("{MSSQL}\n[tables]\njob = \"JOB]; DROP TABLE x --\"\n");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("tables.job"), "{err}");
        let text = MSSQL.replace("user = ", "schema = \"db o\"\nuser = ");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("source.schema"), "{err}");
        let text = MSSQL.replace("user = ", "partitions = 0\nuser = ");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("source.partitions"), "{err}");
    }

    #[test]
    fn unknown_key_inside_source_variant_is_refused() {
        let text = MINIMAL.replace("dir = ", "directory = \"x\"\ndir = ");
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("directory"), "{err}");
    }
}

mod pipeline_files {
    use super::*;

    fn load(name: &str) -> Pipeline {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("pipelines")
            .join(name);
        Pipeline::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn bundled_pipeline_files_parse() {
        let demo = load("demo.toml");
        assert_eq!(demo.config.company, "DEMO");
        assert!(
            demo.config.stage.dir.is_absolute(),
            "resolved against the file's directory"
        );
        assert_eq!(demo.sha256.len(), 64);
        assert_eq!(load("deep-sync.toml").config.sync.kind, SyncKind::Deep);
        assert_eq!(
            load("incremental.toml").config.sync.kind,
            SyncKind::Incremental
        );
    }

    #[test]
    fn relative_paths_are_normalized() {
        assert_eq!(
            normalize(Path::new("/a/b/../runs")),
            PathBuf::from("/a/runs")
        );
        assert_eq!(normalize(Path::new("/a/./b")), PathBuf::from("/a/b"));
    }

    #[test]
    fn unreadable_pipeline_names_the_file() {
        let err = Pipeline::load(Path::new("/nonexistent/p.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/p.toml"), "{err}");
    }
}

#[test]
fn max_removal_share_is_a_share() {
    for bad in ["-0.1", "1.5"] {
        let text = format!("{}\n[sync]\nmax_removal_share = {bad}\n", parsing::MINIMAL);
        let err = PipelineConfig::parse(&text).unwrap_err();
        assert!(err.contains("sync.max_removal_share"), "{err}");
    }
    let text = format!(
        "{}\n[sync]\nmax_removal_share = 0.5\nremovals = \"plan\"\nvanished_jobs = \"remove\"\n",
        parsing::MINIMAL
    );
    let c = PipelineConfig::parse(&text).expect("valid");
    assert_eq!(c.sync.removals, RemovalMode::Plan);
    assert_eq!(c.sync.vanished_jobs, VanishedJobs::Remove);
    let text = format!("{}\n[sync]\nremovals = \"maybe\"\n", parsing::MINIMAL);
    assert!(PipelineConfig::parse(&text).is_err());
}

mod notify {
    use super::*;

    fn with(section: &str) -> std::result::Result<PipelineConfig, String> {
        PipelineConfig::parse(&format!("{}\n[notify]\n{section}", parsing::MINIMAL))
    }

    #[test]
    fn no_notify_section_means_no_webhook() {
        let c = PipelineConfig::parse(parsing::MINIMAL).expect("parses");
        assert!(c.notify.is_none());
    }

    #[test]
    fn notify_defaults_to_failures_with_a_10_s_timeout_and_2_retries() {
        let c = with("webhook_url_env = \"JCSYNC_WEBHOOK\"\n").expect("parses");
        let n = c.notify.expect("a [notify] section");
        assert_eq!(n.webhook_url_env, "JCSYNC_WEBHOOK");
        assert_eq!(n.on, NotifyOn::Failure);
        assert_eq!((n.timeout_secs, n.retries), (10, 2));
        let n = with("webhook_url_env = \"W\"\non = \"always\"\ntimeout_secs = 3\nretries = 0\n")
            .expect("parses")
            .notify
            .expect("section");
        assert_eq!((n.on, n.timeout_secs, n.retries), (NotifyOn::Always, 3, 0));
    }

    #[test]
    fn notify_keys_are_checked_and_named() {
        for (section, key) in [
            (
                "webhook_url_env = \"W\"\ntimeout_secs = 0\n",
                "notify.timeout_secs",
            ),
            (
                "webhook_url_env = \"W\"\ntimeout_secs = 121\n",
                "notify.timeout_secs",
            ),
            ("webhook_url_env = \"W\"\nretries = 11\n", "notify.retries"),
            ("webhook_url_env = \" \"\n", "notify.webhook_url_env"),
            ("webhook_url_env = \"W\"\non = \"sometimes\"\n", "sometimes"),
            ("webhook_url = \"https://hooks.example/x\"\n", "webhook_url"),
            ("on = \"always\"\n", "webhook_url_env"),
        ] {
            let err = with(section).unwrap_err();
            assert!(err.contains(key), "{section:?}: {err}");
        }
    }
}
