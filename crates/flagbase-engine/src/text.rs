//! Case-insensitive text and scalar comparison helpers used by the operators.
//!
//! Rule operands are folded to lowercase once at compile time; context
//! values are compared against them without allocating (ASCII fast path,
//! char-by-char Unicode lowercase otherwise).

use serde_json::{Number, Value};

/// Lowercases `s` one char at a time. `str::to_lowercase` special-cases a
/// word-final sigma, which the allocation-free comparisons below cannot
/// reproduce; folding both sides the same way keeps them consistent.
pub(crate) fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// A pre-folded rule operand.
#[derive(Debug, Clone)]
pub(crate) struct Text {
    pub lower: Box<str>,
    pub ascii: bool,
}

impl Text {
    pub fn new(s: &str) -> Self {
        let lower = fold(s);
        Text {
            ascii: lower.is_ascii(),
            lower: lower.into_boxed_str(),
        }
    }

    /// `fold(s) == self.lower`, without allocating.
    #[inline]
    pub fn eq_fold(&self, s: &str) -> bool {
        if self.ascii {
            // ASCII folding preserves length, so for ASCII input a length
            // mismatch settles it without scanning.
            if s.len() == self.lower.len() && s.eq_ignore_ascii_case(&self.lower) {
                return true;
            }
            if s.is_ascii() {
                return false;
            }
        }
        s.chars()
            .flat_map(char::to_lowercase)
            .eq(self.lower.chars())
    }

    /// `fold(s).starts_with(self.lower)`.
    pub fn is_prefix_of(&self, s: &str) -> bool {
        if self.ascii && s.is_ascii() {
            return s.len() >= self.lower.len()
                && s.as_bytes()[..self.lower.len()].eq_ignore_ascii_case(self.lower.as_bytes());
        }
        let mut folded = s.chars().flat_map(char::to_lowercase);
        self.lower.chars().all(|c| folded.next() == Some(c))
    }

    /// `fold(s).ends_with(self.lower)`.
    pub fn is_suffix_of(&self, s: &str) -> bool {
        if self.ascii && s.is_ascii() {
            let n = self.lower.len();
            return s.len() >= n
                && s.as_bytes()[s.len() - n..].eq_ignore_ascii_case(self.lower.as_bytes());
        }
        let mut folded = s.chars().rev().flat_map(|c| c.to_lowercase().rev());
        self.lower.chars().rev().all(|c| folded.next() == Some(c))
    }

    /// `fold(s).contains(self.lower)`.
    pub fn is_substring_of(&self, s: &str) -> bool {
        if self.ascii && s.is_ascii() {
            let needle = self.lower.as_bytes();
            if needle.is_empty() {
                return true;
            }
            return s
                .as_bytes()
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle));
        }
        // Rare path (non-ASCII input): allocation is acceptable here.
        fold(s).contains(&*self.lower)
    }
}

/// Parses a context or operand string as a finite number.
#[inline]
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// A scalar context value, borrowed from the context.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Item<'a> {
    Str(&'a str),
    Num(&'a Number),
    Bool(bool),
    /// Objects, nested arrays: present but comparable to nothing.
    Other,
}

impl<'a> Item<'a> {
    #[inline]
    pub fn of(v: &'a Value) -> Self {
        match v {
            Value::String(s) => Item::Str(s),
            Value::Number(n) => Item::Num(n),
            Value::Bool(b) => Item::Bool(*b),
            _ => Item::Other,
        }
    }

    /// The numeric reading of this item: numbers, and strings that parse.
    #[inline]
    pub fn number(self) -> Option<f64> {
        match self {
            Item::Num(n) => n.as_f64(),
            Item::Str(s) => parse_number(s),
            _ => None,
        }
    }
}

/// A rule operand for equality-style operators: its folded text plus its
/// numeric reading, so `"1.0"` equals `1` and `"Dev"` equals `"dev"`.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    pub text: Text,
    pub num: Option<f64>,
}

impl Scalar {
    /// Accepts strings, numbers and booleans.
    pub fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::String(s) => Some(Scalar {
                text: Text::new(s),
                num: parse_number(s),
            }),
            Value::Number(n) => Some(Scalar {
                text: Text::new(&n.to_string()),
                num: n.as_f64(),
            }),
            Value::Bool(b) => Some(Scalar {
                text: Text::new(if *b { "true" } else { "false" }),
                num: None,
            }),
            _ => None,
        }
    }

    /// Equality as documented in docs/engine.md: case-insensitive text, or
    /// numerically equal when both sides are numbers (or numeric strings).
    #[inline]
    pub fn equals(&self, item: Item<'_>) -> bool {
        match item {
            Item::Str(s) => {
                self.text.eq_fold(s) || self.num.is_some_and(|n| parse_number(s) == Some(n))
            }
            Item::Num(n) => self.num.is_some() && n.as_f64() == self.num,
            Item::Bool(b) => &*self.text.lower == if b { "true" } else { "false" },
            Item::Other => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn folding_comparisons() {
        let t = Text::new("Straße");
        assert!(t.eq_fold("STRAßE"));
        assert!(!t.eq_fold("strasse"));
        assert!(Text::new("dev").is_prefix_of("Developer"));
        assert!(Text::new("ÉR").is_suffix_of("dévelopeur... premiér"));
        assert!(Text::new("@Example.com").is_suffix_of("a@EXAMPLE.com"));
        assert!(!Text::new("example.com").is_suffix_of("com"));
        assert!(Text::new("VEL").is_substring_of("developer"));
        assert!(Text::new("ÉL").is_substring_of("dÉveloppeur dél"));
    }

    #[test]
    fn scalar_equality() {
        let one = Scalar::from_value(&json!(1)).unwrap();
        assert!(one.equals(Item::of(&json!("1.0"))));
        assert!(one.equals(Item::of(&json!(1.0))));
        assert!(!one.equals(Item::of(&json!(true))));
        let t = Scalar::from_value(&json!("TRUE")).unwrap();
        assert!(t.equals(Item::Bool(true)));
        let s = Scalar::from_value(&json!("abc")).unwrap();
        assert!(!s.equals(Item::of(&json!(1))));
        assert!(Scalar::from_value(&json!([1])).is_none());
    }
}
