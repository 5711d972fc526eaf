//! What a message says and how it travels. `letter` puts a plan's facts into words from the
//! templates in `config/messages/` (Japanese for patients, English for escorts); `mime` wraps
//! words and calendars into email as calendar clients expect (iMIP); `transport` hands the
//! result to SMTP, to a file outbox, or to LINE's Messaging API. Deciding when to send is the
//! worker's job, not this crate's.

pub mod letter;
pub mod line;
pub mod mime;
pub mod transport;

pub use letter::{Composed, Letter, Subject, Templates};
pub use mime::{CalendarPart, Envelope};
pub use transport::{EmailTransport, LineClient, QuickReply, SendError, SmtpSettings, without_addresses};

/// What can go wrong before anything is sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("message template: {0}")]
    Template(String),
    /// The address itself is left out: this goes to logs and to the failure list.
    #[error("{field} is not an address mail can be sent to ({problem})")]
    Address { field: String, problem: String },
    #[error("{0}")]
    Setup(String),
}
