//! The parts of `warden-bench`: the fast upstream, the floor proxy, the
//! Warden set-up (policies, agents), the load generator, `/proc` readings,
//! the probe of the machine's own stalls and the cost of its hand-offs.
//! `benches/phases.rs` reuses the set-up for per-phase micro-benchmarks.

pub mod floor;
pub mod handoff;
pub mod load;
pub mod procstat;
pub mod setup;
pub mod stalls;
pub mod upstream;
