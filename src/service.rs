//! `itinerary serve`, `itinerary worker`, `itinerary migrate` and `itinerary admin`: the
//! service's settings (config/default.toml, each overridable by an environment variable) and
//! its start-up.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use itinerary_core::ClinicSetup;
use itinerary_notify::{EmailTransport, LineClient, SmtpSettings, Templates};
use itinerary_store::{Clock, Store};
use itinerary_worker::{Deliverer, DeliveryRules, Health, Queue, WorkerSettings};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    server: Server,
    database: DatabaseSettings,
    clock: ClockSettings,
    delivery: Delivery,
    smtp: Smtp,
    line: Line,
    #[serde(default)]
    inbound: InboundSettings,
    worker: Worker,
}

/// `[inbound]`: mail arriving at the organizer address, posted by a hosted mail service.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundSettings {
    /// `POST /inbound/email` takes `Authorization: Bearer <secret>`; empty: refused.
    #[serde(default)]
    secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Server {
    listen: String,
    public_url: String,
    worker: bool,
    environment: String,
    header_read_timeout_seconds: u64,
    max_connections: usize,
    connections_per_client: usize,
    failed_auth_burst: u32,
    failed_auth_refill_seconds: u64,
    console_idle_minutes: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseSettings {
    url: String,
    /// Connections per process; 0: 8 on SQLite, 16 on PostgreSQL.
    #[serde(default)]
    pool_size: u32,
    /// How long a request waits for a free connection before it is answered 503 busy.
    #[serde(default = "two_seconds")]
    acquire_timeout_seconds: u32,
}

fn two_seconds() -> u32 {
    2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockSettings {
    mode: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Delivery {
    update_grace_seconds: u32,
    late_after_minutes: u32,
    first_retry_seconds: u32,
    max_retry_seconds: u32,
    retry_hours: u32,
    coordinator_email: String,
    outbox: String,
    max_sends_in_flight: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Smtp {
    host: String,
    port: u16,
    security: String,
    username: String,
    password: String,
    timeout_seconds: u64,
    ca_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    api: String,
    token: String,
    monthly_budget: u64,
    /// Signs LINE's webhook bodies; empty: `POST /line/webhook` refuses everything.
    #[serde(default)]
    channel_secret: String,
    /// LINE's account-link endpoint, where the linking page sends the patient with the link
    /// token and our nonce.
    #[serde(default = "account_link_url")]
    account_link_url: String,
}

fn account_link_url() -> String {
    "https://access.line.me/dialog/bot/accountLink".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Worker {
    poll_ms: u64,
    fetch_ms: u64,
    concurrency: usize,
    job_size: usize,
    batch: u64,
    lease_seconds: u32,
    heartbeat_seconds: u64,
}

/// The settings in force: the file's, with the environment's on top.
#[derive(Debug)]
pub struct Settings {
    pub listen: String,
    pub public_url: String,
    pub database_url: String,
    file: File,
}

/// Environment variables with customary names, and the setting each overrides.
const ALIASES: &[(&str, &str, &str)] =
    &[("ITINERARY_LISTEN", "server", "listen"), ("ITINERARY_PUBLIC_URL", "server", "public_url"), ("DATABASE_URL", "database", "url")];

/// Puts `ITINERARY_SECTION_KEY` (and the aliases) over the file's values, parsed as the type the
/// file gives, so a typo is an error that names the variable.
fn apply_environment(doc: &mut toml::Table, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    for (section, table) in doc.iter_mut() {
        let Some(table) = table.as_table_mut() else { continue };
        for (key, value) in table.iter_mut() {
            let name = format!("ITINERARY_{}_{}", section.to_uppercase(), key.to_uppercase());
            let alias = ALIASES.iter().find(|(_, s, k)| s == section && k == key).map(|a| a.0);
            let Some((var, raw)) = alias.and_then(|a| env(a).map(|v| (a.to_owned(), v))).or_else(|| env(&name).map(|v| (name.clone(), v)))
            else {
                continue;
            };
            *value = match value {
                toml::Value::Integer(_) => {
                    toml::Value::Integer(raw.trim().parse().with_context(|| format!("{var}={raw:?} is not a whole number"))?)
                }
                toml::Value::Boolean(_) => {
                    toml::Value::Boolean(raw.trim().parse().with_context(|| format!("{var}={raw:?} is not true or false"))?)
                }
                _ => toml::Value::String(raw),
            };
        }
    }
    Ok(())
}

impl Settings {
    pub fn load(config_dir: &Path) -> anyhow::Result<Settings> {
        let path = config_dir.join("default.toml");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut doc: toml::Table =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        apply_environment(&mut doc, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))?;
        let file: File =
            doc.try_into().map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        if !matches!(file.clock.mode.as_str(), "system" | "test") {
            anyhow::bail!("[clock] mode: {:?} is neither \"system\" nor \"test\"", file.clock.mode);
        }
        if file.clock.mode == "test" && file.server.environment == "production" {
            anyhow::bail!("[clock] mode = \"test\" is refused when [server] environment = \"production\"");
        }
        Ok(Settings {
            listen: file.server.listen.clone(),
            public_url: file.server.public_url.trim_end_matches('/').to_owned(),
            database_url: file.database.url.clone(),
            file,
        })
    }

    /// The database, migrated. A SQLite file's directory is created first.
    pub async fn store(&self) -> anyhow::Result<Store> {
        if let Some(path) = self.database_url.strip_prefix("sqlite://") {
            private_sqlite_file(Path::new(path.split('?').next().unwrap_or(path)))?;
        }
        let d = &self.file.database;
        let pool = itinerary_store::PoolSettings {
            max_connections: Some(d.pool_size).filter(|n| *n > 0),
            acquire_timeout: Duration::from_secs(u64::from(d.acquire_timeout_seconds.max(1))),
        };
        let store = Store::connect_with(&self.database_url, &pool)
            .await
            .with_context(|| format!("connecting to the database ({})", redact(&self.database_url)))?
            .with_update_grace(chrono::Duration::seconds(i64::from(self.file.delivery.update_grace_seconds)));
        store.migrate().await.context("applying migrations")?;
        Ok(store)
    }

    pub fn clock(&self, store: &Store) -> Clock {
        if self.file.clock.mode == "test" { Clock::Test(store.clone()) } else { Clock::System }
    }

    fn worker_settings(&self) -> WorkerSettings {
        let w = &self.file.worker;
        WorkerSettings {
            poll: Duration::from_millis(w.poll_ms.max(10)),
            fetch: Duration::from_millis(w.fetch_ms.max(5)),
            concurrency: w.concurrency.max(1),
            job_size: w.job_size.max(1),
            batch: w.batch.max(1),
            lease: chrono::Duration::seconds(i64::from(w.lease_seconds.max(1))),
            heartbeat: Duration::from_secs(w.heartbeat_seconds.max(1)),
        }
    }

    /// Everything a worker needs to deliver messages.
    fn deliverer(&self, store: &Store, setup: Arc<ClinicSetup>, config_dir: &Path) -> anyhow::Result<Deliverer> {
        let d = &self.file.delivery;
        let templates = Templates::load(&config_dir.join("messages")).context("loading message templates")?;
        let s = &self.file.smtp;
        let email = if s.host.is_empty() {
            EmailTransport::outbox(Path::new(&d.outbox))?
        } else {
            let some = |v: &str| Some(v.to_owned()).filter(|v| !v.is_empty());
            EmailTransport::smtp(&SmtpSettings {
                host: s.host.clone(),
                port: s.port,
                security: s.security.clone(),
                username: some(&s.username),
                password: some(&s.password),
                timeout_secs: s.timeout_seconds,
                ca_file: some(&s.ca_file),
            })?
        };
        let l = &self.file.line;
        let line = if l.token.is_empty() { None } else { Some(LineClient::new(&l.api, &l.token, Duration::from_secs(30))?) };
        let minutes = |m: u32| chrono::Duration::minutes(i64::from(m));
        let seconds = |s: u32| chrono::Duration::seconds(i64::from(s));
        let rules = DeliveryRules {
            late_after: minutes(d.late_after_minutes),
            first_backoff: seconds(d.first_retry_seconds.max(1)),
            max_backoff: seconds(d.max_retry_seconds.max(1)),
            retry_for: chrono::Duration::hours(i64::from(d.retry_hours)),
            line_monthly_budget: l.monthly_budget,
            coordinator_email: Some(d.coordinator_email.clone()).filter(|e| !e.is_empty()),
            public_url: self.public_url.clone(),
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into());
        Ok(Deliverer {
            store: store.clone(),
            setup,
            templates: Arc::new(templates),
            email,
            line,
            rules,
            clock: self.clock(store),
            // Unique per process: apalis on SQLite refuses a name still registered by a worker that died.
            name: format!("{host}-{}-{}", std::process::id(), rand_suffix()),
            sends: Arc::new(tokio::sync::Semaphore::new(d.max_sends_in_flight.max(1))),
            in_flight: Default::default(),
            health: Health::default(),
        })
    }
}

/// The SQLite file and the directory it makes, for this user alone (0600 in a new 0700
/// directory): it holds patients' names, addresses and treatment. SQLite gives its `-wal` and
/// `-shm` files the database file's mode, so creating the file first covers them too; a file
/// left readable by others by an older version is narrowed.
fn private_sqlite_file(file: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if file.as_os_str().is_empty() || file.to_str().is_some_and(|f| f.starts_with(':')) {
        return Ok(());
    }
    std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(file).with_context(|| format!("creating {}", file.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let f = std::path::PathBuf::from(format!("{}{suffix}", file.display()));
        if let Ok(meta) = std::fs::metadata(&f)
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).with_context(|| format!("narrowing {}", f.display()))?;
        }
    }
    Ok(())
}

fn rand_suffix() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{t:08x}")
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

/// Serves until SIGTERM or Ctrl-C; requests in flight finish first, then the worker stops.
pub async fn serve(settings: Settings, setup: ClinicSetup, config_dir: &Path) -> anyhow::Result<()> {
    let store = settings.store().await?;
    let seeded = store.seed_escorts(&setup.resources.escorts).await.map_err(|e| anyhow::anyhow!("seeding escorts: {e}"))?;
    store
        .seed_resources(setup.resources.chairs, setup.resources.lab_draws_per_slot)
        .await
        .map_err(|e| anyhow::anyhow!("seeding resources: {e}"))?;
    if seeded > 0 {
        tracing::info!(escorts = seeded, "escorts imported from config/resources.toml into an empty database");
    }
    let setup = Arc::new(setup);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = if settings.file.server.worker {
        let deliverer = Arc::new(settings.deliverer(&store, setup.clone(), config_dir)?);
        let queue = Queue::connect(&store, &settings.database_url).await.context("opening the job queue")?;
        Some((deliverer, queue))
    } else {
        None
    };
    let ws = settings.worker_settings();
    let with_worker = worker.is_some();
    let status = worker.as_ref().map(|(deliverer, _)| {
        let (health, heartbeat) = (deliverer.health.clone(), ws.heartbeat);
        // The dispatcher passes every poll: five missed, or three heartbeats, is an outage.
        let stale = (ws.poll * 5).max(heartbeat * 3);
        itinerary_api::WorkerStatus(Arc::new(move || {
            let r = health.report(heartbeat, stale);
            (r.ok, serde_json::to_value(&r).unwrap_or_default())
        }))
    });
    let failed = Arc::new(itinerary_api::guard::FailedAttempts::new(
        settings.file.server.failed_auth_burst,
        Duration::from_secs(settings.file.server.failed_auth_refill_seconds),
    ));
    let console = itinerary_console::Console {
        store: store.clone(),
        setup: setup.clone(),
        clock: settings.clock(&store),
        idle: chrono::Duration::minutes(i64::from(settings.file.server.console_idle_minutes.max(1))),
        secure: settings.public_url.starts_with("https://"),
        public_url: settings.public_url.trim_end_matches('/').to_owned(),
        failed: failed.clone(),
        line_account_link: settings.file.line.account_link_url.clone(),
        outbox: Some(std::path::PathBuf::from(&settings.file.delivery.outbox)).filter(|p| !p.as_os_str().is_empty()),
    };
    let state = itinerary_api::AppState {
        store: store.clone(),
        setup,
        public_url: settings.public_url.clone(),
        clock: settings.clock(&store),
        worker: status,
        failed,
        in_flight: Default::default(),
        line_secret: Some(settings.file.line.channel_secret.as_str()).filter(|s| !s.is_empty()).map(Arc::from),
        inbound_secret: Some(settings.file.inbound.secret.as_str()).filter(|s| !s.is_empty()).map(Arc::from),
        outbox: Some(std::path::PathBuf::from(&settings.file.delivery.outbox)).filter(|p| !p.as_os_str().is_empty()),
    };
    let srv = &settings.file.server;
    let limits = itinerary_api::serve::Limits {
        header_read_timeout: Some(Duration::from_secs(srv.header_read_timeout_seconds)).filter(|d| !d.is_zero()),
        max_connections: srv.max_connections,
        per_client: srv.connections_per_client,
    };
    let listener = tokio::net::TcpListener::bind(&settings.listen).await.with_context(|| format!("listening on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port.
    println!("listening on http://{addr}");
    tracing::info!(%addr, worker = with_worker, "serving");
    let server = async {
        let app = itinerary_console::router(console).merge(itinerary_api::router(state));
        let r = itinerary_api::serve::serve(listener, app, limits, shutdown()).await.context("serving");
        // Requests in flight are done: now the worker stops too.
        let _ = stop_tx.send(true);
        r
    };
    let delivering = async move {
        let Some((deliverer, queue)) = worker else { return Ok(()) };
        let mut stop = stop_rx.clone();
        let run = itinerary_worker::run(deliverer, queue, ws, async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        within_worker_grace(run, stop_rx).await
    };
    tokio::try_join!(server, delivering)?;
    tracing::info!("stopped");
    Ok(())
}

/// Delivers messages until SIGTERM or Ctrl-C (the message in hand is finished first).
pub async fn worker(settings: Settings, setup: ClinicSetup, config_dir: &Path) -> anyhow::Result<()> {
    let store = settings.store().await?;
    let deliverer = Arc::new(settings.deliverer(&store, Arc::new(setup), config_dir)?);
    let queue = Queue::connect(&store, &settings.database_url).await.context("opening the job queue")?;
    tracing::info!(worker = %deliverer.name, "delivering");
    // Tests and scripts read this line to know the worker is up.
    println!("worker {} started", deliverer.name);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stop = stop_rx.clone();
    let run = itinerary_worker::run(deliverer, queue, settings.worker_settings(), async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    tokio::spawn(async move {
        shutdown().await;
        let _ = stop_tx.send(true);
    });
    within_worker_grace(run, stop_rx).await?;
    tracing::info!("stopped");
    Ok(())
}

/// How long the worker may take to stop once asked (after the HTTP server's own 30 s): a send
/// in hand finishes, claims are given back. What is still running then is left to the leases:
/// another worker takes those messages over (a send cut off may go out twice, as after a
/// crash). So the process ends within a minute of SIGTERM whatever the database does.
const WORKER_GRACE: Duration = Duration::from_secs(20);

/// Runs the worker until it stops by itself, or until `WORKER_GRACE` after `stop` turns true.
async fn within_worker_grace(
    run: impl Future<Output = Result<(), itinerary_worker::WorkerError>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => r.context("worker"),
        () = async {
            let _ = stop.wait_for(|s| *s).await;
            tokio::time::sleep(WORKER_GRACE).await;
        } => {
            tracing::warn!(grace_s = WORKER_GRACE.as_secs(), "the worker did not stop in time; exiting, its claims lapse to other workers");
            Ok(())
        }
    }
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
    tracing::info!("shutting down: finishing work in flight");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_by_section_and_key_and_names_a_bad_value() {
        let mut doc: toml::Table =
            toml::from_str("[worker]\nconcurrency = 8\n[server]\nlisten = \"a\"\nworker = true\n").unwrap_or_default();
        let env = |k: &str| match k {
            "ITINERARY_WORKER_CONCURRENCY" => Some("3".to_owned()),
            "ITINERARY_LISTEN" => Some("b".to_owned()),
            _ => None,
        };
        assert!(apply_environment(&mut doc, &env).is_ok());
        assert_eq!(doc["worker"]["concurrency"].as_integer(), Some(3));
        assert_eq!(doc["server"]["listen"].as_str(), Some("b"));
        let bad = |k: &str| (k == "ITINERARY_SERVER_WORKER").then(|| "yes".to_owned());
        let e = apply_environment(&mut doc, &bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("ITINERARY_SERVER_WORKER=\"yes\""), "{e}");
    }
}
