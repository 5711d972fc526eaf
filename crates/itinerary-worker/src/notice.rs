//! LINE notices outside any itinerary (`line_notice`): the offer to link a LINE account, with a
//! link token fetched from LINE at the moment of sending (it lives ten minutes), and the word
//! that the link is made. The dispatcher sends what is due on each pass; a notice is claimed
//! like a message (a claim older than the sending lease is taken over) and tried again with the
//! delivery backoff until it goes, or fails for good, or `MAX_ATTEMPTS` is spent.

use chrono::{DateTime, Utc};
use itinerary_notify::SendError;
use itinerary_store::LineNotice;

use crate::{Deliverer, WorkerError};

/// Attempts at one notice before it is marked failed (with the backoff, about an hour).
const MAX_ATTEMPTS: i32 = 8;

impl Deliverer {
    /// Sends the LINE notices that are due (at most `limit`); how many it took.
    pub async fn send_line_notices(&self, lease: chrono::Duration, limit: u64) -> Result<usize, WorkerError> {
        let now = self.clock.now().await?;
        let notices = self.store.claim_line_notices(&self.name, now, Utc::now(), lease, limit).await?;
        let n = notices.len();
        for notice in notices {
            let outcome = match self.send_notice(&notice).await {
                Ok(by) => Ok(by),
                Err(SendError::Transient { reason, retry_after }) if notice.attempt < MAX_ATTEMPTS => {
                    let wait = retry_after.and_then(|d| chrono::Duration::from_std(d).ok()).unwrap_or_else(|| self.backoff(notice.attempt));
                    Err((reason, Some(now + wait)))
                }
                Err(e) => Err((e.to_string(), None::<DateTime<Utc>>)),
            };
            match &outcome {
                Ok(by) => tracing::info!(notice = notice.id, kind = %notice.kind, by, "LINE notice sent"),
                Err((reason, when)) => {
                    tracing::warn!(notice = notice.id, kind = %notice.kind, %reason, again = ?when, "LINE notice not sent")
                }
            }
            // Sent at the service's clock, as messages are: the month's LINE allowance counts both.
            let at = self.clock.now().await?;
            self.store.finish_line_notice(notice.id, &self.name, outcome, at).await?;
        }
        Ok(n)
    }

    /// Sends one notice: as a reply while its event's reply token is fresh (free), else as a
    /// push within the month's allowance. How it went: `reply` or `push`.
    async fn send_notice(&self, notice: &LineNotice) -> Result<&'static str, SendError> {
        let Some(line) = &self.line else {
            return Err(SendError::Configuration("LINE is not configured (line.token is empty)".into()));
        };
        let clinic = &self.setup.clinic.name;
        let store_error = |e: itinerary_store::StoreError| SendError::Transient { reason: e.to_string(), retry_after: None };
        let (text, feed) = match notice.kind.as_str() {
            "link_offer" => {
                let token = line.link_token(&notice.line_user_id).await?;
                (itinerary_notify::line::link_offer(clinic, &itinerary_notify::line::link_url(&self.rules.public_url, &token)), None)
            }
            "linked" => {
                // Unlinked (or linked elsewhere) since: there is nothing true to say.
                let Some(pid) = notice.patient_id else {
                    return Err(SendError::Permanent("the patient is no longer linked to this LINE user".into()));
                };
                let feed = self.store.issue_feed_token_in(pid, "line").await.map_err(store_error)?;
                let url = format!("{}/feed/{feed}", self.rules.public_url);
                (itinerary_notify::line::linked(clinic, notice.language.as_deref() == Some("en"), Some(&url)), Some(feed))
            }
            other => return Err(SendError::Permanent(format!("unknown LINE notice kind {other:?}"))),
        };
        let sent = self.reply_or_push(line, notice, text).await;
        // A feed URL nobody received must not stay open (the next attempt issues its own).
        if let (Err(_), Some(feed)) = (&sent, &feed) {
            self.store.revoke_feed_secret(feed).await.map_err(store_error)?;
        }
        sent
    }

    async fn reply_or_push(
        &self,
        line: &itinerary_notify::LineClient,
        notice: &LineNotice,
        text: String,
    ) -> Result<&'static str, SendError> {
        if let Some(token) = &notice.reply_token {
            match line.reply(token, std::slice::from_ref(&text)).await {
                Ok(_) => return Ok("reply"),
                // Used or expired: a push carries it.
                Err(SendError::Permanent(why)) => tracing::info!(notice = notice.id, %why, "the reply token is refused; pushing"),
                Err(e) => return Err(e),
            }
        }
        let now = self.clock.now().await.map_err(|e| SendError::Transient { reason: e.to_string(), retry_after: None })?;
        if !self.line_allowed(now).await.map_err(|e| SendError::Transient { reason: e.to_string(), retry_after: None })? {
            return Err(SendError::Permanent("the month's LINE allowance is used up".into()));
        }
        line.push(&notice.line_user_id, &[text], &notice.retry_key).await.map(|_| "push")
    }
}
