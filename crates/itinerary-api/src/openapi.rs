//! `/openapi.json`: the routes of `routes.rs`, described by hand, with the JSON bodies they take
//! and answer. tests/service.rs keeps it honest: every route listed here answers and unlisted
//! paths do not; every body the tests send fits its request schema, and every answer they get
//! has exactly the properties of its response schema. The Plan is docs/plan-schema.md's.

use serde_json::{Value, json};

/// (method, path, summary, whether it needs a coordinator's token)
pub const ROUTES: &[(&str, &str, &str, bool)] = &[
    ("get", "/health", "Liveness and database reachability", false),
    ("get", "/openapi.json", "This document", false),
    ("get", "/feed/{token}", "A patient's calendar feed (text/calendar); the token is the credential", false),
    ("post", "/patients", "Create a patient", true),
    (
        "get",
        "/patients",
        "List patients in id order (?limit=1-1000, default 100; ?after=ID; the answer's next is the following page's after)",
        true,
    ),
    ("get", "/patients/{id}", "Read a patient", true),
    ("put", "/patients/{id}", "Update a patient", true),
    ("get", "/patients/{id}/feed", "The patient's live feed URLs: ids, who was given each, when (the secrets are not kept)", true),
    ("post", "/patients/{id}/feed", "Issue (or rotate) the patient's feed URL; every earlier URL stops working, confirmations' too", true),
    ("delete", "/patients/{id}/feed", "Revoke every feed URL of the patient", true),
    (
        "delete",
        "/patients/{id}/line",
        "Unlink the patient's LINE (204; 404 when not linked): reminders go by email until the patient links again",
        true,
    ),
    ("get", "/patients/{id}/messages", "What the patient sent by LINE (texts and button answers), newest first; the read is audited", true),
    (
        "delete",
        "/patients/{id}",
        "Erase the patient and everything stored about them (right to erasure; 200 with the rows removed per table); 409 itinerary_active while an itinerary has appointments ahead",
        true,
    ),
    (
        "get",
        "/patients/{id}/outcomes",
        "The patient's questionnaire answers (baseline before the first infusion, each online follow-up) with summaries against the baseline, infusions and re-evaluation decisions; the read is audited",
        true,
    ),
    ("get", "/patients/{id}/outcomes.csv", "The same answers as CSV (text/csv), one row per occasion; the read is audited", true),
    (
        "get",
        "/patients/{id}/outcomes.svg",
        "The chart of each measure over time with the infusions marked (image/svg+xml; ?lang=ja for Japanese labels); 404 no_outcomes when there is nothing to chart; the read is audited",
        true,
    ),
    ("get", "/patients/{id}/export", "Everything stored about the patient, for an access request (JSON); the read is audited", true),
    (
        "put",
        "/itineraries/{id}/reevaluation",
        "Record the decision at the set's 12-month re-evaluation; second_set_proposed keeps a draft of the second set (the same request 52 weeks on) to preview and book",
        true,
    ),
    (
        "post",
        "/line/webhook",
        "LINE's webhook: a body signed by x-line-signature (base64 HMAC-SHA256 with the channel secret), else 401; each event applied once by webhookEventId",
        false,
    ),
    ("get", "/escorts", "List the escorts who take new duties", true),
    ("get", "/escorts/{id}", "Read an escort", true),
    ("put", "/escorts/{id}", "Create or replace an escort (and take them back if deactivated)", true),
    ("delete", "/escorts/{id}", "Deactivate an escort: no new duties; booked ones stay", true),
    ("get", "/resources", "List counted resources (chairs, lab_draws_per_slot)", true),
    ("get", "/resources/{id}", "Read a resource", true),
    ("put", "/resources/{id}", "Set a resource's capacity ({\"capacity\": 4})", true),
    ("post", "/itineraries", "Plan and book an itinerary (422 with the planner's reasons when no plan fits)", true),
    (
        "post",
        "/itineraries/preview",
        "Plan an itinerary without booking it: the plan as booking it now would make it (200), or the planner's reasons (422, 409); nothing is stored",
        true,
    ),
    ("get", "/itineraries/{id}", "Read an itinerary: plan, versions, scheduled messages", true),
    ("put", "/itineraries/{id}", "Change an itinerary: a new version, planned again", true),
    ("post", "/itineraries/{id}/cancel", "Cancel an itinerary", true),
    (
        "get",
        "/itineraries/{id}/answers",
        "What the attendees answered: each standing appointment's latest answer by each invitee (accepted, declined, tentative, no_answer), proposals of another time, the patient's LINE link and messages; the read is audited",
        true,
    ),
    (
        "post",
        "/inbound/email",
        "One raw email (RFC 5322, any content type) arriving at the organizer address, with Authorization: Bearer <inbound.secret>: a calendar reply is recorded against its appointment or refused with the reason (both 200), a text reply kept for the patient; 400 for what is not mail, 413 over 2 MiB",
        false,
    ),
    (
        "post",
        "/itineraries/{id}/messages/{message_id}/resend",
        "Send a failed message again, now, with a new run of attempts (204); 409 when it did not fail, its appointment has begun, or it carried a calendar (change the itinerary instead)",
        true,
    ),
    ("get", "/itineraries/{id}/calendar.ics", "The itinerary as the patient's calendar (METHOD:PUBLISH)", true),
    ("get", "/trips", "Itineraries with events between two dates (?from=YYYY-MM-DD&to=YYYY-MM-DD)", true),
    ("get", "/audit", "The audit log, newest first (?limit=1-1000, default 100; ?before=ID; next as for /patients)", true),
    ("get", "/messages/failed", "Messages that could not be delivered, with the reason", true),
    ("get", "/clock", "The service's clock (the test clock when enabled)", true),
    ("put", "/clock", "Move the test clock ({\"now\": instant} or {\"advance_seconds\": n}); 409 unless [clock] mode = \"test\"", true),
];

/// The JSON bodies of routes: (method, path, request schema, response schema), by name in
/// `components.schemas`.
pub const BODIES: &[(&str, &str, Option<&str>, Option<&str>)] = &[
    ("post", "/patients", Some("PatientInput"), Some("Patient")),
    ("get", "/patients", None, Some("PatientPage")),
    ("get", "/patients/{id}", None, Some("Patient")),
    ("put", "/patients/{id}", Some("PatientInput"), Some("Patient")),
    ("get", "/escorts/{id}", None, Some("Escort")),
    ("put", "/escorts/{id}", Some("Escort"), Some("Escort")),
    ("get", "/resources/{id}", None, Some("Resource")),
    ("put", "/resources/{id}", Some("Capacity"), Some("Resource")),
    ("post", "/itineraries", Some("ItineraryRequest"), Some("Itinerary")),
    ("post", "/itineraries/preview", Some("ItineraryRequest"), Some("Plan")),
    ("get", "/itineraries/{id}", None, Some("Itinerary")),
    ("put", "/itineraries/{id}", Some("ItineraryRequest"), Some("Itinerary")),
    ("post", "/itineraries/{id}/cancel", None, Some("Itinerary")),
    ("put", "/clock", Some("SetClock"), Some("Clock")),
    ("get", "/clock", None, Some("Clock")),
    ("get", "/health", None, Some("Health")),
    ("post", "/patients/{id}/feed", None, Some("FeedUrl")),
    ("get", "/patients/{id}/feed", None, Some("FeedList")),
    ("get", "/escorts", None, Some("EscortList")),
    ("get", "/resources", None, Some("ResourceList")),
    ("get", "/trips", None, Some("Trips")),
    ("get", "/audit", None, Some("AuditPage")),
    ("get", "/messages/failed", None, Some("FailedMessages")),
    ("get", "/patients/{id}/messages", None, Some("PatientMessages")),
    ("post", "/line/webhook", Some("LineWebhook"), Some("LineAccepted")),
    ("get", "/itineraries/{id}/answers", None, Some("Answers")),
    ("post", "/inbound/email", None, Some("InboundAnswer")),
    ("put", "/itineraries/{id}/reevaluation", Some("ReevaluationDecision"), Some("Reevaluation")),
];

fn string() -> Value {
    json!({ "type": "string" })
}

fn date() -> Value {
    json!({ "type": "string", "format": "date" })
}

fn instant() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

/// An object schema: its properties, the required ones, and no others.
fn object(properties: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false })
}

fn schemas() -> Value {
    let flight = object(
        json!({ "flight": string(), "from": string(), "to": string(),
            "depart": { "type": "string", "description": "local time at from: YYYY-MM-DD HH:MM" },
            "arrive": { "type": "string", "description": "local time at to: YYYY-MM-DD HH:MM" } }),
        &["flight", "from", "depart", "to", "arrive"],
    );
    json!({
        "PatientInput": object(
            json!({ "name": { "type": "string", "minLength": 1, "maxLength": 200, "description": "one line" },
                "email": { "type": "string", "format": "email", "maxLength": 254, "description": "an ASCII part before @, a dotted host name after" },
                "birth_date": { "type": "string", "format": "date", "description": "1900 to today" },
                "home_zone": { "type": "string", "description": "IANA zone; Asia/Tokyo when absent" },
                "language": { "enum": ["ja", "en"] },
                "passport_expiry": { "type": "string", "format": "date", "description": "a year from 1900 to 2100" },
                "line_user_id": { "type": "string", "description": "set only by the patient, through LINE's account link (/line/link); a create with it, or a change with another value than the stored one, is 422" },
                "invites": { "enum": ["every", "clinic", "feed"], "description": "which calendar invites the patient receives by email: every appointment, the clinic's only (blood tests, infusions, online follow-ups; the default for a new patient), or none (the confirmation's calendar file and the feed); left out of a change, it stays" } }),
            &["name", "email", "birth_date", "passport_expiry"],
        ),
        "Patient": object(
            json!({ "id": { "type": "integer" }, "name": string(), "email": string(), "birth_date": date(), "home_zone": string(),
                "language": string(), "passport_expiry": date(),
                "line_user_id": { "type": "string", "description": "the LINE user the patient linked; reminders go there (calendars by email)" },
                "line_linked_at": { "type": "string", "format": "date-time", "description": "when the patient linked LINE through its account link; absent for an id typed before that flow existed" },
                "invites": { "enum": ["every", "clinic", "feed"] } }),
            &["id", "name", "email", "birth_date", "home_zone", "language", "passport_expiry", "invites"],
        ),
        "PatientPage": object(
            json!({ "patients": { "type": "array", "items": { "$ref": "#/components/schemas/Patient" } },
                "next": { "type": ["integer", "null"], "description": "the next page's after" } }),
            &["patients", "next"],
        ),
        "Escort": object(
            json!({ "id": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,16}$" }, "name": { "type": "string", "minLength": 1, "maxLength": 200 },
                "email": { "type": "string", "format": "email", "maxLength": 254 },
                "languages": { "type": "array", "minItems": 1, "maxItems": 10, "uniqueItems": true,
                    "items": { "type": "string", "pattern": "^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", "maxLength": 35, "description": "BCP 47: ja, en, ms, zh-Hant" } },
                "works_from": { "type": "string", "pattern": "^\\d{2}:\\d{2}$" }, "works_until": { "type": "string", "pattern": "^\\d{2}:\\d{2}$" },
                "weekly_days_off": { "type": "array", "items": { "enum": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"] } },
                "dates_off": { "type": "array", "items": date() } }),
            &["id", "name", "email", "languages", "works_from", "works_until"],
        ),
        "Capacity": object(json!({ "capacity": { "type": "integer", "minimum": 1, "maximum": 65535 } }), &["capacity"]),
        "Resource": object(json!({ "id": string(), "capacity": { "type": "integer" } }), &["id", "capacity"]),
        "Flight": flight,
        "Legs": { "description": "One direction's flights in travel order: one flight, or an array of them when the patient changes planes (LAX→NRT, NRT→KUL). The last flight out lands in the clinic's country; the first flight home leaves it.",
            "oneOf": [{ "$ref": "#/components/schemas/Flight" }, { "type": "array", "minItems": 1, "maxItems": 6, "items": { "$ref": "#/components/schemas/Flight" } }] },
        "Trip": object(
            json!({ "outbound": { "$ref": "#/components/schemas/Legs" }, "return": { "$ref": "#/components/schemas/Legs" } }),
            &["outbound", "return"],
        ),
        "ItineraryRequest": object(
            json!({ "patient_id": { "type": "integer" }, "protocol": string(), "interval_days": { "type": "integer", "minimum": 0, "maximum": 65535 },
                "trip_mode": string(), "trips": { "type": "array", "items": { "$ref": "#/components/schemas/Trip" } },
                "preferred_dates": { "type": "array", "items": date() },
                "escort": { "type": "string", "description": "the escort for every duty; any free one when absent" } }),
            &["patient_id", "protocol", "trips"],
        ),
        "Itinerary": object(
            json!({ "id": { "type": "integer" }, "reference": string(), "patient_id": { "type": "integer" },
                "status": { "enum": ["active", "cancelled"] }, "version": { "type": "integer" },
                "plan": { "$ref": "#/components/schemas/Plan" },
                "versions": { "type": "array", "items": object(
                    json!({ "version": { "type": "integer" }, "planned_at": instant(), "coordinator_id": { "type": "integer" },
                        "calendar_changes": { "type": "array", "items": { "$ref": "#/components/schemas/CalendarChange" } } }),
                    &["version", "planned_at", "calendar_changes"]) },
                "messages": { "type": "array", "items": object(
                    json!({ "key": string(), "kind": string(), "version": { "type": "integer" }, "recipient": { "$ref": "#/components/schemas/Recipient" },
                        "due_at": instant(), "due_zone": string(), "status": string(), "sent_at": instant(),
                        "id": { "type": "integer", "description": "once stored (absent in the answer that stores it)" },
                        "channel": { "enum": ["email", "line", "outbox", "late"], "description": "outbox: written to the file outbox instead of sent; late: sent by a worker whose claim had lapsed" }, "error": string(),
                        "answer": { "enum": ["ack", "call"], "description": "the patient's latest answer by a LINE button: ack (understood) or call (asks to be called)" },
                        "answered_at": instant() }),
                    &["key", "kind", "version", "recipient", "due_at", "due_zone", "status"]) } }),
            &["id", "reference", "patient_id", "status", "version", "plan", "versions", "messages"],
        ),
        "CalendarChange": object(
            json!({ "uid": string(), "event": { "type": "string", "description": "the plan event (trip1.pickup)" },
                "role": { "enum": ["patient", "escort"] }, "id": { "type": "string", "description": "the escort's id, for an escort's appointment" },
                "kind": { "enum": ["invite", "update", "cancel", "unchanged"] },
                "sequence": { "type": "integer", "minimum": 0, "description": "the SEQUENCE the invite or cancellation carries" } }),
            &["uid", "event", "role", "kind", "sequence"],
        ),
        "Recipient": object(
            json!({ "role": { "enum": ["patient", "escort", "coordinator"] }, "id": { "type": "string", "description": "the escort's id" } }),
            &["role"],
        ),
        "Health": object(
            json!({
                "status": { "enum": ["ok", "database unavailable", "worker not delivering", "email relay misconfigured"] },
                "database": string(),
                "database_state": { "enum": ["up", "busy", "down"], "description": "busy: every pooled connection is in use (requests wait, then are answered 503 busy); down: no answer within 800 ms" },
                "worker": { "description": "this process's delivery worker; null when it runs none", "oneOf": [
                    { "type": "null" },
                    object(json!({
                        "state": { "enum": ["starting", "running", "restarting", "stopped", "unknown"] },
                        "ok": { "type": "boolean", "description": "delivering: running, a heartbeat within three intervals, a dispatch pass that reached the database lately" },
                        "restarts": { "type": "integer" },
                        "last_error": { "type": ["string", "null"] },
                        "last_error_at": { "type": ["string", "null"], "format": "date-time" },
                        "last_heartbeat": { "type": ["string", "null"], "format": "date-time" },
                        "last_dispatch": { "type": ["string", "null"], "format": "date-time" },
                        "dispatch_error": { "type": ["string", "null"] },
                        "relay": object(json!({
                            "state": { "enum": ["unchecked", "ok", "unreachable", "misconfigured"], "description": "the email relay as last met (the check at start, then each send); misconfigured (certificate, TLS mode, credentials) makes ok false" },
                            "error": { "type": ["string", "null"] },
                            "at": { "type": ["string", "null"], "format": "date-time" },
                        }), &["state", "error", "at"]),
                    }), &["state", "ok", "restarts", "last_error", "last_error_at", "last_heartbeat", "last_dispatch", "dispatch_error", "relay"]),
                ] },
            }),
            &["status", "database", "database_state", "worker"],
        ),
        "FeedList": object(
            json!({ "feeds": { "type": "array", "items": object(json!({
                "id": { "type": "integer" },
                "origin": { "enum": ["coordinator", "confirmation", "line"], "description": "shown once to a coordinator, carried by a booking confirmation, or sent on LINE when the patient linked it" },
                "created_at": { "type": "string", "format": "date-time" },
            }), &["id", "origin", "created_at"]) } }),
            &["feeds"],
        ),
        "FeedUrl": object(
            json!({ "feed_url": { "type": "string", "description": "the subscription URL; its last segment is the only credential" } }),
            &["feed_url"],
        ),
        "EscortList": object(
            json!({ "escorts": { "type": "array", "items": { "$ref": "#/components/schemas/Escort" } } }),
            &["escorts"],
        ),
        "ResourceList": object(
            json!({ "resources": { "type": "array", "items": { "$ref": "#/components/schemas/Resource" } } }),
            &["resources"],
        ),
        "Trips": object(
            json!({ "from": date(), "to": date(), "zone": { "type": "string", "description": "the clinic's zone, in which escorts' days and duties are given" },
                "trips": { "type": "array", "items": object(
                    json!({ "itinerary": { "type": "integer" }, "events": { "type": "array", "items": object(
                        json!({ "key": string(), "kind": string(), "starts_at": { "type": ["string", "null"], "format": "date-time" },
                            "ends_at": { "type": ["string", "null"], "format": "date-time" },
                            "zone": { "type": ["string", "null"], "description": "null for an all-day event (the hotel stay)" },
                            "escort": { "type": ["string", "null"] } }),
                        &["key", "kind", "starts_at", "ends_at", "zone", "escort"]) } }),
                    &["itinerary", "events"]) },
                "escorts": { "type": "object", "description": "escort id, then day (YYYY-MM-DD in the clinic's zone), then that day's duties",
                    "additionalProperties": { "type": "object", "additionalProperties": { "type": "array", "items": object(
                        json!({ "itinerary": { "type": "integer" }, "starts_at": instant(), "ends_at": instant(),
                            "shared": { "type": ["string", "null"], "description": "for a duty that serves several itineraries (one airport run), its key" } }),
                        &["itinerary", "starts_at", "ends_at", "shared"]) } } } }),
            &["from", "to", "zone", "trips", "escorts"],
        ),
        "AuditPage": object(
            json!({ "audit": { "type": "array", "items": object(
                    json!({ "at": instant(), "coordinator": { "type": ["integer", "null"] }, "action": string(), "entity": string(),
                        "id": { "type": "string", "description": "the entity's id" },
                        "detail": { "type": "object", "description": "ids and field names only; no personal data" } }),
                    &["at", "coordinator", "action", "entity", "id", "detail"]) },
                "next": { "type": ["integer", "null"], "description": "the next page's before" } }),
            &["audit", "next"],
        ),
        "FailedMessages": object(
            json!({ "failed": { "type": "array", "items": object(
                json!({ "message_id": { "type": "integer" }, "itinerary_id": { "type": "integer" }, "key": string(), "kind": string(),
                    "recipient": { "$ref": "#/components/schemas/Recipient" }, "due_at": instant(), "attempts": { "type": "integer" },
                    "error": { "type": ["string", "null"] } }),
                &["message_id", "itinerary_id", "key", "kind", "recipient", "due_at", "attempts", "error"]) } }),
            &["failed"],
        ),
        "Clock": object(
            json!({ "now": instant(), "test": { "type": "boolean", "description": "whether this is the movable test clock" },
                "offset_ms": { "type": "integer", "description": "the test clock's lead over the system clock" } }),
            &["now", "test", "offset_ms"],
        ),
        "SetClock": object(
            json!({ "now": instant(), "advance_seconds": { "type": "integer" } }),
            &[],
        ),
    })
}

/// The Plan of docs/plan-schema.md, as stored with every version.
fn plan_schemas() -> Value {
    // `zoned()` is an instant with its zone (the Instant schema, `Zoned` in the code);
    // `instant()` is a bare UTC timestamp.
    let zoned = || json!({ "$ref": "#/components/schemas/Instant" });
    let text = || json!({ "$ref": "#/components/schemas/Text" });
    let trip = object(
        json!({ "trip": { "type": "integer" }, "arrives": zoned(), "departs": zoned(), "days": { "type": "integer" } }),
        &["trip", "arrives", "departs", "days"],
    );
    let escort = object(
        json!({ "escort": string(), "escort_name": string(), "event": string(), "start": zoned(), "end": zoned(), "duty": text(),
            "shared": { "type": "string", "description": "one key per flight an escort meets or takes several patients to" } }),
        &["escort", "escort_name", "event", "start", "end", "duty"],
    );
    let task = object(
        json!({ "key": string(), "kind": { "enum": ["mdac", "medication", "passport_check", "visit_japan_web"] },
            "trip": { "type": ["integer", "null"] }, "title": text(), "opens": zoned(), "closes": zoned() }),
        &["key", "kind", "trip", "title", "opens", "closes"],
    );
    let message = object(
        json!({ "key": string(), "kind": string(), "recipient": { "$ref": "#/components/schemas/Recipient" },
            "language": { "enum": ["ja", "en"] }, "at": zoned(), "about": string(), "before": zoned(), "why": string(),
            "if_late": { "enum": ["send_now", "skip"] } }),
        &["key", "kind", "recipient", "language", "at", "why", "if_late"],
    );
    let warning = object(json!({ "kind": string(), "text": text() }), &["kind", "text"]);
    let when = json!({ "oneOf": [
        object(json!({ "type": { "enum": ["timed"] }, "start": zoned(), "end": zoned() }), &["type", "start", "end"]),
        object(json!({ "type": { "enum": ["dates"] }, "start": date(), "end": { "type": "string", "format": "date", "description": "check-out, exclusive" } }),
            &["type", "start", "end"]),
    ] });
    let event = object(
        json!({ "key": { "type": "string", "description": "stable within an itinerary (trip1.pickup); calendar UIDs derive from it" },
            "kind": { "enum": ["flight", "airport_pickup", "hotel", "blood_test", "infusion", "airport_transfer", "online_follow_up", "reevaluation"] },
            "trip": { "type": "integer" }, "title": text(), "location": string(), "location_ja": string(), "when": when, "escort": string(), "online": { "type": "boolean" } }),
        &["key", "kind", "title", "when", "online"],
    );
    let plan = object(
        json!({ "schema_version": { "enum": [1] }, "protocol": string(), "trip_mode": { "enum": ["one-stay", "trip-per-infusion"] },
            "interval_days": { "type": "integer" }, "clinic_zone": string(), "patient_zone": string(), "language": { "enum": ["ja", "en"] },
            "planned_at": zoned(), "trips": { "type": "array", "items": trip }, "events": { "type": "array", "items": event },
            "escorts": { "type": "array", "items": escort }, "tasks": { "type": "array", "items": task },
            "messages": { "type": "array", "items": message }, "warnings": { "type": "array", "items": warning } }),
        &[
            "schema_version",
            "protocol",
            "clinic_zone",
            "patient_zone",
            "language",
            "planned_at",
            "trips",
            "events",
            "escorts",
            "tasks",
            "messages",
            "warnings",
        ],
    );
    json!({
        "Instant": object(
            json!({ "utc": { "type": "string", "format": "date-time" }, "zone": { "type": "string", "description": "IANA zone it is shown in" },
                "local": { "type": "string", "description": "RFC 3339 local time in zone, for readers; ignored when read back" } }),
            &["utc", "zone"],
        ),
        "Text": object(json!({ "ja": string(), "en": string() }), &["ja", "en"]),
        "Plan": plan,
    })
}

/// The query parameters a route reads (`Page` and `Range` in routes.rs).
fn query_parameters(path: &str, method: &str) -> Vec<Value> {
    let limit = json!({ "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } });
    let cursor = |name: &str| json!({ "name": name, "in": "query", "required": false, "schema": { "type": "integer", "format": "int32", "minimum": 0, "maximum": i32::MAX } });
    let day = |name: &str, what: &str| json!({ "name": name, "in": "query", "required": true, "description": what, "schema": { "type": "string", "format": "date" } });
    match (method, path) {
        ("get", "/patients") => vec![limit, cursor("after")],
        ("get", "/audit") => vec![limit, cursor("before")],
        ("get", "/trips") => vec![day("from", "first UTC day"), day("to", "the day after the last, at most 366 days after from")],
        ("get", "/patients/{id}/outcomes.svg") => {
            vec![json!({ "name": "lang", "in": "query", "required": false, "schema": { "enum": ["en", "ja"], "default": "en" } })]
        }
        _ => Vec::new(),
    }
}

/// `Idempotency-Key` on the writes that are not idempotent by themselves (idempotency.rs).
fn idempotency_key(path: &str, method: &str) -> Option<Value> {
    let keyed =
        matches!((method, path), ("post", "/patients" | "/itineraries" | "/itineraries/{id}/cancel") | ("put", "/itineraries/{id}"));
    keyed.then(|| {
        json!({ "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "draft-ietf-httpapi-idempotency-key-header: a unique string (\"…\" or bare, at most 255 characters) per write. \
                The answer is stored with the write for 24 hours; the same request sent again gets it back (Idempotent-Replayed: true) \
                instead of being done twice, as after a 503 outcome_unknown. 422 idempotency_key_reused: the key was used for a different \
                request; 409 idempotency_key_in_use: its first request is still running (Retry-After). A request that failed stored nothing \
                and runs afresh.",
            "schema": { "type": "string", "minLength": 1, "maxLength": 255 } })
    })
}

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, auth) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let mut op = json!({
            "summary": summary,
            "responses": {
                "200": { "description": "OK" },
                "4XX": { "description": "A JSON error naming the field", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        });
        // A deletion answers 204 with no body.
        if (*method == "delete" && *path != "/patients/{id}") || path.ends_with("/resend") {
            op["responses"].as_object_mut().map(|r| r.remove("200"));
            op["responses"]["204"] = json!({ "description": "Done; no body" });
        }
        if *path == "/inbound/email" {
            // The raw message; any content type is read (message/rfc822 too), this one is what
            // generic clients and fuzzers can send.
            op["requestBody"] = json!({ "required": true, "description": "the raw RFC 5322 message", "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } });
        }
        // The answers that are not JSON: their content type.
        let media = match *path {
            "/patients/{id}/outcomes.csv" => Some(("text/csv", json!({ "type": "string" }))),
            "/patients/{id}/outcomes.svg" => Some(("image/svg+xml", json!({ "type": "string" }))),
            _ => None,
        };
        if let Some((media, schema)) = media {
            op["responses"]["200"] = json!({ "description": "OK", "content": { media: { "schema": schema } } });
        }
        if *path == "/feed/{token}" {
            op["responses"]["304"] = json!({ "description": "Unchanged since the ETag given in If-None-Match" });
        }
        if *path == "/health" {
            op["responses"]["503"] = json!({ "description": "The database does not answer, this process's worker is not delivering, or its email relay is misconfigured", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Health" } } } });
        }
        if *auth {
            op["security"] = json!([{ "bearer": [] }]);
            op["responses"]["401"] = json!({ "description": "No valid bearer token" });
        }
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                let integer = (name == "id" || name == "message_id") && !path.starts_with("/escorts") && !path.starts_with("/resources");
                let schema =
                    if integer { json!({ "type": "integer", "format": "int32", "minimum": 0, "maximum": i32::MAX }) } else { string() };
                json!({ "name": name, "in": "path", "required": true, "schema": schema })
            })
            .chain(query_parameters(path, method))
            .chain(idempotency_key(path, method))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if let Some((_, _, request, response)) = BODIES.iter().find(|(m, p, _, _)| m == method && p == path) {
            let schema = |name: &str| json!({ "application/json": { "schema": { "$ref": format!("#/components/schemas/{name}") } } });
            if let Some(name) = request {
                op["requestBody"] = json!({ "required": true, "content": schema(name) });
            }
            if let Some(name) = response {
                // A POST that creates answers 201; one that receives (LINE's webhook, inbound
                // mail), cancels or previews answers 200.
                let receives = path.starts_with("/line/") || path.starts_with("/inbound/");
                let ok =
                    if *method == "post" && !path.ends_with("/cancel") && !path.ends_with("/preview") && !receives { "201" } else { "200" };
                if ok == "201" {
                    op["responses"].as_object_mut().map(|r| r.remove("200"));
                }
                op["responses"][ok] = json!({ "description": "OK", "content": schema(name) });
            }
        }
        entry[*method] = op;
    }
    let mut schemas = schemas();
    if let (Some(all), Value::Object(plan)) = (schemas.as_object_mut(), plan_schemas()) {
        all.extend(plan);
    }
    schemas["PatientMessages"] = object(
        json!({ "messages": { "type": "array", "items": object(
            json!({ "id": { "type": "integer" }, "channel": string(),
                "kind": { "enum": ["text", "postback", "answer"], "description": "text: written by the patient; answer: a reminder's button; postback: another button" },
                "body": string(), "received_at": instant(),
                "message_id": { "type": "integer", "description": "for an answer: the scheduled message it answers" },
                "answer": { "enum": ["ack", "call"], "description": "ack: understood; call: the patient asks to be called" } }),
            &["id", "channel", "kind", "body", "received_at"]) } }),
        &["messages"],
    );
    schemas["InboundAnswer"] = object(
        json!({ "outcome": { "enum": ["applied", "refused", "kept", "not_kept"], "description": "applied: a calendar answer recorded; refused: a calendar reply not believed (unknown UID, another attendee, a forged organizer, an older SEQUENCE…); kept: a text filed for the patient; not_kept: a text from no patient's address" },
            "reason": string(), "alert": { "type": "boolean", "description": "a clinic appointment declined, or another time proposed for it" } }),
        &["outcome", "reason", "alert"],
    );
    schemas["Answers"] = object(
        json!({ "appointments": { "type": "array", "items": object(
                json!({ "event": string(), "role": { "enum": ["patient", "escort"] }, "escort_id": string(),
                    "answer": { "enum": ["accepted", "declined", "tentative", "delegated", "needs_action", "no_answer"] },
                    "answered_at": instant(), "proposed_start": string(), "proposed_end": string(), "comment": string(), "alert": { "type": "boolean" } }),
                &["event", "role", "answer", "alert"]) },
            "line": object(json!({ "linked": { "type": "boolean" }, "linked_at": instant() }), &["linked"]),
            "messages": schemas["PatientMessages"]["properties"]["messages"].clone() }),
        &["appointments", "line", "messages"],
    );
    schemas["LineWebhook"] = json!({ "type": "object", "description": "As LINE's Messaging API sends it", "properties": {
        "destination": string(), "events": { "type": "array", "items": { "type": "object", "properties": {
            "type": string(), "webhookEventId": string(), "timestamp": { "type": "integer" },
            "source": { "type": "object", "properties": { "type": string(), "userId": string() } },
            "message": { "type": "object", "properties": { "type": string(), "text": string() } },
            "postback": { "type": "object", "properties": { "data": string() } },
            "link": { "type": "object", "properties": { "result": { "enum": ["ok", "failed"] }, "nonce": string() } } },
            "required": ["type", "webhookEventId"] } } }, "required": ["events"] });
    schemas["ReevaluationDecision"] = object(
        json!({ "decision": { "enum": ["second_set_proposed", "declined", "not_indicated"] },
            "note": { "type": "string", "maxLength": 2000, "description": "for the record; no control characters but line breaks" } }),
        &["decision"],
    );
    schemas["Reevaluation"] = object(
        json!({ "itinerary_id": { "type": "integer" }, "reference": string(),
            "decision": { "enum": ["second_set_proposed", "declined", "not_indicated"] },
            "note": { "type": ["string", "null"] }, "decided_at": instant(),
            "draft": { "type": ["object", "null"], "description": "for second_set_proposed until booked: the second set's request (as POST /itineraries takes it), every flight 52 weeks on" },
            "booked_itinerary_id": { "type": ["integer", "null"] } }),
        &["itinerary_id", "reference", "decision", "decided_at"],
    );
    schemas["LineAccepted"] = object(
        json!({ "events": { "type": "integer" },
            "skipped": { "type": "integer", "description": "events of a shape LINE never sends (an id or user id that is not one), not applied" } }),
        &["events", "skipped"],
    );
    schemas["Error"] = json!({
        "type": "object",
        "properties": { "error": { "type": "object", "properties": {
            "code": { "type": "string" }, "message": { "type": "string" },
            "fields": { "type": "array", "items": { "type": "object", "properties": {
                "field": { "type": "string" }, "value": { "type": "string" }, "problem": { "type": "string" } } } },
            "violations": { "type": "array", "description": "on 409 and 422 from planning: every rule the request breaks",
                "items": { "type": "object", "properties": {
                    "rule": { "type": "string" }, "field": { "type": "string" },
                    "values": { "type": "object", "additionalProperties": { "type": "string" } },
                    "text": { "$ref": "#/components/schemas/Text" } } } },
            "warnings": { "type": "array", "description": "on 422 from planning: what a plan of this request would also warn about (connections, early check-in, peak season, the last day, tentative holidays)",
                "items": { "type": "object", "properties": { "kind": { "type": "string" }, "text": { "$ref": "#/components/schemas/Text" } } } } } } }
    });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "itinerary", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas
        }
    })
}
