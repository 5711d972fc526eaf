//! `Idempotency-Key` end to end (issue 15, item 3), on SQLite and PostgreSQL: the same write
//! sent again is answered as the first time and done once; a different request under a used key
//! is refused; concurrent requests with one key make one write. On PostgreSQL, a proxy between
//! the service and the database cuts the connection at COMMIT, after or before the database got
//! it: the service answers 503 `outcome_unknown` either way, and the request sent again with its
//! key tells which happened (its stored answer, or the write done now), never twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One answer: status, whether it was replayed, body.
async fn send(s: &Server, method: &str, path: &str, key: Option<&str>, body: Option<&Value>) -> (StatusCode, bool, Value) {
    let mut r = s.http.request(method.parse().unwrap(), s.url(path)).bearer_auth(&s.token);
    if let Some(k) = key {
        r = r.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    let resp = r.send().await.unwrap();
    let st = resp.status();
    status_documented(method, path, st);
    let replayed = resp.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    (st, replayed, resp.json().await.unwrap_or(Value::Null))
}

async fn keys_replay_refuse_reuse_and_write_once(db: Db) {
    let s = Server::start_with(&db, &[("ITINERARY_SERVER_WORKER", "false")]);

    // A new patient, twice: one patient, the same answer.
    let p = patient("Keyed Patient");
    let (st, replayed, first) = send(&s, "POST", "/patients", Some("\"patient-1\""), Some(&p)).await;
    assert_eq!((st, replayed), (StatusCode::CREATED, false), "{first}");
    let (st, replayed, again) = send(&s, "POST", "/patients", Some("\"patient-1\""), Some(&p)).await;
    assert_eq!((st, replayed), (StatusCode::CREATED, true), "{again}");
    assert_eq!(first, again);
    assert_eq!(count(&db, "SELECT count(*) FROM patient").await, 1);
    let pid = first["id"].as_i64().unwrap();

    // A booking, twice (bare key, as many clients send it): one itinerary.
    let req = request(pid, 0);
    let (st, replayed, booked) = send(&s, "POST", "/itineraries", Some("book-1"), Some(&req)).await;
    assert_eq!((st, replayed), (StatusCode::CREATED, false), "{booked}");
    let (st, replayed, again) = send(&s, "POST", "/itineraries", Some("book-1"), Some(&req)).await;
    assert_eq!((st, replayed), (StatusCode::CREATED, true), "{again}");
    assert_eq!(booked, again);
    assert_eq!(count(&db, "SELECT count(*) FROM itinerary").await, 1);
    let id = booked["id"].as_i64().unwrap();

    // The key with another request: refused, naming the header; nothing stored.
    let (st, _, e) = send(&s, "POST", "/itineraries", Some("book-1"), Some(&request(pid, 1))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["code"], "idempotency_key_reused");
    assert_eq!(e["error"]["fields"][0]["field"], "Idempotency-Key");
    let (st, _, e) = send(&s, "PUT", &format!("/itineraries/{id}"), Some("book-1"), Some(&req)).await;
    assert_eq!((st, e["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused")), "{e}");
    assert_eq!(count(&db, "SELECT count(*) FROM itinerary").await, 1);

    // A key that is not one.
    for bad in ["\"\"", "two words", "\"unterminated"] {
        let (st, _, e) = send(&s, "POST", "/itineraries", Some(bad), Some(&request(pid, 2))).await;
        assert_eq!((st, e["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_idempotency_key")), "{bad}: {e}");
    }

    // A change, twice: one new version.
    let mut changed = req.clone();
    changed["trips"][0]["return"]["depart"] = json!(req["trips"][0]["return"]["depart"].as_str().unwrap().replace("23:35", "23:50"));
    let path = format!("/itineraries/{id}");
    let (st, replayed, v2) = send(&s, "PUT", &path, Some("change-1"), Some(&changed)).await;
    assert_eq!((st, replayed, v2["version"].as_i64()), (StatusCode::OK, false, Some(2)), "{v2}");
    let (st, replayed, again) = send(&s, "PUT", &path, Some("change-1"), Some(&changed)).await;
    assert_eq!((st, replayed), (StatusCode::OK, true));
    assert_eq!(v2, again);
    let (_, now) = s.call("GET", &path, None).await;
    assert_eq!(now["version"], 2, "changed once");

    // A cancellation, twice: the second is the first's answer, not 409 "already cancelled".
    let cancel = format!("/itineraries/{id}/cancel");
    let (st, replayed, gone) = send(&s, "POST", &cancel, Some("cancel-1"), None).await;
    assert_eq!((st, replayed, gone["status"].as_str()), (StatusCode::OK, false, Some("cancelled")), "{gone}");
    let (st, replayed, again) = send(&s, "POST", &cancel, Some("cancel-1"), None).await;
    assert_eq!((st, replayed), (StatusCode::OK, true));
    assert_eq!(gone, again);
    let (st, _, _) = send(&s, "POST", &cancel, None, None).await;
    assert_eq!(st, StatusCode::CONFLICT, "without its key, a second cancellation is refused");

    // Twelve at once with one key: one itinerary. Each hears the answer (first or replayed),
    // or 409 while the first is running; sent again, that one hears the answer too.
    let req = request(pid, 3);
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (http, url, token, req) = (s.http.clone(), s.url("/itineraries"), s.token.clone(), req.clone());
            tokio::spawn(async move {
                let r = http.post(url).bearer_auth(token).header("Idempotency-Key", "\"burst\"").json(&req).send().await.unwrap();
                let (st, retry) = (r.status(), r.headers().contains_key("retry-after"));
                (st, retry, r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (st, retry, body) = t.await.unwrap();
        match st {
            StatusCode::CREATED => {
                ids.insert(body["id"].as_i64().unwrap());
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["error"]["code"], "idempotency_key_in_use", "{body}");
                assert!(retry, "says when to send it again");
            }
            other => panic!("{other}: {body}"),
        }
    }
    let (st, replayed, body) = send(&s, "POST", "/itineraries", Some("\"burst\""), Some(&req)).await;
    assert_eq!((st, replayed), (StatusCode::CREATED, true), "{body}");
    ids.insert(body["id"].as_i64().unwrap());
    assert_eq!(ids.len(), 1, "one itinerary for one key: {ids:?}");
    assert_eq!(count(&db, "SELECT count(*) FROM itinerary").await, 2);

    // Keys are each coordinator's own: another coordinator's "book-1" is a new booking.
    let out = itinerary(&db).args(["admin", "create-coordinator", "Second Coordinator"]).output().unwrap();
    let other = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let r = s.http.post(s.url("/itineraries")).bearer_auth(&other).header("Idempotency-Key", "book-1").json(&request(pid, 4)).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(!r.headers().contains_key("idempotent-replayed"));
    assert_eq!(count(&db, "SELECT count(*) FROM itinerary").await, 3);
    db.drop_pg().await;
}

#[tokio::test]
async fn sqlite_keys_replay_refuse_reuse_and_write_once() {
    keys_replay_refuse_reuse_and_write_once(Db::sqlite("idempotency")).await;
}

#[tokio::test]
async fn postgres_keys_replay_refuse_reuse_and_write_once() {
    if let Some(db) = Db::postgres("idempotency").await {
        keys_replay_refuse_reuse_and_write_once(db).await;
    }
}

/// What the proxy does to the next COMMIT it sees.
const PASS: u8 = 0;
/// Forwards it, lets the database commit, and cuts the connection before the answer.
const CUT_AFTER: u8 = 1;
/// Cuts the connection instead of forwarding it: the database rolls back.
const CUT_BEFORE: u8 = 2;

/// A TCP proxy to PostgreSQL on 127.0.0.1:5432 that cuts one connection at its next COMMIT
/// (a simple-protocol `Q` message, as sqlx sends it) as `mode` says, then passes all again.
/// `CUT_AFTER` cuts once the database has answered that COMMIT (its `CommandComplete`), which it
/// keeps from the client: a fixed wait was not enough when the suite kept the disk busy (the
/// commit's WAL flush outlasted it, and the test read the table before the commit was visible).
async fn proxy(mode: Arc<AtomicU8>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else { continue };
            let mode = mode.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                // Set when the client's COMMIT is to be cut after the database answers it.
                let cutting = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let (committed, answered) = tokio::sync::oneshot::channel::<()>();
                let back = tokio::spawn({
                    let cutting = cutting.clone();
                    async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = sr.read(&mut buf).await {
                            let chunk = &buf[..n];
                            if cutting.load(Ordering::SeqCst) {
                                if chunk.windows(12).any(|w| w == b"C\0\0\0\x0bCOMMIT\0") {
                                    let _ = committed.send(());
                                    return;
                                }
                            } else if cw.write_all(chunk).await.is_err() {
                                return;
                            }
                        }
                    }
                });
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = cr.read(&mut buf).await {
                    let chunk = &buf[..n];
                    let commit = chunk.windows(12).any(|w| w == b"Q\0\0\0\x0bCOMMIT\0");
                    let cut = if commit { mode.swap(PASS, Ordering::SeqCst) } else { PASS };
                    if cut == CUT_BEFORE {
                        break;
                    }
                    if cut == CUT_AFTER {
                        cutting.store(true, Ordering::SeqCst);
                    }
                    if sw.write_all(chunk).await.is_err() {
                        break;
                    }
                    if cut == CUT_AFTER {
                        // The database committed (or the connection ended); the client never hears.
                        let _ = answered.await;
                        break;
                    }
                }
                back.abort();
            });
        }
    });
    port
}

// Threads of its own for the proxy: starting the server blocks the test's thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_commit_cut_on_the_wire_is_resolved_by_its_key() {
    let Some(db) = Db::postgres("commit_cut").await else { return };
    let mode = Arc::new(AtomicU8::new(PASS));
    let port = proxy(mode.clone()).await;
    let name = db.pg_name.clone().unwrap();
    let through =
        Db { url: format!("postgres://postgres@127.0.0.1:{port}/{name}?sslmode=disable"), pg_name: None, outbox: db.outbox.clone() };
    let s = Server::start_with(&through, &[("ITINERARY_SERVER_WORKER", "false")]);
    let (st, _, p) = send(&s, "POST", "/patients", None, Some(&patient("Cut Patient"))).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let pid = p["id"].as_i64().unwrap();

    // A booking whose COMMIT reached the database, the answer lost: unknown, then its answer.
    let req = request(pid, 0);
    mode.store(CUT_AFTER, Ordering::SeqCst);
    let (st, _, e) = send(&s, "POST", "/itineraries", Some("cut-book"), Some(&req)).await;
    assert_eq!((st, e["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("outcome_unknown")), "{e}");
    assert_eq!(mode.load(Ordering::SeqCst), PASS, "the proxy cut at that COMMIT");
    assert_eq!(count(&db, "SELECT count(*) FROM itinerary").await, 1, "it was committed");
    let (st, replayed, booked) = send(&s, "POST", "/itineraries", Some("cut-book"), Some(&req)).await;
    assert_eq!((st, replayed), (StatusCode::CREATED, true), "{booked}");
    assert_eq!(count(&db, "SELECT count(*) FROM itinerary").await, 1, "and not booked twice");
    let id = booked["id"].as_i64().unwrap();
    let path = format!("/itineraries/{id}");

    // A change whose COMMIT never reached it: unknown, then done now, once.
    let mut changed = req.clone();
    changed["trips"][0]["return"]["depart"] = json!(req["trips"][0]["return"]["depart"].as_str().unwrap().replace("23:35", "23:50"));
    mode.store(CUT_BEFORE, Ordering::SeqCst);
    let (st, _, e) = send(&s, "PUT", &path, Some("cut-change"), Some(&changed)).await;
    assert_eq!((st, e["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("outcome_unknown")), "{e}");
    assert_eq!(count(&db, &format!("SELECT count(*) FROM itinerary_version WHERE itinerary_id = {id}")).await, 1, "not committed");
    let (st, replayed, v2) = send(&s, "PUT", &path, Some("cut-change"), Some(&changed)).await;
    assert_eq!((st, replayed, v2["version"].as_i64()), (StatusCode::OK, false, Some(2)), "{v2}");

    // A cancellation committed, its answer lost: the key answers it, a second is not made.
    mode.store(CUT_AFTER, Ordering::SeqCst);
    let (st, _, e) = send(&s, "POST", &format!("{path}/cancel"), Some("cut-cancel"), None).await;
    assert_eq!((st, e["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("outcome_unknown")), "{e}");
    let (st, replayed, gone) = send(&s, "POST", &format!("{path}/cancel"), Some("cut-cancel"), None).await;
    assert_eq!(
        (st, replayed, gone["status"].as_str(), gone["version"].as_i64()),
        (StatusCode::OK, true, Some("cancelled"), Some(3)),
        "{gone}"
    );
    assert_eq!(count(&db, &format!("SELECT count(*) FROM itinerary_version WHERE itinerary_id = {id}")).await, 3);
    drop(s);
    db.drop_pg().await;
}
