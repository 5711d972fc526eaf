//! Replies to invites and reminders (issue 16, item 4), fed as mail clients send them
//! (`tests/inbound/`: Gmail, Outlook, Apple Calendar, a Japanese ISO-2022-JP text reply) both
//! ways a clinic can receive mail: `itinerary ingest-mail` (a mail server's pipe) and
//! `POST /inbound/email` (a hosted mail service). A believable reply is recorded against its
//! appointment and shown per attendee; a declined clinic appointment or another time proposed
//! raises an alert; an unknown UID, another attendee, a forged organizer or sender, an older
//! SEQUENCE or a REPLY without ATTENDEE is recorded as refused and changes nothing; what is not
//! mail, too large or unauthenticated is refused; no address or name reaches the log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::process::Stdio;

use base64::Engine;
use common::*;
use reqwest::StatusCode;
use serde_json::Value;

const SECRET: &str = "inbound-test-secret-0f8e7d6c";
const ORGANIZER: &str = "coordinators@klregen.example.my";
const PATIENT: &str = "taro.yamada@example.jp";

/// What fills a template's placeholders.
struct Fill<'a> {
    uid: &'a str,
    sequence: i64,
    attendee: &'a str,
    from: &'a str,
    organizer: &'a str,
    method: &'a str,
}

/// `line` folded at 75 octets (RFC 5545 3.1), on character boundaries, as clients write.
fn fold(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut width = 0;
        for c in line.chars() {
            if width + c.len_utf8() > 75 {
                out.push_str("\n ");
                width = 1;
            }
            out.push(c);
            width += c.len_utf8();
        }
        out.push('\n');
    }
    out
}

fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// Quoted-printable (RFC 2045 6.7), soft line breaks before 76 characters.
fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    for line in text.split("\r\n") {
        let mut width = 0;
        for b in line.bytes() {
            let piece = if (33..=126).contains(&b) && b != b'=' || b == b' ' { (b as char).to_string() } else { format!("={b:02X}") };
            if width + piece.len() > 73 {
                out.push_str("=\r\n");
                width = 0;
            }
            width += piece.len();
            out.push_str(&piece);
        }
        out.push_str("\r\n");
    }
    out
}

/// The message of `template` with `f` filled in, its calendar folded and encoded as the
/// client does (base64 in 76-character lines, or quoted-printable).
fn message(template: &str, f: &Fill) -> Vec<u8> {
    message_with(template, f, &|c| c)
}

/// As `message`, with `tweak` applied to the filled calendar before it is encoded.
fn message_with(template: &str, f: &Fill, tweak: &dyn Fn(String) -> String) -> Vec<u8> {
    let text = std::fs::read_to_string(root().join("tests/inbound").join(template)).unwrap();
    let (mail, calendar) = text.split_once("\nCALENDAR\n").unwrap_or((text.as_str(), ""));
    let fill = |s: &str| {
        s.replace("{{UID}}", f.uid)
            .replace("{{SEQUENCE}}", &f.sequence.to_string())
            .replace("{{ATTENDEE}}", f.attendee)
            .replace("{{FROM}}", f.from)
            .replace("{{ORGANIZER}}", f.organizer)
            .replace("{{METHOD}}", f.method)
    };
    let calendar = crlf(&fold(&tweak(fill(calendar))));
    let b64 = base64::engine::general_purpose::STANDARD.encode(calendar.as_bytes());
    let b64: Vec<String> = b64.as_bytes().chunks(76).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
    let mail =
        fill(mail).replace("{{CALENDAR_BASE64}}", &b64.join("\n")).replace("{{CALENDAR_QP}}", quoted_printable(&calendar).trim_end());
    crlf(&mail).into_bytes()
}

/// The text reply, answering our message `in_reply_to`, from `from`.
fn text_reply(from: &str, in_reply_to: &str) -> Vec<u8> {
    let text = std::fs::read(root().join("tests/inbound/text-reply-iso2022jp.eml")).unwrap();
    let text = String::from_utf8(text).unwrap().replace("{{FROM}}", from).replace("{{IN_REPLY_TO}}", in_reply_to);
    crlf(&text).into_bytes()
}

/// The UIDs issued for an itinerary: (uid, sequence, event, role, attendee address).
async fn issued(db: &Db, itinerary: i64) -> Vec<(String, i64, String, String, String)> {
    use sea_orm::ConnectionTrait;
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let sql =
        format!("SELECT uid, sequence, CAST(appointment AS TEXT) FROM calendar_uid WHERE itinerary_id = {itinerary} AND cancelled = false");
    let rows = conn.query_all_raw(sea_orm::Statement::from_string(conn.get_database_backend(), sql)).await.unwrap();
    rows.iter()
        .map(|r| {
            let a: Value = serde_json::from_str(&r.try_get_by_index::<String>(2).unwrap()).unwrap();
            (
                r.try_get_by_index::<String>(0).unwrap(),
                i64::from(r.try_get_by_index::<i32>(1).unwrap()),
                a["event"].as_str().unwrap().to_owned(),
                a["attendee"]["role"].as_str().unwrap().to_owned(),
                a["attendee"]["email"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `itinerary ingest-mail` with `raw` on standard input: exit code and standard output.
fn ingest(db: &Db, raw: &[u8]) -> (i32, Value) {
    let mut child = itinerary(db)
        .env("ITINERARY_CLOCK_MODE", "test")
        .arg("ingest-mail")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(raw).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

async fn post(s: &Server, raw: Vec<u8>, secret: Option<&str>) -> (StatusCode, Value) {
    let mut r = s.http.post(s.url("/inbound/email")).header("content-type", "message/rfc822").body(raw);
    if let Some(secret) = secret {
        r = r.bearer_auth(secret);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    status_documented("POST", "/inbound/email", status);
    (status, serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null))
}

async fn answers(s: &Server, itinerary: i64) -> Value {
    let (st, a) = s.call("GET", &format!("/itineraries/{itinerary}/answers"), None).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    a
}

fn answer_of<'a>(a: &'a Value, event: &str, role: &str) -> &'a Value {
    a["appointments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["event"] == event && x["role"] == role)
        .unwrap_or_else(|| panic!("no {event} for {role}: {a}"))
}

async fn replies_are_heard(db: Db, name: &str) {
    let log = std::env::temp_dir().join(format!("itinerary-inbound-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let s = Server::start_logging(
        &db,
        &[
            ("ITINERARY_INBOUND_SECRET", SECRET),
            ("ITINERARY_SERVER_WORKER", "false"),
            ("ITINERARY_CLOCK_MODE", "test"),
            ("RUST_LOG", "info"),
        ],
        std::fs::File::create(&log).unwrap().into(),
    );
    // The samples' replies were made in May and June 2027: the service's clock is after them.
    let (st, c) = s.call("PUT", "/clock", Some(serde_json::json!({ "now": "2027-06-10T03:00:00Z" }))).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let (st, p) = s.call("POST", "/patients", Some(patient("山田 太郎"))).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let pid = p["id"].as_i64().unwrap();
    let (st, it) = s.call("POST", "/itineraries", Some(request(pid, 0))).await;
    assert_eq!(st, StatusCode::CREATED, "{it}");
    let id = it["id"].as_i64().unwrap();
    let uids = issued(&db, id).await;
    let find = |pred: &dyn Fn(&str, &str) -> bool| uids.iter().find(|u| pred(&u.2, &u.3)).unwrap_or_else(|| panic!("{uids:?}")).clone();
    let infusion = find(&|e, r| e.contains("infusion") && r == "patient");
    let blood = find(&|e, r| e.contains("blood_test") && r == "patient");
    let follow_up = find(&|e, r| e.starts_with("followup_") && r == "patient");
    let pickup = find(&|_, r| r == "escort");
    let escort_email = pickup.4.clone();
    // Nothing answered yet.
    let a = answers(&s, id).await;
    assert!(a["appointments"].as_array().unwrap().iter().all(|x| x["answer"] == "no_answer"), "{a}");
    assert_eq!(a["line"]["linked"], false);

    // Gmail accepts the infusion, through the mail server's pipe.
    let gmail = message(
        "gmail-accept.eml",
        &Fill { uid: &infusion.0, sequence: infusion.1, attendee: PATIENT, from: PATIENT, organizer: ORGANIZER, method: "REPLY" },
    );
    let (code, out) = ingest(&db, &gmail);
    assert_eq!((code, out["outcome"].as_str()), (0, Some("applied")), "{out}");
    // Outlook declines the blood test, posted by a hosted mail service: an alert, with the note.
    let outlook = message(
        "outlook-decline.eml",
        &Fill { uid: &blood.0, sequence: blood.1, attendee: PATIENT, from: PATIENT, organizer: ORGANIZER, method: "REPLY" },
    );
    let (st, out) = post(&s, outlook, Some(SECRET)).await;
    assert_eq!((st, out["outcome"].as_str(), out["alert"].as_bool()), (StatusCode::OK, Some("applied"), Some(true)), "{out}");
    // Apple Calendar: the escort says tentative for the pick-up (a capitalised address too).
    let upper = escort_email.to_uppercase();
    let apple = message(
        "apple-tentative.eml",
        &Fill { uid: &pickup.0, sequence: pickup.1, attendee: &upper, from: &escort_email, organizer: ORGANIZER, method: "REPLY" },
    );
    let (st, out) = post(&s, apple, Some(SECRET)).await;
    assert_eq!((st, out["outcome"].as_str(), out["alert"].as_bool()), (StatusCode::OK, Some("applied"), Some(false)), "{out}");
    // Outlook proposes another time for the follow-up: recorded with the proposal, an alert.
    let counter = message(
        "outlook-counter.eml",
        &Fill { uid: &follow_up.0, sequence: follow_up.1, attendee: PATIENT, from: PATIENT, organizer: ORGANIZER, method: "COUNTER" },
    );
    let (code, out) = ingest(&db, &counter);
    assert_eq!((code, out["outcome"].as_str(), out["alert"].as_bool()), (0, Some("applied"), Some(true)), "{out}");

    let a = answers(&s, id).await;
    assert_eq!(answer_of(&a, &infusion.2, "patient")["answer"], "accepted", "{a}");
    let b = answer_of(&a, &blood.2, "patient");
    assert_eq!(
        (b["answer"].as_str(), b["alert"].as_bool(), b["comment"].as_str()),
        (Some("declined"), Some(true), Some("当日は会社を休めません。")),
        "{b}"
    );
    assert_eq!(answer_of(&a, &pickup.2, "escort")["answer"], "tentative");
    let f = answer_of(&a, &follow_up.2, "patient");
    assert_eq!(
        (f["answer"].as_str(), f["proposed_start"].as_str(), f["alert"].as_bool()),
        (Some("tentative"), Some("20270617T020000Z"), Some(true)),
        "{f}"
    );
    let answered = a["appointments"].as_array().unwrap().iter().filter(|x| x["answer"] != "no_answer").count();
    assert_eq!(answered, 4, "the rest have no answer yet: {a}");

    // Refused, each recorded with its reason, none applied: an unknown UID; the patient's UID
    // answered by the escort; a forged organizer; a sender who is not the attendee; a REPLY
    // with no ATTENDEE; METHOD:REQUEST.
    let before = count(&db, "SELECT count(*) FROM calendar_reply WHERE outcome = 'applied'").await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            message(
                "gmail-accept.eml",
                &Fill {
                    uid: "it-000000000000.trip1.infusion1.patient-deadbeef@klregen.example.my",
                    sequence: 0,
                    attendee: PATIENT,
                    from: PATIENT,
                    organizer: ORGANIZER,
                    method: "REPLY",
                },
            ),
            "unknown UID",
        ),
        (
            message(
                "gmail-accept.eml",
                &Fill {
                    uid: &infusion.0,
                    sequence: infusion.1,
                    attendee: &escort_email,
                    from: &escort_email,
                    organizer: ORGANIZER,
                    method: "REPLY",
                },
            ),
            "not the one this UID was sent to",
        ),
        (
            message(
                "gmail-accept.eml",
                &Fill {
                    uid: &infusion.0,
                    sequence: infusion.1,
                    attendee: PATIENT,
                    from: PATIENT,
                    organizer: "calendar@evil.example",
                    method: "REPLY",
                },
            ),
            "ORGANIZER is not this service's",
        ),
        (
            message(
                "gmail-accept.eml",
                &Fill {
                    uid: &infusion.0,
                    sequence: infusion.1,
                    attendee: PATIENT,
                    from: "someone@evil.example",
                    organizer: ORGANIZER,
                    method: "REPLY",
                },
            ),
            "sender is not the ATTENDEE",
        ),
        (
            message(
                "gmail-accept.eml",
                &Fill { uid: &infusion.0, sequence: infusion.1, attendee: PATIENT, from: PATIENT, organizer: ORGANIZER, method: "REQUEST" },
            ),
            "is not a reply",
        ),
        (
            message(
                "gmail-accept.eml",
                &Fill { uid: &infusion.0, sequence: infusion.1 + 5, attendee: PATIENT, from: PATIENT, organizer: ORGANIZER, method: "REPLY" },
            ),
            "is newer than any invite sent",
        ),
        (
            message_with(
                "gmail-accept.eml",
                &Fill { uid: &infusion.0, sequence: infusion.1, attendee: PATIENT, from: PATIENT, organizer: ORGANIZER, method: "REPLY" },
                &|c| c.replace("DTSTAMP:20270518T001244Z", "DTSTAMP:20991231T000000Z"),
            ),
            "is in the future",
        ),
        (
            message_with(
                "gmail-accept.eml",
                &Fill { uid: &infusion.0, sequence: infusion.1, attendee: PATIENT, from: PATIENT, organizer: ORGANIZER, method: "REPLY" },
                &|c| c.replace("DTSTAMP:20270518T001244Z\n", ""),
            ),
            "no DTSTAMP",
        ),
        (
            [
                b"Authentication-Results: mx.klregen.example.my; dkim=fail header.d=example.jp; spf=fail; dmarc=fail (p=reject) header.from=example.jp\r\n".as_slice(),
                &message(
                    "gmail-accept.eml",
                    &Fill { uid: &infusion.0, sequence: infusion.1, attendee: PATIENT, from: PATIENT, organizer: ORGANIZER, method: "REPLY" },
                ),
            ]
            .concat(),
            "failed DMARC",
        ),
    ];
    for (raw, why) in cases {
        let (st, out) = post(&s, raw, Some(SECRET)).await;
        assert_eq!((st, out["outcome"].as_str()), (StatusCode::OK, Some("refused")), "{why}: {out}");
        assert!(out["reason"].as_str().unwrap().contains(why), "{why}: {out}");
    }
    // A REPLY without ATTENDEE (the line removed), through the pipe.
    let no_attendee = String::from_utf8(message(
        "apple-tentative.eml",
        &Fill { uid: &pickup.0, sequence: pickup.1, attendee: &escort_email, from: &escort_email, organizer: ORGANIZER, method: "REPLY" },
    ))
    .unwrap();
    let no_attendee: String =
        no_attendee.split("\r\n").filter(|l| !l.starts_with("ATTENDEE") && !l.starts_with(" ")).collect::<Vec<_>>().join("\r\n");
    let (code, out) = ingest(&db, no_attendee.as_bytes());
    assert_eq!((code, out["reason"].as_str()), (0, Some("no ATTENDEE")), "{out}");
    assert_eq!(count(&db, "SELECT count(*) FROM calendar_reply WHERE outcome = 'applied'").await, before, "nothing refused was applied");
    assert_eq!(answers(&s, id).await["appointments"], a["appointments"], "the answers did not change");

    // A new name re-issues the patient's invites at a higher SEQUENCE: a reply to the old one is
    // refused as older; one to the new one is applied.
    let mut renamed = patient("山田 太朗");
    renamed.as_object_mut().unwrap().remove("invites");
    let (st, e) = s.call("PUT", &format!("/patients/{pid}"), Some(renamed)).await;
    assert_eq!(st, StatusCode::OK, "{e}");
    let now_seq = issued(&db, id).await.into_iter().find(|u| u.0 == infusion.0).unwrap().1;
    assert!(now_seq > infusion.1, "the SEQUENCE rose: {now_seq}");
    let stale = message(
        "gmail-accept.eml",
        &Fill { uid: &infusion.0, sequence: infusion.1, attendee: PATIENT, from: PATIENT, organizer: ORGANIZER, method: "REPLY" },
    );
    let (_, out) = post(&s, stale, Some(SECRET)).await;
    assert_eq!(out["outcome"], "refused", "{out}");
    assert!(out["reason"].as_str().unwrap().contains("older than the invite's"), "{out}");
    let fresh = message(
        "gmail-accept.eml",
        &Fill { uid: &infusion.0, sequence: now_seq, attendee: PATIENT, from: PATIENT, organizer: ORGANIZER, method: "REPLY" },
    );
    assert_eq!(post(&s, fresh.clone(), Some(SECRET)).await.1["outcome"], "applied");
    // The patient then declines from Outlook (a later DTSTAMP); the earlier acceptance, sent
    // again (a replay, or mail arriving out of order), does not undo that.
    let decline = message(
        "outlook-decline.eml",
        &Fill { uid: &infusion.0, sequence: now_seq, attendee: PATIENT, from: PATIENT, organizer: ORGANIZER, method: "REPLY" },
    );
    assert_eq!(post(&s, decline, Some(SECRET)).await.1["outcome"], "applied");
    let (_, out) = post(&s, fresh, Some(SECRET)).await;
    assert_eq!(out["outcome"], "refused", "{out}");
    assert!(out["reason"].as_str().unwrap().contains("DTSTAMP 20270518T001244Z is older"), "{out}");
    assert_eq!(answer_of(&answers(&s, id).await, &infusion.2, "patient")["answer"], "declined");

    // A Japanese text reply to a reminder (ISO-2022-JP, quoting it): kept for the patient, filed
    // under the message it answers, without the quote; from a stranger, not kept.
    let reference = it["reference"].as_str().unwrap();
    let stored = s.call("GET", &format!("/itineraries/{id}"), None).await.1;
    let m_id = stored["messages"].as_array().unwrap().iter().find(|m| m["recipient"]["role"] == "patient").unwrap()["id"].as_i64().unwrap();
    let ours = format!("{reference}.m{m_id}@klregen.example.my");
    let (code, out) = ingest(&db, &text_reply(PATIENT, &ours));
    assert_eq!((code, out["outcome"].as_str()), (0, Some("kept")), "{out}");
    let (code, out) = ingest(&db, &text_reply("stranger@example.com", "nothing@example.com"));
    assert_eq!((code, out["outcome"].as_str()), (0, Some("not_kept")), "{out}");
    let a = answers(&s, id).await;
    let texts: Vec<&Value> = a["messages"].as_array().unwrap().iter().filter(|m| m["channel"] == "email").collect();
    assert_eq!(texts.len(), 1, "{a}");
    let body = texts[0]["body"].as_str().unwrap();
    assert!(body.contains("成田空港に20時に着く予定です") && !body.contains("ご出発の日となりました") && !body.contains('>'), "{body}");
    assert_eq!(texts[0]["message_id"].as_i64(), Some(m_id));

    // The coordinator sees the answers on the console: the itinerary's table and the week's alerts.
    let console = line_platform::browser();
    let r = console
        .post(s.url("/console/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", s.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = |path: String| {
        let (console, cookie) = (console.clone(), cookie.clone());
        async move { console.get(path).header("cookie", cookie).send().await.unwrap().text().await.unwrap() }
    };
    let html = page(s.url(&format!("/console/itineraries/{id}?lang=en"))).await;
    for shown in ["Answers to invites", "Declined", "needs action", "Tentative", "Proposes: 20270617T020000Z", "当日は会社を休めません。"]
    {
        assert!(html.contains(shown), "{shown} not on the itinerary page");
    }
    let week = page(s.url("/console/?lang=en")).await;
    assert!(
        week.contains("Answers to invites that need action") && week.contains("answered declined") && week.contains("unknown UID"),
        "{week}"
    );

    // Bad input: no secret, a wrong one, not mail, too large; the pipe refuses not-mail with 65.
    let good = message(
        "gmail-accept.eml",
        &Fill { uid: &infusion.0, sequence: now_seq, attendee: PATIENT, from: PATIENT, organizer: ORGANIZER, method: "REPLY" },
    );
    assert_eq!(post(&s, good.clone(), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(post(&s, good, Some("not-the-secret")).await.0, StatusCode::UNAUTHORIZED);
    let (st, e) = post(&s, b"just words, no headers".to_vec(), Some(SECRET)).await;
    assert_eq!((st, e["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("unreadable_mail")), "{e}");
    let (st, _) = post(&s, vec![b'a'; 3 * 1024 * 1024], Some(SECRET)).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(ingest(&db, b"no headers at all").0, 65);

    // The log holds outcomes and reasons, no address, name or note.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("calendar reply"), "{logged}");
    for secret in [PATIENT, escort_email.as_str(), "山田", "当日は会社を休めません", "成田空港"] {
        assert!(!logged.contains(secret), "{secret} in the log");
    }
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replies_are_heard() {
    replies_are_heard(Db::sqlite("inbound"), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replies_are_heard() {
    if let Some(db) = Db::postgres("inbound").await {
        replies_are_heard(db, "postgres").await;
    }
}
