//! The web server: the avatar page, its assets, and the Open-LLM-VTuber WebSocket at
//! `/client-ws` (routes and security here; the OLV wire format in [`olv_messages`], the
//! daemon's events in OLV form in [`olv_events`], one connection in [`session`]).
//!
//! Loopback by default. Every request's `Host` is checked while bound to loopback (DNS
//! rebinding), every WebSocket upgrade's `Origin` always (a page on the internet must
//! not drive the daemon), and the access token unless `web.auth: none` (on loopback
//! too: other users of this machine must not drive the character, nor the MCP tools
//! behind it). The token is `web.token`, else a random one kept in
//! `<data dir>/private/web-token`; a page opened with `?token=` gets it as an HttpOnly
//! cookie and is sent on to its clean address. Binding anything else needs TLS and a
//! token. The page's own files are compiled in; the Live2D runtime and models come
//! from the assets folder. See `docs/web-protocol.md`.

pub mod auth;
pub mod avatars;
pub mod cors;
pub mod olv_events;
pub mod olv_messages;
pub mod session;
pub mod socket;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_server::accept::NoDelayAcceptor;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TlsConfig, WebAuth, WebConfig};
use crate::conversation::character_files::character_dir;
use crate::services::Services;
use crate::speech::text::sentences::SplitterConfig;
use auth::{TokenAuth, load_or_create_token, page_url, query_token, token_dir, without_token};
use avatars::Characters;
use olv_events::{Translator, WebEvent, start_hub};

/// Why the web server cannot start. Each message names the setting to change.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "web.host is `{host}`, which other machines can reach, so the web server needs TLS and an access token: set {missing} in conf.yaml (or set web.host: 127.0.0.1 to serve this machine only)"
    )]
    Insecure { host: String, missing: String },
    #[error(
        "cannot serve the web page on {addr}: port {port} is already in use; set web.port to a free port (0 picks one) or web.enabled: false"
    )]
    PortInUse { addr: String, port: u16 },
    #[error("cannot serve the web page on {addr}: {source} (check web.host and web.port)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("web.tls: {0}")]
    Tls(String),
    #[error("{0} ({hint})", hint = .0.hint())]
    Inherited(#[from] crate::socket_activation::SocketError),
    #[error("web.token: {0}")]
    Token(String),
    #[error(
        "web.live2d_core_url `{0}` is not an http(s) address nor a path on this server (e.g. https://cubism.live2d.com/sdk-web/cubismcore/live2dcubismcore.min.js)"
    )]
    CoreUrl(String),
    #[error(
        "cannot keep the web access token in {path}: {source} (check that folder's owner and permissions, or set web.token in conf.yaml)"
    )]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a usable web access token: {why}; delete it and restart the daemon to make a new one, or set web.token in conf.yaml"
    )]
    BadTokenFile { path: String, why: String },
}

/// What every request handler shares.
pub struct WebState {
    pub services: Arc<Services>,
    pub(crate) hub: broadcast::Sender<Arc<WebEvent>>,
    pub characters: Arc<Characters>,
    pub assets_dir: PathBuf,
    /// The Live2D models (`web.live2d_models_dir`), served at `/live2d-models/`.
    pub models_dir: PathBuf,
    /// Background images (`/bg/`, `fetch-backgrounds`).
    pub backgrounds_dir: PathBuf,
    /// The access token's checks; `None`: `web.auth: none`.
    auth: Option<TokenAuth>,
    /// Bound to loopback: `Host` must name loopback (DNS-rebinding defence).
    loopback: bool,
    port: u16,
    tls: bool,
    pub max_message_bytes: usize,
    pub max_messages_per_sec: u32,
    pub shutdown: CancellationToken,
}

/// Checked settings, before anything is bound.
struct Prepared {
    token: TokenSource,
    tls: Option<rustls::ServerConfig>,
}

/// Where the access token comes from.
enum TokenSource {
    /// `web.token`.
    Configured(String),
    /// The token file in the data folder, made at first start.
    Generated,
    /// `web.auth: none`.
    Off,
}

/// Whether `host` (as written in `web.host`) only reaches this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks the `web:` section without binding anything: the daemon refuses to start on
/// these errors (an exposed server without TLS and a token, unreadable TLS files, a
/// `secret:` token that does not resolve).
pub fn check(config: &Config) -> Result<(), WebError> {
    if config.web.enabled {
        prepare(config)?;
    }
    Ok(())
}

fn prepare(config: &Config) -> Result<Prepared, WebError> {
    let cfg = &config.web;
    if let Some(url) = cfg.live2d_core_url.as_deref() {
        core_url_origin(url)?;
    }
    let token = match (cfg.auth, resolve_token(config)?) {
        (WebAuth::Token, Some(t)) => TokenSource::Configured(t),
        (WebAuth::Token, None) => TokenSource::Generated,
        (WebAuth::None, None) => TokenSource::Off,
        (WebAuth::None, Some(_)) => {
            return Err(WebError::Token(
                "web.auth is `none`, which turns the token off, but web.token is set: remove web.token, or set web.auth: token".into(),
            ));
        }
    };
    if !is_loopback_host(&cfg.host) {
        let mut missing = Vec::new();
        if cfg.tls.is_none() {
            missing.push("web.tls.cert, web.tls.key");
        }
        if matches!(token, TokenSource::Off) {
            missing.push("web.auth: token");
        }
        if !missing.is_empty() {
            return Err(WebError::Insecure {
                host: cfg.host.clone(),
                missing: missing.join(" and "),
            });
        }
    }
    let tls = cfg.tls.as_ref().map(tls::load).transpose()?;
    Ok(Prepared { token, tls })
}

/// The token's final value: `secret:NAME` from the secrets file or the environment
/// (`${VAR}` was substituted when the config was read). Empty means none.
fn resolve_token(config: &Config) -> Result<Option<String>, WebError> {
    let Some(raw) = config.web.token.as_deref().map(str::trim) else {
        return Ok(None);
    };
    if raw.is_empty() {
        return Ok(None);
    }
    let value = if raw.starts_with("secret:") {
        let secrets = match &config.mcp.secrets_file {
            Some(path) => crate::mcp::secrets::Secrets::load(path)
                .map_err(|e| WebError::Token(e.to_string()))?,
            None => crate::mcp::secrets::Secrets::default(),
        };
        secrets.resolve(raw).map_err(|e| {
            WebError::Token(format!(
                "{e} (put it in the file named by mcp.secrets_file, or export it)"
            ))
        })?
    } else {
        raw.to_owned()
    };
    let value = value.trim().to_owned();
    Ok((!value.is_empty()).then_some(value))
}

/// The origin `web.live2d_core_url` loads from, to allow in the page's script policy:
/// `None` for a path on this server. An error for anything but an absolute `http(s)`
/// address with a host, or a path: a page must never be told to run script from a
/// `data:` or `javascript:` address.
pub fn core_url_origin(url: &str) -> Result<Option<String>, WebError> {
    let url = url.trim();
    if url.starts_with('/') && !url.starts_with("//") {
        return Ok(None);
    }
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(Some(u.origin().ascii_serialization()))
        }
        _ => Err(WebError::CoreUrl(url.to_owned())),
    }
}

/// The address to show for a bound server.
pub fn url(cfg: &WebConfig, addr: SocketAddr) -> String {
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let host = if addr.ip().is_unspecified() || cfg.host.trim().eq_ignore_ascii_case("localhost") {
        "localhost".to_owned()
    } else {
        match addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        }
    };
    format!("{scheme}://{host}:{}/", addr.port())
}

/// `<assets_dir>`: `web.assets_dir`, else `$XDG_DATA_HOME/vtuber/web`.
pub fn assets_dir(cfg: &WebConfig) -> PathBuf {
    cfg.assets_dir
        .clone()
        .unwrap_or_else(|| vtuber_shared::paths::data_dir().join("web"))
}

/// `web.live2d_models_dir`, else `<assets_dir>/live2d-models`.
pub fn models_dir(cfg: &WebConfig) -> PathBuf {
    cfg.live2d_models_dir
        .clone()
        .unwrap_or_else(|| assets_dir(cfg).join("live2d-models"))
}

/// `web.backgrounds_dir`, else `<assets_dir>/bg`.
pub fn backgrounds_dir(cfg: &WebConfig) -> PathBuf {
    cfg.backgrounds_dir
        .clone()
        .unwrap_or_else(|| assets_dir(cfg).join("bg"))
}

/// A bound web server, not serving yet: its address is known before the daemon's
/// services are made, so `status` can report it from the start.
pub struct BoundWeb {
    pub addr: SocketAddr,
    /// The page's address, for the log: no token in it.
    pub url: String,
    /// The address to open: `url` with `?token=` when a token is needed. A secret, for
    /// `status` on the local socket only.
    pub page_url: String,
    token: Option<String>,
    server: Listening,
    /// The live TLS settings and the files they came from, to reload on renewal.
    certificate: Option<(axum_server::tls_rustls::RustlsConfig, TlsConfig)>,
}

/// The bound listener, with TLS or without. Accepted connections set `TCP_NODELAY`:
/// the protocol is many small frames (a sentence's text, a control message), and with
/// Nagle's algorithm each waited for the previous one's ACK, which the client's delayed
/// ACK holds ~40 ms.
enum Listening {
    Plain(axum_server::Server<SocketAddr, NoDelayAcceptor>),
    Tls(axum_server::Server<SocketAddr, axum_server::tls_rustls::RustlsAcceptor<NoDelayAcceptor>>),
}

/// Checks the settings, makes or reads the access token and binds the port, or serves on
/// `inherited`, the port the service manager opened (socket activation): a listening
/// TCP socket, held to the same rule as `web.host` (off loopback, TLS and a token).
/// Must run inside the tokio runtime.
pub async fn bind(
    config: &Config,
    inherited: Option<std::os::fd::OwnedFd>,
) -> Result<BoundWeb, WebError> {
    let cfg = &config.web;
    let prepared = prepare(config)?;
    let token = match prepared.token {
        TokenSource::Configured(t) => Some(t),
        TokenSource::Off => None,
        TokenSource::Generated => {
            let dir = token_dir();
            let shown = dir.display().to_string();
            let made = tokio::task::spawn_blocking(move || load_or_create_token(&dir))
                .await
                .map_err(|e| WebError::TokenFile {
                    path: shown,
                    source: std::io::Error::other(e.to_string()),
                })?;
            Some(made?)
        }
    };
    let listener = match inherited {
        Some(fd) => adopt(fd, cfg, prepared.tls.is_some(), token.is_some())?,
        None => bind_port(cfg)?,
    };
    let addr = listener.local_addr().map_err(|source| WebError::Bind {
        addr: format!("{}:{}", cfg.host, cfg.port),
        source,
    })?;
    let shown = addr.to_string();
    let bind_error = |source| WebError::Bind {
        addr: shown.clone(),
        source,
    };
    let mut certificate = None;
    let server = match (prepared.tls, &cfg.tls) {
        (Some(tls), Some(files)) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
            certificate = Some((rustls.clone(), files.clone()));
            Listening::Tls(
                axum_server::tls_rustls::from_tcp_rustls(listener, rustls)
                    .map_err(bind_error)?
                    .map(|tls| tls.acceptor(NoDelayAcceptor)),
            )
        }
        _ => Listening::Plain(
            axum_server::from_tcp(listener)
                .map_err(bind_error)?
                .acceptor(NoDelayAcceptor),
        ),
    };
    let url = url(cfg, addr);
    let page_url = page_url(&url, token.as_deref());
    Ok(BoundWeb {
        addr,
        url,
        page_url,
        token,
        server,
        certificate,
    })
}

/// Binds `web.host`:`web.port`.
fn bind_port(cfg: &WebConfig) -> Result<std::net::TcpListener, WebError> {
    let host = cfg
        .host
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let shown = if host.contains(':') {
        format!("[{host}]:{}", cfg.port)
    } else {
        format!("{host}:{}", cfg.port)
    };
    std::net::TcpListener::bind((host, cfg.port)).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            WebError::PortInUse {
                addr: shown,
                port: cfg.port,
            }
        } else {
            WebError::Bind {
                addr: shown,
                source,
            }
        }
    })
}

/// The service manager's web port: a listening TCP socket, and off loopback only with
/// TLS and a token (the rule `web.host` is held to). `web.host` and `web.port` do not
/// apply; a differing port is mentioned.
fn adopt(
    fd: std::os::fd::OwnedFd,
    cfg: &WebConfig,
    tls: bool,
    token: bool,
) -> Result<std::net::TcpListener, WebError> {
    let listener = crate::socket_activation::tcp_listener(fd)?;
    let addr = listener.local_addr().map_err(|source| WebError::Bind {
        addr: "the service manager's web socket".into(),
        source,
    })?;
    if !addr.ip().is_loopback() {
        let mut missing = Vec::new();
        if !tls {
            missing.push("web.tls.cert, web.tls.key");
        }
        if !token {
            missing.push("web.auth: token");
        }
        if !missing.is_empty() {
            return Err(WebError::Insecure {
                host: format!("{} (from the service manager's web socket)", addr.ip()),
                missing: missing.join(" and "),
            });
        }
    }
    if cfg.port != 0 && cfg.port != addr.port() {
        tracing::info!(
            passed = %addr,
            configured_port = cfg.port,
            "serving the web page on the service manager's socket, not web.port"
        );
    }
    Ok(listener)
}

/// Serves the page and the WebSocket from `services` until `shutdown` fires; the task
/// ends after that.
pub fn serve(
    bound: BoundWeb,
    services: Arc<Services>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let config = services.config.get();
    let cfg = &config.web;
    let addr = bound.addr;
    if let Some((live, files)) = bound.certificate.clone() {
        tokio::spawn(tls::watch(live, files, shutdown.clone()));
    }
    let assets_dir = assets_dir(cfg);
    let characters = Arc::new(Characters::load(
        character_dir(&config),
        assets_dir.clone(),
        models_dir(cfg),
        config.web.live2d_core_url.clone(),
    ));
    let translator = Translator::new(
        characters.clone(),
        services.conversation.view().character,
        services.speech.is_some(),
        SplitterConfig {
            first_min_chars: config.speech.tts.first_sentence_min_chars,
            max_chars: config.speech.tts.max_sentence_chars,
        },
    );
    let hub = start_hub(
        &services.bus,
        translator,
        config.daemon.client_queue,
        shutdown.clone(),
    );
    let state = Arc::new(WebState {
        hub,
        characters,
        assets_dir,
        models_dir: models_dir(cfg),
        backgrounds_dir: backgrounds_dir(cfg),
        auth: bound
            .token
            .as_deref()
            .map(|t| TokenAuth::new(t, addr.port())),
        loopback: addr.ip().is_loopback(),
        port: addr.port(),
        tls: matches!(bound.server, Listening::Tls(_)),
        max_message_bytes: cfg.max_message_bytes.max(1024),
        max_messages_per_sec: cfg.max_messages_per_sec,
        shutdown: shutdown.clone(),
        services,
    });
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let server: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> =
        match bound.server {
            Listening::Tls(s) => Box::pin(s.handle(handle.clone()).serve(app)),
            Listening::Plain(s) => Box::pin(s.handle(handle.clone()).serve(app)),
        };
    tokio::spawn(async move {
        let stopper = tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.graceful_shutdown(Some(Duration::from_secs(2)));
        });
        if let Err(e) = server.await {
            tracing::error!("web server stopped: {e}");
        }
        stopper.abort();
    })
}

fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{file}", get(asset))
        .route("/libs/{*path}", get(lib_file))
        .route("/live2d-models/info", get(models_info))
        .route("/live2d-models/{*path}", get(model_file))
        .route("/bg/{*path}", get(background_file))
        .route("/api/page-config", get(page_config))
        .route("/client-ws", get(client_ws))
        .fallback(|| async { plain(StatusCode::NOT_FOUND, "not found") })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.into(),
    )
        .into_response()
}

fn json(value: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        value.to_string(),
    )
        .into_response()
}

/// The request's `Host` (HTTP/1.1 header, or the HTTP/2 authority).
fn host_of(req_headers: &HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    req_headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()))
}

/// Loopback names with our port: what a browser on this machine sends.
fn loopback_host_allowed(host: &str, port: u16) -> bool {
    let host = host.trim().to_ascii_lowercase();
    ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .any(|name| host == format!("{name}:{port}"))
}

/// Host check and security headers, for every route.
async fn guard(State(web): State<Arc<WebState>>, req: Request, next: Next) -> Response {
    if web.loopback {
        let host = host_of(req.headers(), req.uri()).unwrap_or_default();
        if !loopback_host_allowed(&host, web.port) {
            tracing::warn!(host = %host, path = %req.uri().path(), "refused a request for a foreign Host (DNS rebinding?)");
            return with_security_headers(plain(
                StatusCode::FORBIDDEN,
                format!(
                    "Host `{host}` is not this server: open http://127.0.0.1:{}/ or http://localhost:{}/",
                    web.port, web.port
                ),
            ));
        }
    }
    // The asset routes answer cross-origin reads from the origins that may use the
    // WebSocket (see `cors` for why not every origin).
    if cors::is_asset_path(req.uri().path()) {
        let host = host_of(req.headers(), req.uri()).unwrap_or_default();
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .map(str::to_owned);
        let allowed = origin
            .as_deref()
            .is_some_and(|o| origin_allowed(&web, Some(o), &host));
        if cors::is_preflight(req.method(), req.headers()) {
            if !allowed {
                tracing::debug!(origin = ?origin, path = %req.uri().path(), "refused a CORS preflight from a foreign origin");
            }
            return with_security_headers(cors::preflight(
                req.headers(),
                origin.as_deref().unwrap_or_default(),
                allowed,
            ));
        }
        let mut resp = next.run(req).await;
        cors::decorate(&mut resp, origin.as_deref(), allowed);
        return with_security_headers(resp);
    }
    // Read at each request: a reload may have changed web.live2d_core_url (checked
    // when the config was loaded; a bad one here just adds nothing).
    let core_origin = web
        .services
        .config
        .get()
        .web
        .live2d_core_url
        .as_deref()
        .and_then(|u| core_url_origin(u).ok().flatten());
    with_csp(next.run(req).await, core_origin.as_deref())
}

/// The page's Content-Security-Policy: only our own origin's scripts and connections,
/// plus the origin of `web.live2d_core_url` for scripts (Live2D's CDN, when set). pixi.js
/// 6 compiles its shaders' uniform uploaders with `new Function`, and Cubism Core 5
/// instantiates WebAssembly, hence 'unsafe-eval'.
fn content_security_policy(core_origin: Option<&str>) -> String {
    let extra = core_origin.map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'unsafe-eval'{extra}; style-src 'self'; \
         img-src 'self' data: blob:; media-src 'self' data: blob:; connect-src 'self'; \
         worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
}

fn with_security_headers(resp: Response) -> Response {
    with_csp(resp, None)
}

/// The security headers, with `core_origin` allowed to serve scripts.
fn with_csp(mut resp: Response, core_origin: Option<&str>) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The token may sit in the page's address; never hand it to other sites.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // No framing by other sites (clickjacking the approval buttons).
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(v) = HeaderValue::from_str(&content_security_policy(core_origin)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// The page's own files, compiled in so the binary is self-contained. A unit test
/// checks this list against `daemon/web/`.
const PAGE_FILES: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../../web/index.html")),
    ("app.js", include_bytes!("../../web/app.js")),
    (
        "avatar-fallback.js",
        include_bytes!("../../web/avatar-fallback.js"),
    ),
    ("connection.js", include_bytes!("../../web/connection.js")),
    ("live2d.js", include_bytes!("../../web/live2d.js")),
    ("mic-worklet.js", include_bytes!("../../web/mic-worklet.js")),
    ("mic.js", include_bytes!("../../web/mic.js")),
    ("player.js", include_bytes!("../../web/player.js")),
    ("style.css", include_bytes!("../../web/style.css")),
];

fn page_file(name: &str) -> Option<&'static [u8]> {
    PAGE_FILES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Content type by file extension.
pub fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "map" => "application/json",
        _ => "application/octet-stream",
    }
}

fn bytes_response(name: &str, body: impl Into<Body>) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type(name)),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body.into(),
    )
        .into_response()
}

/// The page. Opened with `?token=`: a valid token becomes the cookie and the browser
/// goes on to the same address without it (out of the address bar and history); a
/// wrong one is refused with what to do.
async fn index(
    State(web): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
) -> Response {
    if let (Some(auth), Some(token)) = (&web.auth, query_token(&uri)) {
        if !auth.token_matches(&token) {
            tracing::warn!(%peer, "refused to open the page with a wrong token");
            return (
                StatusCode::UNAUTHORIZED,
                [
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                "The access token in this address is not this daemon's (it changes when web.token changes or its token file is deleted). Run `vtuber web url` for the current address.",
            )
                .into_response();
        }
        let clean = without_token(&uri);
        let mut resp =
            (StatusCode::SEE_OTHER, [(header::CACHE_CONTROL, "no-store")]).into_response();
        let headers = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&clean) {
            headers.insert(header::LOCATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&auth.set_cookie(web.tls)) {
            headers.insert(header::SET_COOKIE, v);
        }
        return resp;
    }
    match page_file("index.html") {
        Some(b) => bytes_response("index.html", b),
        None => plain(StatusCode::NOT_FOUND, "the page is missing from this build"),
    }
}

async fn asset(UrlPath(file): UrlPath<String>) -> Response {
    match page_file(&file) {
        Some(b) => bytes_response(&file, b),
        None => plain(StatusCode::NOT_FOUND, format!("no asset `{file}`")),
    }
}

/// `base/rel` when `rel` stays inside `base`: plain names only (no `..`, no hidden or
/// empty parts, no backslashes or NUL).
pub fn safe_join(base: &Path, rel: &str) -> Option<PathBuf> {
    if rel.is_empty() || rel.contains('\\') || rel.contains('\0') {
        return None;
    }
    let mut out = base.to_path_buf();
    for part in rel.split('/') {
        if part.is_empty() || part.starts_with('.') {
            return None;
        }
        out.push(part);
    }
    Some(out)
}

async fn file_from(dir: PathBuf, rel: &str, what: &str) -> Response {
    let Some(path) = safe_join(&dir, rel) else {
        tracing::warn!(path = %rel, "refused a path outside the assets folder");
        return plain(StatusCode::BAD_REQUEST, "bad path");
    };
    match tokio::fs::metadata(&path).await {
        Ok(m) if m.is_file() => match tokio::fs::read(&path).await {
            Ok(bytes) => bytes_response(rel, bytes),
            Err(e) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read {rel}: {e}"),
            ),
        },
        _ => plain(
            StatusCode::NOT_FOUND,
            format!(
                "no {what} `{rel}` in {} (install the web assets: scripts/fetch-web-assets.sh, or set web.assets_dir)",
                dir.display()
            ),
        ),
    }
}

async fn lib_file(State(web): State<Arc<WebState>>, UrlPath(path): UrlPath<String>) -> Response {
    file_from(web.assets_dir.join("libs"), &path, "library").await
}

async fn model_file(State(web): State<Arc<WebState>>, UrlPath(path): UrlPath<String>) -> Response {
    file_from(web.models_dir.clone(), &path, "model file").await
}

async fn background_file(
    State(web): State<Arc<WebState>>,
    UrlPath(path): UrlPath<String>,
) -> Response {
    file_from(web.backgrounds_dir.clone(), &path, "background").await
}

/// Plain files in `dir` (not hidden), sorted; empty when there is no such folder.
pub fn list_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The installed models, as OLV lists them.
fn list_models(dir: &Path) -> serde_json::Value {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let characters: Vec<serde_json::Value> = names
        .into_iter()
        .filter_map(|name| {
            let folder = dir.join(&name);
            let model = [
                format!("{name}.model3.json"),
                format!("runtime/{name}.model3.json"),
                format!("{name}.model.json"),
            ]
            .into_iter()
            .find(|f| folder.join(f).is_file())?;
            let avatar = ["png", "jpg", "jpeg"]
                .iter()
                .map(|ext| format!("{name}.{ext}"))
                .find(|f| folder.join(f).is_file())
                .map(|f| format!("/live2d-models/{name}/{f}"));
            Some(serde_json::json!({
                "name": name,
                "avatar": avatar,
                "model_path": format!("/live2d-models/{name}/{model}"),
            }))
        })
        .collect();
    serde_json::json!({
        "type": "live2d-models/info",
        "count": characters.len(),
        "characters": characters,
    })
}

async fn models_info(State(web): State<Arc<WebState>>) -> Response {
    let dir = web.models_dir.clone();
    let info = tokio::task::spawn_blocking(move || list_models(&dir))
        .await
        .unwrap_or_else(
            |_| serde_json::json!({"type": "live2d-models/info", "count": 0, "characters": []}),
        );
    json(info)
}

/// Public: what the page needs before it connects, including whether its cookie (or
/// token) is good, so it can say how to get in rather than retry in vain.
async fn page_config(
    State(web): State<Arc<WebState>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let libs = web.assets_dir.join("libs");
    let is_file = |name: &str| {
        let path = libs.join(name);
        async move { tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()) }
    };
    let core_url = web
        .services
        .config
        .get()
        .web
        .live2d_core_url
        .clone()
        .filter(|u| !u.trim().is_empty());
    let live2d_runtime = is_file(avatars::CUBISM2_RUNTIME).await;
    let cubism4_runtime = is_file("cubism4.min.js").await
        && (core_url.is_some() || is_file(avatars::CUBISM_CORE).await);
    json(serde_json::json!({
        "live2d_runtime": live2d_runtime,
        "cubism4_runtime": cubism4_runtime,
        "live2d_core_url": core_url,
        "token_required": web.auth.is_some(),
        "authorized": web.auth.as_ref().is_none_or(|a| a.allows(&headers, &uri)),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Whether `origin` is the page's own (the origin of `host` on this server).
fn is_own_origin(web: &WebState, origin: &str, host: &str) -> bool {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let scheme = if web.tls { "https" } else { "http" };
    origin == format!("{scheme}://{}", host.trim().to_ascii_lowercase())
}

/// Whether a WebSocket upgrade's `Origin` may drive the daemon: none (not a browser),
/// the page's own origin, or one listed in `web.allowed_origins`.
fn origin_allowed(web: &WebState, origin: Option<&str>, host: &str) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    // Read at each connection: a reload may have changed the list.
    is_own_origin(web, origin, host)
        || web
            .services
            .config
            .get()
            .web
            .allowed_origins
            .iter()
            .any(|o| {
                o.trim()
                    .trim_end_matches('/')
                    .eq_ignore_ascii_case(origin.trim().trim_end_matches('/'))
            })
}

async fn client_ws(
    State(web): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    ws: Result<socket::Upgrade, socket::Rejection>,
) -> Response {
    let host = host_of(&headers, &uri).unwrap_or_default();
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if !origin_allowed(&web, origin, &host) {
        tracing::warn!(origin = ?origin, %peer, "refused a WebSocket from a foreign origin");
        return plain(
            StatusCode::FORBIDDEN,
            format!(
                "origin `{}` may not use this daemon; add it to web.allowed_origins to allow it",
                origin.unwrap_or_default()
            ),
        );
    }
    if let Some(auth) = &web.auth
        && !auth.allows(&headers, &uri)
    {
        tracing::warn!(%peer, "refused a WebSocket without a valid token");
        return (
            StatusCode::UNAUTHORIZED,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::WWW_AUTHENTICATE, "Bearer"),
            ],
            "this daemon needs its access token: open the page at the address `vtuber web url` prints, or connect to /client-ws?token=<token> (or send `Authorization: Bearer <token>`)",
        )
            .into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    // Messages up to the limit are read; up to twice it they are answered with an
    // `error` and dropped; larger ones close the connection (1009).
    let hard = web.max_message_bytes.saturating_mul(2);
    let own_page = origin.is_some_and(|o| is_own_origin(&web, o, &host));
    ws.accept(hard, move |socket| {
        session::run(socket, web, peer.to_string(), own_page)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_file_is_compiled_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let on_disk = list_files(&dir);
        let mut listed: Vec<String> = PAGE_FILES.iter().map(|(n, _)| (*n).to_owned()).collect();
        listed.sort();
        assert_eq!(
            listed, on_disk,
            "update PAGE_FILES in daemon/src/web/mod.rs"
        );
    }

    #[test]
    fn paths_stay_inside() {
        let base = Path::new("/srv/assets");
        assert_eq!(
            safe_join(base, "a/b.js"),
            Some(PathBuf::from("/srv/assets/a/b.js"))
        );
        for bad in [
            "",
            "../x",
            "a/../../x",
            "/etc/passwd",
            ".hidden",
            "a//b",
            "a\\..\\b",
            "a/./b",
            "x\0",
        ] {
            assert_eq!(safe_join(base, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("::1"));
        assert!(is_loopback_host("[::1]"));
        assert!(is_loopback_host("localhost"));
        assert!(!is_loopback_host("0.0.0.0"));
        assert!(!is_loopback_host("192.168.1.2"));
        assert!(!is_loopback_host("example.com"));
        assert!(loopback_host_allowed("127.0.0.1:8080", 8080));
        assert!(loopback_host_allowed("LOCALHOST:8080", 8080));
        assert!(loopback_host_allowed("[::1]:8080", 8080));
        assert!(!loopback_host_allowed("evil.example:8080", 8080));
        assert!(!loopback_host_allowed("127.0.0.1:8081", 8080));
        assert!(!loopback_host_allowed("127.0.0.1", 8080));
    }

    #[test]
    fn insecure_binds_are_refused_with_what_to_set() {
        let mut config = Config::default();
        config.web.host = "0.0.0.0".into();
        config.web.auth = WebAuth::None;
        let e = check(&config).unwrap_err().to_string();
        assert!(
            e.contains("web.tls.cert")
                && e.contains("web.tls.key")
                && e.contains("web.auth: token"),
            "{e}"
        );
        // The default, a token (generated when web.token is unset), leaves TLS.
        config.web.auth = WebAuth::Token;
        let e = check(&config).unwrap_err().to_string();
        assert!(e.contains("web.tls.cert") && !e.contains("web.auth"), "{e}");
        config.web.token = Some("t0ken".into());
        let e = check(&config).unwrap_err().to_string();
        assert!(e.contains("web.tls.cert") && !e.contains("web.auth"), "{e}");
        // A token with auth off is a contradiction, named as such.
        config.web.auth = WebAuth::None;
        config.web.host = "127.0.0.1".into();
        let e = check(&config).unwrap_err().to_string();
        assert!(
            e.contains("web.auth") && e.contains("remove web.token"),
            "{e}"
        );
        config.web.enabled = false;
        assert!(check(&config).is_ok());
        let mut config = Config::default();
        config.web.token = Some("secret:VTUBER_SURELY_UNSET_TOKEN_42".into());
        let e = check(&config).unwrap_err().to_string();
        assert!(
            e.starts_with("web.token:") && e.contains("VTUBER_SURELY_UNSET_TOKEN_42"),
            "{e}"
        );
    }

    #[test]
    fn the_core_url_is_an_http_address_or_a_local_path() {
        assert_eq!(
            core_url_origin("https://cubism.live2d.com/sdk-web/cubismcore/live2dcubismcore.min.js")
                .unwrap()
                .as_deref(),
            Some("https://cubism.live2d.com")
        );
        assert_eq!(
            core_url_origin("http://127.0.0.1:9000/core.js")
                .unwrap()
                .as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(core_url_origin("/libs/core5.js").unwrap(), None);
        for bad in [
            "javascript:alert(1)",
            "data:text/javascript,1",
            "//cdn.example/core.js",
            "core.js",
            "file:///tmp/core.js",
        ] {
            assert!(
                matches!(core_url_origin(bad), Err(WebError::CoreUrl(_))),
                "{bad}"
            );
        }
        let mut config = Config::default();
        config.web.live2d_core_url = Some("javascript:alert(1)".into());
        let e = check(&config).unwrap_err().to_string();
        assert!(e.starts_with("web.live2d_core_url"), "{e}");
        // The page may then run scripts from that origin, and from no other.
        let csp = content_security_policy(Some("https://cubism.live2d.com"));
        assert!(
            csp.contains("script-src 'self' 'unsafe-eval' https://cubism.live2d.com;"),
            "{csp}"
        );
        assert!(content_security_policy(None).contains("script-src 'self' 'unsafe-eval';"));
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x.model3.json"), "application/json");
        assert_eq!(content_type("tex.PNG"), "image/png");
        assert_eq!(content_type("m.moc3"), "application/octet-stream");
    }

    #[test]
    fn urls() {
        let cfg = WebConfig::default();
        assert_eq!(
            url(&cfg, "127.0.0.1:8080".parse().unwrap()),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(
            url(&cfg, "[::1]:8080".parse().unwrap()),
            "http://[::1]:8080/"
        );
        assert_eq!(
            url(&cfg, "0.0.0.0:8080".parse().unwrap()),
            "http://localhost:8080/"
        );
    }
}
