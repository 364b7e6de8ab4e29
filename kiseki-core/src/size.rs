//! Human sizes for options: `4M`, `256MiB`, `1G`, `4096`.

/// Parses a byte size with an optional binary unit (K, M, G, T; an optional `i`/`iB`/`B`
/// suffix is accepted). Units are powers of 1024, as JuiceFS and mount options use.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits == 0 {
        return Err(format!(
            "size {s:?}: expected a number with an optional unit such as 4M"
        ));
    }
    let n: u64 = t[..digits]
        .parse()
        .map_err(|_| format!("size {s:?}: number too large"))?;
    let unit = t[digits..].trim().to_ascii_uppercase();
    let shift = match unit.trim_end_matches('B').trim_end_matches('I') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        _ => {
            return Err(format!(
                "size {s:?}: unknown unit {:?} (use K, M, G, T)",
                &t[digits..]
            ))
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {s:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("2KB"), Ok(2048));
        for bad in ["", "M", "4X", "-1", "99999999999999999999", "20000000T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
