//! Tests of `sslmode` against a real PostgreSQL server that accepts TLS connections only,
//! its certificate issued for `localhost` by a private CA made here: what each mode checks,
//! `storage.ca_file`, and the errors that say what to change.

use std::path::PathBuf;
use std::sync::OnceLock;

use agentd_testpg::{POOL_SIZE, TestDatabase, TestServer};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;

use crate::store::postgres::PostgresStore;
use crate::store::test_support::record;
use crate::store::{Collection, Store, StoreError};

/// The name the server's certificate is issued for; `127.0.0.1` reaches the same server
/// under a name the certificate does not list.
const NAMED_HOST: &str = "localhost";
const UNNAMED_HOST: &str = "127.0.0.1";

/// The TLS server of this test binary, with the CA that issued its certificate and a CA
/// that did not.
struct TlsServer {
    server: TestServer,
    ca_pem: String,
    other_ca_pem: String,
}

static TLS_SERVER: OnceLock<TlsServer> = OnceLock::new();

fn tls_server() -> &'static TlsServer {
    TLS_SERVER.get_or_init(|| {
        let ca = new_ca("agentd test CA");
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(vec![NAMED_HOST.to_owned()])
            .expect("server params")
            .signed_by(&key, &ca)
            .expect("server certificate");
        TlsServer {
            server: TestServer::start_with_tls(&cert.pem(), &key.serialize_pem()),
            ca_pem: ca.pem(),
            other_ca_pem: new_ca("agentd test other CA").pem(),
        }
    })
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}

/// A database on the TLS server and a directory for CA files.
struct Fixture {
    db: TestDatabase,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Self {
        Self {
            db: TestDatabase::create_on(&tls_server().server).await,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn ca_file(&self, pem: &str) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, pem).expect("write the CA file");
        path
    }

    fn right_ca(&self) -> PathBuf {
        self.ca_file(&tls_server().ca_pem)
    }

    async fn connect(
        &self,
        host: &str,
        sslmode: &str,
        ca_file: Option<PathBuf>,
    ) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect_trusting(
            &self.db.url_with(host, sslmode),
            self.db.password(),
            POOL_SIZE,
            ca_file.as_deref(),
        )
        .await
    }
}

/// The error of a connection that must fail, as text.
fn refusal(result: Result<PostgresStore, StoreError>) -> String {
    match result {
        Ok(_) => panic!("connected, expected a refusal"),
        Err(e) => e.to_string(),
    }
}

async fn assert_round_trip(store: &PostgresStore) {
    let agent = record("a1", json!({ "name": "over tls" }), 1, 1);
    store
        .insert(Collection::Agents, agent.clone())
        .await
        .expect("insert");
    let read = store.get(Collection::Agents, "a1").await.expect("get");
    assert_eq!(read.as_deref(), Some(&agent));
}

#[tokio::test]
async fn verify_full_with_the_private_ca_connects_and_round_trips() {
    let fixture = Fixture::new().await;
    let store = fixture
        .connect(NAMED_HOST, "verify-full", Some(fixture.right_ca()))
        .await
        .expect("verify-full with the CA");
    // The server takes TCP clients over TLS only, so this round trip was encrypted.
    assert_round_trip(&store).await;
}

#[tokio::test]
async fn verify_full_without_the_ca_names_the_setting_to_fix() {
    let fixture = Fixture::new().await;
    let error = refusal(fixture.connect(NAMED_HOST, "verify-full", None).await);
    assert!(error.contains("storage.ca_file"), "{error}");
    assert!(!error.contains("agentd-test-password"), "{error}");
}

#[tokio::test]
async fn verify_full_refuses_a_host_name_the_certificate_does_not_list() {
    let fixture = Fixture::new().await;
    let error = refusal(
        fixture
            .connect(UNNAMED_HOST, "verify-full", Some(fixture.right_ca()))
            .await,
    );
    assert!(error.contains("not issued for that name"), "{error}");
    assert!(error.contains("sslmode=verify-ca"), "{error}");
}

#[tokio::test]
async fn verify_ca_checks_the_chain_but_not_the_host_name() {
    let fixture = Fixture::new().await;
    let store = fixture
        .connect(UNNAMED_HOST, "verify-ca", Some(fixture.right_ca()))
        .await
        .expect("verify-ca under another name");
    assert_round_trip(&store).await;
    let other_ca = fixture.ca_file(&tls_server().other_ca_pem);
    let error = refusal(
        fixture
            .connect(UNNAMED_HOST, "verify-ca", Some(other_ca))
            .await,
    );
    assert!(error.contains("not signed by a trusted CA"), "{error}");
}

#[tokio::test]
async fn require_and_prefer_encrypt_without_checking_the_certificate() {
    let fixture = Fixture::new().await;
    for sslmode in ["require", "prefer"] {
        let store = fixture
            .connect(UNNAMED_HOST, sslmode, None)
            .await
            .unwrap_or_else(|e| panic!("sslmode={sslmode} without a CA: {e}"));
        store.ping().await.expect("ping");
    }
}

#[tokio::test]
async fn require_with_a_ca_file_checks_the_chain_as_libpq_does() {
    let fixture = Fixture::new().await;
    let other_ca = fixture.ca_file(&tls_server().other_ca_pem);
    let error = refusal(
        fixture
            .connect(UNNAMED_HOST, "require", Some(other_ca))
            .await,
    );
    assert!(error.contains("not signed by a trusted CA"), "{error}");
    let store = fixture
        .connect(UNNAMED_HOST, "require", Some(fixture.right_ca()))
        .await
        .expect("require with the right CA");
    store.ping().await.expect("ping");
}

#[tokio::test]
async fn disable_is_refused_by_a_server_that_requires_tls() {
    let fixture = Fixture::new().await;
    let error = refusal(fixture.connect(UNNAMED_HOST, "disable", None).await);
    assert!(error.contains("no encryption"), "{error}");
}

#[tokio::test]
async fn an_unknown_sslmode_is_refused_before_connecting() {
    let fixture = Fixture::new().await;
    let error = refusal(fixture.connect(NAMED_HOST, "allow", None).await);
    assert!(error.contains("sslmode `allow`"), "{error}");
}

#[test]
fn an_unreadable_ca_file_is_refused_at_start() {
    let sets = ["storage.ca_file=\"/nonexistent/agentd-ca.pem\"".to_owned()];
    let error = crate::config::Config::load(None, &sets).expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("storage.ca_file /nonexistent/agentd-ca.pem"),
        "{error}"
    );
}
