//! Worker simulators for development, tests and benchmarks (`gatehouse simulate-worker`): an
//! OpenAI-compatible LLM server (`llm`) and a forced-alignment worker (`aligner`), both clearly
//! labelled as simulators in every answer.

pub mod aligner;
pub mod llm;
