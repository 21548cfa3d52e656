//! Everything an agent or an upstream can send goes through these parsers:
//! whatever the bytes, they answer with a value or an error, never a panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use proptest::prelude::*;
use serde_json::value::RawValue;
use warden_mcp::catalog::parse_tools_page;
use warden_mcp::sse::SseDecoder;
use warden_mcp::{Message, classify, parse_message};

/// JSON-ish text: mostly the characters JSON is made of.
fn jsonish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just(",".to_owned()),
            Just(":".to_owned()),
            Just("\"jsonrpc\"".to_owned()),
            Just("\"2.0\"".to_owned()),
            Just("\"id\"".to_owned()),
            Just("\"method\"".to_owned()),
            Just("\"params\"".to_owned()),
            Just("\"tools/call\"".to_owned()),
            Just("\"name\"".to_owned()),
            Just("\"arguments\"".to_owned()),
            Just("null".to_owned()),
            Just("1".to_owned()),
            Just("-0.5e9".to_owned()),
            Just("\"\\u0000\"".to_owned()),
            "[a-z]{0,4}".prop_map(|s| format!("\"{s}\"")),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_message_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_message(&bytes);
    }

    #[test]
    fn parse_and_classify_never_panic_on_jsonish_text(text in jsonish()) {
        if let Ok(Message::Request { method, params, .. }) = parse_message(text.as_bytes()) {
            let _ = classify(&method, params.as_deref());
        }
    }

    #[test]
    fn classify_never_panics_on_any_params(method in prop_oneof![Just("tools/call"), Just("resources/read"), Just("prompts/get"), Just("initialize")], text in jsonish()) {
        if let Ok(raw) = RawValue::from_string(text) {
            let _ = classify(method, Some(&raw));
        }
    }

    #[test]
    fn tools_pages_never_panic(text in jsonish()) {
        if let Ok(raw) = RawValue::from_string(text) {
            let _ = parse_tools_page(&raw);
        }
    }

    #[test]
    fn the_sse_decoder_never_panics_and_stays_bounded(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..32)) {
        let mut d = SseDecoder::new(256);
        for chunk in chunks {
            match d.push(&chunk) {
                Ok(events) => prop_assert!(events.iter().all(|e| e.data.len() <= 256)),
                Err(_) => break,
            }
        }
    }
}
