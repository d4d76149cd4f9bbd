//! Quotas: the amounts that count against them, the caps a plan sets per period, and the periods
//! themselves (the day and the calendar month in the tenant's time zone).

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

/// What counts against a quota.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Amounts {
    pub requests: i64,
    pub tokens: i64,
    pub audio_ms: i64,
}

impl std::ops::AddAssign for Amounts {
    fn add_assign(&mut self, o: Amounts) {
        self.requests += o.requests;
        self.tokens += o.tokens;
        self.audio_ms += o.audio_ms;
    }
}

impl std::ops::SubAssign for Amounts {
    fn sub_assign(&mut self, o: Amounts) {
        self.requests -= o.requests;
        self.tokens -= o.tokens;
        self.audio_ms -= o.audio_ms;
    }
}

impl std::ops::Add for Amounts {
    type Output = Amounts;
    fn add(mut self, o: Amounts) -> Amounts {
        self += o;
        self
    }
}

/// Hard caps for one period; `None` = unlimited.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub requests: Option<i64>,
    pub tokens: Option<i64>,
    pub audio_seconds: Option<i64>,
}

impl Caps {
    pub fn is_unlimited(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none() && self.audio_seconds.is_none()
    }
}

/// A tenant's quotas, from its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    pub time_zone: chrono_tz::Tz,
    pub daily: Caps,
    pub monthly: Caps,
    pub monthly_token_soft: Option<i64>,
}

impl Quotas {
    pub fn is_unlimited(&self) -> bool {
        self.daily.is_unlimited() && self.monthly.is_unlimited() && self.monthly_token_soft.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }

    /// Start of the period containing `now`, in `tz`, as an instant.
    pub fn start(self, tz: chrono_tz::Tz, now: DateTime<Utc>) -> DateTime<Utc> {
        let local = now.with_timezone(&tz).date_naive();
        let first = match self {
            Period::Day => local,
            Period::Month => NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap_or(local),
        };
        local_midnight(tz, first)
    }
}

/// The instant a local date begins (the earliest, across a DST fold; the first valid time across
/// a gap).
pub fn local_midnight(tz: chrono_tz::Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut t = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..4 {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.with_timezone(&Utc);
        }
        t += chrono::Duration::minutes(30);
    }
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// Why a quota reservation was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaError {
    /// The request would pass a hard quota.
    Exceeded(String),
    /// The tenant's usage could not be read (database unavailable).
    Unavailable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_follow_the_tenant_time_zone() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 23, 30, 0).unwrap();
        // 23:30 UTC on the 30th is already 1 December in Tokyo.
        let tokyo: chrono_tz::Tz = "Asia/Tokyo".parse().unwrap();
        assert_eq!(Period::Month.start(tokyo, now), Utc.with_ymd_and_hms(2026, 11, 30, 15, 0, 0).unwrap());
        assert_eq!(Period::Day.start(tokyo, now), Utc.with_ymd_and_hms(2026, 11, 30, 15, 0, 0).unwrap());
        let utc = chrono_tz::UTC;
        assert_eq!(Period::Month.start(utc, now), Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap());
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        assert_eq!(Period::Day.start(ny, now), Utc.with_ymd_and_hms(2026, 11, 30, 5, 0, 0).unwrap());
    }
}
