//! HTTPS for the HTTP scenarios (SPEC §12): rustls, with the keys python-requests takes and
//! Rally passes through, so that Rally task files keep working.
//!
//! - no `verify` (or `verify: true`): the server's certificate is checked against the
//!   system's trust store, and its name against the URL's host (SNI is the host too);
//! - `verify: "/path/ca.pem"`: against that CA bundle instead;
//! - `verify: false`: not checked at all (a warning says so once per workload);
//! - `cert: "/path/client.pem"` (certificate and key in one file) or
//!   `cert: ["/path/cert.pem", "/path/key.pem"]`: a client certificate, for mutual TLS.
//!
//! A configuration is built once per workload (at validation, so that a missing or broken
//! file is an error before any load starts) and shared by every connection of it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::task::check::{Checked, PluginError};
use crate::task::node::Node;

/// A TLS client configuration, shared by the connections of one workload. Two are equal
/// when they are the same configuration.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<ClientConfig>,
    /// `verify: false`: certificates are not checked.
    pub unverified: bool,
}

impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tls")
    }
}

/// What `verify` says.
#[derive(Debug, Clone, PartialEq)]
pub enum Verify {
    System,
    CaFile(PathBuf),
    Off,
}

/// ring's suites with AES-128-GCM offered first, as nghttp2 and Go do: as safe as AES-256
/// here and cheaper per record, which a load generator pays on every request (the server
/// picks, and nginx takes the client's order unless told otherwise).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut provider = rustls::crypto::ring::default_provider();
            provider.cipher_suites.sort_by_key(|s| match s.suite() {
                rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
                rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 1,
                _ => 2,
            });
            Arc::new(provider)
        })
        .clone()
}

fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
}

impl Tls {
    /// Default verification against the system's trust store, built once per process.
    pub fn system() -> Tls {
        static SYSTEM: OnceLock<Tls> = OnceLock::new();
        SYSTEM
            .get_or_init(|| {
                Tls::build(&Verify::System, None)
                    .expect("a configuration without files cannot fail")
            })
            .clone()
    }

    /// The configuration `verify` and `cert` describe; the error names what is wrong.
    pub fn build(verify: &Verify, cert: Option<(&Path, &Path)>) -> Result<Tls, String> {
        let builder = match verify {
            Verify::Off => builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification)),
            Verify::System => builder().with_root_certificates(system_roots()),
            Verify::CaFile(path) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(path)? {
                    roots.add(cert).map_err(|e| {
                        format!("{}: not a usable CA certificate: {e}", path.display())
                    })?;
                }
                builder().with_root_certificates(roots)
            }
        };
        let mut config = match cert {
            None => builder.with_no_client_auth(),
            Some((cert_path, key_path)) => {
                let chain = certificates(cert_path)?;
                let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
                    format!("{}: no private key in PEM form: {e}", key_path.display())
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| match e {
                        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                            format!(
                                "the key in {} does not match the certificate in {}",
                                key_path.display(),
                                cert_path.display()
                            )
                        }
                        e => format!(
                            "{} and {}: not usable as a client certificate and its key: {e}",
                            cert_path.display(),
                            key_path.display()
                        ),
                    })?
            }
        };
        // HTTP/1.1, said in ALPN so that a server that prefers h2 does not choose it; the
        // HTTP/2 pool (super::http2) offers h2 on a copy of this configuration.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
            unverified: *verify == Verify::Off,
        })
    }

    /// The `verify` and `cert` keys of a scenario's arguments: `None` when neither is given
    /// (an https URL then gets [`Tls::system`]).
    pub fn from_args(args: &Node) -> Checked<Option<Tls>> {
        let verify = match args.get("verify") {
            None => None,
            Some(v) => Some(match (v.as_bool(), v.as_str()) {
                (Some(true), _) => Verify::System,
                (Some(false), _) => Verify::Off,
                (_, Some(path)) => Verify::CaFile(PathBuf::from(path)),
                _ => {
                    return Err(PluginError::new(
                        "verify",
                        "must be true, false, or the path of a CA bundle (PEM)",
                    ));
                }
            }),
        };
        let cert = match args.get("cert") {
            None => None,
            Some(c) => Some(match (c.as_str(), c.as_seq()) {
                (Some(both), _) => (PathBuf::from(both), PathBuf::from(both)),
                (_, Some([cert, key])) => match (cert.as_str(), key.as_str()) {
                    (Some(cert), Some(key)) => (PathBuf::from(cert), PathBuf::from(key)),
                    _ => return Err(cert_shape()),
                },
                _ => return Err(cert_shape()),
            }),
        };
        if verify.is_none() && cert.is_none() {
            return Ok(None);
        }
        let verify = verify.unwrap_or(Verify::System);
        let key = if cert.is_some() { "cert" } else { "verify" };
        Tls::build(
            &verify,
            cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )
        .map(Some)
        .map_err(|m| PluginError::new(key, m))
    }
}

fn cert_shape() -> PluginError {
    PluginError::new(
        "cert",
        "must be the path of a PEM file with the certificate and key, or [cert.pem, key.pem]",
    )
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    if !path.is_file() {
        return Err(format!("{}: no such file", path.display()));
    }
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (not PEM?)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The system's trust store; what cannot be read is skipped (and said once).
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    if let Some(e) = found.errors.first() {
        tracing::warn!("system trust store: {e}");
    }
    let (_, _) = roots.add_parsable_certificates(found.certs);
    roots
}

/// `verify: false`: every certificate is accepted, signatures are still checked for form.
#[derive(Debug)]
struct NoVerification;

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An error of the TLS layer in python-requests' words, where a Rally user knows them
/// (`SSLError` with the reason); `None` when the error is not TLS's.
pub fn ssl_error(error: &std::io::Error) -> Option<String> {
    let inner = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    use rustls::CertificateError as C;
    let reason = match inner {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "certificate verify failed: unable to get local issuer certificate".to_string()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            "certificate verify failed: hostname mismatch".to_string()
        }
        rustls::Error::InvalidCertificate(C::Expired)
        | rustls::Error::InvalidCertificate(C::ExpiredContext { .. }) => {
            "certificate verify failed: certificate has expired".to_string()
        }
        rustls::Error::InvalidCertificate(other) => format!("certificate verify failed: {other:?}"),
        rustls::Error::AlertReceived(alert) => format!("handshake failure: alert {alert:?}"),
        other => format!("handshake failure: {other}"),
    };
    Some(reason)
}
