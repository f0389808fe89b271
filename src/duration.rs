//! Human durations such as `"250ms"`, `"30s"`, `"5m"`, `"24h"` or `"1h30m"`,
//! the one way durations are written in configuration and in the API.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `std::time::Duration` that reads and writes the human form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }

    pub fn get(self) -> Duration {
        self.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: expected a number followed by ms, s, m, h or d, such as \"250ms\", \"30s\" or \"24h\"")]
pub struct ParseDurationError {
    input: String,
}

impl FromStr for HumanDuration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || ParseDurationError {
            input: input.to_string(),
        };
        let mut rest = input.trim();
        if rest.is_empty() {
            return Err(err());
        }
        let mut total = Duration::ZERO;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
            if digits == 0 {
                return Err(err());
            }
            let value: u64 = rest[..digits].parse().map_err(|_| err())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let millis_per_unit: u64 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(err()),
            };
            rest = &rest[unit_len..];
            let millis = value.checked_mul(millis_per_unit).ok_or_else(err)?;
            total = total
                .checked_add(Duration::from_millis(millis))
                .ok_or_else(err)?;
        }
        Ok(HumanDuration(total))
    }
}

impl fmt::Display for HumanDuration {
    /// Writes the largest exact unit, so `5m` stays `5m` on a round trip.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms != 0 && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let cases = [
            ("250ms", 250),
            ("30s", 30_000),
            ("5m", 300_000),
            ("24h", 86_400_000),
            ("1h30m", 5_400_000),
            ("2d", 172_800_000),
        ];
        for (text, ms) in cases {
            assert_eq!(
                text.parse::<HumanDuration>().unwrap().0.as_millis(),
                ms,
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "10",
            "ms",
            "5 minutes",
            "1.5h",
            "-3s",
            "3x",
            "99999999999999999999s",
        ] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad:?} accepted");
        }
    }

    proptest::proptest! {
        /// Whatever we print, we read back to the same duration.
        #[test]
        fn every_duration_round_trips(ms in 0u64..10_000_000_000_000) {
            let d = HumanDuration::from_millis(ms);
            proptest::prop_assert_eq!(d.to_string().parse::<HumanDuration>().unwrap(), d);
        }

        /// Arbitrary text never panics the parser.
        #[test]
        fn parsing_never_panics(text in "\\PC{0,24}") {
            let _ = text.parse::<HumanDuration>();
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["250ms", "30s", "5m", "24h", "2d", "90s"] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.to_string().parse::<HumanDuration>().unwrap(), d);
        }
        assert_eq!(HumanDuration::from_secs(300).to_string(), "5m");
    }
}
