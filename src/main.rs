use clap::Parser;

fn main() -> std::process::ExitCode {
    tune_malloc();
    std::process::ExitCode::from(jcsync::cli::run(jcsync::cli::Cli::parse()))
}

/// Batches are built on one stage's thread and freed on another's. glibc gives every thread an
/// arena of its own (up to 8 per core) and keeps what was freed into it, so the pipeline's peak
/// RSS ends up well above its live heap (201 MiB for a 97 MiB heap on 2M rows); two arenas
/// bring it to 170 MiB at no measurable CPU cost (BENCHMARKS.md).
///
/// glibc also raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB),
/// after which multi-megabyte buffers (Parquet column chunks, key-set spills) come from the
/// arenas, where freed space is kept and fragments: peak RSS then creeps up with the length of
/// the run (10M rows stage only: 149 MiB against 120 for 1M). A fixed 1 MiB threshold keeps
/// those buffers mapped and returned on free (131 against 114 MiB), while a batch's buffers
/// (≤ ~300 KiB at 8192 rows) stay in the arenas: glibc's 128 KiB starting value was as flat but
/// ~5 % slower (an mmap and page faults per column buffer). Done before any thread starts;
/// `MALLOC_ARENA_MAX` and `MALLOC_MMAP_THRESHOLD_`, when set, are left to glibc.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's own tunables, when set, win.
        let unset = |name: &str| std::env::var_os(name).is_none();
        if unset("MALLOC_ARENA_MAX") {
            // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
            unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
        }
        if unset("MALLOC_MMAP_THRESHOLD_") {
            // SAFETY: as above.
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) };
        }
    }
}
