//! The TLS client configuration (webpki roots, ring) and TLS error mapping.

use std::io;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::ServerName;
use wasmtime_wasi_http::Error;

/// The shared client configuration: Mozilla's roots via `webpki-roots`, the `ring`
/// provider (named explicitly, so no process-wide default provider is needed), HTTP/1.1.
pub(crate) fn client_config() -> Result<Arc<rustls::ClientConfig>, Error> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS client configuration: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(|e| Error::InternalError(Some(e)))
}

/// The name the certificate must be valid for: the host of the request URI as the guest
/// wrote it (and as the allow list matched it), never a resolved address.
pub(crate) fn server_name(host: &str, ip: Option<IpAddr>) -> Result<ServerName<'static>, Error> {
    match ip {
        Some(ip) => Ok(ServerName::IpAddress(ip.into())),
        None => Ok(ServerName::try_from(host.to_string())?),
    }
}

/// Maps a TLS handshake failure to the most specific wasi:http error.
pub(crate) fn handshake_error(err: io::Error) -> Error {
    if let Some(inner) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        match inner {
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                return Error::TlsCertificateError;
            }
            rustls::Error::AlertReceived(alert) => {
                return Error::TlsAlertReceived {
                    alert_id: Some(u8::from(*alert)),
                    alert_message: Some(format!("{alert:?}")),
                };
            }
            _ => return Error::TlsProtocolError,
        }
    }
    Error::Tls(err)
}
