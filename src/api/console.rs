//! The operator console: its static files under `/console/` (compiled into the binary, so the
//! single binary needs no files at run time), how it logs in (`/v1/console/config`), and the
//! embedded-mode dev log-in (`/v1/console/dev-token`). Everything else the console shows comes
//! from the same REST API, with the same authorization, as the SDK.

use crate::auth::dev::DevSigner;
use crate::config::{AuthConfig, Config, Environment};
use crate::error::ApiError;
use rocket::http::uri::Origin;
use rocket::http::{ContentType, Header};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Redirect, Responder, Response};
use rocket::serde::json::Json;
use rocket::{get, post, routes, State};
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::request::{OpenApiFromRequest, RequestHeaderInput};
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The Keycloak client the console logs in with (public, authorization code + PKCE).
pub const CONSOLE_CLIENT_ID: &str = "gantry-console";
/// Subject of the tokens the dev log-in mints: the one local user of an embedded install.
pub const LOCAL_USER: &str = "local";
/// Lifetime of a dev log-in token.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(8 * 3600);

/// How the console logs in, decided once from the configuration.
pub struct ConsoleSettings {
    /// The realm, when Keycloak is configured.
    issuer: Option<String>,
    /// The dev signer, only in embedded development mode.
    dev_signer: Option<DevSigner>,
    /// Audience minted tokens carry.
    audience: String,
}

impl ConsoleSettings {
    /// From the configuration: dev log-in exists only with embedded auth outside production.
    pub fn new(config: &Config) -> Result<Self, crate::auth::dev::DevKeyError> {
        let (issuer, dev_signer) = match (&config.auth, config.environment) {
            (AuthConfig::Keycloak { issuer, .. }, _) => (Some(issuer.clone()), None),
            (AuthConfig::Embedded, Environment::Development) => {
                (None, Some(DevSigner::load_or_create(&config.data_dir)?))
            }
            (AuthConfig::Embedded, Environment::Production) => (None, None),
        };
        Ok(Self {
            issuer,
            dev_signer,
            audience: config.audience.clone(),
        })
    }
}

/// How the console should log in.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConsoleConfig {
    /// `keycloak` (OIDC authorization code + PKCE) or `embedded` (dev log-in).
    pub auth: String,
    /// The realm URL, with Keycloak.
    pub issuer: Option<String>,
    /// The public OIDC client id, with Keycloak.
    pub client_id: Option<String>,
    /// Whether `POST /v1/console/dev-token` is available (embedded development mode; it then
    /// still answers only loopback clients).
    pub dev_login: bool,
}

/// How the console logs in; needs no token.
#[openapi(tag = "Console")]
#[get("/v1/console/config")]
pub fn console_config(settings: &State<ConsoleSettings>) -> Json<ConsoleConfig> {
    Json(match &settings.issuer {
        Some(issuer) => ConsoleConfig {
            auth: "keycloak".to_owned(),
            issuer: Some(issuer.clone()),
            client_id: Some(CONSOLE_CLIENT_ID.to_owned()),
            dev_login: false,
        },
        None => ConsoleConfig {
            auth: "embedded".to_owned(),
            issuer: None,
            client_id: None,
            dev_login: settings.dev_signer.is_some(),
        },
    })
}

/// A minted dev token.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DevToken {
    /// The bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Its subject.
    pub sub: String,
}

/// The TCP peer of the request (if known), never a forwarded-for header (which a client can
/// forge).
pub struct Peer(pub Option<SocketAddr>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Peer {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ApiError> {
        Outcome::Success(Peer(req.remote()))
    }
}

impl<'r> OpenApiFromRequest<'r> for Peer {
    fn from_request_input(
        _gen: &mut OpenApiGenerator,
        _name: String,
        _required: bool,
    ) -> rocket_okapi::Result<RequestHeaderInput> {
        Ok(RequestHeaderInput::None)
    }
}

const NOT_LOOPBACK: &str = "the dev log-in only answers loopback clients";

/// Embedded development mode only: a token for the local user (`sub` `local`, with
/// `gantry-admin`), for the console's log-in. Answers only clients on a loopback address
/// (404 when dev log-in is off: with Keycloak or `GANTRY_ENV=production`).
#[openapi(tag = "Console")]
#[post("/v1/console/dev-token")]
pub fn dev_token(
    settings: &State<ConsoleSettings>,
    peer: Peer,
) -> Result<Json<DevToken>, ApiError> {
    let Some(signer) = &settings.dev_signer else {
        return Err(ApiError::NotFound);
    };
    if !peer.0.is_some_and(|addr| addr.ip().is_loopback()) {
        return Err(ApiError::Forbidden(NOT_LOOPBACK.to_owned()));
    }
    let token = signer
        .mint(LOCAL_USER, None, true, DEV_TOKEN_TTL, &settings.audience)
        .map_err(|err| ApiError::Internal(anyhow::Error::new(err)))?;
    Ok(Json(DevToken {
        access_token: token,
        token_type: "Bearer".to_owned(),
        expires_in: DEV_TOKEN_TTL.as_secs(),
        sub: LOCAL_USER.to_owned(),
    }))
}

/// API routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings: console_config, dev_token]
}

/// One static file of the console.
struct Asset {
    name: &'static str,
    content_type: ContentType,
    body: &'static str,
}

/// Every file of the console, compiled in.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: ContentType::HTML,
        body: include_str!("console/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: ContentType::JavaScript,
        body: include_str!("console/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: ContentType::JavaScript,
        body: include_str!("console/api.js"),
    },
    Asset {
        name: "pages.js",
        content_type: ContentType::JavaScript,
        body: include_str!("console/pages.js"),
    },
    Asset {
        name: "style.css",
        content_type: ContentType::CSS,
        body: include_str!("console/style.css"),
    },
];

/// A console file, with headers that keep it from being framed or sniffed.
pub struct AssetResponse(&'static Asset);

impl<'r> Responder<'r, 'static> for AssetResponse {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        // The only other origin the console talks to is the realm (OIDC token exchange).
        let realm = req
            .rocket()
            .state::<ConsoleSettings>()
            .and_then(|s| s.issuer.as_deref())
            .and_then(|issuer| reqwest::Url::parse(issuer).ok())
            .map(|url| format!(" {}", url.origin().ascii_serialization()))
            .unwrap_or_default();
        Response::build()
            .header(self.0.content_type.clone())
            .header(Header::new("Cache-Control", "no-cache"))
            .header(Header::new("X-Content-Type-Options", "nosniff"))
            .header(Header::new("X-Frame-Options", "DENY"))
            .header(Header::new("Referrer-Policy", "no-referrer"))
            .header(Header::new(
                "Content-Security-Policy",
                format!(
                    "default-src 'self'; connect-src 'self'{realm}; img-src 'self' data:; \
                     frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
                ),
            ))
            .sized_body(self.0.body.len(), std::io::Cursor::new(self.0.body))
            .ok()
    }
}

fn asset(name: &str) -> Option<AssetResponse> {
    ASSETS.iter().find(|a| a.name == name).map(AssetResponse)
}

/// A console file, or the redirect from `/console` to `/console/`.
pub enum ConsoleResponse {
    /// A file.
    Asset(AssetResponse),
    /// A redirect to the page's canonical URL `/console/`, so relative asset paths resolve.
    ToIndex,
}

impl<'r> Responder<'r, 'static> for ConsoleResponse {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        match self {
            ConsoleResponse::Asset(asset) => asset.respond_to(req),
            ConsoleResponse::ToIndex => Redirect::permanent("/console/").respond_to(req),
        }
    }
}

/// `/console/` is the page (every view is a `#/…` route inside it), `/console/<file>` a file
/// of it (unknown names are 404), and `/console` redirects to `/console/`.
#[get("/console/<path..>")]
fn console_file(path: std::path::PathBuf, uri: &Origin<'_>) -> Option<ConsoleResponse> {
    match path.to_str()? {
        "" if !uri.path().ends_with('/') => Some(ConsoleResponse::ToIndex),
        "" => asset("index.html").map(ConsoleResponse::Asset),
        name => asset(name).map(ConsoleResponse::Asset),
    }
}

/// The static routes of the console (not part of the API document).
pub fn static_routes() -> Vec<rocket::Route> {
    routes![console_file]
}
