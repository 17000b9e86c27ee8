use clap::Parser;

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    std::process::ExitCode::from(jcsync::cli::run(jcsync::cli::Cli::parse()))
}

/// Batches are built on one stage's thread and freed on another's. glibc gives every thread an
/// arena of its own (up to 8 per core) and keeps what was freed into it, so the pipeline's peak
/// RSS ends up well above its live heap (201 MiB for a 97 MiB heap on 2M rows); two arenas
/// bring it to 170 MiB at no measurable CPU cost (BENCHMARKS.md). Done before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
