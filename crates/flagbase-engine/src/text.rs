//! Case-insensitive text and scalar comparison helpers used by the operators.
//!
//! Rule operands are folded to lowercase once at compile time; context
//! values are compared against them without allocating (ASCII fast path,
//! char-by-char Unicode lowercase otherwise).

use std::cmp::Ordering;

use serde_json::{Number, Value};

use crate::number::{with_number, Decimal, DecimalRef};

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

    /// Calls `f` with the exact numeric reading of this item (numbers, and
    /// strings that parse as decimals); `None` when it has none.
    #[inline]
    pub fn with_number<R>(self, f: impl FnOnce(DecimalRef<'_>) -> R) -> Option<R> {
        match self {
            Item::Num(n) => with_number(n, f),
            Item::Str(s) => DecimalRef::parse(s).map(f),
            _ => None,
        }
    }

    /// Exact numeric ordering of this item against `operand`; `None` when
    /// the item is not a number or a numeric string.
    #[inline]
    pub fn cmp_number(self, operand: &Decimal) -> Option<Ordering> {
        if let (Item::Num(n), Some(op)) = (self, operand.int()) {
            // Integer JSON numbers against integer operands: no text needed.
            let v = n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
            if let Some(v) = v {
                return Some(v.cmp(&op));
            }
        }
        self.with_number(|v| v.cmp(&operand.as_ref()))
    }
}

/// A rule operand for equality-style operators: its folded text plus its
/// exact numeric reading, so `"1.0"` equals `1` and `"Dev"` equals `"dev"`.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    pub text: Text,
    /// Boxed: most operands are not numbers, and a small `Scalar` keeps
    /// conditions compact (measured on the ten-rules bench).
    pub num: Option<Box<Decimal>>,
}

impl Scalar {
    /// Accepts strings, numbers and booleans.
    pub fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::String(s) => Some(Scalar {
                text: Text::new(s),
                num: Decimal::parse(s).map(Box::new),
            }),
            Value::Number(n) => Some(Scalar {
                text: Text::new(&n.to_string()),
                num: Decimal::from_number(n).map(Box::new),
            }),
            Value::Bool(b) => Some(Scalar {
                text: Text::new(if *b { "true" } else { "false" }),
                num: None,
            }),
            _ => None,
        }
    }

    /// Equality as documented in docs/engine.md: case-insensitive text, or
    /// exactly equal as decimals when both sides are numbers (or numeric
    /// strings).
    #[inline]
    pub fn equals(&self, item: Item<'_>) -> bool {
        self.text_equals(item) || self.num_equals(item)
    }

    /// The text half of [`Scalar::equals`]: strings and booleans.
    #[inline]
    pub fn text_equals(&self, item: Item<'_>) -> bool {
        match item {
            Item::Str(s) => self.text.eq_fold(s),
            Item::Bool(b) => &*self.text.lower == if b { "true" } else { "false" },
            Item::Num(_) | Item::Other => false,
        }
    }

    #[inline]
    fn num_equals(&self, item: Item<'_>) -> bool {
        self.num
            .as_ref()
            .is_some_and(|n| item.cmp_number(n) == Some(Ordering::Equal))
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
        // Exact, not through f64: 2^53 + 1 is not 2^53.
        let big = Scalar::from_value(&json!("9007199254740993")).unwrap();
        assert!(!big.equals(Item::of(&json!("9007199254740992"))));
        assert!(!big.equals(Item::of(&json!(9007199254740992u64))));
        assert!(big.equals(Item::of(&json!(9007199254740993u64))));
    }
}
