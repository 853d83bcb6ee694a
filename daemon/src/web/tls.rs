//! The web server's certificate: read at start, and read again when its files change,
//! so a renewed certificate is served without a restart. A renewal that cannot be read
//! (half written, a key that does not fit) keeps the old one serving and says why.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;
use tokio_util::sync::CancellationToken;

use super::WebError;
use crate::config::TlsConfig;

/// How often the files are looked at; renewals are rare, a stat is cheap.
const CHECK_EVERY: Duration = Duration::from_secs(2);

pub(super) fn load(tls: &TlsConfig) -> Result<rustls::ServerConfig, WebError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| {
            WebError::Tls(format!(
                "cannot read the certificate {}: {e}",
                tls.cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(WebError::Tls(format!(
            "{} holds no PEM certificate (web.tls.cert)",
            tls.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| {
        WebError::Tls(format!(
            "cannot read the private key {}: {e} (web.tls.key must be a PEM key)",
            tls.key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| WebError::Tls(format!("the certificate and key do not fit together: {e}")))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(server)
}

/// What identifies a version of the files: modification time and size (the paths are
/// followed, so a symlink moved to a new certificate counts).
async fn version(tls: &TlsConfig) -> Option<[(SystemTime, u64); 2]> {
    let mut out = [(SystemTime::UNIX_EPOCH, 0); 2];
    for (slot, path) in out.iter_mut().zip([&tls.cert, &tls.key]) {
        let m = tokio::fs::metadata(path).await.ok()?;
        *slot = (m.modified().ok()?, m.len());
    }
    Some(out)
}

/// Reloads `live` from `files` whenever they change, until `stop`.
pub(super) async fn watch(live: RustlsConfig, files: TlsConfig, stop: CancellationToken) {
    let mut served = version(&files).await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let now = version(&files).await;
        if now.is_none() || now == served {
            continue;
        }
        let reading = files.clone();
        match tokio::task::spawn_blocking(move || load(&reading)).await {
            Ok(Ok(config)) => {
                live.reload_from_config(Arc::new(config));
                served = now;
                tracing::info!(cert = %files.cert.display(), "web.tls: serving the renewed certificate");
            }
            Ok(Err(e)) => {
                // Tried again when the files change once more (a renewal still being written).
                served = now;
                tracing::warn!("{e}; the previous certificate keeps serving");
            }
            Err(e) => tracing::warn!(error = %e, "web.tls: reloading the certificate failed"),
        }
    }
}
