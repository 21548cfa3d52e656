//! Warden's shared vocabulary: validated names and ids, agent states and the
//! authorization [`Decision`] with its reasons. No I/O happens here.

mod decision;
mod names;

pub use decision::{Approval, Decision, Effect, Obligations};
pub use names::{AgentName, AgentState, NameError, RequestId, TenantId, UpstreamName, UserName};
