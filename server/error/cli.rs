//! `CliError`: how a failed `gatehouse` command ends — a message on stderr and an exit code (2 for
//! usage and configuration errors, 1 for runtime failures).

use crate::config::ConfigError;
use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0:#}")]
    Runtime(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => 2,
            CliError::Runtime(_) => 1,
        }
    }

    pub fn message(&self) -> String {
        self.to_string()
    }

    pub fn runtime(message: impl std::fmt::Display) -> Self {
        CliError::Runtime(anyhow::anyhow!("{message}"))
    }
}

impl From<DbError> for CliError {
    fn from(e: DbError) -> Self {
        CliError::runtime(e)
    }
}

impl From<diesel::result::Error> for CliError {
    fn from(e: diesel::result::Error) -> Self {
        CliError::from(DbError::from(e))
    }
}
