//! `itinerary`: the command. `plan FILE.toml` plans a stay and prints the timeline (or, with
//! `--json`, the Plan in the schema of docs/plan-schema.md); with `--ics DIR` it also writes the
//! itinerary's calendar and one invite per appointment and attendee (see `calendar_files`).

mod calendar_files;
mod season;
mod service;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use itinerary_core::{Ledger, PlanRequest, RawPlanRequest, display};

/// A booking allocates and frees some 75 KB of short-lived JSON and row buffers across threads;
/// under glibc's malloc that was a fifth of the server's CPU (see README, Benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "itinerary", version, about = "Itinerary scheduler for medical travel between Japan and Malaysia")]
struct Cli {
    /// Directory with clinic.toml, protocols.toml, resources.toml, holidays.csv, airports.csv.
    #[arg(long, global = true, env = "ITINERARY_CONFIG_DIR", default_value = "config")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Plan one patient's stay from a request file and print it.
    Plan {
        /// The request, as TOML (see examples/).
        file: PathBuf,
        /// Print the Plan (or the reasons it is infeasible) as JSON.
        #[arg(long)]
        json: bool,
        /// Plan as if it were this instant (RFC 3339), instead of the clock: for reproducible output.
        #[arg(long)]
        now: Option<DateTime<Utc>>,
        /// Write DIR/itinerary.ics (PUBLISH) and one invite per appointment and attendee. Run again
        /// on the same DIR after changing the request: the changes go out as updates and cancellations.
        #[arg(long, value_name = "DIR")]
        ics: Option<PathBuf>,
        /// The itinerary's stable id, the left part of every calendar UID [default: the file's stem].
        #[arg(long, value_name = "ID")]
        itinerary: Option<String>,
        /// Print every message each recipient receives over the season, as the worker words it.
        #[arg(long, conflicts_with = "json")]
        messages: bool,
        /// With --messages: cancel the itinerary at this instant (RFC 3339), and print what that sends.
        #[arg(long, requires = "messages", value_name = "INSTANT")]
        cancel_at: Option<DateTime<Utc>>,
    },
    /// Run the HTTP API and the delivery worker (settings: config/default.toml, each overridable
    /// by ITINERARY_SECTION_KEY; DATABASE_URL, ITINERARY_LISTEN).
    Serve,
    /// Deliver due messages (invites, reminders) without serving HTTP; any number may run.
    Worker,
    /// Apply the database migrations and exit.
    Migrate,
    /// Read one email (RFC 5322) on standard input, as a mail server's pipe or `.forward` hands
    /// it over: a reply to a calendar invite (iMIP REPLY or COUNTER) is recorded against its
    /// appointment, or refused with the reason; a text reply is kept for the patient. Prints
    /// the outcome as JSON. Exit codes as sendmail expects of a delivery program: 0 recorded
    /// (applied, refused or kept), 65 not a readable message, 75 the database is away (the
    /// mail server tries again later).
    IngestMail,
    /// Administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Create a coordinator and print their bearer token (shown this once; stored hashed).
    CreateCoordinator {
        /// Their name, for the audit log.
        name: String,
        /// Days the token works; after that, `issue-token` gives them a new one.
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u16).range(1..=366))]
        days: u16,
    },
    /// Print a new bearer token for an existing coordinator (their others stay as they are).
    IssueToken {
        /// The coordinator's id (see `list-coordinators`).
        id: i32,
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u16).range(1..=366))]
        days: u16,
    },
    /// End every token of a coordinator at once (they left, or a token leaked).
    RevokeCoordinator {
        /// The coordinator's id (see `list-coordinators`).
        id: i32,
    },
    /// List coordinators: live tokens, when the last ends, and when one was last used.
    ListCoordinators,
}

/// The `admin` commands. Tokens go to standard output alone, so that scripts can take them.
async fn admin(settings: &service::Settings, command: AdminCommand) -> anyhow::Result<()> {
    let store = settings.store().await?;
    let days = |d: u16| chrono::Duration::days(i64::from(d));
    match command {
        AdminCommand::CreateCoordinator { name, days: d } => {
            let (id, token) = store.create_coordinator(name.trim(), days(d)).await.context("creating the coordinator")?;
            eprintln!("coordinator {} created (id {id}); their token, valid for {d} days, shown this once:", name.trim());
            println!("{token}");
        }
        AdminCommand::IssueToken { id, days: d } => {
            let token = store.issue_coordinator_token(id, days(d)).await.with_context(|| format!("issuing a token to coordinator {id}"))?;
            eprintln!("a new token for coordinator {id}, valid for {d} days, shown this once:");
            println!("{token}");
        }
        AdminCommand::RevokeCoordinator { id } => {
            let n = store.revoke_coordinator(id).await.with_context(|| format!("revoking coordinator {id}"))?;
            eprintln!("coordinator {id}: {n} token(s) revoked");
        }
        AdminCommand::ListCoordinators => {
            let at = |t: Option<DateTime<Utc>>| t.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string());
            let mut list = format!("{:>4}  {:<24}  {:>5}  {:<20}  {:<20}\n", "id", "name", "live", "expires", "last used");
            for c in store.coordinators().await.context("listing coordinators")? {
                let name: String = c.name.chars().take(24).collect();
                list.push_str(&format!(
                    "{:>4}  {:<24}  {:>5}  {:<20}  {:<20}\n",
                    c.id,
                    name,
                    c.live_tokens,
                    at(c.expires_at),
                    at(c.last_used_at)
                ));
            }
            out(&list)?;
        }
    }
    Ok(())
}

/// `itinerary ingest-mail`: one message from standard input.
async fn ingest_mail(settings: &service::Settings, setup: &itinerary_core::ClinicSetup) -> anyhow::Result<ExitCode> {
    use std::io::Read;
    const EX_DATAERR: u8 = 65;
    const EX_TEMPFAIL: u8 = 75;
    let mut raw = Vec::new();
    std::io::stdin().take(itinerary_inbound::MAX_BYTES as u64 + 1).read_to_end(&mut raw).context("reading standard input")?;
    let mail = match itinerary_inbound::read(&raw) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("refused: {e}");
            return Ok(ExitCode::from(EX_DATAERR));
        }
    };
    let store = match settings.store().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("the database is away ({e:#}); try again later");
            return Ok(ExitCode::from(EX_TEMPFAIL));
        }
    };
    let now = settings.clock(&store).now().await;
    let answer = match now {
        Ok(now) => store.record_inbound(&mail, "mail", &setup.calendar.organizer_email, now).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(a) => {
            out(&format!("{}\n", serde_json::to_string(&a)?))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("not recorded ({e}); try again later");
            Ok(ExitCode::from(EX_TEMPFAIL))
        }
    }
}

/// Writes `text` to standard output. A reader that has gone (`itinerary plan … --json | head`)
/// wanted no more: that is not an error, and not a panic as `print!` makes it.
fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to standard output"),
        _ => Ok(()),
    }
}

/// Exit codes: 0 planned, 1 infeasible, 2 bad request or configuration.
fn main() -> ExitCode {
    // reqwest (LINE) and lettre share ring's TLS; reqwest has no provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        command @ (Command::Serve | Command::Worker) => {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
                .with_writer(std::io::stderr)
                .init();
            let setup =
                itinerary_config::load(&cli.config).with_context(|| format!("loading the configuration from {}", cli.config.display()))?;
            let settings = service::Settings::load(&cli.config)?;
            let runtime = service::runtime()?;
            match command {
                Command::Serve => runtime.block_on(service::serve(settings, setup, &cli.config))?,
                _ => runtime.block_on(service::worker(settings, setup, &cli.config))?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::IngestMail => {
            let setup =
                itinerary_config::load(&cli.config).with_context(|| format!("loading the configuration from {}", cli.config.display()))?;
            let settings = service::Settings::load(&cli.config)?;
            service::runtime()?.block_on(ingest_mail(&settings, &setup))
        }
        Command::Migrate => {
            let settings = service::Settings::load(&cli.config)?;
            service::runtime()?.block_on(settings.store())?;
            eprintln!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin { command } => {
            let settings = service::Settings::load(&cli.config)?;
            service::runtime()?.block_on(admin(&settings, command))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { file, json, now, ics, itinerary, messages, cancel_at } => {
            let setup =
                itinerary_config::load(&cli.config).with_context(|| format!("loading the configuration from {}", cli.config.display()))?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let raw: RawPlanRequest = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: not a valid request: {}", file.display(), e.to_string().trim_end()))?;
            let req = match PlanRequest::parse(&raw, &setup) {
                Ok(r) => r,
                Err(invalid) => {
                    if json {
                        out(&format!("{}\n", serde_json::to_string_pretty(&serde_json::json!({ "invalid_request": invalid }))?))?;
                    } else {
                        eprintln!("{}: the request has {} problem(s):", file.display(), invalid.errors.len());
                        for e in &invalid.errors {
                            eprintln!("  - {e}");
                        }
                    }
                    return Ok(ExitCode::from(2));
                }
            };
            let now = now.unwrap_or_else(Utc::now);
            let ledger = Ledger::new(setup.rules.slot_minutes);
            match itinerary_core::plan(&setup, &req, now, &ledger) {
                Ok(plan) => {
                    let id = match itinerary {
                        Some(id) => id,
                        None => file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                    };
                    if let Some(dir) = &ics {
                        let written = calendar_files::write(dir, &id, &plan, &req, &setup)?;
                        eprintln!("{}: wrote {} calendar file(s), version {}", dir.display(), written.files, written.version);
                    }
                    if messages {
                        let dir = cli.config.join("messages");
                        let templates = itinerary_notify::Templates::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
                        out(&season::render(&templates, &setup, &id, &plan, &req, cancel_at)?)?;
                    } else if json {
                        out(&format!("{}\n", serde_json::to_string_pretty(&plan)?))?;
                    } else {
                        out(&display::timeline(&plan, &req.patient.name))?;
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(inf) => {
                    if json {
                        out(&format!("{}\n", serde_json::to_string_pretty(&serde_json::json!({ "infeasible": inf }))?))?;
                    } else {
                        eprint!("{}", display::infeasible(&inf));
                    }
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
