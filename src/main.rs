//! `subsidy-ingester`: parses the command line and hands over to the library.

use clap::Parser;
use subsidy_ingester::cli::{execute, Cli};

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
