//! The `gantry` binary: parses the command line and dispatches to the library
//! (`gantry::startup` builds and runs the roles); exit codes and messages are decided here.

use clap::{Parser, Subcommand};
use gantry::app;
use gantry::config::Config;
use gantry::startup::{self, Application, Roles};
use gantry::workers::WorkerName;
use std::process::ExitCode;
use std::time::Duration;

/// Gantry: REST API and background workers of a multi-tenant Kubernetes control plane.
#[derive(Debug, Parser)]
#[command(name = "gantry", version, about, long_about = None)]
struct Cli {
    /// Run the REST API server.
    #[arg(long)]
    server: bool,
    /// Run these workers (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    workers: Vec<WorkerName>,
    /// Run every worker.
    #[arg(long)]
    all_workers: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI 3 document (JSON) to stdout.
    PrintOpenapi,
    /// Print a bearer token signed by the local dev key (embedded mode only).
    DevToken {
        /// The user's `sub` (also used as `preferred_username`).
        #[arg(long)]
        sub: String,
        /// The user's email.
        #[arg(long)]
        email: Option<String>,
        /// Grant the platform admin realm role (`gantry-admin`).
        #[arg(long)]
        admin: bool,
        /// Lifetime, e.g. `1h`, `30m`, `7d`.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Seal every stored secret again under GANTRY_SECRETS_KEY (after a rotation: the old key
    /// in GANTRY_SECRETS_KEY_PREVIOUS), then exit.
    RotateSecrets,
    /// Measure the job queues or the outbox publisher on this machine.
    Bench {
        #[command(subcommand)]
        kind: BenchKind,
    },
}

#[derive(Debug, Subcommand)]
enum BenchKind {
    /// No-op jobs through a queue backend: prints jobs/s and enqueue→done latency p50/p99.
    Queue {
        /// Queue backend (redis needs REDIS_URL; postgres needs DATABASE_URL=postgres://…).
        #[arg(long, value_enum)]
        backend: gantry::bench::QueueBackend,
        /// How many jobs.
        #[arg(long, default_value_t = 5000)]
        jobs: u64,
        /// Jobs run at once.
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// Soak run: the jobs in ten rounds; also prints the resident set after the first
        /// round and at the end.
        #[arg(long)]
        soak: bool,
    },
    /// Fairness: a flood of jobs queued on one queue, then one job on another; prints how
    /// long that one waited to start and how much of the flood was still queued.
    Fairness {
        /// Queue backend (as for `queue`).
        #[arg(long, value_enum)]
        backend: gantry::bench::QueueBackend,
        /// Jobs in the flood.
        #[arg(long, default_value_t = 100_000)]
        flood: u64,
    },
    /// Events written at a fixed rate while a publisher runs: prints publish lag p50/p99.
    Outbox {
        /// Events per second.
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// How long to write.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// HTTP health checks against a local target with one poller: prints checks/s, schedule
    /// delay p50/p99, CPU and RSS.
    Health {
        /// How many checks.
        #[arg(long, default_value_t = 10_000)]
        checks: u64,
        /// Their interval (`60s`).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
        /// How long to run.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
    },
    /// The `templates` codegen engine on a synthetic graph: prints generate/render time p50.
    Codegen {
        /// Nodes in the synthetic graph.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
    },
    /// Backups of synthetic objects (first, unchanged second, restore) beside
    /// `tar | zstd | openssl enc`: prints MB/s of each.
    Backup {
        /// Objects in the synthetic workspace.
        #[arg(long, default_value_t = 20_000)]
        objects: usize,
    },
    /// Idle event streams against a `gantry --server` child (embedded mode): prints the
    /// server's CPU share and extra resident set with the streams open, and the fan-out of one
    /// event to all of them.
    Sse {
        /// Streams held open at once (one caller; the per-user stream quota is lifted).
        #[arg(long, default_value_t = 1000)]
        streams: u64,
        /// How long the streams sit idle while the server's CPU is measured.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    gantry::install_crypto_provider();
    let cli = Cli::parse();

    if let Some(Command::PrintOpenapi) = cli.command {
        let (_, spec) = gantry::api::routes_and_spec();
        return match serde_json::to_string_pretty(&spec) {
            Ok(json) => {
                use std::io::Write;
                // A closed pipe (`| head`) is the reader's choice, not an error worth a panic.
                let _ = writeln!(std::io::stdout().lock(), "{json}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("gantry: cannot serialize the OpenAPI document: {err}");
                ExitCode::FAILURE
            }
        };
    }

    let config = match Config::load() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("gantry: {err}");
            return ExitCode::from(2);
        }
    };

    match cli.command {
        Some(Command::DevToken {
            sub,
            email,
            admin,
            ttl,
        }) => dev_token(&config, &sub, email.as_deref(), admin, ttl),
        Some(Command::Migrate) => {
            startup::init_logging(&config);
            match app::open_database(&config).await {
                Ok(_) => {
                    tracing::info!("migrations applied");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("gantry: migration failed: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::PrintOpenapi) => ExitCode::SUCCESS,
        Some(Command::RotateSecrets) => {
            startup::init_logging(&config);
            match startup::rotate_secrets(&config).await {
                Ok(done) => {
                    println!(
                        "re-sealed {} org secrets and {} webhook secrets",
                        done.secrets, done.webhooks
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("gantry: rotate-secrets failed: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Bench { kind }) => {
            startup::init_logging(&config);
            let result = match kind {
                BenchKind::Queue {
                    backend,
                    jobs,
                    concurrency,
                    soak,
                } => gantry::bench::queue(&config, backend, jobs, concurrency, soak).await,
                BenchKind::Fairness { backend, flood } => {
                    gantry::bench::fairness(&config, backend, flood).await
                }
                BenchKind::Outbox { rate, seconds } => {
                    gantry::bench::outbox(&config, rate, seconds).await
                }
                BenchKind::Codegen { nodes } => gantry::bench::codegen(nodes),
                BenchKind::Health {
                    checks,
                    interval,
                    seconds,
                } => gantry::bench_health::health(&config, checks, interval, seconds).await,
                BenchKind::Sse { streams, seconds } => {
                    gantry::bench_sse::sse(streams, seconds).await
                }
                BenchKind::Backup { objects } => gantry::workers::backup::bench::run(objects)
                    .await
                    .map_err(|e| gantry::bench::BenchError::Setup(e.to_string())),
            };
            match result {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("gantry: bench failed: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            let mut selected = if cli.all_workers {
                WorkerName::all()
            } else {
                cli.workers
            };
            selected.sort();
            selected.dedup();
            if !cli.server && selected.is_empty() {
                use clap::CommandFactory;
                let _ = Cli::command().print_help();
                eprintln!("\ngantry: choose a role: --server, --workers NAMES or --all-workers");
                return ExitCode::from(2);
            }
            if let Err(err) = config
                .check_production_auth()
                .and_then(|()| config.check_production_secrets())
            {
                eprintln!("gantry: {err}");
                return ExitCode::from(2);
            }
            // Only the API accepts tokens; worker-only processes serve /health and /metrics.
            if cli.server {
                if let Err(err) = config.check_dev_auth_exposure() {
                    eprintln!("gantry: {err}");
                    return ExitCode::from(2);
                }
            }
            startup::init_logging(&config);
            let roles = Roles {
                server: cli.server,
                workers: selected,
            };
            run(config, roles).await
        }
    }
}

/// `gantry dev-token`: prints the token, or the refusal (exit 2) or failure (exit 1).
fn dev_token(
    config: &Config,
    sub: &str,
    email: Option<&str>,
    admin: bool,
    ttl: Duration,
) -> ExitCode {
    match startup::mint_dev_token(config, sub, email, admin, ttl) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("gantry: {err}");
            if err.is_refusal() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Builds the application for `roles` and runs it until it is stopped.
async fn run(config: Config, roles: Roles) -> ExitCode {
    let application = match Application::build(config, roles).await {
        Ok(application) => application,
        Err(err) => {
            let cause = std::error::Error::source(&err)
                .map(ToString::to_string)
                .unwrap_or_default();
            tracing::error!(err = %cause, "{err}");
            return ExitCode::FAILURE;
        }
    };
    match application.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        // Already logged where it happened, before the workers were stopped.
        Err(_) => ExitCode::FAILURE,
    }
}
