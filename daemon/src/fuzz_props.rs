//! Property tests standing in for fuzz targets (issue 19) for what strangers send the
//! daemon outside the LLM stream (see `llm::fuzz_props`) and tool results (see
//! `mcp::call`): Open-LLM-VTuber WebSocket messages, the config file with its `${VAR}`
//! substitution, WAV and base64 audio, and images. Each must fail with a message or
//! succeed; none may panic. The daemon's crate pulls in llama.cpp, ONNX and candle,
//! whose instrumented build would be too slow for a libFuzzer target in CI, so these
//! run in the ordinary unit tests; `scripts/fuzz.sh` runs them longer
//! (FUZZ_PROPTESTS=1).

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::config::load::{parse_with_env, substitute_env};
use crate::pcm::Pcm;
use crate::web::olv_messages::{CLIENT_TYPES, images_of, parse_client};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        any::<String>().prop_map(Value::String),
        "data:image/png;base64,[A-Za-z0-9+/=]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("text".to_owned()),
                    Just("audio".to_owned()),
                    Just("images".to_owned()),
                    Just("data".to_owned()),
                    Just("request_id".to_owned()),
                    Just("decision".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A message with a real `type` and arbitrary other fields: reaches each variant's
/// field checks rather than stopping at "unknown type".
fn olv_message() -> impl Strategy<Value = String> {
    (
        prop::sample::select(CLIENT_TYPES),
        prop::collection::btree_map("[a-z_]{1,12}", any_json(), 0..4),
    )
        .prop_map(|(kind, fields)| {
            let mut obj: serde_json::Map<String, Value> = fields.into_iter().collect();
            obj.insert("type".into(), json!(kind));
            Value::Object(obj).to_string()
        })
}

/// Config text built from the pieces the loader treats specially.
fn config_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("llm:\n".to_owned()),
        Just("  provider: openai\n".to_owned()),
        Just("  base_url: ${URL:-http://127.0.0.1:1}\n".to_owned()),
        Just("web:\n  port: ${PORT}\n".to_owned()),
        Just("$$".to_owned()),
        Just("${".to_owned()),
        Just("}".to_owned()),
        Just(":-".to_owned()),
        Just("- ".to_owned()),
        Just("\n".to_owned()),
        Just("  ".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("!!binary ".to_owned()),
        Just("'é世\"".to_owned()),
        "[a-z_]{1,10}: ".prop_map(|s| s),
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..30).prop_map(|v| v.concat())
}

/// A WAV header with arbitrary fields and data after it.
fn wav_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u16>(),
        prop_oneof![Just(1u16), Just(3u16), any::<u16>()],
        any::<u16>(),
        any::<u32>(),
        prop_oneof![
            Just(8u16),
            Just(16u16),
            Just(24u16),
            Just(32u16),
            any::<u16>()
        ],
        prop_oneof![Just(None), any::<u32>().prop_map(Some)],
        prop::collection::vec(any::<u8>(), 0..256),
    )
        .prop_map(|(channels, format, align, rate, bits, data_len, data)| {
            let mut w = Vec::new();
            w.extend_from_slice(b"RIFF");
            w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
            w.extend_from_slice(b"WAVEfmt ");
            w.extend_from_slice(&16u32.to_le_bytes());
            w.extend_from_slice(&format.to_le_bytes());
            w.extend_from_slice(&channels.to_le_bytes());
            w.extend_from_slice(&rate.to_le_bytes());
            w.extend_from_slice(&rate.wrapping_mul(u32::from(align)).to_le_bytes());
            w.extend_from_slice(&align.to_le_bytes());
            w.extend_from_slice(&bits.to_le_bytes());
            w.extend_from_slice(b"data");
            let len = data_len.unwrap_or(data.len() as u32);
            w.extend_from_slice(&len.to_le_bytes());
            w.extend_from_slice(&data);
            w
        })
}

proptest! {
    #[test]
    fn olv_messages_parse_or_say_what_is_wrong(
        text in prop_oneof![olv_message(), any_json().prop_map(|v| v.to_string()), any::<String>()],
    ) {
        match parse_client(&text) {
            Ok(_) => {}
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }

    #[test]
    fn olv_images_never_panic(images in prop::option::of(any_json())) {
        for image in images_of(images.as_ref()) {
            let _ = crate::images::prepare(0, &image);
        }
    }

    #[test]
    fn config_text_loads_or_says_where_it_is_wrong(
        text in prop_oneof![config_text(), any::<String>()],
        url in prop::option::of("[ -~]{0,20}"),
    ) {
        let env = move |name: &str| if name == "URL" { url.clone() } else { None };
        match parse_with_env(&text, "conf.yaml", &env) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(!e.problems.is_empty());
                prop_assert!(!e.to_string().is_empty());
            }
        }
        // Substitution keeps the line structure, so error line numbers stay true.
        if let Ok(out) = substitute_env(&text, "conf.yaml", &env) {
            prop_assert_eq!(out.matches('\n').count(), text.matches('\n').count());
        }
    }

    #[test]
    fn wav_input_decodes_or_fails_cleanly(
        bytes in prop_oneof![wav_bytes(), prop::collection::vec(any::<u8>(), 0..128)],
    ) {
        if let Ok(pcm) = Pcm::from_wav(&bytes) {
            prop_assert!(pcm.sample_rate > 0);
        }
    }

    #[test]
    fn base64_audio_of_any_text_fails_cleanly(text in any::<String>()) {
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text.trim()) {
            let _ = Pcm::from_wav(&bytes);
        }
    }
}
