//! Builds the Rocket application: state, routes, docs, catchers and fairings.

use crate::api;
use crate::auth::dev::DevSigner;
use crate::auth::guard::SeenUsers;
use crate::auth::TokenValidator;
use crate::config::{AuthConfig, Config};
use crate::error::ApiError;
use crate::error::CachedError;
use crate::metrics::Metrics;
pub use crate::state::AppState;
use crate::store;
use rocket::fairing::{Fairing, Info, Kind};
use rocket::figment::Figment;
use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::{catch, catchers, get, routes, Build, Data, Response, Rocket, State};
use rocket_okapi::rapidoc::{make_rapidoc, GeneralConfig, HideShowConfig, RapiDocConfig};
use rocket_okapi::settings::UrlObject;
use rocket_okapi::swagger_ui::{make_swagger_ui, SwaggerUIConfig};
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use std::time::Instant;

/// What the operational endpoints (health, metrics) need; served by every process.
pub struct OpsState {
    /// The system of record.
    pub db: DatabaseConnection,
    /// Redis, when configured.
    pub redis: Option<redis::Client>,
    /// Every metric.
    pub metrics: Arc<Metrics>,
}

/// Errors while building the application.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// `REDIS_URL` could not be used.
    #[error("REDIS_URL: {0}")]
    Redis(#[from] redis::RedisError),
    /// The dev signing key could not be loaded.
    #[error(transparent)]
    DevKey(#[from] crate::auth::dev::DevKeyError),
    /// The token validator could not be set up (its HTTP client).
    #[error("auth: {0}")]
    Auth(#[from] crate::auth::AuthError),
    /// The metrics registry refused a metric.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The OpenAPI document could not be serialized.
    #[error("openapi: {0}")]
    OpenApi(#[from] serde_json::Error),
}

/// The token validator the configuration asks for.
pub fn token_validator(config: &Config) -> Result<TokenValidator, BuildError> {
    Ok(match &config.auth {
        AuthConfig::Keycloak { issuer, jwks_uri } => {
            TokenValidator::keycloak(issuer, &config.audience, jwks_uri.clone())?
        }
        AuthConfig::Embedded => {
            DevSigner::load_or_create(&config.data_dir)?.validator(&config.audience)
        }
    })
}

/// Builds the server on an already migrated database.
pub async fn build(
    config: &Config,
    db: DatabaseConnection,
    metrics: Arc<Metrics>,
    queues: crate::jobs::Queues,
    secrets: Arc<crate::sealed::SecretsCipher>,
) -> Result<Rocket<Build>, BuildError> {
    let ops = ops_state(config, db.clone(), metrics)?;
    let validator = token_validator(config)?;
    if let Err(err) = validator.warm_up().await {
        // Not fatal: Keycloak may come up after us; the first request retries.
        tracing::warn!(%err, "could not fetch the JWKS at start-up");
    }
    let (api_routes, spec) = api::routes_and_spec();
    let openapi_json = serde_json::to_string_pretty(&spec)?;
    let access_cache = std::sync::Arc::new(crate::auth::access_cache::AccessCache::default());
    let project_lists =
        std::sync::Arc::new(crate::resources::list_cache::ProjectListCache::default());
    let state = AppState {
        db: db.clone(),
        validator,
        queues,
        kubeconfig_issuer: match &config.auth {
            crate::config::AuthConfig::Keycloak { issuer, .. } => issuer.clone(),
            crate::config::AuthConfig::Embedded => crate::auth::dev::DEV_ISSUER.to_owned(),
        },
        kubeconfig_client_id: config.provisioner.kubeconfig_client_id.clone(),
        codegen: config.codegen.clone(),
        backup_storage: config.backup.storage.clone(),
        users_seen: SeenUsers::default(),
        openapi_json,
        outbound: crate::webhooks::outbound::OutboundPolicy::new(config.outbound_allow.clone()),
        health: config.health.clone(),
        secrets,
        limits: config.limits.clone(),
        write_limiter: crate::auth::rate::WriteLimiter::new(
            config.limits.writes_per_second,
            config.limits.write_burst,
        ),
        open_streams: crate::auth::streams::StreamCounter::default(),
        event_hub: crate::outbox::hub::EventHub::start(
            db.clone(),
            access_cache.clone(),
            project_lists.clone(),
        ),
        access_cache,
        project_lists,
    };

    let console = api::console::ConsoleSettings::new(config)?;
    Ok(base(config)
        .manage(ops)
        .manage(state)
        .manage(console)
        .mount(
            "/",
            without_metrics_when_apart(config, api_routes)
                .into_iter()
                .map(scoped_route)
                .collect::<Vec<_>>(),
        )
        .mount("/", api::console::static_routes())
        .mount("/", routes![openapi_json])
        .mount(
            "/swagger-ui/",
            make_swagger_ui(&SwaggerUIConfig {
                url: "/v1/openapi.json".to_owned(),
                ..SwaggerUIConfig::default()
            }),
        )
        .mount(
            "/rapidoc/",
            make_rapidoc(&RapiDocConfig {
                general: GeneralConfig {
                    spec_urls: vec![UrlObject::new("Gantry", "/v1/openapi.json")],
                    ..GeneralConfig::default()
                },
                hide_show: HideShowConfig {
                    allow_spec_url_load: false,
                    allow_spec_file_load: false,
                    ..HideShowConfig::default()
                },
                ..RapiDocConfig::default()
            }),
        ))
}

/// The operational surface only (`/health/*`, `/metrics`), for worker-only processes, so
/// Prometheus can scrape and Kubernetes can probe them like API processes.
pub fn build_ops(
    config: &Config,
    db: DatabaseConnection,
    metrics: Arc<Metrics>,
) -> Result<Rocket<Build>, BuildError> {
    let ops = ops_state(config, db, metrics)?;
    Ok(base(config).manage(ops).mount(
        "/",
        without_metrics_when_apart(config, api::health::ops_routes()),
    ))
}

/// `/metrics` alone on `GANTRY_METRICS_PORT` (same address), when that is set.
pub fn build_metrics(
    config: &Config,
    db: DatabaseConnection,
    metrics: Arc<Metrics>,
) -> Result<Option<Rocket<Build>>, BuildError> {
    let Some(port) = config.metrics_port else {
        return Ok(None);
    };
    let ops = ops_state(config, db, metrics)?;
    Ok(Some(
        base_on(config, port)
            .manage(ops)
            .mount("/", api::health::metrics_routes()),
    ))
}

/// Drops the `/metrics` route from `routes` when it is served on its own port instead.
fn without_metrics_when_apart(config: &Config, routes: Vec<rocket::Route>) -> Vec<rocket::Route> {
    if config.metrics_port.is_none() {
        return routes;
    }
    routes
        .into_iter()
        .filter(|route| route.uri.path() != api::health::METRICS_PATH)
        .collect()
}

fn ops_state(
    config: &Config,
    db: DatabaseConnection,
    metrics: Arc<Metrics>,
) -> Result<OpsState, BuildError> {
    let redis = config
        .redis_url
        .as_deref()
        .map(redis::Client::open)
        .transpose()?;
    Ok(OpsState { db, redis, metrics })
}

/// Rocket configured from our `Config`, with the catcher and the request observer.
fn base(config: &Config) -> Rocket<Build> {
    base_on(config, config.port)
}

/// [`base`] listening on `port`.
fn base_on(config: &Config, port: u16) -> Rocket<Build> {
    let figment = Figment::from(rocket::Config::default())
        .merge(("address", config.address))
        .merge(("port", port))
        .merge(("ident", "gantry"))
        .merge(("log_level", rocket::config::LogLevel::Off))
        .merge(("cli_colors", false))
        .merge(("shutdown.grace", config.shutdown_timeout.as_secs().max(1)))
        .merge(("shutdown.mercy", 5));
    rocket::custom(figment)
        .attach(RequestObserver)
        .register("/", catchers![problem_catcher])
}

/// The OpenAPI document.
#[get("/v1/openapi.json")]
fn openapi_json(state: &State<AppState>) -> (ContentType, String) {
    (ContentType::JSON, state.openapi_json.clone())
}

/// Answers every error status with problem+json: the guard's own error when one was kept.
#[catch(default)]
fn problem_catcher(status: Status, req: &Request<'_>) -> ApiError {
    let kept = req
        .local_cache(|| CachedError(std::sync::Mutex::new(None)))
        .0
        .lock()
        .ok()
        .and_then(|mut slot| slot.take());
    if kept.is_none() && (status == Status::NotFound || status == Status::UnprocessableEntity) {
        // No route for this method, but the path is known: 405 naming the methods it has.
        // (422: a route of another resource took the path but its parameters did not parse,
        // as `GET /v1/admin/jobs/retry` does `/v1/admin/jobs/<id>`.)
        if let Some(allowed) = allowed_methods(req, Some(req.method())) {
            return ApiError::MethodNotAllowed(allowed);
        }
    }
    if kept.is_none() && status == Status::BadRequest && req.route().is_none() {
        // Rocket refuses a method it does not know (`QUERY`, `FOO`) before routing and hands
        // the catcher a salvaged GET: on a known path that is a 405 too. (An unparsable URI is
        // salvaged as `/`, which has no route, so it stays a 400.)
        if req.uri().path() != "/" {
            if let Some(allowed) = allowed_methods(req, None) {
                return ApiError::MethodNotAllowed(allowed);
            }
        }
    }
    kept.unwrap_or_else(|| ApiError::for_status(status))
}

/// The methods routes declare for the request's path (comma-separated, `HEAD` with `GET`),
/// or `None` when no route has this path or `method` is among them.
fn allowed_methods(req: &Request<'_>, method: Option<rocket::http::Method>) -> Option<String> {
    let path: Vec<&str> = req
        .uri()
        .path()
        .segments()
        .filter(|s| !s.is_empty())
        .collect();
    // Only the most specific templates count: `/v1/admin/jobs/retry` is its own resource, not
    // an `<id>` of `/v1/admin/jobs/<id>` (as the document lists it).
    let matching: Vec<(usize, &'static str)> = req
        .rocket()
        .routes()
        .filter(|route| template_matches(route.uri.path(), &path))
        .map(|route| (static_segments(route.uri.path()), route.method.as_str()))
        .collect();
    let most_specific = matching.iter().map(|(rank, _)| *rank).max().unwrap_or(0);
    let mut methods: Vec<&'static str> = matching
        .into_iter()
        .filter(|(rank, _)| *rank == most_specific)
        .map(|(_, method)| method)
        .collect();
    if methods.is_empty() || method.is_some_and(|m| methods.contains(&m.as_str())) {
        return None;
    }
    if methods.contains(&"GET") {
        methods.push("HEAD");
    }
    methods.sort_unstable();
    methods.dedup();
    Some(methods.join(", "))
}

/// How many segments of a route path template are literal (not `<param>`).
fn static_segments(template: &str) -> usize {
    template
        .split('/')
        .filter(|s| !s.is_empty() && !s.starts_with('<'))
        .count()
}

/// Whether a route path template (`/v1/orgs/<org_id>`, `/files/<path..>`) matches `path`.
fn template_matches(template: &str, path: &[&str]) -> bool {
    let parts: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    let mut i = 0;
    for part in &parts {
        if part.starts_with('<') && part.ends_with("..>") {
            return true;
        }
        let Some(segment) = path.get(i) else {
            return false;
        };
        if !(part.starts_with('<') && part.ends_with('>')) && part != segment {
            return false;
        }
        i += 1;
    }
    i == path.len()
}

/// Start time of a request, for the duration histogram.
struct RequestStart(Instant);

/// Request id, from `X-Request-Id` or generated.
struct RequestId(String);

/// Records metrics and logs each request with its id and route template.
struct RequestObserver;

#[rocket::async_trait]
impl Fairing for RequestObserver {
    fn info(&self) -> Info {
        Info {
            name: "request metrics and logs",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _data: &mut Data<'_>) {
        req.local_cache(|| RequestStart(Instant::now()));
        let id = req
            .headers()
            .get_one("X-Request-Id")
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        req.local_cache(|| RequestId(id));
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let elapsed = req.local_cache(|| RequestStart(Instant::now())).0.elapsed();
        let request_id = &req.local_cache(|| RequestId(String::new())).0;
        // The route template, never the raw path, keeps label cardinality bounded.
        let route = req
            .route()
            .map(|r| r.uri.origin.path().as_str().to_owned())
            .unwrap_or_else(|| "unmatched".to_owned());
        let method = req.method().as_str();
        let status = res.status().code;
        if let Some(state) = req.rocket().state::<OpsState>() {
            state
                .metrics
                .http_requests_total
                .with_label_values(&[route.as_str(), method, &status.to_string()])
                .inc();
            state
                .metrics
                .http_request_duration_seconds
                .with_label_values(&[route.as_str(), method])
                .observe(elapsed.as_secs_f64());
        }
        res.set_header(Header::new("X-Request-Id", request_id.clone()));
        tracing::info!(
            request_id = %request_id,
            method,
            route = %route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    }
}

/// Runs a route's handler (guards included) inside its request's [`crate::store::scope`], then
/// records what the handler could not: a 403, or a write that no write transaction recorded.
#[derive(Clone)]
struct ScopedHandler(Box<dyn rocket::route::Handler>);

fn scoped_route(mut route: rocket::Route) -> rocket::Route {
    route.handler = Box::new(ScopedHandler(route.handler));
    route
}

#[rocket::async_trait]
impl rocket::route::Handler for ScopedHandler {
    async fn handle<'r>(&self, req: &'r Request<'_>, data: Data<'r>) -> rocket::route::Outcome<'r> {
        let Some(route) = req.route() else {
            return self.0.handle(req, data).await;
        };
        let call = crate::audit::RouteCall {
            method: req.method().as_str(),
            template: route.uri.origin.path().as_str().to_owned(),
            segments: req.uri().path().segments().map(str::to_owned).collect(),
        };
        let scope = Arc::new(crate::audit::RequestScope::request(
            req.local_cache(|| RequestId(uuid::Uuid::new_v4().to_string()))
                .0
                .clone(),
            req.client_ip().map(|ip| ip.to_string()),
            req.headers().get_one("User-Agent").map(str::to_owned),
            call,
        ));
        let outcome = crate::audit::scoped(scope.clone(), self.0.handle(req, data)).await;
        let (status, created_id) = match &outcome {
            rocket::outcome::Outcome::Success(res) => (
                res.status().code,
                res.headers()
                    .get_one("Location")
                    .and_then(|l| l.rsplit('/').next())
                    .map(str::to_owned),
            ),
            rocket::outcome::Outcome::Error(status) => (status.code, None),
            rocket::outcome::Outcome::Forward((_, status)) => (status.code, None),
        };
        if let Some(state) = req.rocket().state::<AppState>() {
            // Committed by now, and the answer has not left: this process forgets the project
            // lists the request changed, so the client reads its own writes.
            state.project_lists.forget_changed(&scope.touched());
            if let Err(err) =
                crate::audit::record_after_response(&state.db, &scope, status, created_id).await
            {
                tracing::error!(%err, "could not write an audit row");
            }
        }
        outcome
    }
}

/// Opens and migrates the database named by the configuration.
pub async fn open_database(config: &Config) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let db = store::connect(&config.database_url).await?;
    store::migrate(&db).await?;
    Ok(db)
}
