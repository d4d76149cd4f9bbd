//! What an alert mail says and how it travels: the mail of one outbox row (subject with severity,
//! rule and object; text and HTML bodies from `templates/mail/`), the digest of a burst, and the
//! SMTP transport built from `alerts.smtp_url` (implicit TLS, STARTTLS or plain, through rustls).

use std::time::Duration;

use askama::Template;
use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Message, Tokio1Executor};
use serde_json::Value;

use crate::config::AlertsConfig;
use crate::db::alerts::Claimed;

/// One alert, ready to render.
#[derive(Debug, Clone)]
pub struct AlertMail {
    pub severity: String,
    /// `firing`, `repeat`, `resolved` or `test`.
    pub state: String,
    pub summary: String,
    pub since: Option<String>,
    pub details: Vec<(String, String)>,
    pub hint: String,
    pub link: String,
}

impl AlertMail {
    /// The mail of an outbox row. Rule alerts carry their text in the payload; quota rows (written
    /// by the quota accountant) carry the numbers, and the text is made here.
    pub fn from_row(row: &Claimed, link: &str) -> AlertMail {
        let p = &row.payload;
        let text = |key: &str| p.get(key).and_then(Value::as_str).map(str::to_owned);
        if row.kind == "quota_threshold" {
            let (metric, period) = (text("metric").unwrap_or_default(), text("period").unwrap_or_default());
            let number = |key: &str| p.get(key).map(Value::to_string).unwrap_or_default();
            let what = match metric.as_str() {
                "tokens_soft" => format!("{period} soft token quota"),
                "audio_seconds" => format!("{period} audio quota (seconds)"),
                other => format!("{period} {other} quota"),
            };
            return AlertMail {
                severity: row.severity.clone(),
                state: "firing".into(),
                summary: format!("tenant {} reached {}% of its {what}", row.tenant_id.as_deref().unwrap_or("?"), number("percent")),
                since: text("period_start"),
                details: vec![
                    ("Tenant".into(), row.tenant_id.clone().unwrap_or_default()),
                    ("Used".into(), number("used")),
                    ("Limit".into(), number("limit")),
                ],
                hint: "requests past a hard quota are refused with 429 quota_exceeded until the period ends; \
                       raise the plan's quota or slow the clients down"
                    .into(),
                link: link.to_owned(),
            };
        }
        let details = p
            .get("details")
            .and_then(Value::as_object)
            .map(|d| d.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect())
            .unwrap_or_default();
        AlertMail {
            severity: row.severity.clone(),
            state: text("state").unwrap_or_else(|| "firing".into()),
            summary: text("summary").unwrap_or_else(|| row.kind.clone()),
            since: text("since"),
            details,
            hint: text("hint").unwrap_or_default(),
            link: link.to_owned(),
        }
    }

    /// `[CRITICAL] pool qwen has no healthy worker`, `[RESOLVED] …`.
    pub fn subject(&self) -> String {
        let tag = match self.state.as_str() {
            "resolved" => "RESOLVED".to_owned(),
            "test" => "TEST".to_owned(),
            _ => self.severity.to_uppercase(),
        };
        format!("[{tag}] {}", self.summary)
    }

    /// The first line of the body.
    pub fn state_line(&self) -> &'static str {
        match self.state.as_str() {
            "resolved" => "Resolved: this condition has cleared.",
            "repeat" => "Still firing: this condition has lasted since the first mail.",
            "test" => "A test mail: delivery from Gatehouse works.",
            _ => "Firing.",
        }
    }
}

#[derive(Template)]
#[template(path = "mail/alert.txt")]
struct AlertText<'a> {
    mail: &'a AlertMail,
}

#[derive(Template)]
#[template(path = "mail/alert.html")]
struct AlertHtml<'a> {
    mail: &'a AlertMail,
}

#[derive(Template)]
#[template(path = "mail/digest.txt")]
struct DigestText<'a> {
    mails: &'a [AlertMail],
    link: &'a str,
    threshold: usize,
}

#[derive(Template)]
#[template(path = "mail/digest.html")]
struct DigestHtml<'a> {
    mails: &'a [AlertMail],
    link: &'a str,
    threshold: usize,
}

/// One alert to one recipient.
pub fn message(from: &Mailbox, to: &Mailbox, mail: &AlertMail) -> anyhow::Result<Message> {
    let text = AlertText { mail }.render()?;
    let html = AlertHtml { mail }.render()?;
    Ok(Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(mail.subject())
        .multipart(MultiPart::alternative_plain_html(text, html))?)
}

/// A burst of alerts to one recipient, as one mail.
pub fn digest(from: &Mailbox, to: &Mailbox, mails: &[AlertMail], link: &str, threshold: usize) -> anyhow::Result<Message> {
    let text = DigestText { mails, link, threshold }.render()?;
    let html = DigestHtml { mails, link, threshold }.render()?;
    let critical = mails.iter().any(|m| m.severity == "critical" && m.state != "resolved");
    let subject = format!("[{}] {} Gatehouse alerts", if critical { "CRITICAL" } else { "DIGEST" }, mails.len());
    Ok(Message::builder().from(from.clone()).to(to.clone()).subject(subject).multipart(MultiPart::alternative_plain_html(text, html))?)
}

/// The transport `alerts.smtp_url` names, with the configured timeout, trusting `alerts.ca_file`
/// beside the system's roots when it is set.
pub fn transport(config: &AlertsConfig) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let url = config.smtp_url.expose();
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|e| anyhow::anyhow!("alerts.smtp_url is not a usable SMTP URL: {e}"))?;
    if let Some(ca) = &config.ca_file {
        let pem = std::fs::read(ca).map_err(|e| anyhow::anyhow!("alerts.ca_file {}: {e}", ca.display()))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| anyhow::anyhow!("alerts.ca_file {}: {e}", ca.display()))?;
        let (scheme, host, query) = split_url(url);
        let params = TlsParameters::builder(host.to_owned()).add_root_certificate(cert).build_rustls()?;
        let tls = if scheme == "smtps" {
            Some(Tls::Wrapper(params))
        } else if query.contains("tls=required") {
            Some(Tls::Required(params))
        } else if query.contains("tls=opportunistic") {
            Some(Tls::Opportunistic(params))
        } else {
            None // plain SMTP: no TLS to trust a CA for
        };
        if let Some(tls) = tls {
            builder = builder.tls(tls);
        }
    }
    Ok(builder.timeout(Some(Duration::from_millis(config.smtp_timeout_ms))).build())
}

/// (scheme, host, query) of an SMTP URL such as `smtp://user:pass@host:587?tls=required`.
fn split_url(url: &str) -> (&str, &str, &str) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("smtp", url));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    (scheme, host, query)
}

/// A test mail (`gatehouse alerts test`).
pub fn test_mail(link: &str, now: DateTime<Utc>) -> AlertMail {
    AlertMail {
        severity: "info".into(),
        state: "test".into(),
        summary: "test mail from Gatehouse".into(),
        since: Some(now.to_rfc3339()),
        details: Vec::new(),
        hint: "nothing: this mail only proves that alerts reach you".into(),
        link: link.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::split_url;

    #[test]
    fn smtp_urls_split_into_scheme_host_and_query() {
        assert_eq!(split_url("smtps://user:p%40ss@smtp.example.com"), ("smtps", "smtp.example.com", ""));
        assert_eq!(split_url("smtp://user:pass@mail.example.com:587?tls=required"), ("smtp", "mail.example.com", "tls=required"));
        assert_eq!(split_url("smtp://127.0.0.1:2525"), ("smtp", "127.0.0.1", ""));
    }
}
