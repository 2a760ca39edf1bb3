//! Canonical JSON: the one byte string a JSON value hashes to.
//!
//! The hash chain must not depend on how a map happened to be ordered in memory, on which
//! serde_json features some other crate switched on (`preserve_order` changes `Map`'s iteration
//! order workspace-wide), or on whitespace. So the bytes are written here explicitly:
//!
//! - object keys sorted by their UTF-8 bytes, each key once;
//! - no whitespace anywhere;
//! - numbers exactly as serde_json prints them (`itoa` for integers, `ryu` shortest round-trip
//!   for floats, so `1.0` stays `1.0` and `1` stays `1`);
//! - strings escaped exactly as serde_json escapes them: `"` and `\`, the short escapes
//!   `\b \f \n \r \t`, every other control character below U+0020 as `\u00xx` (lowercase hex),
//!   and everything else, including non-ASCII, as raw UTF-8.
//!
//! Guarantee: equal `serde_json::Value`s give equal bytes, and the bytes are valid JSON that
//! parses back to an equal value.

use serde_json::Value;

/// The canonical bytes of `value`.
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_canonical(value, &mut out);
    out
}

/// Appends the canonical bytes of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // `Number`'s Display is the same itoa/ryu formatting serde_json serialises with.
        Value::Number(number) => out.extend_from_slice(number.to_string().as_bytes()),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // `str` ordering is byte-wise lexicographic over UTF-8, which is what we want;
            // spelled out so that nobody "optimises" it into a locale-aware comparison.
            entries.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
    }
}

/// Appends `text` as a JSON string literal, escaped as serde_json escapes it.
pub fn write_string(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    // Copy unescaped runs in one go; only ASCII bytes are ever escaped, so slicing at them
    // never splits a multi-byte character.
    let mut run_start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape = ESCAPE[usize::from(byte)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[run_start..index]);
        if escape == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0x0F)]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        run_start = index + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

/// For each byte: 0 when it is written as is, else the letter after the backslash (`u` for a
/// `\u00xx` escape). The same table serde_json uses.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0A] = b'n';
    table[0x0C] = b'f';
    table[0x0D] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canonical(value: &Value) -> String {
        String::from_utf8(canonical_bytes(value)).expect("canonical bytes are UTF-8")
    }

    #[test]
    fn object_keys_are_sorted_by_bytes_at_every_depth() {
        let value = json!({"b": 1, "a": {"z": true, "Z": false, "é": null, "e": []}, "B": "x"});
        assert_eq!(
            canonical(&value),
            r#"{"B":"x","a":{"Z":false,"e":[],"z":true,"é":null},"b":1}"#
        );
    }

    #[test]
    fn arrays_keep_their_order_and_nothing_has_whitespace() {
        let value = json!([3, 1, {"k": [2, 1]}, "a b", null]);
        assert_eq!(canonical(&value), r#"[3,1,{"k":[2,1]},"a b",null]"#);
    }

    #[test]
    fn the_insertion_order_of_a_map_does_not_matter() {
        let mut first = serde_json::Map::new();
        first.insert("x".into(), json!(1));
        first.insert("y".into(), json!(2));
        let mut second = serde_json::Map::new();
        second.insert("y".into(), json!(2));
        second.insert("x".into(), json!(1));
        assert_eq!(
            canonical_bytes(&Value::Object(first)),
            canonical_bytes(&Value::Object(second))
        );
    }

    #[test]
    fn numbers_are_formatted_as_serde_json_formats_them() {
        for value in [
            json!(0),
            json!(-7),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.0),
            json!(-0.0),
            json!(0.1),
            json!(1e300),
            json!(2.5e-8),
            json!(123_456.789),
        ] {
            let expected = serde_json::to_string(&value).expect("serialisable");
            assert_eq!(canonical(&value), expected);
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_ascii: String = (0u8..=0x7F).map(char::from).collect();
        every_ascii.push_str("中文 \u{2028} \u{1F600} é");
        let value = Value::String(every_ascii);
        let expected = serde_json::to_string(&value).expect("serialisable");
        assert_eq!(canonical(&value), expected);
    }

    #[test]
    fn canonical_bytes_parse_back_to_an_equal_value() {
        let value = json!({"name": "李\"雷\"\n", "n": [1, 2.5, -3], "nested": {"b": {}, "a": []}});
        let parsed: Value =
            serde_json::from_slice(&canonical_bytes(&value)).expect("canonical bytes are JSON");
        assert_eq!(parsed, value);
    }
}
