//! The MCP / JSON-RPC 2.0 codec and request classification. No I/O.
//!
//! Everything an agent or an upstream sends passes through [`parse_message`]
//! (or the SSE decoder in [`sse`]) before Warden looks at it; hostile input
//! becomes a typed error with the JSON-RPC code to answer with, never a panic.

pub mod catalog;
pub mod classify;
pub mod jsonrpc;
pub mod sse;

pub use catalog::{ToolCatalog, ToolDef};
pub use classify::{Operation, classify, split_federated};
pub use jsonrpc::{
    ErrorCode, Id, Message, ParseError, error_response, parse_message, success_response,
};

/// The MCP protocol versions Warden speaks, newest first.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The protocol version to answer `initialize` with: the client's if Warden
/// speaks it, else Warden's newest (the client then decides whether to go on).
pub fn negotiate_version(requested: Option<&str>) -> &'static str {
    let newest = PROTOCOL_VERSIONS.first().copied().unwrap_or("2025-06-18");
    requested
        .and_then(|r| PROTOCOL_VERSIONS.iter().copied().find(|v| *v == r))
        .unwrap_or(newest)
}

/// Whether Warden speaks `version` (the `MCP-Protocol-Version` header).
pub fn is_supported_version(version: &str) -> bool {
    PROTOCOL_VERSIONS.contains(&version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_echoes_known_versions_only() {
        assert_eq!(negotiate_version(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate_version(Some("1999-01-01")), "2025-11-25");
        assert_eq!(negotiate_version(None), "2025-11-25");
        assert!(is_supported_version("2024-11-05"));
        assert!(!is_supported_version("2025-13-01"));
    }
}
