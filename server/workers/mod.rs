//! Everything that talks to GPU workers: the `Gateway` (which pool serves which model, health
//! checks, vLLM load readings) and the aligner pools' batch executor. The simulators that stand
//! in for workers live in `simulator`.

pub mod aligner;
pub mod gateway;
