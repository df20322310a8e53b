//! A model behind https: the mock model fronted by a real TLS terminator whose certificate comes
//! from a private CA. agentd trusts that CA through `provider.ca_file`, and talks HTTP/1.1 with
//! a connection per call in flight even though the server offers HTTP/2.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentd_mock::{MockConfig, MockModel};
use common::{Options, TestDaemon, say, toml_str};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use reqwest::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The ALPN protocol each accepted connection settled on (`None`: the client offered none).
type Negotiated = Arc<Mutex<Vec<Option<String>>>>;

/// Serves TLS for 127.0.0.1 with a leaf certificate signed by a fresh CA, forwarding the
/// decrypted bytes to `upstream`. Writes the CA certificate to `ca_pem` and returns the
/// terminator's address with the record of negotiated protocols.
async fn tls_front(upstream: SocketAddr, ca_pem: &Path) -> (SocketAddr, Negotiated) {
    let ca = write_ca(ca_pem);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf certificate");

    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .expect("server config");
    // The server prefers HTTP/2, as OpenAI's edge does.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let negotiated: Negotiated = Arc::default();
    let record = negotiated.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let protocol = tls
                    .get_ref()
                    .1
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                record.lock().unwrap().push(protocol);
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, negotiated)
}

/// A fresh CA's certificate, written to `path` (PEM).
fn write_ca(path: &Path) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    std::fs::write(path, ca.pem()).expect("write CA");
    ca
}

/// agentd against the mock behind TLS; the terminator's CA goes to `served_ca`, and agentd
/// trusts the CA in `trusted` (its own `provider.ca_file`).
async fn daemon_behind_tls(trusted: &Path, served_ca: &Path) -> (TestDaemon, Negotiated) {
    let mock = MockModel::start(MockConfig {
        latency: Duration::from_millis(300),
        record: true,
    })
    .await
    .expect("mock model");
    let (front, negotiated) = tls_front(mock.addr(), served_ca).await;
    let sets = vec![
        format!("provider.base_url=\"https://{front}/v1\""),
        "provider.max_attempts=1".to_owned(),
        format!(
            "provider.ca_file={}",
            toml_str(&trusted.display().to_string())
        ),
    ];
    let daemon = TestDaemon::start_with(Options {
        sets,
        mock: Some(mock),
        ..Options::default()
    })
    .await;
    (daemon, negotiated)
}

#[tokio::test]
async fn concurrent_turns_each_get_their_own_http1_connection_to_an_https_model() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("model-ca.pem");
    let (daemon, negotiated) = daemon_behind_tls(&ca, &ca).await;
    let daemon = Arc::new(daemon);
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(daemon.session().await);
    }

    // Four turns at once, each holding its model call for 300 ms: over one shared HTTP/2
    // connection they would be streams of it; here each needs a connection of its own.
    let turns = sessions.into_iter().map(|session| {
        let daemon = daemon.clone();
        tokio::spawn(async move { daemon.chat(&session, say("Hello")).await })
    });
    let turns: Vec<_> = turns.collect();
    for turn in turns {
        let (status, body) = turn.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(
            body["choices"][0]["message"]["content"], "You said: Hello",
            "{body}"
        );
    }
    let negotiated = negotiated.lock().unwrap().clone();
    assert_eq!(daemon.mock.request_count(), 4);
    assert_eq!(
        negotiated,
        vec![Some("http/1.1".to_owned()); 4],
        "one HTTP/1.1 connection per concurrent call"
    );
}

#[tokio::test]
async fn a_model_certificate_from_an_untrusted_ca_fails_the_turn_with_a_gateway_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("model-ca.pem");
    // agentd trusts a CA, but not the one that signed the model's certificate.
    let other = dir.path().join("other-ca.pem");
    write_ca(&other);
    let (daemon, negotiated) = daemon_behind_tls(&other, &ca).await;
    let session = daemon.session().await;

    let (status, body) = daemon.chat(&session, say("Hello")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("certificate"), "{body}");
    assert_eq!(daemon.mock.request_count(), 0, "nothing reached the model");
    assert!(
        negotiated.lock().unwrap().is_empty(),
        "no handshake completed"
    );
}
