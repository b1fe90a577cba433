//! Exact serde for `f64` state: as a decimal string.
//!
//! serde_json (without its `float_roundtrip` feature, which we do not enable)
//! may parse a float back one ulp off, e.g. `0.44999999999999996`. That would
//! break `merge` after shipping state between agents: sums drift, and a
//! limit that drifted no longer equals the local config. Rust's `Display`
//! for `f64` prints the shortest string that parses back to the same bits
//! (also for `inf` / `NaN`, which JSON numbers cannot carry at all).

use serde::de::{Error, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

pub(crate) fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.collect_str(value)
    } else {
        // Binary formats (agent reports) carry the bits themselves.
        serializer.serialize_f64(*value)
    }
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    if deserializer.is_human_readable() {
        deserializer.deserialize_str(F64Visitor)
    } else {
        <f64 as serde::Deserialize>::deserialize(deserializer)
    }
}

struct F64Visitor;

impl Visitor<'_> for F64Visitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a float as a decimal string")
    }

    fn visit_str<E: Error>(self, s: &str) -> Result<f64, E> {
        s.parse()
            .map_err(|_| E::custom(format!("invalid float string {s:?}")))
    }
}

/// The same for `Option<f64>` (`None` as null).
pub(crate) mod option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Exact(#[serde(with = "super")] f64);

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<f64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.map(Exact).serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<f64>, D::Error> {
        Ok(Option::<Exact>::deserialize(deserializer)?.map(|e| e.0))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct S {
        #[serde(with = "super")]
        x: f64,
        #[serde(with = "super::option")]
        y: Option<f64>,
    }

    #[test]
    fn round_trips_bit_exact() {
        for x in [
            0.449_999_999_999_999_96,
            0.1 + 0.2,
            1e-300,
            f64::MAX,
            f64::INFINITY,
            -0.0,
        ] {
            let s = S { x, y: Some(x) };
            let json = serde_json::to_string(&s).unwrap();
            let back: S = serde_json::from_str(&json).unwrap();
            assert_eq!(back.x.to_bits(), x.to_bits(), "{json}");
            assert_eq!(back.y.map(f64::to_bits), Some(x.to_bits()));
        }
        let none: S = serde_json::from_str(r#"{"x":"1.5","y":null}"#).unwrap();
        assert_eq!(none, S { x: 1.5, y: None });
        assert!(serde_json::from_str::<S>(r#"{"x":1.5,"y":null}"#).is_err());
    }
}
