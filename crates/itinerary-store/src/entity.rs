//! One sea-orm entity per table of `migrations/` (instants are `DateTimeUtc`, JSON is `Json`, but
//! for the plan, calendar appointments and message payloads, JSON text since migration 18: read
//! them with `stored::parsed`).
#![allow(missing_docs)]

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}
        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod coordinator {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "coordinator")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod coordinator_token {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "coordinator_token")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub coordinator_id: i32,
        pub token_hash: String,
        pub created_at: DateTimeUtc,
        pub revoked_at: Option<DateTimeUtc>,
        /// None only for a row no migration reached: refused, like an expired one.
        pub expires_at: Option<DateTimeUtc>,
        pub last_used_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod console_session {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "console_session")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub secret_hash: String,
        pub token_id: i32,
        pub csrf: String,
        pub created_at: DateTimeUtc,
        pub last_seen_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod idempotency_key {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_key")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub coordinator_id: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub fingerprint: String,
        pub status: i32,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod patient {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "patient")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
        pub email: String,
        pub birth_date: Date,
        pub home_zone: String,
        pub language: String,
        pub passport_expiry: Date,
        pub line_user_id: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// `every`, `clinic` or `feed`: which calendar invites the patient receives.
        pub invites: String,
        /// When the patient linked `line_user_id` through LINE's account link (None for an id
        /// typed by a coordinator before that flow existed).
        pub line_linked_at: Option<DateTimeUtc>,
        /// Wrong proofs on the linking page, and when the last one was.
        pub line_link_failures: i32,
        pub line_link_failed_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod escort {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "escort")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub email: String,
        pub languages: Json,
        pub works_from: String,
        pub works_until: String,
        pub weekly_days_off: Json,
        pub dates_off: Json,
        pub active: bool,
        pub updated_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod resource {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "resource")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub capacity: i32,
        pub updated_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod itinerary {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "itinerary")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub reference: String,
        pub patient_id: i32,
        pub status: String,
        pub current_version: i32,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod itinerary_version {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "itinerary_version")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub itinerary_id: i32,
        pub version: i32,
        pub request: Json,
        /// JSON, kept as text: PostgreSQL checks a `json` value by lexing it, ~22 KB a plan.
        pub plan: String,
        pub planned_at: DateTimeUtc,
        pub coordinator_id: Option<i32>,
        pub calendar_changes: Json,
    }
    no_relations!();
}

pub mod event {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "event")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub itinerary_id: i32,
        pub key: String,
        pub kind: String,
        pub starts_at: Option<DateTimeUtc>,
        pub ends_at: Option<DateTimeUtc>,
        pub start_zone: Option<String>,
        pub end_zone: Option<String>,
        pub start_date: Option<Date>,
        pub end_date: Option<Date>,
        pub escort_id: Option<String>,
    }
    no_relations!();
}

pub mod booking {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "booking")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub itinerary_id: i32,
        pub kind: String,
        pub resource: String,
        pub starts_at: DateTimeUtc,
        pub ends_at: DateTimeUtc,
        pub shared: Option<String>,
    }
    no_relations!();
}

pub mod scheduled_message {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scheduled_message")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub itinerary_id: i32,
        pub version: i32,
        pub key: String,
        pub kind: String,
        pub recipient: Json,
        pub language: String,
        pub due_at: DateTimeUtc,
        pub due_zone: String,
        pub about: Option<String>,
        pub if_late: String,
        pub status: String,
        /// The instant the message must precede (the event's start, the window's close).
        pub before_at: Option<DateTimeUtc>,
        /// For calendar messages: the `Change` (appointment, SEQUENCE, invite/update/cancel), as
        /// JSON text.
        pub payload: Option<String>,
        pub attempts: i32,
        /// The worker sending it now, and since when (a claim older than the lease is stale).
        pub claimed_by: Option<String>,
        pub claimed_at: Option<DateTimeUtc>,
        pub sent_at: Option<DateTimeUtc>,
        pub channel: Option<String>,
        pub last_error: Option<String>,
    }
    no_relations!();
}

pub mod calendar_uid {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "calendar_uid")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub itinerary_id: i32,
        pub uid: String,
        pub sequence: i32,
        pub cancelled: bool,
        /// JSON text.
        pub appointment: String,
    }
    no_relations!();
}

pub mod feed_token {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "feed_token")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub patient_id: i32,
        pub token_hash: String,
        pub created_at: DateTimeUtc,
        pub revoked_at: Option<DateTimeUtc>,
        /// `coordinator` or `confirmation`: who was given it.
        pub origin: String,
    }
    no_relations!();
}

pub mod audit_log {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub coordinator_id: Option<i32>,
        pub action: String,
        pub entity: String,
        pub entity_id: String,
        pub detail: Json,
        pub at: DateTimeUtc,
    }
    no_relations!();
}

pub mod delivery {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "delivery")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub message_id: i32,
        pub channel: String,
        pub attempt: i32,
        pub status: String,
        pub provider_ref: Option<String>,
        pub error: Option<String>,
        pub at: DateTimeUtc,
        /// The message id on a "sent" row, NULL otherwise: unique, so one message is sent once.
        pub sent_key: Option<String>,
    }
    no_relations!();
}

pub mod clock {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "clock")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub offset_ms: i64,
        pub updated_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod line_event {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "line_event")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub webhook_event_id: String,
        pub kind: String,
        pub received_at: DateTimeUtc,
        pub outcome: String,
    }
    no_relations!();
}

pub mod line_contact {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "line_contact")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub line_user_id: String,
        pub followed_at: DateTimeUtc,
        pub unfollowed_at: Option<DateTimeUtc>,
        /// LINE's timestamp (ms) of the latest follow or unfollow applied.
        pub last_event_ms: Option<i64>,
    }
    no_relations!();
}

pub mod patient_message {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "patient_message")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub patient_id: i32,
        pub channel: String,
        pub kind: String,
        pub body: String,
        pub webhook_event_id: Option<String>,
        pub received_at: DateTimeUtc,
        /// The scheduled message a button answered.
        pub message_id: Option<i32>,
        /// `ack` or `call`, for a button's answer.
        pub answer: Option<String>,
    }
    no_relations!();
}

pub mod line_link_nonce {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "line_link_nonce")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub nonce_hash: String,
        pub patient_id: i32,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub used_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod line_notice {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "line_notice")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub line_user_id: String,
        pub kind: String,
        pub patient_id: Option<i32>,
        pub status: String,
        pub attempts: i32,
        pub created_at: DateTimeUtc,
        pub due_at: DateTimeUtc,
        pub claimed_by: Option<String>,
        pub claimed_at: Option<DateTimeUtc>,
        pub sent_at: Option<DateTimeUtc>,
        pub last_error: Option<String>,
        pub retry_key: String,
        pub reply_token: Option<String>,
        pub sent_by: Option<String>,
    }
    no_relations!();
}

pub mod calendar_reply {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "calendar_reply")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub received_at: DateTimeUtc,
        pub via: String,
        pub method: String,
        pub uid: Option<String>,
        pub itinerary_id: Option<i32>,
        pub event_key: Option<String>,
        pub role: Option<String>,
        pub escort_id: Option<String>,
        pub partstat: Option<String>,
        pub sequence: i32,
        pub dtstamp: Option<String>,
        pub proposed_start: Option<String>,
        pub proposed_end: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub comment: Option<String>,
        pub outcome: String,
        pub reason: String,
        pub alert: bool,
    }
    no_relations!();
}

pub mod outcome_answer {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outcome_answer")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub patient_id: i32,
        pub itinerary_id: i32,
        pub occasion: String,
        pub itch: Option<i32>,
        pub sleep: Option<i32>,
        pub steroid_days: Option<i32>,
        pub treatments: Option<String>,
        pub treatment_other: Option<String>,
        pub impression: Option<i32>,
        pub answered_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub saves: i32,
    }
    no_relations!();
}

pub mod outcome_token {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outcome_token")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub patient_id: i32,
        pub itinerary_id: i32,
        pub occasion: String,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod reevaluation {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reevaluation")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub itinerary_id: i32,
        pub patient_id: i32,
        pub decision: String,
        pub note: Option<String>,
        pub decided_by: Option<i32>,
        pub decided_at: DateTimeUtc,
        pub draft: Option<String>,
        pub booked_itinerary_id: Option<i32>,
    }
    no_relations!();
}
