//! Exact decimal numbers for the numeric operators.
//!
//! Numeric-looking strings and JSON numbers are compared by their decimal
//! text, never through `f64`: as doubles, `"1234567890123456789"` and
//! `"1234567890123456700"` are the same number, and a rule granting a feature
//! to one user id would reach the other. Every number is brought to one
//! canonical form, `±0.D × 10^exp` with `D` the significant digits (no
//! leading or trailing zeros), so `1`, `1.0`, `"1.0"`, `"+1"` and `"10e-1"`
//! are equal while two integers with different digits never are.
//!
//! Context values are read without allocating: a [`DecimalRef`] borrows the
//! digits from the string (or from a stack buffer for JSON numbers); only rule
//! operands, parsed once at compile time, own theirs ([`Decimal`]).

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use serde_json::Number;

/// A number in canonical form, borrowing its digits.
///
/// Its value is `±0.D × 10^exp` where `D` is `hi` followed by `lo` (ASCII
/// digits, the first non-zero, the last non-zero). Zero has no digits, is
/// never negative and has `exp` 0, so equal numbers have equal fields. The
/// digits come in two slices because in `"12.5"` they are split by the point.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecimalRef<'a> {
    neg: bool,
    exp: i64,
    hi: &'a [u8],
    lo: &'a [u8],
}

impl<'a> DecimalRef<'a> {
    /// Parses `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`
    /// surrounded by optional whitespace: the grammar Rust's `f64` parser
    /// accepts, minus `inf` and `NaN`. Exponents that do not fit in an `i64`
    /// are refused (no value is meant by them).
    pub fn parse(s: &'a str) -> Option<Self> {
        let b = s.trim().as_bytes();
        let (neg, b) = match b.split_first() {
            Some((b'-', rest)) => (true, rest),
            Some((b'+', rest)) => (false, rest),
            _ => (false, b),
        };
        let (int, b) = b.split_at(digit_run(b));
        let (frac, b) = match b.split_first() {
            Some((b'.', rest)) => rest.split_at(digit_run(rest)),
            _ => (&[][..], b),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let exp = match b.split_first() {
            None => 0,
            Some((b'e' | b'E', rest)) => parse_exponent(rest)?,
            Some(_) => return None,
        };
        Self::normalise(neg, int, frac, exp)
    }

    /// The canonical form of `±int.frac × 10^exp` (`int`, `frac`: digits).
    fn normalise(neg: bool, int: &'a [u8], frac: &'a [u8], exp: i64) -> Option<Self> {
        let int = &int[int.iter().take_while(|&&d| d == b'0').count()..];
        let (hi, lo, point) = if int.is_empty() {
            let zeros = frac.iter().take_while(|&&d| d == b'0').count();
            (&frac[zeros..], &[][..], -i64::try_from(zeros).ok()?)
        } else {
            (int, frac, i64::try_from(int.len()).ok()?)
        };
        let lo = trim_trailing_zeros(lo);
        let hi = if lo.is_empty() {
            trim_trailing_zeros(hi)
        } else {
            hi
        };
        if hi.is_empty() {
            return Some(DecimalRef::ZERO);
        }
        Some(DecimalRef {
            neg,
            exp: point.checked_add(exp)?,
            hi,
            lo,
        })
    }

    const ZERO: DecimalRef<'static> = DecimalRef {
        neg: false,
        exp: 0,
        hi: &[],
        lo: &[],
    };

    fn digits(&self) -> impl Iterator<Item = &u8> + '_ {
        self.hi.iter().chain(self.lo)
    }

    /// Compares magnitudes (`|self|` with `|other|`).
    fn cmp_magnitude(&self, other: &DecimalRef<'_>) -> Ordering {
        match (self.hi.is_empty(), other.hi.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            // Both non-zero with a non-zero first digit: the exponent
            // decides, then the digits as text ("12" < "123" because the
            // missing digits are zeros).
            (false, false) => self.exp.cmp(&other.exp).then_with(|| {
                if self.lo.is_empty() && other.lo.is_empty() {
                    self.hi.cmp(other.hi)
                } else {
                    self.digits().cmp(other.digits())
                }
            }),
        }
    }

    /// Exact numeric ordering.
    pub fn cmp(&self, other: &DecimalRef<'_>) -> Ordering {
        match (self.neg, other.neg) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }

    /// Exact numeric equality (cheaper than `cmp` when lengths differ).
    pub fn eq(&self, other: &DecimalRef<'_>) -> bool {
        self.neg == other.neg
            && self.exp == other.exp
            && self.hi.len() + self.lo.len() == other.hi.len() + other.lo.len()
            && if self.lo.is_empty() && other.lo.is_empty() {
                self.hi == other.hi
            } else {
                self.digits().eq(other.digits())
            }
    }
}

/// A rule operand: a number in canonical form owning its digits.
#[derive(Debug, Clone)]
pub(crate) struct Decimal {
    neg: bool,
    exp: i64,
    digits: Box<[u8]>,
    /// The value when it is an integer that fits, so that integer JSON
    /// numbers in the context compare without going through text.
    int: Option<i128>,
}

impl Decimal {
    /// Parses a numeric string (see [`DecimalRef::parse`]).
    pub fn parse(s: &str) -> Option<Self> {
        DecimalRef::parse(s).map(|d| Decimal::from_ref(&d))
    }

    /// A JSON number, read by its text (`1.0` equals `1`).
    pub fn from_number(n: &Number) -> Option<Self> {
        with_number(n, |d| Decimal::from_ref(&d))
    }

    fn from_ref(d: &DecimalRef<'_>) -> Self {
        let digits: Box<[u8]> = d.digits().copied().collect();
        // Integers have no digits after the point: exp >= digit count.
        let int = usize::try_from(d.exp)
            .ok()
            .filter(|&e| e >= digits.len() && e <= 38)
            .and_then(|e| {
                let scale = 10i128.checked_pow(u32::try_from(e - digits.len()).ok()?)?;
                let m = digits.iter().try_fold(0i128, |acc, &c| {
                    acc.checked_mul(10)?.checked_add(i128::from(c - b'0'))
                })?;
                let m = m.checked_mul(scale)?;
                Some(if d.neg { -m } else { m })
            });
        Decimal {
            neg: d.neg,
            exp: d.exp,
            digits,
            int,
        }
    }

    /// The value, when it is an integer of at most 38 digits.
    #[inline]
    pub fn int(&self) -> Option<i128> {
        self.int
    }

    #[inline]
    pub fn as_ref(&self) -> DecimalRef<'_> {
        DecimalRef {
            neg: self.neg,
            exp: self.exp,
            hi: &self.digits,
            lo: &[],
        }
    }
}

/// Calls `f` with the canonical form of a JSON number, or returns `None`
/// if it has none. Integers are written out digit by digit; floats go
/// through serde_json's own shortest round-trip text (`0.1`, `1e300`), so a
/// float compares like the literal a user would write. Both are written to
/// a stack buffer: evaluation does not allocate.
#[inline]
pub(crate) fn with_number<R>(n: &Number, f: impl FnOnce(DecimalRef<'_>) -> R) -> Option<R> {
    let mut buf = StackText::default();
    let (neg, magnitude) = match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => (false, u),
        (None, Some(i)) => (true, i.unsigned_abs()),
        (None, None) => {
            write!(buf, "{n}").ok()?;
            return DecimalRef::parse(buf.as_str()).map(f);
        }
    };
    let digits = buf.integer(magnitude);
    DecimalRef::normalise(neg, digits, &[], 0).map(f)
}

/// A small fixed buffer for number text (serde_json's float text is at
/// most 24 bytes; a u64 is at most 20 digits).
struct StackText {
    buf: [u8; 40],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            buf: [0; 40],
            len: 0,
        }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        // Only `write_str` fills the buffer, with whole `&str`s.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    /// The decimal digits of `u`.
    fn integer(&mut self, mut u: u64) -> &[u8] {
        let mut i = self.buf.len();
        loop {
            i -= 1;
            self.buf[i] = b'0' + (u % 10) as u8;
            u /= 10;
            if u == 0 {
                return &self.buf[i..];
            }
        }
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dest = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn digit_run(b: &[u8]) -> usize {
    b.iter().take_while(|d| d.is_ascii_digit()).count()
}

fn trim_trailing_zeros(b: &[u8]) -> &[u8] {
    let zeros = b.iter().rev().take_while(|&&d| d == b'0').count();
    &b[..b.len() - zeros]
}

/// `[+-]? digits`, all of the rest, as an `i64`.
fn parse_exponent(b: &[u8]) -> Option<i64> {
    let (neg, b) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, b),
    };
    if b.is_empty() {
        return None;
    }
    b.iter().try_fold(0i64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        // Accumulate negatively so that i64::MIN is reachable.
        let acc = acc.checked_mul(10)?;
        if neg {
            acc.checked_sub(d)
        } else {
            acc.checked_add(d)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn num(s: &str) -> DecimalRef<'_> {
        DecimalRef::parse(s).unwrap_or_else(|| panic!("{s:?} should parse"))
    }

    fn json_eq(v: serde_json::Value, s: &str) -> bool {
        let serde_json::Value::Number(n) = v else {
            panic!("not a number")
        };
        with_number(&n, |d| d.eq(&num(s))).unwrap()
    }

    #[test]
    fn spellings_of_one_number_are_equal() {
        for s in ["1", "1.0", "+1", "01", "1.", "10e-1", "0.1e1", " 1 ", "1E0"] {
            assert!(num(s).eq(&num("1")), "{s}");
            assert_eq!(num(s).cmp(&num("1")), Ordering::Equal, "{s}");
        }
        for s in ["0", "-0", "0.000", ".0", "0e99", "-0.0e-5"] {
            assert!(num(s).eq(&num("0")), "{s}");
        }
        assert!(num("0.1").eq(&num("0.10")));
        assert!(num("1200").eq(&num("12e2")));
        assert!(num("-0.0012").eq(&num("-1.2e-3")));
    }

    #[test]
    fn distinct_big_integers_differ() {
        let a = num("1234567890123456789");
        for s in [
            "1234567890123456700",
            "1234567890123456800",
            "1234567890123456850",
        ] {
            assert!(!a.eq(&num(s)), "{s}");
        }
        assert!(!num("9007199254740993").eq(&num("9007199254740992")));
        assert_eq!(
            num("100000000000000000001").cmp(&num("100000000000000000000")),
            Ordering::Greater
        );
        assert_eq!(num("-5").cmp(&num("-40")), Ordering::Greater);
        assert_eq!(num("-5").cmp(&num("0")), Ordering::Less);
        assert_eq!(num("0.5").cmp(&num("0.45")), Ordering::Greater);
        assert_eq!(num("12").cmp(&num("12.0001")), Ordering::Less);
    }

    #[test]
    fn non_numbers_are_refused() {
        for s in [
            "",
            " ",
            "-",
            "+",
            ".",
            "e5",
            "1e",
            "1e+",
            "1x",
            "0x10",
            "inf",
            "NaN",
            "1.2.3",
            "1_000",
            "--1",
            "1e99999999999999999999",
        ] {
            assert!(DecimalRef::parse(s).is_none(), "{s:?}");
        }
    }

    #[test]
    fn json_numbers_compare_by_their_text() {
        assert!(json_eq(json!(1), "1.0"));
        assert!(json_eq(json!(1.0), "1"));
        assert!(json_eq(json!(0.1), "0.10"));
        assert!(json_eq(json!(-7), "-7"));
        assert!(json_eq(json!(u64::MAX), "18446744073709551615"));
        assert!(json_eq(json!(i64::MIN), "-9223372036854775808"));
        assert!(json_eq(json!(1e300), "1e300"));
        assert!(!json_eq(json!(9007199254740993u64), "9007199254740992"));
        let owned = Decimal::from_number(&serde_json::Number::from(42)).unwrap();
        assert!(owned.as_ref().eq(&num("42.00")));
    }

    #[test]
    fn integer_operands_know_their_value() {
        let int = |s: &str| Decimal::parse(s).unwrap().int();
        assert_eq!(int("0"), Some(0));
        assert_eq!(int("-1200"), Some(-1200));
        assert_eq!(int("12e3"), Some(12_000));
        assert_eq!(int("1.5e1"), Some(15));
        assert_eq!(int("18446744073709551616"), Some(1 << 64));
        assert_eq!(int("1.5"), None);
        assert_eq!(int("1e39"), None);
        assert_eq!(
            int("99999999999999999999999999999999999999"),
            Some(10i128.pow(38) - 1)
        );
    }
}
