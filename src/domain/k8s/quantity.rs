//! Kubernetes quantities (`250m`, `0.5`, `128Mi`, `1e3`), parsed exactly: the one parser every
//! check and comparison uses.

/// Suffixes of Kubernetes quantities besides decimal exponents (`1e3`), with the power of ten
/// and the power of 1024 each stands for.
const QUANTITY_SUFFIXES: [(&str, i64, u32); 16] = [
    ("", 0, 0),
    ("n", -9, 0),
    ("u", -6, 0),
    ("m", -3, 0),
    ("k", 3, 0),
    ("M", 6, 0),
    ("G", 9, 0),
    ("T", 12, 0),
    ("P", 15, 0),
    ("E", 18, 0),
    ("Ki", 0, 1),
    ("Mi", 0, 2),
    ("Gi", 0, 3),
    ("Ti", 0, 4),
    ("Pi", 0, 5),
    ("Ei", 0, 6),
];

/// The exact value of a non-negative Kubernetes quantity, for comparisons: floating point
/// would call `0.3` and `300m` different.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityValue {
    /// Decimal digits, most significant first, without leading or trailing zeros; empty for 0.
    digits: Vec<u8>,
    /// The value is `digits` × 10^`exponent`.
    exponent: i64,
}

impl QuantityValue {
    /// Parses `value`: a decimal number (`1`, `0.5`, `.5`) followed by a suffix (`m`, `k`,
    /// `Mi`, `G`, …) or a decimal exponent of up to three digits (`1e3`); `None` otherwise.
    pub fn parse(value: &str) -> Option<Self> {
        let number_end = value
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(value.len());
        let (number, suffix) = value.split_at(number_end);
        if !number.bytes().any(|b| b.is_ascii_digit())
            || number.bytes().filter(|&b| b == b'.').count() > 1
        {
            return None;
        }
        let (mut exponent, binary) = match QUANTITY_SUFFIXES.iter().find(|(s, _, _)| *s == suffix) {
            Some((_, ten, two)) => (*ten, *two),
            None => {
                // A decimal exponent: `e` or `E`, an optional sign, one to three digits.
                let exponent = suffix.strip_prefix(['e', 'E'])?;
                let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
                if digits.is_empty()
                    || digits.len() > 3
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                (exponent.parse::<i64>().ok()?, 0)
            }
        };
        let mut digits = Vec::with_capacity(number.len() + 2 * binary as usize);
        let mut in_fraction = false;
        for byte in number.bytes() {
            if byte == b'.' {
                in_fraction = true;
            } else {
                digits.push(byte - b'0');
                if in_fraction {
                    exponent -= 1;
                }
            }
        }
        for _ in 0..binary {
            multiply_digits(&mut digits, 1024);
        }
        // Leading zeros say nothing; trailing ones move into the exponent.
        let leading = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..leading);
        while digits.last() == Some(&0) {
            digits.pop();
            exponent += 1;
        }
        if digits.is_empty() {
            exponent = 0;
        }
        Some(Self { digits, exponent })
    }

    /// Whether the quantity is zero.
    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// The power of ten just above the value (`0.5` → 0, `250` → 3), for ordering.
    fn magnitude(&self) -> i64 {
        i64::try_from(self.digits.len())
            .unwrap_or(i64::MAX)
            .saturating_add(self.exponent)
    }
}

impl Ord for QuantityValue {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            // Same magnitude: digit by digit, and with no trailing zeros the longer is larger.
            (false, false) => self
                .magnitude()
                .cmp(&other.magnitude())
                .then_with(|| self.digits.cmp(&other.digits)),
        }
    }
}

impl PartialOrd for QuantityValue {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// `digits` (most significant first) × `factor`, in place.
fn multiply_digits(digits: &mut Vec<u8>, factor: u32) {
    let mut carry = 0u64;
    for digit in digits.iter_mut().rev() {
        let product = u64::from(*digit) * u64::from(factor) + carry;
        *digit = (product % 10) as u8;
        carry = product / 10;
    }
    while carry > 0 {
        digits.insert(0, (carry % 10) as u8);
        carry /= 10;
    }
}

/// Whether `value` is a non-negative Kubernetes quantity: a decimal number (`1`, `0.5`, `.5`)
/// followed by a suffix (`m`, `k`, `Mi`, `G`, …) or a decimal exponent (`1e3`).
pub fn is_quantity(value: &str) -> bool {
    QuantityValue::parse(value).is_some()
}

/// How quantity `a` compares with quantity `b`, exactly; `None` when either is not one.
pub fn compare_quantities(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    Some(QuantityValue::parse(a)?.cmp(&QuantityValue::parse(b)?))
}

/// A Kubernetes quantity.
pub fn check_quantity(value: &str) -> Result<(), String> {
    if is_quantity(value) {
        Ok(())
    } else {
        Err(format!(
            "`{value}` is not a Kubernetes quantity (like `250m`, `0.5`, `128Mi`, `1G`)"
        ))
    }
}

/// A storage size: a Kubernetes quantity above zero.
pub fn check_size(value: &str) -> Result<(), String> {
    check_quantity(value)?;
    match QuantityValue::parse(value) {
        Some(size) if !size.is_zero() => Ok(()),
        _ => Err("must be more than zero".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for ok in [
            "1", "0", "100m", "0.5", ".5", "1.5Gi", "128Mi", "1G", "2Ti", "1e3", "5E-2", "1E",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in [
            "", "m", "Gi", "-1", "1.2.3", "1 Gi", "1gb", "1GiB", "12Q", "1e", "1e1234", "½",
        ] {
            assert!(!is_quantity(bad), "{bad}");
        }
        assert!(check_size("0Gi").is_err());
        assert!(check_size("0.000e5").is_err());
        assert!(check_size("10Gi").is_ok());
        // Exact: a float would make 1e-999 zero.
        assert!(check_size("1e-999").is_ok());
    }

    #[test]
    fn quantities_compare_exactly() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        for (a, b, expected) in [
            ("0.3", "300m", Equal),
            ("0.1", "100m", Equal),
            (".5", "500m", Equal),
            ("1Gi", "1024Mi", Equal),
            ("1Gi", "1073741824", Equal),
            ("1k", "1e3", Equal),
            ("1E", "1e18", Equal),
            ("1Ei", "1152921504606846976", Equal),
            ("0", "0m", Equal),
            ("00100.00", "1e2", Equal),
            ("1Gi", "1G", Greater),
            ("999m", "1", Less),
            ("0.125Gi", "128Mi", Equal),
            ("128Mi", "0.5Gi", Less),
            ("1e-999", "0", Greater),
            ("1.0000000000000000001", "1", Greater),
            ("12", "120m", Greater),
        ] {
            assert_eq!(compare_quantities(a, b), Some(expected), "{a} vs {b}");
            assert_eq!(
                compare_quantities(b, a),
                Some(expected.reverse()),
                "{b} vs {a}"
            );
        }
        assert_eq!(compare_quantities("lots", "1"), None);
    }
}
