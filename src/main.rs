//! The `gantry` binary: parses the command line, loads the configuration, runs the roles.

use clap::{Parser, Subcommand};
use gantry::app;
use gantry::auth::dev::DevSigner;
use gantry::config::{AuthConfig, Config, Environment};
use gantry::metrics::Metrics;
use gantry::workers::{self, WorkerName};
use std::process::ExitCode;
use std::sync::Arc;
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
    /// The `templates` codegen engine on a synthetic graph: prints generate/render time p50.
    Codegen {
        /// Nodes in the synthetic graph.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
    },
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(&config.log_filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.environment == Environment::Production {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
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
            init_logging(&config);
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
        Some(Command::Bench { kind }) => {
            init_logging(&config);
            let result = match kind {
                BenchKind::Queue {
                    backend,
                    jobs,
                    concurrency,
                } => gantry::bench::queue(&config, backend, jobs, concurrency).await,
                BenchKind::Outbox { rate, seconds } => {
                    gantry::bench::outbox(&config, rate, seconds).await
                }
                BenchKind::Codegen { nodes } => gantry::bench::codegen(nodes),
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
            if let Err(err) = config.check_production_auth() {
                eprintln!("gantry: {err}");
                return ExitCode::from(2);
            }
            init_logging(&config);
            run_roles(config, cli.server, selected).await
        }
    }
}

fn dev_token(
    config: &Config,
    sub: &str,
    email: Option<&str>,
    admin: bool,
    ttl: Duration,
) -> ExitCode {
    if config.environment == Environment::Production {
        eprintln!("gantry: dev-token is refused when GANTRY_ENV=production; use Keycloak tokens");
        return ExitCode::from(2);
    }
    if let AuthConfig::Keycloak { issuer, .. } = &config.auth {
        eprintln!(
            "gantry: dev-token is refused because KEYCLOAK_ISSUER is set ({issuer}); get a token from Keycloak"
        );
        return ExitCode::from(2);
    }
    if sub.trim().is_empty() {
        eprintln!("gantry: --sub must not be empty");
        return ExitCode::from(2);
    }
    let token = DevSigner::load_or_create(&config.data_dir)
        .and_then(|signer| signer.mint(sub, email, admin, ttl, &config.audience));
    match token {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("gantry: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run_roles(config: Config, server: bool, workers_selected: Vec<WorkerName>) -> ExitCode {
    let db = match app::open_database(&config).await {
        Ok(db) => db,
        Err(err) => {
            tracing::error!(%err, "cannot open or migrate the database");
            return ExitCode::FAILURE;
        }
    };
    let metrics = match Metrics::new() {
        Ok(metrics) => Arc::new(metrics),
        Err(err) => {
            tracing::error!(%err, "cannot register metrics");
            return ExitCode::FAILURE;
        }
    };
    let queues = match gantry::jobs::Queues::connect(&config, &db).await {
        Ok(queues) => queues,
        Err(err) => {
            tracing::error!(%err, "cannot open the job queues");
            return ExitCode::FAILURE;
        }
    };
    let (stop_workers, worker_shutdown) = tokio::sync::watch::channel(false);
    let worker_ctx = workers::WorkerContext {
        db: db.clone(),
        redis: match config
            .redis_url
            .as_deref()
            .map(redis::Client::open)
            .transpose()
        {
            Ok(redis) => redis,
            Err(err) => {
                tracing::error!(%err, "REDIS_URL is not usable");
                return ExitCode::FAILURE;
            }
        },
        config: Arc::new(config.clone()),
        metrics: metrics.clone(),
        queues: queues.clone(),
    };
    let worker_task = (!workers_selected.is_empty())
        .then(|| tokio::spawn(workers::run(worker_ctx, workers_selected, worker_shutdown)));

    let mut code = ExitCode::SUCCESS;
    // Every process serves `/health/*` and `/metrics`; `--server` adds the REST API. Rocket
    // handles SIGINT/SIGTERM itself: it stops accepting, lets in-flight requests finish within
    // the grace period, then returns, and the workers are stopped after it.
    let rocket = if server {
        app::build(&config, db, metrics, queues).await
    } else {
        app::build_ops(&config, db, metrics)
    };
    match rocket {
        Ok(rocket) => {
            tracing::info!(address = %config.address, port = config.port, api = server, "serving");
            if let Err(err) = rocket.launch().await {
                tracing::error!(%err, "server failed");
                code = ExitCode::FAILURE;
            }
        }
        Err(err) => {
            tracing::error!(%err, "cannot build the server");
            code = ExitCode::FAILURE;
        }
    }
    tracing::info!("shutting down");
    let _ = stop_workers.send(true);
    if let Some(task) = worker_task {
        if tokio::time::timeout(config.shutdown_timeout, task)
            .await
            .is_err()
        {
            tracing::warn!("workers did not stop within GANTRY_SHUTDOWN_TIMEOUT");
        }
    }
    code
}
