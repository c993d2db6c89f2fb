//! Human-readable byte sizes such as `64MiB`.

const UNITS_HELP: &str = "use B, KiB, MiB or GiB (also k/m/g and KB/MB/GB, all powers of 1024)";

/// Parses a byte size: a non-negative number, optionally with a fractional
/// part, followed by an optional unit (`B`, `KiB`, `MiB`, `GiB`; `k`/`m`/`g`
/// and `KB`/`MB`/`GB` are accepted too and, like the others, mean powers of
/// 1024). Units are case-insensitive and may be separated by spaces.
///
/// ```
/// assert_eq!(wharf_manifest::parse_size("64MiB"), Ok(64 << 20));
/// assert_eq!(wharf_manifest::parse_size("1.5k"), Ok(1536));
/// assert!(wharf_manifest::parse_size("lots").is_err());
/// ```
///
/// The error is a sentence meant to follow the offending value in a message.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("a size cannot be empty; write a number with a unit, e.g. \"64MiB\"".into());
    }
    if trimmed.starts_with('-') {
        return Err("a size cannot be negative; write e.g. \"64MiB\"".into());
    }
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let multiplier: u128 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other if number.is_empty() => {
            return Err(format!(
                "{other:?} is not a size; write a number with a unit, e.g. \"64MiB\""
            ));
        }
        other => return Err(format!("unknown unit {other:?}; {UNITS_HELP}")),
    };

    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || (number.contains('.') && fraction.is_empty()) || fraction.contains('.') {
        return Err(format!(
            "{number:?} is not a number; write digits with an optional fraction, e.g. \"1.5GiB\""
        ));
    }
    // Work in u128 on the digits with the decimal point removed, so fractions
    // are exact; 29 digits times a 2^30 multiplier still fits in a u128.
    let digits = format!("{whole}{fraction}");
    if digits.len() > 29 {
        return Err(format!("{number:?} has too many digits to be a size"));
    }
    let too_large = || format!("{trimmed:?} is too large to be a size");
    let value: u128 = digits.parse().map_err(|_| too_large())?;
    let scale = 10u128.pow(fraction.len() as u32);
    let scaled = value * multiplier;
    if !scaled.is_multiple_of(scale) {
        return Err(format!(
            "{trimmed:?} is not a whole number of bytes; use a smaller unit"
        ));
    }
    u64::try_from(scaled / scale).map_err(|_| too_large())
}

/// Formats a byte count the way users write it, choosing the largest exact unit.
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes != 0 && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let cases = [
            ("0", 0),
            ("123", 123),
            ("123B", 123),
            ("123 b", 123),
            ("1k", 1024),
            ("1K", 1024),
            ("1KB", 1024),
            ("1kib", 1024),
            ("2KiB", 2048),
            ("64MiB", 64 << 20),
            ("64mb", 64 << 20),
            ("64 M", 64 << 20),
            ("1GiB", 1 << 30),
            ("4g", 4 << 30),
            ("4GB", 4 << 30),
            ("  8MiB  ", 8 << 20),
            ("007MiB", 7 << 20),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn parses_exact_fractions() {
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("0.5GiB"), Ok(512 << 20));
        assert_eq!(parse_size("2.0"), Ok(2));
        assert_eq!(parse_size("0.25k"), Ok(256));
    }

    #[test]
    fn rejects_bad_sizes_with_reasons() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("lots", "is not a size"),
            ("-1MiB", "negative"),
            ("12 parsecs", "unknown unit \"parsecs\""),
            ("5TiB", "unknown unit \"tib\""),
            ("1.5", "whole number of bytes"),
            ("0.3k", "whole number of bytes"),
            ("1.", "not a number"),
            (".5k", "not a number"),
            ("1.2.3k", "not a number"),
            ("18446744073709551616", "too large"),
            ("17179869184GiB", "too large"),
            ("1000000000000000000000000000000000", "too many digits"),
            (
                "0.000000000000000000000000000000000000001",
                "too many digits",
            ),
        ];
        for (text, expected) in cases {
            let err = parse_size(text).expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn accepts_the_largest_u64() {
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_size("16GiB"), Ok(16 << 30));
    }

    #[test]
    fn formats_with_the_largest_exact_unit() {
        assert_eq!(format_size(0), "0B");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size(1536), "1536B");
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(3 << 30), "3GiB");
        assert_eq!(format_size(1 << 10), "1KiB");
    }
}
