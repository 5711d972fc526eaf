//! Where a message goes: an SMTP relay (lettre: plain, STARTTLS or TLS, with or without
//! authentication), a file outbox with one `.eml` per message (the embedded default), or LINE's
//! Messaging API push. Every failure is sorted into transient (try again later) or permanent.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::NotifyError;

/// Why a send did not go through.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later (SMTP 4xx, connection refused, timeout, LINE 429 or 5xx).
    #[error("temporary: {reason}")]
    Transient { reason: String, retry_after: Option<Duration> },
    /// Trying again will not help (SMTP 5xx such as 550, LINE 400/403).
    #[error("permanent: {0}")]
    Permanent(String),
    /// The relay's setup is wrong, not the message: its certificate is refused, the TLS mode or
    /// authentication does not match. No message can go until an operator fixes `[smtp]`.
    #[error("relay configuration: {0}")]
    Configuration(String),
}

/// How to reach the SMTP relay (`[smtp]` in config/default.toml).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    /// `none` (a relay on loopback), `starttls` (port 587) or `tls` (port 465).
    pub security: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// A PEM file with a further root certificate to trust (a relay with a private CA).
    #[serde(default)]
    pub ca_file: Option<String>,
}

fn default_timeout() -> u64 {
    30
}

/// The email transport in force.
#[derive(Clone, Debug)]
pub enum EmailTransport {
    /// One `.eml` per message in this directory.
    Outbox(PathBuf),
    /// The relay, and how long one whole send may take before it counts as a transient failure.
    Smtp(AsyncSmtpTransport<Tokio1Executor>, Duration),
}

impl EmailTransport {
    /// The outbox directory, made readable by this user alone: its files hold names,
    /// treatment details and working feed URLs.
    pub fn outbox(dir: &Path) -> Result<EmailTransport, NotifyError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let setup = |e: std::io::Error| NotifyError::Setup(format!("creating outbox {}: {e}", dir.display()));
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(setup)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(setup)?;
        Ok(EmailTransport::Outbox(dir.to_owned()))
    }

    pub fn smtp(s: &SmtpSettings) -> Result<EmailTransport, NotifyError> {
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        let setup = |e: lettre::transport::smtp::Error| NotifyError::Setup(format!("smtp.host {:?}: {e}", s.host));
        let tls = || -> Result<TlsParameters, NotifyError> {
            let mut params = TlsParameters::builder(s.host.clone());
            if let Some(file) = s.ca_file.as_deref().filter(|f| !f.is_empty()) {
                let pem = std::fs::read(file).map_err(|e| NotifyError::Setup(format!("smtp.ca_file {file:?}: {e}")))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| NotifyError::Setup(format!("smtp.ca_file {file:?}: {e}")))?;
                params = params.add_root_certificate(cert);
            }
            params.build_rustls().map_err(setup)
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host);
        let builder = match s.security.as_str() {
            "none" => builder,
            "starttls" => builder.tls(Tls::Required(tls()?)),
            "tls" => builder.tls(Tls::Wrapper(tls()?)),
            other => return Err(NotifyError::Setup(format!("smtp.security: {other:?} is not none, starttls or tls"))),
        };
        let mut builder = builder.port(s.port).timeout(Some(Duration::from_secs(s.timeout_secs)));
        if let (Some(u), Some(p)) = (&s.username, &s.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
        }
        // lettre's timeout covers each read and write; a relay that keeps the session open
        // without answering is cut off at twice that for the whole send.
        Ok(EmailTransport::Smtp(builder.build(), Duration::from_secs(s.timeout_secs.max(1) * 2)))
    }

    /// Hands `message` over. `name` is the message's stable name (`m42`): the outbox writes
    /// `name.eml` once, so a second attempt for the same message finds it there and writes
    /// nothing. Returns the provider's reference (the SMTP reply, the file).
    pub async fn send(&self, message: &Message, name: &str) -> Result<String, SendError> {
        match self {
            EmailTransport::Outbox(dir) => write_once(dir, name, &message.formatted()),
            EmailTransport::Smtp(t, limit) => match tokio::time::timeout(*limit, t.send(message.clone())).await {
                Ok(Ok(r)) => Ok(format!("{} {}", r.code(), r.message().collect::<Vec<_>>().join(" "))),
                Ok(Err(e)) => Err(smtp_failure(&e)),
                Err(_) => Err(SendError::Transient {
                    reason: format!("no answer from the relay within {} s", limit.as_secs()),
                    retry_after: None,
                }),
            },
        }
    }

    /// Connects to the relay as a send would (TLS, certificate, authentication) and quits: what
    /// `serve` and `worker` check once at start. The outbox has nothing to check.
    pub async fn check(&self) -> Result<(), SendError> {
        match self {
            EmailTransport::Outbox(_) => Ok(()),
            EmailTransport::Smtp(t, limit) => match tokio::time::timeout(*limit, t.test_connection()).await {
                Ok(Ok(true)) => Ok(()),
                Ok(Ok(false)) => Err(SendError::Transient { reason: "the relay closed the session at once".into(), retry_after: None }),
                Ok(Err(e)) => Err(smtp_failure(&e)),
                Err(_) => Err(SendError::Transient {
                    reason: format!("no answer from the relay within {} s", limit.as_secs()),
                    retry_after: None,
                }),
            },
        }
    }

    pub fn channel(&self) -> &'static str {
        match self {
            EmailTransport::Outbox(_) => "outbox",
            EmailTransport::Smtp(..) => "email",
        }
    }
}

/// Sorts a relay's error: the relay's setup (certificate, TLS mode, authentication), the
/// message (5xx), or a moment (4xx, network). Reasons keep no address: relays quote them.
fn smtp_failure(e: &lettre::transport::smtp::Error) -> SendError {
    let reason = without_addresses(&e.to_string());
    if let Some(tls) = rustls_error(e) {
        use rustls::Error as T;
        let why = match tls {
            T::InvalidCertificate(c) => Some(format!(
                "the relay's TLS certificate is refused ({c:?}): check smtp.host, and smtp.ca_file for a private CA; a CA's own certificate cannot serve as the relay's"
            )),
            T::NoCertificatesPresented => Some("the relay presented no TLS certificate".to_owned()),
            // Plain text where TLS was expected, or the other way round.
            T::InvalidMessage(_) | T::PeerIncompatible(_) => {
                Some(format!("the relay does not speak TLS as smtp.security says ({tls}): check smtp.security and smtp.port"))
            }
            _ => None,
        };
        if let Some(why) = why {
            return SendError::Configuration(why);
        }
    }
    // lettre's own refusals before any exchange: no STARTTLS offered, no shared AUTH mechanism.
    if e.is_client() {
        return SendError::Configuration(format!("{reason}: check smtp.security, smtp.username and smtp.password"));
    }
    match e.status().map(u16::from) {
        // Authentication required, too weak, or refused: the credentials are the operator's.
        Some(code @ (530 | 534 | 535 | 538)) => {
            SendError::Configuration(format!("the relay refused authentication ({code}): check smtp.username and smtp.password; {reason}"))
        }
        // 503 (bad sequence of commands) is the session's fault, not the message's: a pooled
        // connection left mid-transaction by a send that was cut off (the fault campaign saw
        // "nested MAIL command"). lettre drops that connection on the error, so a retry goes
        // over a fresh one.
        Some(503) => SendError::Transient { reason, retry_after: None },
        _ if e.is_permanent() => SendError::Permanent(reason),
        _ => SendError::Transient { reason, retry_after: None },
    }
}

/// The rustls error under a relay's error, if a TLS handshake failed.
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// Deletes the outbox's messages of itineraries `references` (files `{reference}.m{id}.{kind}.eml`,
/// as the worker names them): a patient's erasure reaches the mail kept here too. How many were
/// deleted.
pub fn erase_from_outbox(dir: &Path, references: &[String]) -> std::io::Result<usize> {
    let mut n = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // A message, or the temporary file of one a crash left (`.{reference}.m….tmp`).
        let of = |r: &String| !r.is_empty() && (name.starts_with(&format!("{r}.m")) || name.starts_with(&format!(".{r}.m")));
        if references.iter().any(of) {
            std::fs::remove_file(entry.path())?;
            n += 1;
        }
    }
    Ok(n)
}

/// Writes `dir/name.eml` through a temporary file and a rename, so the file is either whole or
/// absent; when it already exists the message went out before and nothing is written.
fn write_once(dir: &Path, name: &str, bytes: &[u8]) -> Result<String, SendError> {
    let io = |e: std::io::Error| SendError::Transient { reason: format!("outbox {}: {e}", dir.display()), retry_after: None };
    let path = dir.join(format!("{name}.eml"));
    if path.exists() {
        return Ok(format!("{} (written before)", path.display()));
    }
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?
    };
    f.write_all(bytes).map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path.display().to_string())
}

/// A quick-reply button: what it says, what it sends back (`data`), and what appears in the
/// chat as the patient's own words when pressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuickReply {
    pub label: String,
    pub data: String,
    pub display_text: String,
}

/// LINE Messaging API: `POST /v2/bot/message/push` with the channel access token.
#[derive(Clone, Debug)]
pub struct LineClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl LineClient {
    /// `base` is `https://api.line.me` in production, a local stand-in in tests.
    pub fn new(base: &str, token: &str, timeout: Duration) -> Result<LineClient, NotifyError> {
        // reqwest is built without a TLS provider of its own; ring's is the one lettre uses too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(|e| NotifyError::Setup(format!("line client: {e}")))?;
        Ok(LineClient { http, base: base.trim_end_matches('/').to_owned(), token: token.to_owned() })
    }

    /// Pushes up to five text messages to `to`. `retry_key` (a UUID, the same on every attempt
    /// for one message) lets LINE refuse a second acceptance with 409 instead of sending twice.
    pub async fn push(&self, to: &str, texts: &[String], retry_key: &str) -> Result<String, SendError> {
        self.push_asking(to, texts, &[], retry_key).await
    }

    /// As [`LineClient::push`], with quick-reply buttons under the last message: each a
    /// postback whose `data` comes back in a `postback` webhook event (up to 13; labels are
    /// cut to LINE's 20 characters).
    pub async fn push_asking(&self, to: &str, texts: &[String], buttons: &[QuickReply], retry_key: &str) -> Result<String, SendError> {
        let n = texts.len().min(5);
        let messages: Vec<_> = texts
            .iter()
            .take(5)
            .enumerate()
            .map(|(i, t)| {
                let mut m = serde_json::json!({ "type": "text", "text": clip(t, 5000) });
                if i + 1 == n && !buttons.is_empty() {
                    let items: Vec<_> = buttons
                        .iter()
                        .take(13)
                        .map(|b| {
                            serde_json::json!({ "type": "action", "action": {
                                "type": "postback", "label": clip(&b.label, 20), "data": clip(&b.data, 300), "displayText": clip(&b.display_text, 300) } })
                        })
                        .collect();
                    m["quickReply"] = serde_json::json!({ "items": items });
                }
                m
            })
            .collect();
        let res = self
            .http
            .post(format!("{}/v2/bot/message/push", self.base))
            .bearer_auth(&self.token)
            .header("X-Line-Retry-Key", retry_key)
            .json(&serde_json::json!({ "to": to, "messages": messages }))
            .send()
            .await
            .map_err(|e| SendError::Transient { reason: format!("LINE: {e}"), retry_after: None })?;
        let status = res.status();
        let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let request_id = header("x-line-request-id").unwrap_or_default();
        let accepted_id = header("x-line-accepted-request-id");
        let retry_after = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
        let body = res.text().await.unwrap_or_default();
        match status.as_u16() {
            200 => Ok(format!("line {request_id}")),
            // The same retry key was accepted before: it went out then.
            409 if accepted_id.is_some() => Ok(format!("line {} (accepted earlier)", accepted_id.unwrap_or_default())),
            429 if body.contains("monthly limit") => Err(SendError::Permanent(format!("LINE 429: monthly limit reached: {body}"))),
            429 => Err(SendError::Transient { reason: format!("LINE 429: {body}"), retry_after }),
            500..=599 => Err(SendError::Transient { reason: format!("LINE {status}: {body}"), retry_after }),
            _ => Err(SendError::Permanent(format!("LINE {status}: {body}"))),
        }
    }
}

impl LineClient {
    /// Answers a webhook event with `texts` (`POST /v2/bot/message/reply`): free, unlike a push,
    /// but the reply token works once and only for a short while. `Permanent` when LINE refuses
    /// the token (used or expired): the caller pushes instead.
    pub async fn reply(&self, reply_token: &str, texts: &[String]) -> Result<String, SendError> {
        let messages: Vec<_> = texts.iter().take(5).map(|t| serde_json::json!({ "type": "text", "text": clip(t, 5000) })).collect();
        let res = self
            .http
            .post(format!("{}/v2/bot/message/reply", self.base))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "replyToken": reply_token, "messages": messages }))
            .send()
            .await
            .map_err(|e| SendError::Transient { reason: format!("LINE: {e}"), retry_after: None })?;
        let status = res.status();
        let request_id = res.headers().get("x-line-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = res.text().await.unwrap_or_default();
        match status.as_u16() {
            200 => Ok(format!("line reply {request_id}")),
            429 | 500..=599 => Err(SendError::Transient { reason: format!("LINE {status}: {body}"), retry_after: None }),
            _ => Err(SendError::Permanent(format!("LINE {status}: {body}"))),
        }
    }

    /// A link token for `user` (`POST /v2/bot/user/{userId}/linkToken`): valid ten minutes,
    /// single use, carried by the linking URL to our page and from there back to LINE.
    pub async fn link_token(&self, user: &str) -> Result<String, SendError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Issued {
            link_token: String,
        }
        let res = self
            .http
            .post(format!("{}/v2/bot/user/{user}/linkToken", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            // The URL names the LINE user: not in a reason, which goes to logs.
            .map_err(|e| SendError::Transient { reason: format!("LINE: {}", e.without_url()), retry_after: None })?;
        let status = res.status();
        let retry_after =
            res.headers().get("retry-after").and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok()).map(Duration::from_secs);
        let body = res.text().await.unwrap_or_default();
        match status.as_u16() {
            200 => serde_json::from_str::<Issued>(&body)
                .map(|i| i.link_token)
                .map_err(|e| SendError::Transient { reason: format!("LINE linkToken answer: {e}"), retry_after: None }),
            429 | 500..=599 => Err(SendError::Transient { reason: format!("LINE {status}: {body}"), retry_after }),
            _ => Err(SendError::Permanent(format!("LINE {status}: {body}"))),
        }
    }
}

/// `text` with every word that holds an `@` (an address, as relays quote it in `550 <a@b>:
/// unknown user`) replaced by `<address>`: reasons go to logs and to the failure list, and
/// neither may carry a patient's address.
pub fn without_addresses(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let boundary = |c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '(' | ')' | ',' | '[' | ']');
        let start = rest[..at].rfind(boundary).map_or(0, |i| i + rest[..at][i..].chars().next().map_or(1, char::len_utf8));
        let end = rest[at..].find(boundary).map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str("<address>");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn clip(s: &str, max_chars: usize) -> &str {
    s.char_indices().nth(max_chars).map_or(s, |(i, _)| &s[..i])
}

/// A UUID-shaped retry key that is the same for every attempt at one message. `salt` is to
/// tell deployments apart (the itinerary's random reference), so a fresh database never reuses
/// a key LINE remembers.
pub fn retry_key(message_id: i32, salt: u64) -> String {
    let id = u32::from_ne_bytes(message_id.to_ne_bytes());
    format!(
        "{id:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (salt >> 48) & 0xffff,
        (salt >> 36) & 0xfff,
        (salt >> 24) & 0xfff,
        salt & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::without_addresses;

    #[test]
    fn an_erasure_takes_the_patients_mail_and_a_crashs_leftovers_only() {
        let dir = std::env::temp_dir().join(format!("outbox-erase-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        for f in ["it-aa.m1.booking_confirmation.eml", ".it-aa.m2.outcome_invite.77.tmp", "it-aab.m3.evening_before.eml", "it-bb.m4.x.eml"]
        {
            std::fs::write(dir.join(f), "x").unwrap_or_default();
        }
        assert_eq!(super::erase_from_outbox(&dir, &["it-aa".to_owned()]).ok(), Some(2));
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["it-aab.m3.evening_before.eml", "it-bb.m4.x.eml"]);
        assert_eq!(super::erase_from_outbox(&dir.join("absent"), &["it-aa".to_owned()]).ok(), Some(0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reasons_lose_every_address_and_keep_the_rest() {
        assert_eq!(
            without_addresses("permanent: 550 5.1.1 <taro.yamada@example.jp>: Recipient address rejected"),
            "permanent: 550 5.1.1 <<address>>: Recipient address rejected"
        );
        assert_eq!(without_addresses("to x${jndi:ldap://x}@example.jp, and b@c.d."), "to <address>, and <address>");
        assert_eq!(without_addresses("山田@例え.jp 宛"), "<address> 宛");
        assert_eq!(without_addresses("no address here"), "no address here");
    }
}
