//! CORS for the static asset routes (`/live2d-models/`, `/bg/`), so a frontend served
//! from another origin (Open-LLM-VTuber's own web build, at its own address) can fetch
//! a model's `model3.json`, textures, motions and the backgrounds with `fetch()`.
//!
//! Decision: these routes were public before (no token: they are the same files any
//! `<img>` tag may load, and nothing in them drives the character), so they stay
//! without the token. But CORS lets a script *read* them, which would let any web site
//! learn which models and backgrounds this user installed; so, unlike Open-LLM-VTuber's
//! `CORSMiddleware(allow_origins=["*"])`, only the origins that may already use the
//! WebSocket (the page's own and `web.allowed_origins`, read at each request) are
//! answered, echoed with `Vary: Origin`, without credentials. A frontend that is allowed
//! to drive the character can load its model; nobody else gains anything. The Host
//! check (DNS rebinding) still runs first, and the WebSocket, the page and every other
//! route keep their token and Origin rules unchanged (no CORS headers there).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Whether `path` is one of the asset routes that answer cross-origin requests.
pub fn is_asset_path(path: &str) -> bool {
    path.starts_with("/live2d-models/") || path.starts_with("/bg/")
}

/// The methods the asset routes answer.
const METHODS: &str = "GET, HEAD, OPTIONS";
/// How long a browser may cache a preflight's answer (seconds).
const MAX_AGE: &str = "600";

/// A preflight (`OPTIONS` with `Access-Control-Request-Method`) for an asset route:
/// 204 with the allowed methods and headers when `allowed`, else 403 with why.
pub fn preflight(req_headers: &HeaderMap, origin: &str, allowed: bool) -> Response {
    if !allowed {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("origin `{origin}` may not read this daemon's assets; add it to web.allowed_origins to allow it"),
        )
            .into_response();
    }
    let method_ok = req_headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| matches!(m.trim(), "GET" | "HEAD" | "OPTIONS"));
    if !method_ok {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::ALLOW, METHODS),
            ],
            "the asset routes answer GET and HEAD only",
        )
            .into_response();
    }
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    add_origin(h, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(METHODS),
    );
    // The headers asked for are echoed (a fetch of a file sends no meaningful ones).
    if let Some(asked) = req_headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE),
    );
    resp
}

/// Adds the CORS headers to an asset response for an allowed `origin`; `Vary: Origin`
/// always, so a cache never hands one origin's answer to another.
pub fn decorate(resp: &mut Response, origin: Option<&str>, allowed: bool) {
    let h = resp.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let (Some(origin), true) = (origin, allowed) {
        add_origin(h, origin);
    }
}

fn add_origin(h: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin.trim()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
}

/// Whether a request is a CORS preflight.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn asset_paths() {
        assert!(is_asset_path("/live2d-models/mao/mao.model3.json"));
        assert!(is_asset_path("/live2d-models/info"));
        assert!(is_asset_path("/bg/room.jpg"));
        assert!(!is_asset_path("/client-ws"));
        assert!(!is_asset_path("/api/page-config"));
        assert!(!is_asset_path("/"));
        assert!(!is_asset_path("/bgx"));
    }

    #[test]
    fn preflights() {
        let asked = headers(&[
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "content-type"),
        ]);
        assert!(is_preflight(&Method::OPTIONS, &asked));
        assert!(!is_preflight(&Method::GET, &asked));
        assert!(!is_preflight(&Method::OPTIONS, &HeaderMap::new()));
        let ok = preflight(&asked, "http://localhost:3000", true);
        assert_eq!(ok.status(), StatusCode::NO_CONTENT);
        let h = ok.headers();
        assert_eq!(h["access-control-allow-origin"], "http://localhost:3000");
        assert_eq!(h["access-control-allow-methods"], METHODS);
        assert_eq!(h["access-control-allow-headers"], "content-type");
        assert!(!h.contains_key("access-control-allow-credentials"));
        let refused = preflight(&asked, "https://evil.example", false);
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(
            !refused
                .headers()
                .contains_key("access-control-allow-origin")
        );
        let post = headers(&[("access-control-request-method", "POST")]);
        assert_eq!(
            preflight(&post, "http://localhost:3000", true).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn responses_name_only_allowed_origins() {
        let mut r = Response::new(Body::empty());
        decorate(&mut r, Some("http://localhost:3000"), true);
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "http://localhost:3000"
        );
        assert_eq!(r.headers()["vary"], "Origin");
        let mut r = Response::new(Body::empty());
        decorate(&mut r, Some("https://evil.example"), false);
        assert!(!r.headers().contains_key("access-control-allow-origin"));
        assert_eq!(r.headers()["vary"], "Origin");
    }
}
