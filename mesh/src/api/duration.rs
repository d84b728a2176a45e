//! Durations as Gateway API spells them (GEP-2257): `10s`, `200ms`, `1h30m`.
//!
//! The text is kept as written, so a policy read and written back is unchanged; [`Duration::get`]
//! gives the value.
//! # Invariants
//! - one to four `<number><unit>` parts, each number 1–5 digits, units `h`, `m`, `s`, `ms`;
//!   no sign, no fraction, no spaces (the pattern the API server checks, [`PATTERN`]).

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The API server's check, the regular expression Gateway API's `Duration` type uses.
pub const PATTERN: &str = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$";

/// A Gateway API duration, e.g. `"10s"`; valid by construction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Duration {
    text: String,
    value: std::time::Duration,
}

/// Why a string is not a Gateway API duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration; write e.g. \"10s\" or \"200ms\"")]
    Empty,
    #[error("duration {text:?}: expected a number at byte {at}; write e.g. \"10s\", \"1m30s\" (no sign, fraction or spaces)")]
    ExpectedNumber { text: String, at: usize },
    #[error(
        "duration {text:?}: the number at byte {at} has more than 5 digits; use a larger unit"
    )]
    TooManyDigits { text: String, at: usize },
    #[error("duration {text:?}: missing or unknown unit at byte {at}; units are h, m, s, ms")]
    BadUnit { text: String, at: usize },
    #[error("duration {text:?}: more than 4 parts; Gateway API allows e.g. \"1h2m3s4ms\" at most")]
    TooManyParts { text: String },
}

impl Duration {
    /// Parses `text` (see the module's invariants).
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        Ok(Self {
            text: text.to_owned(),
            value: parse(text)?,
        })
    }

    /// The duration's value.
    pub fn get(&self) -> std::time::Duration {
        self.value
    }

    /// The duration as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Parses a Gateway API duration string into a [`std::time::Duration`].
pub fn parse(text: &str) -> Result<std::time::Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let bytes = text.as_bytes();
    let mut total = std::time::Duration::ZERO;
    let mut at = 0;
    let mut parts = 0;
    while at < bytes.len() {
        parts += 1;
        if parts > 4 {
            return Err(DurationError::TooManyParts { text: text.into() });
        }
        let digits = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err(DurationError::ExpectedNumber {
                text: text.into(),
                at,
            });
        }
        if digits > 5 {
            return Err(DurationError::TooManyDigits {
                text: text.into(),
                at,
            });
        }
        // At most 5 digits: always fits.
        let number: u64 = text[at..at + digits].parse().unwrap_or_default();
        at += digits;
        let rest = &text[at..];
        let (unit, len) = if rest.starts_with("ms") {
            (std::time::Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (std::time::Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (std::time::Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (std::time::Duration::from_secs(1), 1)
        } else {
            return Err(DurationError::BadUnit {
                text: text.into(),
                at,
            });
        };
        // 99999h is far below Duration's range: no overflow.
        total += unit * number as u32;
        at += len;
    }
    Ok(total)
}

impl TryFrom<String> for Duration {
    type Error = DurationError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Ok(Self {
            value: parse(&text)?,
            text,
        })
    }
}

impl From<Duration> for String {
    fn from(d: Duration) -> Self {
        d.text
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration as Std;

    use super::*;

    #[test]
    fn gateway_api_examples_parse() {
        assert_eq!(parse("10s"), Ok(Std::from_secs(10)));
        assert_eq!(parse("200ms"), Ok(Std::from_millis(200)));
        assert_eq!(parse("0s"), Ok(Std::ZERO));
        assert_eq!(parse("1h"), Ok(Std::from_secs(3600)));
        assert_eq!(parse("1m30s"), Ok(Std::from_secs(90)));
        assert_eq!(
            parse("1h2m3s4ms"),
            Ok(Std::from_millis(3_600_000 + 120_000 + 3_000 + 4))
        );
        assert_eq!(parse("99999h"), Ok(Std::from_secs(99_999 * 3600)));
    }

    #[test]
    fn minutes_and_milliseconds_are_told_apart() {
        assert_eq!(parse("5m"), Ok(Std::from_secs(300)));
        assert_eq!(parse("5ms"), Ok(Std::from_millis(5)));
        assert_eq!(parse("5m5ms"), Ok(Std::from_millis(300_005)));
    }

    #[test]
    fn what_go_accepts_but_gateway_api_does_not_is_rejected_with_the_reason() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert!(matches!(
            parse("1.5s"),
            Err(DurationError::BadUnit { at: 1, .. })
        ));
        assert!(matches!(
            parse("-1s"),
            Err(DurationError::ExpectedNumber { at: 0, .. })
        ));
        assert!(matches!(
            parse("10"),
            Err(DurationError::BadUnit { at: 2, .. })
        ));
        assert!(matches!(
            parse("10us"),
            Err(DurationError::BadUnit { at: 2, .. })
        ));
        assert!(matches!(
            parse("10 s"),
            Err(DurationError::BadUnit { at: 2, .. })
        ));
        assert!(matches!(
            parse("s"),
            Err(DurationError::ExpectedNumber { at: 0, .. })
        ));
        assert!(matches!(
            parse("123456s"),
            Err(DurationError::TooManyDigits { at: 0, .. })
        ));
        assert!(matches!(
            parse("1h1m1s1ms1h"),
            Err(DurationError::TooManyParts { .. })
        ));
    }

    #[test]
    fn errors_say_what_to_write() {
        let e = parse("1.5s")
            .expect_err("a fraction is not allowed")
            .to_string();
        assert!(e.contains("\"1.5s\"") && e.contains("h, m, s, ms"), "{e}");
        let e = parse("").expect_err("empty").to_string();
        assert!(e.contains("\"10s\""), "{e}");
    }

    #[test]
    fn text_survives_a_round_trip() {
        let d: Duration = serde_json::from_str("\"1m30s\"").expect("valid");
        assert_eq!(d.get(), Std::from_secs(90));
        assert_eq!(serde_json::to_string(&d).expect("serialize"), "\"1m30s\"");
        let e = serde_json::from_str::<Duration>("\"30\"").expect_err("no unit");
        assert!(e.to_string().contains("units are h, m, s, ms"), "{e}");
    }
}
