//! Mutual TLS on the station link: the client presents its certificate and
//! trusts only the configured CA bundle.

mod link_common;

use link_common::{station_credential, Upstream};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use station_agent::link::{LinkClient, LinkConfig, TlsFiles};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

struct Pki {
    dir: tempfile::TempDir,
    server_config: Arc<ServerConfig>,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "station-agent test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["station-branch-001".to_string()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();

    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("client.pem"), client.pem()).unwrap();
    std::fs::write(dir.path().join("client.key"), client_key.serialize_pem()).unwrap();

    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let server_config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(server.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    Pki {
        dir,
        server_config: Arc::new(server_config),
    }
}

/// An axum listener that completes the TLS handshake (client certificate required).
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn tls_upstream(pki: &Pki, up: Arc<Upstream>) -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(pki.server_config.clone()),
    };
    tokio::spawn(async move {
        axum::serve(listener, link_common::router(up))
            .await
            .unwrap()
    });
    addr
}

fn tls_client(addr: SocketAddr, tls: TlsFiles) -> LinkClient {
    LinkClient::new(LinkConfig {
        base_url: format!("https://{addr}"),
        token_url: format!("https://{addr}/oauth2/token"),
        station_id: "ST-1".into(),
        credential: station_credential(),
        tls,
        request_timeout: Duration::from_secs(5),
        order_keys: link_common::order_verifier(),
    })
    .unwrap()
}

#[tokio::test]
async fn the_station_certificate_is_presented_and_the_hub_ca_trusted() {
    let pki = pki();
    let up = Arc::new(Upstream::default());
    let addr = tls_upstream(&pki, up.clone()).await;
    let client = tls_client(
        addr,
        TlsFiles {
            client_cert: Some(pki.path("client.pem")),
            client_key: Some(pki.path("client.key")),
            ca_bundle: Some(pki.path("ca.pem")),
        },
    );

    let orders = client.poll_orders(Duration::ZERO).await.unwrap();

    assert_eq!(orders.len(), 1);
    assert_eq!(*up.token_calls.lock().unwrap(), 1);
}

#[tokio::test]
async fn without_a_client_certificate_the_hub_cannot_be_reached() {
    let pki = pki();
    let up = Arc::new(Upstream::default());
    let addr = tls_upstream(&pki, up.clone()).await;
    let client = tls_client(
        addr,
        TlsFiles {
            client_cert: None,
            client_key: None,
            ca_bundle: Some(pki.path("ca.pem")),
        },
    );

    let err = client.poll_orders(Duration::ZERO).await.unwrap_err();

    assert_eq!(err.code(), "LINK_TRANSPORT", "{err}");
    assert_eq!(*up.token_calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_hub_outside_the_ca_bundle_is_not_trusted() {
    let pki = pki();
    let other = pki_other_ca();
    let up = Arc::new(Upstream::default());
    let addr = tls_upstream(&pki, up.clone()).await;
    let client = tls_client(
        addr,
        TlsFiles {
            client_cert: Some(pki.path("client.pem")),
            client_key: Some(pki.path("client.key")),
            ca_bundle: Some(other.path().join("ca.pem")),
        },
    );

    let err = client.poll_orders(Duration::ZERO).await.unwrap_err();

    assert_eq!(err.code(), "LINK_TRANSPORT", "{err}");
}

fn pki_other_ca() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    dir
}
