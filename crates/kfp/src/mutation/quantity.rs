//! Kubernetes resource quantities (`resource.Quantity`), parsed just far enough to compare them.
//!
//! Grammar (from the Kubernetes API reference): `<sign><digits>[.<digits>]<suffix>` where the
//! suffix is empty, a decimal SI suffix (`n u m k M G T P E`), a binary SI suffix
//! (`Ki Mi Gi Ti Pi Ei`) or a decimal exponent (`e3`, `E-2`). Values are held exactly as an
//! integer count of nano-units (10⁻⁹), rounded up like Kubernetes rounds sub-nano precision.

use std::cmp::Ordering;
use std::fmt;

/// A parsed quantity: its value in nano-units, and the text it was parsed from.
#[derive(Clone, Debug, Eq)]
pub struct Quantity {
    nanos: i128,
    text: String,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a text is not a quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error("no digits in {0:?}")]
    NoDigits(String),
    #[error(
        "unknown suffix {suffix:?} in {text:?} (expected one of n u m k M G T P E Ki Mi Gi Ti Pi Ei or an exponent like e3)"
    )]
    BadSuffix { text: String, suffix: String },
    #[error("{0:?} is too large")]
    TooLarge(String),
}

impl Quantity {
    /// Parses a Kubernetes quantity.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let s = text.trim();
        if s.is_empty() {
            return Err(QuantityError::Empty);
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let negative = match bytes[0] {
            b'-' => {
                i = 1;
                true
            }
            b'+' => {
                i = 1;
                false
            }
            _ => false,
        };
        let int_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let int_digits = &s[int_start..i];
        let mut frac_digits = "";
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let frac_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            frac_digits = &s[frac_start..i];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(QuantityError::NoDigits(text.to_string()));
        }
        let suffix = &s[i..];
        let too_large = || QuantityError::TooLarge(text.to_string());

        // Mantissa as an integer, and the power of ten that scales it to the written value.
        let mut mantissa: i128 = 0;
        for d in int_digits.bytes().chain(frac_digits.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(d - b'0')))
                .ok_or_else(too_large)?;
        }
        let frac_len = i32::try_from(frac_digits.len()).map_err(|_| too_large())?;

        let (exp10, binary_shift): (i32, u32) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            other => {
                let bad = || QuantityError::BadSuffix {
                    text: text.to_string(),
                    suffix: other.to_string(),
                };
                let rest = other.strip_prefix(['e', 'E']).ok_or_else(bad)?;
                let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let e: i32 = rest.parse().map_err(|_| too_large())?;
                (e, 0)
            }
        };

        let mut value = mantissa
            .checked_mul(1i128 << binary_shift)
            .ok_or_else(too_large)?;
        // value × 10^(exp10 + 9 - frac_len) nano-units.
        let scale = exp10
            .checked_add(9)
            .and_then(|x| x.checked_sub(frac_len))
            .ok_or_else(too_large)?;
        if scale >= 0 {
            let factor = 10i128
                .checked_pow(u32::try_from(scale).map_err(|_| too_large())?)
                .ok_or_else(too_large)?;
            value = value.checked_mul(factor).ok_or_else(too_large)?;
        } else {
            let div = u32::try_from(-i64::from(scale)).map_err(|_| too_large())?;
            value = match 10i128.checked_pow(div) {
                // Round up any sub-nano remainder, as Kubernetes does.
                Some(factor) => (value + factor - 1) / factor,
                None => i128::from(value != 0),
            };
        }
        if negative {
            value = -value;
        }
        Ok(Quantity {
            nanos: value,
            text: s.to_string(),
        })
    }

    /// The value in nano-units (10⁻⁹ of the base unit: cores for CPU, bytes for memory).
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The text this quantity was parsed from (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> i128 {
        Quantity::parse(s).expect(s).nanos()
    }

    #[test]
    fn cpu_forms_compare_exactly() {
        assert_eq!(n("1"), 1_000_000_000);
        assert_eq!(n("1000m"), n("1"));
        assert_eq!(n("0.2"), n("200m"));
        assert_eq!(n(".5"), n("500m"));
        assert_eq!(n("100u"), 100_000);
        assert_eq!(n("1n"), 1);
        assert_eq!(n("1e3"), n("1k"));
        assert_eq!(n("1E-3"), n("1m"));
        assert!(n("1001m") > n("1"));
    }

    #[test]
    fn memory_forms() {
        assert_eq!(n("1Gi"), 1_073_741_824i128 * 1_000_000_000);
        assert_eq!(n("1024Mi"), n("1Gi"));
        assert_eq!(n("256Mi"), 268_435_456i128 * 1_000_000_000);
        assert!(n("1G") < n("1Gi"));
        assert_eq!(n("1.5Gi"), n("1536Mi"));
        assert_eq!(n("8Ei"), (1i128 << 63) * 1_000_000_000);
    }

    #[test]
    fn sub_nano_rounds_up_and_sign_is_kept() {
        assert_eq!(n("0.1n"), 1);
        assert_eq!(n("-1m"), -1_000_000);
        assert!(Quantity::parse("-1m").expect("parses").is_negative());
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for bad in [
            "",
            " ",
            "m",
            "1x",
            "1KI",
            "1mi",
            "1e",
            "1e+",
            "abc",
            "1.2.3",
            "{{inputs.parameters.cpu}}",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(matches!(
            Quantity::parse("1e99999999999"),
            Err(QuantityError::TooLarge(_))
        ));
        assert!(matches!(
            Quantity::parse("99999999999999999999999999999999999999999999"),
            Err(QuantityError::TooLarge(_))
        ));
    }

    #[test]
    fn text_is_kept() {
        assert_eq!(Quantity::parse(" 200m ").expect("parses").as_str(), "200m");
    }
}
