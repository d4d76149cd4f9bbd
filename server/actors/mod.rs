//! Actors (actix) holding hot in-memory state, each behind a `…Handle` so the rest of the code
//! never sees an actor address: `InferenceQueue` (one per worker pool) and `QuotaAccountant`
//! (usage rollups and the quota book). Their owners start them again when they die.

pub mod alert_mailer;
pub mod inference_queue;
pub mod quota_accountant;
