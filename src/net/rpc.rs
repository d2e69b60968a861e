//! JSON-RPC clients for every command: `http://`, `https://`, `ws://` and `wss://` URLs, TLS
//! through [`super::tls`] (never a silent fallback to plain text: the scheme decides), a timeout
//! on every HTTP request, and errors that name the endpoint without its credentials and say
//! when a certificate was refused.

use std::{path::PathBuf, sync::Arc, time::Duration};

use alloy::{
    providers::{Provider, RootProvider},
    pubsub::{ConnectionHandle, PubSubConnect},
    rpc::client::{ClientBuilder, RpcClient},
    transports::{TransportErrorKind, TransportResult, ws::WsBackend},
};
use clap::Args;
use eyre::{Result, WrapErr, bail, eyre};
use tokio_tungstenite::Connector;

use super::{redact, tls};

/// How long establishing a connection (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The JSON-RPC endpoint of a chain.
#[derive(Args, Debug, Clone)]
pub(crate) struct RpcArgs {
    /// JSON-RPC endpoint: http://, https://, ws:// or wss:// (an API key in the URL is never
    /// printed).
    #[arg(
        id = "rpc_url",
        long = "rpc-url",
        default_value = RpcArgs::DEFAULT_URL,
        env = "KEYMARKET_RPC_URL",
        hide_env_values = true
    )]
    pub(crate) url: String,
    /// A PEM file of CA certificates to trust for https:// and wss:// besides the system's (a
    /// private CA; SSL_CERT_FILE replaces the system's roots as usual).
    #[arg(long = "rpc-ca-file", env = "KEYMARKET_RPC_CA_FILE")]
    pub(crate) ca_file: Option<PathBuf>,
}

impl RpcArgs {
    /// A local anvil's (or any dev node's) endpoint.
    pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:8545";

    /// The URL as it may be printed.
    pub(crate) fn shown(&self) -> String {
        redact::url(&self.url)
    }

    /// A client of the endpoint; each HTTP request is bounded by `request_timeout` (a WebSocket
    /// has no per-request bound: the caller bounds what it awaits). The connection is not tried
    /// yet for HTTP; see [`RpcArgs::provider`].
    pub(crate) async fn client(&self, request_timeout: Duration) -> Result<RpcClient> {
        redact::register(&self.url);
        let shown = self.shown();
        let url: url::Url = self
            .url
            .parse()
            .map_err(|e| eyre!("--rpc-url {shown} is not a URL: {e}"))?;
        match url.scheme() {
            "http" | "https" => {
                let tls = tls::client_config(self.ca_file.as_deref(), &[b"h2", b"http/1.1"])?;
                let http = reqwest::Client::builder()
                    .tls_backend_preconfigured(Arc::unwrap_or_clone(tls))
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(request_timeout)
                    .build()
                    .wrap_err("building the HTTP client")?;
                Ok(ClientBuilder::default().http_with_client(http, url))
            }
            "ws" | "wss" => {
                let connect = TlsWs {
                    url: self.url.clone(),
                    tls: tls::client_config(self.ca_file.as_deref(), &[])?,
                };
                match tokio::time::timeout(
                    request_timeout,
                    ClientBuilder::default().pubsub(connect),
                )
                .await
                {
                    Ok(r) => r.map_err(|e| self.explain(e.into())),
                    Err(_) => bail!(
                        "the RPC at {shown} did not complete a WebSocket handshake within {request_timeout:?}"
                    ),
                }
            }
            other => bail!(
                "--rpc-url {shown}: unsupported scheme {other}://; use http://, https://, ws:// or wss://"
            ),
        }
    }

    /// A provider (with alloy's recommended fillers) whose endpoint has answered `eth_chainId`,
    /// and that chain id: a refused certificate or an unreachable endpoint fails here, once, in
    /// words.
    pub(crate) async fn provider(&self, request_timeout: Duration) -> Result<(RootProvider, u64)> {
        let client = self.client(request_timeout).await?;
        let provider = RootProvider::new(client);
        let chain_id = tokio::time::timeout(request_timeout, provider.get_chain_id())
            .await
            .map_err(|_| {
                eyre!(
                    "the RPC at {} did not answer eth_chainId within {request_timeout:?}",
                    self.shown()
                )
            })?
            .map_err(|e| self.explain(e.into()))?;
        Ok((provider, chain_id))
    }

    /// An error of a call to this endpoint in words: a refused certificate says so and why;
    /// anything else is wrapped with the endpoint's name (without credentials).
    pub(crate) fn explain(&self, e: eyre::Report) -> eyre::Report {
        let host = self
            .url
            .parse::<url::Url>()
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| self.shown());
        match e.chain().find_map(tls::certificate_error) {
            Some(reason) => eyre!(
                "certificate for {host} is not valid: {reason} (a private CA? pass --rpc-ca-file FILE or KEYMARKET_RPC_CA_FILE)"
            ),
            None => e.wrap_err(format!("the RPC at {}", self.shown())),
        }
    }
}

/// A WebSocket connection through the process's TLS setup (alloy's own `WsConnect` trusts
/// webpki's roots only).
#[derive(Clone)]
struct TlsWs {
    url: String,
    tls: Arc<rustls::ClientConfig>,
}

impl PubSubConnect for TlsWs {
    fn is_local(&self) -> bool {
        alloy::transports::utils::guess_local_url(&self.url)
    }

    async fn connect(&self) -> TransportResult<ConnectionHandle> {
        let connector = self
            .url
            .starts_with("wss:")
            .then(|| Connector::Rustls(self.tls.clone()));
        let (socket, _) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async_tls_with_config(
                self.url.as_str(),
                None,
                false,
                connector,
            ),
        )
        .await
        .map_err(TransportErrorKind::custom)?
        .map_err(TransportErrorKind::custom)?;
        let (handle, interface) = ConnectionHandle::new();
        WsBackend::from_socket(socket, interface, Duration::from_secs(10)).spawn();
        Ok(handle)
    }
}
