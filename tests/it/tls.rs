//! https:// and wss:// providers for real: a TLS-terminating proxy (tokio-rustls; the shared
//! proxy module's TLS layer, [`tls_front`]) in front of anvil, with a certificate from a CA made
//! for the test (rcgen) that the commands trust through `KEYMARKET_RPC_CA_FILE`. `index`
//! (backfill and follow) and `buy`/`sell` over both; a CA the client does not trust and an
//! expired certificate refused once, in words; and the fake API key in the URL never printed.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::sol_types::SolEvent;
use keymarket_indexer::StoreWriter;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::Value;
use tokio_rustls::rustls::{
    self, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};

use crate::{common::Chain, proxy::tls_front};

/// The fake credentials of the test's URLs: they must never appear in any output.
const SECRET_USER: &str = "keymarketTestUserXYZ";
const SECRET_KEY: &str = "FaKeApIkEy0123456789abcdefXYZ";

/// A CA made for one test, and a server certificate for localhost and 127.0.0.1 that it signs.
struct TestPki {
    ca_pem: String,
    server: Arc<ServerConfig>,
}

fn pki(expired: bool) -> TestPki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    // Each test CA has a name of its own (rustls matches issuers by name first).
    ca.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("keymarket test CA {}", rand::random::<u64>()),
    );
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, &issuer).unwrap();
    let server = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    TestPki {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "keymarket-tls-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `keymarket ARGS` trusting `ca` (if any): (exit success, stdout, stderr).
fn keymarket(ca: Option<&Path>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymarket"));
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env_remove("KEYMARKET_RPC_URL")
        .env_remove("KEYMARKET_PRIVATE_KEY");
    match ca {
        Some(ca) => cmd.env("KEYMARKET_RPC_CA_FILE", ca),
        None => cmd.env_remove("KEYMARKET_RPC_CA_FILE"),
    };
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    for secret in [SECRET_USER, SECRET_KEY] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a credential of the URL was printed by {args:?}:\n{stdout}\n{stderr}"
        );
    }
    (out.status.success(), stdout, stderr)
}

/// The chain's Trade logs.
async fn chain_trades(chain: &Chain) -> Vec<alloy::rpc::types::Log> {
    let mut logs = chain.logs().await;
    logs.retain(|l| l.topic0() == Some(&keymarket_contracts::TRADE_TOPIC));
    logs
}

async fn indexed_trades(db: &str) -> i64 {
    let store = StoreWriter::connect(db).await.unwrap();
    store
        .trade_counts()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum()
}

/// Backfill, follow, buy and sell over https:// and wss:// with a private CA; the fake key in
/// the URL's userinfo and path never printed.
#[tokio::test(flavor = "multi_thread")]
async fn https_and_wss_providers_with_a_private_ca() {
    let chain = Chain::new().await;
    chain.trade(300, 7, 30, 60).await;
    let dir = temp_dir();
    let deployment = dir.join("deployment.json");
    chain.deployment.write(&deployment).unwrap();
    let deployment = deployment.to_str().unwrap();
    let pki = pki(false);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let anvil: SocketAddr = format!("127.0.0.1:{}", chain.anvil.port()).parse().unwrap();
    let port = tls_front(anvil, pki.server.clone()).await;
    assert!(chain_trades(&chain).await.len() > 250);

    for scheme in ["https", "wss"] {
        // A provider-style URL: credentials in the userinfo (anvil ignores them).
        let url = format!("{scheme}://{SECRET_USER}:{SECRET_KEY}@localhost:{port}");
        let db = format!("sqlite:{}", dir.join(format!("{scheme}.db")).display());
        let trades = chain_trades(&chain).await.len() as i64;
        let (ok, out, err) = keymarket(
            Some(&ca),
            &[
                "index",
                "--rpc-url",
                &url,
                "--deployment",
                deployment,
                "--database-url",
                &db,
                "--quiet",
            ],
        );
        assert!(ok, "index over {scheme}:// failed:\n{out}\n{err}");
        assert!(
            err.contains(&format!("{scheme}://***@localhost:{port}")),
            "the URL is shown redacted: {err}"
        );
        assert_eq!(indexed_trades(&db).await, trades, "{scheme}");

        // A buy and a sell of the most traded subject, over the same URL.
        let subject = keymarket_contracts::KeyMarket::Trade::decode_log_data(
            chain_trades(&chain).await[0].data(),
        )
        .unwrap()
        .subject
        .to_string();
        for side in ["buy", "sell"] {
            let (ok, out, err) = keymarket(
                Some(&ca),
                &[
                    side,
                    &subject,
                    "1",
                    "--dev-account",
                    "20",
                    "--rpc-url",
                    &url,
                    "--deployment",
                    deployment,
                    "--json",
                ],
            );
            assert!(ok, "{side} over {scheme}:// failed:\n{out}\n{err}");
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["isBuy"], side == "buy", "{out}");
            let sent: Value =
                serde_json::from_str(err.lines().find(|l| l.contains("\"sent\"")).unwrap())
                    .unwrap();
            assert_eq!(
                sent["sent"], v["tx"],
                "the hash told at send time is the trade's"
            );
        }
    }

    // Follow over https://: trades mined after the start are indexed as they come.
    // The key as a query parameter this time (anvil answers only at its root path).
    let url = format!("https://{SECRET_USER}:{SECRET_KEY}@localhost:{port}/?apikey={SECRET_KEY}");
    let db = format!("sqlite:{}", dir.join("follow.db").display());
    let log = std::fs::File::create(dir.join("follow.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keymarket"))
        .args([
            "index",
            "--follow",
            "--rpc-url",
            &url,
            "--deployment",
            deployment,
            "--database-url",
            &db,
        ])
        .env("KEYMARKET_RPC_CA_FILE", &ca)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    chain.trade(60, 8, 20, 60).await;
    let want = chain_trades(&chain).await.len() as i64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if std::fs::metadata(dir.join("follow.db")).is_ok() && indexed_trades(&db).await == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follower over https:// reached {want} trades"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sigterm(child.id());
    assert!(
        child.wait().unwrap().success(),
        "SIGTERM stops the follower cleanly"
    );
    let log = std::fs::read_to_string(dir.join("follow.log")).unwrap();
    assert!(
        !log.contains(SECRET_KEY) && !log.contains(SECRET_USER),
        "{log}"
    );
}

/// SIGTERM, for a clean stop.
fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// A certificate of a CA the client does not trust, and an expired one from a trusted CA, are
/// refused at once and in words, by the trader's commands and by the indexer (not retried).
#[tokio::test(flavor = "multi_thread")]
async fn untrusted_and_expired_certificates_are_refused_in_words() {
    let chain = Chain::new().await;
    let dir = temp_dir();
    let deployment = dir.join("deployment.json");
    chain.deployment.write(&deployment).unwrap();
    let deployment = deployment.to_str().unwrap();
    let anvil: SocketAddr = format!("127.0.0.1:{}", chain.anvil.port()).parse().unwrap();
    let served = pki(false);
    let other = pki(false);
    let other_ca = dir.join("other-ca.pem");
    std::fs::write(&other_ca, &other.ca_pem).unwrap();
    let untrusted = tls_front(anvil, served.server.clone()).await;
    let expired = pki(true);
    let expired_ca = dir.join("expired-ca.pem");
    std::fs::write(&expired_ca, &expired.ca_pem).unwrap();
    let expired_port = tls_front(anvil, expired.server.clone()).await;
    let subject = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

    for (port, ca, reason) in [
        (untrusted, &other_ca, "UnknownIssuer"),
        (untrusted, &other_ca, "UnknownIssuer"),
        (expired_port, &expired_ca, "xpired"),
    ] {
        let url = format!("https://{SECRET_USER}@localhost:{port}/v3/{SECRET_KEY}");
        let started = Instant::now();
        let (ok, _, err) = keymarket(
            Some(ca),
            &[
                "quote",
                "buy",
                subject,
                "1",
                "--rpc-url",
                &url,
                "--deployment",
                deployment,
            ],
        );
        assert!(!ok);
        assert!(
            err.contains("certificate for localhost is not valid") && err.contains(reason),
            "{err}"
        );
        let db = format!("sqlite:{}", dir.join("refused.db").display());
        let (ok, _, err) = keymarket(
            Some(ca),
            &[
                "index",
                "--rpc-url",
                &url,
                "--deployment",
                deployment,
                "--database-url",
                &db,
                "--quiet",
            ],
        );
        assert!(!ok, "the indexer must not go on with a refused certificate");
        assert!(
            err.contains("certificate for localhost is not valid") && err.contains(reason),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "refused at once, not retried"
        );
    }
    // Without the CA file, the test's own CA is not trusted either (no silent fallback).
    let url = format!("https://localhost:{untrusted}");
    let (ok, _, err) = keymarket(
        None,
        &[
            "quote",
            "buy",
            subject,
            "1",
            "--rpc-url",
            &url,
            "--deployment",
            deployment,
        ],
    );
    assert!(
        !ok && err.contains("certificate for localhost is not valid"),
        "{err}"
    );
}

/// PostgreSQL over TLS as managed PostgreSQL demands it (`sslmode=require`): the indexer writes
/// through an encrypted connection, and the server says the connection is encrypted.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_with_sslmode_require() {
    let chain = Chain::new().await;
    chain.trade(40, 5, 20, 60).await;
    let dir = temp_dir();
    let deployment = dir.join("deployment.json");
    chain.deployment.write(&deployment).unwrap();
    let url = format!(
        "{}?sslmode=require",
        crate::common::fresh_db(crate::common::Db::Postgres, "tls").await
    );
    let (ok, out, err) = keymarket(
        None,
        &[
            "index",
            "--rpc-url",
            &chain.rpc_url(),
            "--deployment",
            deployment.to_str().unwrap(),
            "--database-url",
            &url,
            "--quiet",
        ],
    );
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        indexed_trades(&url).await,
        chain_trades(&chain).await.len() as i64
    );
    let store = StoreWriter::connect(&url).await.unwrap();
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(encrypted, "sslmode=require gives an encrypted connection");
}
