//! Everything that talks to GPU workers: so far the protocol-faithful worker simulator used by
//! `gatehouse dev`, tests and benchmarks. Pools, health checks, the circuit breaker and the
//! LLM/aligner clients join it with the gateway issue.

pub mod align_simulator;
pub mod aligner;
pub mod gateway;
pub mod simulator;
