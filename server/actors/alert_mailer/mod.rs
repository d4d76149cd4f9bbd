//! The `AlertMailer`: delivers the alert outbox by email, reached only through
//! `AlertMailerHandle`. Every alert is a row in `alert_outbox`, written in the transaction of the
//! event that raised it; the mailer claims due rows (`FOR UPDATE SKIP LOCKED`, so with several
//! instances each alert is mailed once), mails each recipient separately, and marks the row
//! sent. A failed send is retried with exponential backoff and jitter; after `max_attempts` the
//! row is marked failed and counted. While SMTP is down rows wait (`gatehouse_alerts_pending`
//! rises) and go out when it returns. More than `digest_after` alerts to one recipient within
//! ten minutes go as one digest. An alert an operator's silence covers is recorded as silenced
//! and not mailed. Requests never wait for any of this.
//!
//! Who receives what: a tenant's alerts go to that tenant's recipients (to the on-call
//! addresses if it has none, so nothing is dropped silently); platform alerts go to on-call only.

pub mod mail;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::AlertsConfig;
use crate::db::Db;
use crate::db::alerts::{self, Claimed, Recipient};
use mail::AlertMail;

/// Alerts claimed per round.
const BATCH: i64 = 50;
/// The window of the digest rule.
const DIGEST_WINDOW: Duration = Duration::from_secs(600);
/// The longest pause between two attempts of one alert.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// What the mailer needs; shared by the actor and the handle, and kept when the actor is revived.
struct Outbox {
    db: Db,
    config: AlertsConfig,
    transport: Option<Transport>,
    from: Option<Mailbox>,
    link: String,
    /// When each recipient was last mailed (for the digest rule).
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// The actor: one delivery round every `alerts.poll_ms`, one at a time.
pub struct AlertMailer {
    outbox: Arc<Outbox>,
}

impl Actor for AlertMailer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_millis(self.outbox.config.poll_ms), |act, ctx| {
            let outbox = act.outbox.clone();
            ctx.wait(async move { outbox.deliver().await }.into_actor(act));
        });
    }
}

/// Delivers what is due now (tests and shutdown).
#[derive(Message)]
#[rtype(result = "()")]
struct DeliverNow;

impl Handler<DeliverNow> for AlertMailer {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: DeliverNow, _: &mut Self::Context) -> Self::Result {
        let outbox = self.outbox.clone();
        AtomicResponse::new(Box::pin(async move { outbox.deliver().await }.into_actor(self)))
    }
}

/// The only way to reach the alert mailer.
#[derive(Clone)]
pub struct AlertMailerHandle {
    outbox: Arc<Outbox>,
    addr: Arc<RwLock<Addr<AlertMailer>>>,
    arbiter: actix_rt::ArbiterHandle,
}

impl AlertMailerHandle {
    /// Starts the mailer on the current arbiter. Without `alerts.smtp_url` it only keeps the
    /// pending gauge: alerts are recorded and listed, not mailed.
    pub fn start(db: Db, config: &AlertsConfig, link: String) -> anyhow::Result<AlertMailerHandle> {
        let (transport, from) = if config.smtp_url.is_empty() {
            (None, None)
        } else {
            let from = config.from.parse::<Mailbox>().map_err(|e| anyhow::anyhow!("alerts.from: {e}"))?;
            (Some(mail::transport(config)?), Some(from))
        };
        let outbox = Arc::new(Outbox { db, config: config.clone(), transport, from, link, recent: Mutex::default() });
        let arbiter = actix_rt::Arbiter::current();
        let addr = spawn_actor(&arbiter, &outbox);
        Ok(AlertMailerHandle { outbox, addr: Arc::new(RwLock::new(addr)), arbiter })
    }

    /// Whether alerts are mailed (`alerts.smtp_url` is set).
    pub fn mail_on(&self) -> bool {
        self.outbox.transport.is_some()
    }

    /// Runs a delivery round now and waits for it.
    pub async fn deliver_now(&self) {
        let addr = self.addr.read().map(|a| a.clone()).ok();
        if let Some(addr) = addr {
            let _ = addr.send(DeliverNow).await;
        }
    }

    /// Starts a new actor if the current one died; true when it did.
    pub fn revive_if_dead(&self) -> bool {
        let Ok(mut addr) = self.addr.write() else { return false };
        if addr.connected() {
            return false;
        }
        tracing::error!("the alert mailer died; starting it again");
        *addr = spawn_actor(&self.arbiter, &self.outbox);
        true
    }
}

fn spawn_actor(arbiter: &actix_rt::ArbiterHandle, outbox: &Arc<Outbox>) -> Addr<AlertMailer> {
    let actor = AlertMailer { outbox: outbox.clone() };
    AlertMailer::start_in_arbiter(arbiter, move |_| actor)
}

/// The addresses of one alert: its tenant's recipients (on-call if it has none), or on-call.
fn recipients_of<'a>(all: &'a [Recipient], tenant: Option<&str>) -> Vec<&'a str> {
    let of = |t: Option<&str>| -> Vec<&'a str> { all.iter().filter(|r| r.tenant_id.as_deref() == t).map(|r| r.email.as_str()).collect() };
    let tenant_recipients = tenant.map(|t| of(Some(t))).unwrap_or_default();
    if tenant_recipients.is_empty() { of(None) } else { tenant_recipients }
}

/// The delay before attempt `attempts + 1`: the base doubled per attempt, ±20 % jitter, capped.
fn backoff(base_ms: u64, attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(20);
    let ms = base_ms.saturating_mul(1u64 << exp).min(MAX_BACKOFF.as_millis() as u64);
    let jitter = rand::random_range(0.8..1.2);
    Duration::from_millis((ms as f64 * jitter) as u64)
}

impl Outbox {
    async fn deliver(&self) {
        self.update_pending_gauge().await;
        let (Some(transport), Some(from)) = (&self.transport, &self.from) else { return };
        let lease = (self.config.smtp_timeout_ms / 1000 + 30) as i64;
        let claimed = match self.db.run(move |conn| Ok(alerts::claim_due(conn, BATCH, lease)?)).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "alert outbox not read");
                return;
            }
        };
        if claimed.is_empty() {
            return;
        }
        // Silenced alerts are recorded as such, not mailed.
        let now = chrono::Utc::now();
        let silences = match self.db.run(move |conn| Ok(alerts::active_silences(conn, now)?)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "alert silences not read");
                return; // the lease expires and the rows are claimed again
            }
        };
        let (silenced, claimed): (Vec<Claimed>, Vec<Claimed>) =
            claimed.into_iter().partition(|row| silences.iter().any(|s| s.covers(&row.kind, &row.dedup_key)));
        if !silenced.is_empty() {
            let ids: Vec<i64> = silenced.iter().map(|r| r.id).collect();
            if let Err(e) = self.db.run(move |conn| Ok(alerts::mark_sent(conn, &ids, Some("silenced"))?)).await {
                tracing::warn!(error = %e, "silenced alerts not marked");
            }
        }
        // Every recipient once per round, then each row's recipients, then each recipient's rows.
        let recipients = match self.db.run(|conn| Ok(alerts::list_all_recipients(conn)?)).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "alert recipients not read");
                return; // the lease expires and the rows are claimed again
            }
        };
        let mut by_recipient: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut no_recipient = Vec::new();
        for (i, row) in claimed.iter().enumerate() {
            let emails = recipients_of(&recipients, row.tenant_id.as_deref());
            if emails.is_empty() {
                no_recipient.push(row.id);
            }
            emails.into_iter().for_each(|e| by_recipient.entry(e.to_owned()).or_default().push(i));
        }
        let mut failed: HashMap<usize, String> = HashMap::new();
        for (email, rows) in &by_recipient {
            let Ok(to) = email.parse::<Mailbox>() else {
                tracing::warn!(recipient = %email, "alert recipient is not a mail address; skipped");
                continue;
            };
            let mails: Vec<AlertMail> = rows.iter().map(|i| AlertMail::from_row(&claimed[*i], &self.link)).collect();
            let messages = if self.digest_due(email, mails.len()) {
                vec![(mail::digest(from, &to, &mails, &self.link, self.config.digest_after), rows.clone())]
            } else {
                mails.iter().zip(rows).map(|(m, i)| (mail::message(from, &to, m), vec![*i])).collect()
            };
            for (message, rows) in messages {
                let outcome = match message {
                    Ok(message) => transport.send(message).await.map(drop).map_err(|e| e.to_string()),
                    Err(e) => Err(format!("mail not rendered: {e:#}")),
                };
                match outcome {
                    Ok(()) => {
                        self.sent_to(email, 1);
                        metrics::counter!("gatehouse_alerts_sent_total").increment(1);
                    }
                    Err(e) => rows.into_iter().for_each(|i| drop(failed.insert(i, e.clone()))),
                }
            }
        }
        self.settle(&claimed, failed, no_recipient).await;
    }

    /// Marks each claimed row sent, retried later, or failed.
    async fn settle(&self, claimed: &[Claimed], failed: HashMap<usize, String>, no_recipient: Vec<i64>) {
        let sent: Vec<i64> = claimed
            .iter()
            .enumerate()
            .filter(|(i, r)| !failed.contains_key(i) && !no_recipient.contains(&r.id))
            .map(|(_, r)| r.id)
            .collect();
        let mut retry: Vec<(i64, std::time::Duration, String)> = Vec::new();
        let mut give_up: Vec<(i64, String)> = Vec::new();
        for (i, error) in failed {
            let row = &claimed[i];
            if row.attempts >= self.config.max_attempts as i32 {
                give_up.push((row.id, error));
            } else {
                retry.push((row.id, backoff(self.config.retry_base_ms, row.attempts), error));
            }
        }
        if !retry.is_empty() || !give_up.is_empty() {
            tracing::warn!(retrying = retry.len(), failed = give_up.len(), "alert mails not delivered");
        }
        metrics::counter!("gatehouse_alerts_failed_total").increment(give_up.len() as u64);
        let result = self
            .db
            .run(move |conn| {
                alerts::mark_sent(conn, &sent, None)?;
                alerts::mark_sent(conn, &no_recipient, Some("no recipient"))?;
                for (id, delay, error) in &retry {
                    let at = chrono::Utc::now() + chrono::Duration::from_std(*delay).unwrap_or_default();
                    alerts::reschedule(conn, &[*id], at, error)?;
                }
                for (id, error) in &give_up {
                    alerts::mark_failed(conn, &[*id], error)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            // The lease expires and the rows are claimed again: a mail may go out twice, never zero times.
            tracing::warn!(error = %e, "alert delivery state not saved");
        }
    }

    /// True when `count` more mails to `email` would pass the digest threshold in the window.
    fn digest_due(&self, email: &str, count: usize) -> bool {
        if count < 2 {
            return false;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let log = recent.entry(email.to_owned()).or_default();
        let now = Instant::now();
        while log.front().is_some_and(|t| now.duration_since(*t) > DIGEST_WINDOW) {
            log.pop_front();
        }
        log.len() + count > self.config.digest_after
    }

    fn sent_to(&self, email: &str, mails: usize) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let log = recent.entry(email.to_owned()).or_default();
        (0..mails).for_each(|_| log.push_back(Instant::now()));
    }

    async fn update_pending_gauge(&self) {
        if let Ok(n) = self.db.run(|conn| Ok(alerts::pending_count(conn)?)).await {
            metrics::gauge!("gatehouse_alerts_pending").set(n as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        for _ in 0..50 {
            let first = backoff(1000, 1).as_millis();
            assert!((800..=1200).contains(&first), "{first}");
            let fourth = backoff(1000, 4).as_millis();
            assert!((6400..=9600).contains(&fourth), "{fourth}");
            assert!(backoff(1000, 40).as_secs() <= 3600 * 12 / 10);
        }
    }
}
