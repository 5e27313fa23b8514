//! `subsidy-ingester`: parses the command line and hands over to the library.

use clap::Parser;
use subsidy_ingester::cli::{execute, Cli};

/// mimalloc instead of glibc's malloc: glibc gives each of the ~20 threads (two stages,
/// librdkafka's, tokio's) its own 64 MiB arena, which kept ~300 MiB of freed batch memory
/// resident; mimalloc returns it and allocates the small per-message buffers faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SUBSIDY_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(cli.command.default_log_filter())
            }),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            std::process::exit(1);
        }
    };
    if let Err(error) = runtime.block_on(execute(cli)) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
