//! `keymarket serve`: the HTTP API and dashboard over an indexed database.

use clap::Args;
use eyre::Result;
use keymarket_indexer::StoreReader;

use crate::cli::{DatabaseArgs, bind, shutdown_on_signal};

/// `keymarket serve`'s arguments.
#[derive(Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) db: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "KEYMARKET_LISTEN")]
    pub(crate) listen: std::net::SocketAddr,
    /// Requests per second allowed per client IP (bursts of twice that); 0 = no limit.
    #[arg(long, default_value_t = 100, env = "KEYMARKET_RATE_LIMIT")]
    pub(crate) rate_limit: u32,
    /// Answer analysts' read-only SQL queries on `POST /v1/sql` (5 s and 10,000 rows a query,
    /// two at a time; see docs/sql.md).
    #[arg(long, env = "KEYMARKET_SQL")]
    pub(crate) sql: bool,
}

/// Serves until SIGTERM or SIGINT, then drains the requests in flight.
pub(crate) async fn serve(args: ServeArgs) -> Result<()> {
    let stop = shutdown_on_signal();
    let store = StoreReader::connect(
        &args.db.for_reading()?,
        Some(keymarket_api::STORE_CONNECTIONS),
    )
    .await?;
    let listener = bind(args.listen).await?;
    println!("API on http://{}/v1/overview", args.listen);
    let mut state = keymarket_api::AppState::new(store)
        .with_rate_limit(args.rate_limit, args.rate_limit.saturating_mul(2));
    if args.sql {
        state = state.with_sql(Default::default());
    }
    keymarket_api::serve(listener, state, stop.cancelled_owned()).await?;
    eprintln!("stopped: requests in flight were answered");
    Ok(())
}
