//! `AppState`: everything a handler needs, shared as one `web::Data`. Actor handles join it as
//! their issues land; handlers never see actor addresses or the raw pool.

use std::sync::Arc;

use crate::config::Config;
use crate::db::Db;

pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
}
