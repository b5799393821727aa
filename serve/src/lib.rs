//! The parts of the scoring service `deepfm-serve` (`src/main.rs` parses its flags and starts
//! it), a library so that its tests start the service in-process: [`app`] (routes, handlers,
//! shared state), [`batcher`] (micro-batching), [`parse`] (request bodies to model inputs),
//! [`metrics`] (Prometheus counters) and [`served`] (what the reload handle holds).

pub mod app;
pub mod batcher;
pub mod metrics;
pub mod parse;
pub mod served;
