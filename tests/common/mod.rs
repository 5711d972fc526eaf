//! What the end-to-end tests share: a fresh database (SQLite file or PostgreSQL database), the
//! real `itinerary` binary started on port 0, and request builders.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod line_platform;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub const ADMIN_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database for one test: a SQLite file, or a PostgreSQL database created for it.
pub struct Db {
    pub url: String,
    pub pg_name: Option<String>,
    /// Where the worker's file outbox goes for this database.
    pub outbox: PathBuf,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Db {
    pub fn sqlite(name: &str) -> Db {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("service");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{name}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
        Db { url: format!("sqlite://{}?mode=rwc", file.display()), pg_name: None, outbox: fresh_outbox(&format!("sqlite-{name}")) }
    }

    pub async fn postgres(name: &str) -> Option<Db> {
        use sea_orm::ConnectionTrait;
        let admin = match sea_orm::Database::connect(ADMIN_PG).await {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var_os("ITINERARY_REQUIRE_POSTGRES").is_none(),
                    "PostgreSQL is required here but does not answer at {ADMIN_PG}: {e}"
                );
                println!("skipping the PostgreSQL half: no server at {ADMIN_PG} ({e})");
                return None;
            }
        };
        let db = format!("itinerary_{}_{}_{}", name, std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {db}")).await.unwrap();
        admin.execute_unprepared(&format!("CREATE DATABASE {db}")).await.unwrap();
        let outbox = fresh_outbox(&db);
        Some(Db { url: format!("postgres://postgres@127.0.0.1:5432/{db}"), pg_name: Some(db), outbox })
    }

    pub async fn drop_pg(&self) {
        use sea_orm::ConnectionTrait;
        if let Some(name) = &self.pg_name {
            let admin = sea_orm::Database::connect(ADMIN_PG).await.unwrap();
            let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }
}

/// The one number `sql` (a `SELECT count(*) …`) answers on the test's database, read directly:
/// what is stored, not what the service says.
pub async fn count(db: &Db, sql: &str) -> i64 {
    use sea_orm::ConnectionTrait;
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let row = conn.query_one_raw(sea_orm::Statement::from_string(conn.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// An HTTP client. reqwest is built without a TLS provider of its own (the service installs
/// ring's at start-up), so the tests install it too.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// An empty outbox directory for one database's worker.
fn fresh_outbox(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("outbox").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The real server, on a free port, stopped with SIGTERM when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

/// Where a server's log goes: the file named by `ITINERARY_TEST_SERVER_LOG` (appended), to
/// see why a test failed; nowhere otherwise.
pub fn server_log() -> Stdio {
    match std::env::var_os("ITINERARY_TEST_SERVER_LOG") {
        Some(path) => std::fs::OpenOptions::new().create(true).append(true).open(path).map_or_else(|_| Stdio::null(), Stdio::from),
        None => Stdio::null(),
    }
}

pub fn itinerary(db: &Db) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_itinerary"));
    c.current_dir(root())
        .env("DATABASE_URL", &db.url)
        .env("ITINERARY_LISTEN", "127.0.0.1:0")
        .env("ITINERARY_PUBLIC_URL", "http://feed.example")
        .env("ITINERARY_DELIVERY_OUTBOX", &db.outbox);
    c
}

impl Server {
    pub fn start(db: &Db) -> Server {
        Server::start_with(db, &[])
    }

    /// The server with these settings on top (`ITINERARY_SECTION_KEY`, value).
    pub fn start_with(db: &Db, settings: &[(&str, &str)]) -> Server {
        Server::start_logging(db, settings, server_log())
    }

    /// The server with its log (standard error) going to `log`.
    pub fn start_logging(db: &Db, settings: &[(&str, &str)], log: Stdio) -> Server {
        let out = itinerary(db).args(["admin", "create-coordinator", "Test Coordinator"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(token.starts_with("itc_") && token.len() > 60, "{token}");
        let mut child = itinerary(db).envs(settings.iter().copied()).arg("serve").stdout(Stdio::piped()).stderr(log).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("no address in {line:?}")).to_owned();
        Server { child, base, token, http: http() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self.http.request(method.parse().unwrap(), self.url(path)).bearer_auth(&self.token);
        let sent = body.clone();
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
        status_documented(method, path, status);
        if status.is_success() {
            openapi_check(method, path, sent.as_ref(), &answer);
        }
        (status, answer)
    }

    /// SIGTERM, and the exit status; a server still running a minute later is killed and the
    /// test fails (the shutdown grace is 30 s), rather than hanging the suite.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(60) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("the server did not stop within 60 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A patient who receives an invite for every appointment (the tests of calendar messages count
/// them); a new patient's default is the clinic's appointments only (`tests/delivery.rs`).
pub fn patient(name: &str) -> Value {
    json!({ "name": name, "email": "taro.yamada@example.jp", "birth_date": "1978-05-14", "home_zone": "Asia/Tokyo", "language": "ja",
        "passport_expiry": "2031-03-31", "invites": "every" })
}

pub fn trip(depart: &str, arrive: &str, back: &str, home: &str) -> Value {
    json!({
        "outbound": { "flight": "MH71", "from": "NRT", "depart": format!("{depart} 21:40"), "to": "KUL", "arrive": format!("{arrive} 04:30") },
        "return": { "flight": "MH88", "from": "KUL", "depart": format!("{back} 23:35"), "to": "NRT", "arrive": format!("{home} 07:15") }
    })
}

/// Kuala Lumpur's public holidays (`config/holidays.csv`): test trips keep clear of them, so that
/// a booking is refused only for the reason a test gives it.
static KL_HOLIDAYS: std::sync::LazyLock<std::collections::BTreeSet<chrono::NaiveDate>> = std::sync::LazyLock::new(|| {
    std::fs::read_to_string(root().join("config/holidays.csv"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(",MY,KUL,"))
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect()
});

/// A single infusion on the red-eye, leaving in about a year (always in the future, always on a
/// Sunday night: landing Monday, blood test Tuesday, infusion Wednesday). `week` counts the weeks
/// from a year ahead whose Monday to Friday hold no Kuala Lumpur holiday.
pub fn request(patient_id: i64, week: i64) -> Value {
    use chrono::{Datelike, Duration, Utc};
    let today = Utc::now().date_naive();
    // Sunday night out, back Thursday night.
    let mut d = today + Duration::days(365) - Duration::days(i64::from(today.weekday().num_days_from_monday())) - Duration::days(1);
    let mut left = week;
    loop {
        let clear = (1..=5).all(|n| !KL_HOLIDAYS.contains(&(d + Duration::days(n))));
        if clear && left == 0 {
            break;
        }
        left -= i64::from(clear);
        d += Duration::days(7);
    }
    let f = |n: i64| (d + Duration::days(n)).format("%Y-%m-%d").to_string();
    json!({ "patient_id": patient_id, "protocol": "single-infusion", "trips": [trip(&f(0), &f(1), &f(4), &f(5))] })
}

/// Every body a test sends to a route that succeeds must fit the route's request schema in
/// `/openapi.json`, and every answer its response schema: the document describes what the
/// service does, not what it once did.
fn openapi_check(method: &str, path: &str, sent: Option<&Value>, answer: &Value) {
    let doc = &*DOC;
    let path = path.split('?').next().unwrap_or(path);
    let route = itinerary_api::openapi::BODIES.iter().find(|(m, p, _, _)| {
        let (a, b): (Vec<&str>, Vec<&str>) = (p.split('/').collect(), path.split('/').collect());
        m.eq_ignore_ascii_case(method) && a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.starts_with('{') || x == y)
    });
    let Some((_, route, request, response)) = route else { return };
    if let (Some(name), Some(body)) = (request, sent)
        && let Err(e) = fits(doc, &json!({ "$ref": format!("#/components/schemas/{name}") }), body)
    {
        panic!("{method} {route}: the request does not fit {name}: {e}");
    }
    if let Some(name) = response
        && let Err(e) = fits(doc, &json!({ "$ref": format!("#/components/schemas/{name}") }), answer)
    {
        panic!("{method} {route}: the answer does not fit {name}: {e}");
    }
}

/// `/openapi.json`, built once for every check of a test binary.
static DOC: std::sync::LazyLock<Value> = std::sync::LazyLock::new(itinerary_api::openapi::document);

/// Every status a route answers is one `/openapi.json` lists for it (`4XX` covers the client
/// errors): a 204 where the document promised 200 is a client's surprise.
pub fn status_documented(method: &str, path: &str, status: StatusCode) {
    let path = path.split('?').next().unwrap_or(path);
    let Some(paths) = DOC["paths"].as_object() else { panic!("/openapi.json has no paths") };
    let route = paths.iter().find(|(p, _)| {
        let (a, b): (Vec<&str>, Vec<&str>) = (p.split('/').collect(), path.split('/').collect());
        a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.starts_with('{') || x == y)
    });
    let Some((template, ops)) = route else { return };
    let Some(responses) = ops[method.to_ascii_lowercase()]["responses"].as_object() else { return };
    let code = status.as_u16().to_string();
    let listed = responses.contains_key(&code) || (status.is_client_error() && responses.contains_key("4XX"));
    assert!(
        listed || status.is_server_error(),
        "{method} {template} answered {status}, which /openapi.json does not list: {:?}",
        responses.keys()
    );
}

/// The JSON Schema keywords `/openapi.json` uses: $ref, type (one or several), enum,
/// properties, required, additionalProperties (false, or a schema for the others), items, oneOf.
fn fits(doc: &Value, schema: &Value, v: &Value) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or_default();
        return fits(doc, &doc["components"]["schemas"][name], v);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let fitting = options.iter().filter(|o| fits(doc, o, v).is_ok()).count();
        return if fitting == 1 { Ok(()) } else { Err(format!("{v} fits {fitting} of oneOf's {} schemas, not one", options.len())) };
    }
    if let Some(options) = schema["enum"].as_array() {
        return if options.contains(v) { Ok(()) } else { Err(format!("{v} is not one of {options:?}")) };
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    let is = |t: &str| match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => false,
    };
    if !types.iter().any(|t| is(t)) {
        return Err(format!("{v} is not {types:?}"));
    }
    if let Some(o) = v.as_object() {
        for r in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !o.contains_key(r) {
                return Err(format!("{r} is missing"));
            }
        }
        let others = &schema["additionalProperties"];
        for (k, x) in o {
            match schema["properties"].get(k) {
                Some(p) => fits(doc, p, x).map_err(|e| format!("{k}: {e}"))?,
                None if *others == json!(false) => return Err(format!("{k} is not in the schema")),
                None if others.is_object() => fits(doc, others, x).map_err(|e| format!("{k}: {e}"))?,
                None => {}
            }
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            fits(doc, items, x).map_err(|e| format!("[{i}]: {e}"))?;
        }
    }
    Ok(())
}
