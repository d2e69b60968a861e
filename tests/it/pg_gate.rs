//! A TCP forwarder on loopback in front of the machine's PostgreSQL that can go silent: while
//! silent, it accepts connections and holds every byte in both directions without closing
//! anything — a network partition as a process sees it (no reset, no error, just no answer).
//! Healed, it passes the held bytes on. standby.rs puts an indexer behind it.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// The forwarder; it stops when dropped.
pub(crate) struct PgGate {
    addr: SocketAddr,
    silent: watch::Sender<bool>,
    /// The local ports of its connections to PostgreSQL (`pg_stat_activity.client_port`).
    upstream_ports: Arc<Mutex<Vec<u16>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PgGate {
    /// A forwarder to `upstream` (host:port).
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (silent, watching) = watch::channel(false);
        let upstream_ports = Arc::new(Mutex::new(Vec::new()));
        let ports = upstream_ports.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                if let Ok(local) = server.local_addr() {
                    ports.lock().unwrap().push(local.port());
                }
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, watching.clone()));
                tokio::spawn(pump(sr, cw, watching.clone()));
            }
        });
        Self {
            addr,
            silent,
            upstream_ports,
            task,
        }
    }

    /// A PostgreSQL URL like `url` but through the forwarder.
    pub(crate) fn url(&self, url: &str) -> String {
        let (scheme_user, rest) = url.split_once('@').expect("postgres://user@host:port/db");
        let (_, db) = rest.split_once('/').expect("a database name");
        format!("{scheme_user}@{}/{db}", self.addr)
    }

    /// Goes silent (`true`) or heals (`false`).
    pub(crate) fn set_silent(&self, silent: bool) {
        self.silent.send_replace(silent);
    }

    /// The local ports of the forwarder's connections to PostgreSQL so far.
    pub(crate) fn upstream_ports(&self) -> Vec<u16> {
        self.upstream_ports.lock().unwrap().clone()
    }
}

impl Drop for PgGate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, holding the bytes while the gate is silent.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut silent: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Silent: hold the bytes (and read nothing more) until healed.
        if silent.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
