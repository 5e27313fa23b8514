//! `subsidy-ingester`: parses the command line and hands over to the library.

use clap::Parser;
use subsidy_ingester::cli::{execute, Cli};

/// mimalloc instead of glibc's malloc: glibc gives each of the ~20 threads (two stages,
/// librdkafka's, tokio's) its own 64 MiB arena, which kept ~300 MiB of freed batch memory
/// resident; mimalloc returns it and allocates the small per-message buffers faster.
/// `RUSTFLAGS="--cfg heap_profile"` builds without it, for heap profilers that hook
/// `malloc` (heaptrack).
#[cfg(not(heap_profile))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    let filter = cli.command.default_log_filter();
    let log_format = cli.log_format;
    subsidy_ingester::cli::start_process(filter, log_format, execute(cli));
}
