//! `itinerary serve`, `itinerary migrate` and `itinerary admin`: the service's settings
//! (config/default.toml, each overridable by an environment variable) and its start-up.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use itinerary_core::ClinicSetup;
use itinerary_store::Store;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    server: Server,
    database: DatabaseSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Server {
    listen: String,
    public_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseSettings {
    url: String,
}

/// The settings in force: the file's, with the environment's on top.
#[derive(Debug)]
pub struct Settings {
    pub listen: String,
    pub public_url: String,
    pub database_url: String,
}

impl Settings {
    pub fn load(config_dir: &Path) -> anyhow::Result<Settings> {
        let path = config_dir.join("default.toml");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let f: File = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Ok(Settings {
            listen: env("ITINERARY_LISTEN").unwrap_or(f.server.listen),
            public_url: env("ITINERARY_PUBLIC_URL").unwrap_or(f.server.public_url).trim_end_matches('/').to_owned(),
            database_url: env("DATABASE_URL").unwrap_or(f.database.url),
        })
    }

    /// The database, migrated. A SQLite file's directory is created first.
    pub async fn store(&self) -> anyhow::Result<Store> {
        if let Some(path) = self.database_url.strip_prefix("sqlite://") {
            let file = path.split('?').next().unwrap_or(path);
            if let Some(dir) = Path::new(file).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        let store = Store::connect(&self.database_url)
            .await
            .with_context(|| format!("connecting to the database ({})", redact(&self.database_url)))?;
        store.migrate().await.context("applying migrations")?;
        Ok(store)
    }
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// Serves until SIGTERM or Ctrl-C; requests in flight finish first.
pub async fn serve(settings: Settings, setup: ClinicSetup) -> anyhow::Result<()> {
    let store = settings.store().await?;
    let seeded = store.seed_escorts(&setup.resources.escorts).await.map_err(|e| anyhow::anyhow!("seeding escorts: {e}"))?;
    store
        .seed_resources(setup.resources.chairs, setup.resources.lab_draws_per_slot)
        .await
        .map_err(|e| anyhow::anyhow!("seeding resources: {e}"))?;
    if seeded > 0 {
        tracing::info!(escorts = seeded, "escorts imported from config/resources.toml into an empty database");
    }
    let state = itinerary_api::AppState { store, setup: Arc::new(setup), public_url: settings.public_url.clone() };
    let listener = tokio::net::TcpListener::bind(&settings.listen).await.with_context(|| format!("listening on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port.
    println!("listening on http://{addr}");
    tracing::info!(%addr, "serving");
    axum::serve(listener, itinerary_api::router(state)).with_graceful_shutdown(shutdown()).await.context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}
