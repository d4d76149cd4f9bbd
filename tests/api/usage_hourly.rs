//! Hourly rollups agree with the minute rows: quota totals from a period start in the middle of an
//! hour (a +05:30 time zone), and usage by model and by credential over "the last 24 hours", are
//! the same whether read from the minute rows alone or from hours plus the minutes around them.

use chrono::{DateTime, Duration, DurationRound, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use gatehouse::db::usage::{self, RollupKey, Totals};
use gatehouse::metering::report::GroupBy;
use gatehouse::metering::{Amounts, Period};

use crate::helpers::{TestDb, seed};

#[derive(QueryableByName, Debug, PartialEq)]
struct Sum {
    #[diesel(sql_type = BigInt)]
    requests: i64,
    #[diesel(sql_type = BigInt)]
    tokens: i64,
}

/// The minute rows alone over `[from, to)`, optionally for one model.
fn minutes(db: &TestDb, tenant: &str, from: DateTime<Utc>, to: DateTime<Utc>, model: &str) -> Sum {
    diesel::sql_query(
        "SELECT coalesce(sum(requests), 0)::bigint AS requests, coalesce(sum(prompt_tokens + completion_tokens), 0)::bigint AS tokens
         FROM usage_rollups WHERE tenant_id = $1 AND minute >= $2 AND minute < $3 AND ($4 = '' OR model = $4)",
    )
    .bind::<Text, _>(tenant)
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .bind::<Text, _>(model)
    .get_result(&mut db.conn())
    .unwrap()
}

#[test]
fn hours_and_minutes_add_up_to_the_minute_rows() {
    let db = TestDb::new();
    let tenant = seed::tenant(&db, "Acme");
    let other = seed::tenant(&db, "Other");
    let now = Utc::now();
    let minute = now.duration_trunc(Duration::minutes(1)).unwrap();
    // Five hours of minutes, two models and two credentials, in two flushes (the hours are
    // added to, not replaced); another tenant's usage beside it.
    let rows: Vec<(RollupKey, Totals)> = (0..300)
        .flat_map(|i| {
            let at = minute - Duration::minutes(i);
            [("m1", "key_a"), ("m2", "key_b")].map(|(model, credential)| {
                let t = Totals { requests: 1 + i % 3, prompt_tokens: 10 + i, completion_tokens: i % 7, ..Totals::default() };
                ((at, tenant.clone(), credential.to_owned(), model.to_owned()), t)
            })
        })
        .collect();
    let (first, second) = rows.split_at(rows.len() / 2);
    let mut conn = db.conn();
    usage::write_rollups(&mut conn, first, &[], None).unwrap();
    usage::write_rollups(&mut conn, second, &[], None).unwrap();
    let foreign = [((minute, other.clone(), "key_c".to_owned(), "m1".to_owned()), Totals { requests: 100, ..Totals::default() })];
    usage::write_rollups(&mut conn, &foreign, &[], None).unwrap();

    // A day that starts at :30 past an hour (India), and the month.
    let india: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
    let (day, month) = (Period::Day.start(india, now), Period::Month.start(india, now));
    let (d, m) = usage::period_totals(&mut conn, &tenant, day, month).unwrap();
    let far = now + Duration::hours(1);
    let expect = |s: Sum| Amounts { requests: s.requests, tokens: s.tokens, audio_ms: 0 };
    assert_eq!(d, expect(minutes(&db, tenant.as_str(), day, far, "")));
    assert_eq!(m, expect(minutes(&db, tenant.as_str(), month, far, "")));

    // "The last 24 hours" and a window starting and ending mid-hour, by model and by credential.
    for (from, to) in
        [(now - Duration::hours(24), now + Duration::minutes(1)), (minute - Duration::minutes(170), minute - Duration::minutes(15))]
    {
        let by_model = usage::grouped(&mut conn, &tenant, from, to, GroupBy::Model).unwrap();
        for g in &by_model {
            let s = minutes(&db, tenant.as_str(), from, to, &g.key);
            assert_eq!((g.requests, g.prompt_tokens + g.completion_tokens), (s.requests, s.tokens), "{} over {from}..{to}", g.key);
        }
        assert_eq!(by_model.iter().map(|g| g.key.as_str()).collect::<Vec<_>>(), ["m1", "m2"]);
        let by_credential = usage::grouped(&mut conn, &tenant, from, to, GroupBy::Credential).unwrap();
        let total: i64 = by_credential.iter().map(|g| g.requests).sum();
        assert_eq!(total, minutes(&db, tenant.as_str(), from, to, "").requests);
        assert_eq!(by_credential.iter().map(|g| g.key.as_str()).collect::<Vec<_>>(), ["key_a", "key_b"], "no other tenant's rows");
    }
}
