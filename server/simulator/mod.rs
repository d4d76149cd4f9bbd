//! Worker simulators for development, tests and benchmarks (`gatehouse simulate-worker`): an
//! OpenAI-compatible LLM server (`llm`) and a forced-alignment worker (`aligner`), both clearly
//! labelled as simulators in every answer.

pub mod aligner;
pub mod llm;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

/// Serves a simulator's routes on `listener` (two threads, no signal handling of its own).
fn serve<F>(listener: TcpListener, routes: F) -> std::io::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    Ok(HttpServer::new(move || App::new().configure(routes.clone()))
        .workers(2)
        .tcp_nodelay(true)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run())
}

/// A simulator told to hang (`--hang`) never answers: for timeout and health-check tests.
async fn hang_if(hang: bool) {
    if hang {
        std::future::pending::<()>().await;
    }
}
