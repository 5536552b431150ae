//! The point hash and the sampling generator: both must give the same numbers on every machine
//! and in every version of their dependencies, so both are written out here (FNV-1a over the
//! canonical JSON text; SplitMix64).

use serde_json::Value;

/// The canonical text of a JSON value: object keys sorted, no spaces, numbers as serde_json
/// prints them.
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// FNV-1a (64 bits) of `v`'s canonical text, as 16 hex digits.
pub fn fnv_hex(v: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical(v).bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// SplitMix64: the draws of random sampling.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_key_order_and_sees_values() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":[1,2]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":[1,2],"b":1}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"a":[1,2],"b":2}"#).unwrap();
        assert_eq!(fnv_hex(&a), fnv_hex(&b));
        assert_ne!(fnv_hex(&a), fnv_hex(&c));
        // FNV-1a of the empty object's text "{}", fixed: a change here re-keys every result file.
        assert_eq!(fnv_hex(&serde_json::json!({})), "08f44b07b5901a25".to_string());
    }
}
