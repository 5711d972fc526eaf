//! `/openapi.json`: the routes of `routes.rs`, described by hand (tests/service.rs checks that
//! every route listed here answers, and that unlisted paths do not).

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
    ("post", "/patients/{id}/feed", "Issue (or rotate) the patient's feed URL; earlier URLs stop working", true),
    ("delete", "/patients/{id}/feed", "Revoke the patient's feed URL", true),
    ("get", "/escorts", "List the escorts who take new duties", true),
    ("get", "/escorts/{id}", "Read an escort", true),
    ("put", "/escorts/{id}", "Create or replace an escort (and take them back if deactivated)", true),
    ("delete", "/escorts/{id}", "Deactivate an escort: no new duties; booked ones stay", true),
    ("get", "/resources", "List counted resources (chairs, lab_draws_per_slot)", true),
    ("get", "/resources/{id}", "Read a resource", true),
    ("put", "/resources/{id}", "Set a resource's capacity ({\"capacity\": 4})", true),
    ("post", "/itineraries", "Plan and book an itinerary (422 with the planner's reasons when no plan fits)", true),
    ("get", "/itineraries/{id}", "Read an itinerary: plan, versions, scheduled messages", true),
    ("put", "/itineraries/{id}", "Change an itinerary: a new version, planned again", true),
    ("post", "/itineraries/{id}/cancel", "Cancel an itinerary", true),
    ("get", "/itineraries/{id}/calendar.ics", "The itinerary as the patient's calendar (METHOD:PUBLISH)", true),
    ("get", "/trips", "Itineraries with events between two dates (?from=YYYY-MM-DD&to=YYYY-MM-DD)", true),
    ("get", "/audit", "The audit log, newest first (?limit=1-1000, default 100; ?before=ID; next as for /patients)", true),
    ("get", "/messages/failed", "Messages that could not be delivered, with the reason", true),
    ("get", "/clock", "The service's clock (the test clock when enabled)", true),
    ("put", "/clock", "Move the test clock ({\"now\": instant} or {\"advance_seconds\": n}); 409 unless [clock] mode = \"test\"", true),
];

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
        if *auth {
            op["security"] = json!([{ "bearer": [] }]);
            op["responses"]["401"] = json!({ "description": "No valid bearer token" });
        }
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                let integer = name == "id" && !path.starts_with("/escorts") && !path.starts_with("/resources");
                json!({ "name": name, "in": "path", "required": true, "schema": { "type": if integer { "integer" } else { "string" } } })
            })
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "itinerary", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": { "error": { "type": "object", "properties": {
                        "code": { "type": "string" }, "message": { "type": "string" },
                        "fields": { "type": "array", "items": { "type": "object", "properties": {
                            "field": { "type": "string" }, "value": { "type": "string" }, "problem": { "type": "string" } } } } } } }
                }
            }
        }
    })
}
