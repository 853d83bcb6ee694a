//! OAuth 2.1 for streamable-HTTP servers, per the MCP authorization spec, on rmcp's
//! implementation: protected-resource metadata found from the server's
//! `WWW-Authenticate` challenge (or its well-known address), authorization-server
//! metadata, then a pre-registered client, a client ID metadata document or dynamic
//! registration; PKCE and the `resource` indicator on every request; refresh by the
//! manager. Tokens live in the [`AuthorizationManager`] only: never logged.

use rmcp::transport::AuthorizationManager;
use rmcp::transport::auth::{
    AuthError, AuthorizationCallback, AuthorizationRequest, ClientCredentialsConfig, OAuthState,
};

/// What went wrong authorizing; says which step.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("OAuth with {url}: {step}: {source}")]
    Flow {
        url: String,
        step: &'static str,
        #[source]
        source: AuthError,
    },
    #[error("OAuth with {url}: the authorization server did not redirect back ({detail})")]
    NoRedirect { url: String, detail: String },
}

/// Who this client is to an authorization server.
#[derive(Debug, Clone, Default)]
pub struct ClientIdentity {
    /// Where the authorization server sends the person back (`code`, `state`).
    pub redirect_uri: String,
    /// Shown by the server at registration and consent.
    pub client_name: Option<String>,
    /// A client ID metadata document URL, used when the server supports those.
    pub client_metadata_url: Option<String>,
    /// A client registered beforehand (skips registration).
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// How the person's consent is obtained for an authorization URL.
#[derive(Debug, Clone, Copy)]
pub enum Consent {
    /// Fetches the URL without a browser and takes the redirect it answers with: for an
    /// authorization server that approves on its own (the conformance suite's).
    Headless,
}

/// Authorizes with the server at `url`, starting from its `challenge` (the
/// `WWW-Authenticate` of a 401, or of a 403 `insufficient_scope` for step-up; its
/// `scope` is what is asked for). Returns the manager that holds, and refreshes, the
/// tokens.
pub async fn authorize(
    url: &str,
    challenge: Option<&str>,
    who: &ClientIdentity,
    consent: Consent,
) -> Result<AuthorizationManager, OAuthError> {
    let flow = |step| flow_error(url, step);
    super::install_crypto_provider();
    // A configured server may well be on this machine or the local network.
    let manager = AuthorizationManager::new_allowing_private_addresses(url)
        .await
        .map_err(flow("setting up"))?;
    let mut state = OAuthState::Unauthorized(manager);
    let mut request = AuthorizationRequest::new(who.redirect_uri.clone());
    if let Some(c) = challenge {
        request = request.with_challenge(c);
    }
    if let Some(name) = &who.client_name {
        request = request.with_client_name(name.clone());
    }
    if let Some(id) = &who.client_id {
        request = request.with_preregistered_client(id.clone());
        if let Some(secret) = &who.client_secret {
            request = request.with_client_secret(secret.clone());
        }
    } else if let Some(doc) = &who.client_metadata_url {
        request = request.with_client_metadata_url(doc.clone());
    }
    state
        .start_authorization(request)
        .await
        .map_err(flow("discovery and registration"))?;
    let authorization_url = state
        .get_authorization_url()
        .await
        .map_err(flow("building the authorization URL"))?;
    let redirect = match consent {
        Consent::Headless => headless_consent(url, &authorization_url).await?,
    };
    let callback = AuthorizationCallback::from_redirect_url(&redirect)
        .map_err(flow("reading the redirect"))?;
    state
        .handle_callback_with_issuer(
            &callback.code,
            &callback.csrf_token,
            callback.issuer.as_deref(),
        )
        .await
        .map_err(flow("exchanging the code for a token"))?;
    state
        .into_authorization_manager()
        .ok_or_else(|| not_authorized(url))
}

/// Client credentials (no person involved): `client_id` and `client_secret` given to
/// this client by the authorization server's owner.
pub async fn authorize_client_credentials(
    url: &str,
    client_id: &str,
    client_secret: &str,
) -> Result<AuthorizationManager, OAuthError> {
    super::install_crypto_provider();
    let flow = |step| flow_error(url, step);
    let manager = AuthorizationManager::new_allowing_private_addresses(url)
        .await
        .map_err(flow("setting up"))?;
    let mut state = OAuthState::Unauthorized(manager);
    state
        .authenticate_client_credentials(ClientCredentialsConfig::ClientSecret {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            scopes: Vec::new(),
            resource: Some(url.to_owned()),
        })
        .await
        .map_err(flow("client credentials"))?;
    state
        .into_authorization_manager()
        .ok_or_else(|| not_authorized(url))
}

/// A failed step of the flow with `url`, as its error.
fn flow_error<'a>(url: &'a str, step: &'static str) -> impl Fn(AuthError) -> OAuthError + 'a {
    move |source| OAuthError::Flow {
        url: url.to_owned(),
        step,
        source,
    }
}

/// A flow that ended without tokens.
fn not_authorized(url: &str) -> OAuthError {
    flow_error(url, "finishing")(AuthError::InternalError(
        "no authorized state after the exchange".into(),
    ))
}

async fn headless_consent(url: &str, authorization_url: &str) -> Result<String, OAuthError> {
    let no_redirect = |detail: String| OAuthError::NoRedirect {
        url: url.to_owned(),
        detail,
    };
    let client = reqwest013::Client::builder()
        .redirect(reqwest013::redirect::Policy::none())
        .build()
        .map_err(|e| no_redirect(e.to_string()))?;
    let resp = client
        .get(authorization_url)
        .send()
        .await
        .map_err(|e| no_redirect(e.to_string()))?;
    resp.headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| no_redirect(format!("HTTP {} without a Location", resp.status())))
}
