//! Numbers as a plan's arguments may write them: bounded digit strings, decimals, frame
//! rates and bitrates. Shared by the option rules and the filter option rules, so neither
//! imports the other.

/// `^\d{min_len,max_len}$`
pub fn all_digits(text: &str, min_len: usize, max_len: usize) -> bool {
    (min_len..=max_len).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// `^\d{1,int_digits}(\.\d{1,fraction_digits})?$`
pub fn is_decimal(text: &str, int_digits: usize, fraction_digits: usize) -> bool {
    match text.split_once('.') {
        Some((whole, fraction)) => all_digits(whole, 1, int_digits) && all_digits(fraction, 1, fraction_digits),
        None => all_digits(text, 1, int_digits),
    }
}

/// Up to 9 digits, so the value always fits.
pub fn parse_integer(text: &str) -> Option<u64> {
    if all_digits(text, 1, 9) {
        text.parse().ok()
    } else {
        None
    }
}

/// `^\d{1,4}(\.\d{1,6})?$` or `^\d{1,6}/\d{1,6}$`, as frames per second.
pub fn frame_rate(text: &str) -> Option<f64> {
    if let Some((num, den)) = text.split_once('/') {
        if !(all_digits(num, 1, 6) && all_digits(den, 1, 6)) {
            return None;
        }
        let num: u64 = num.parse().ok()?;
        let den: u64 = den.parse().ok()?;
        (den > 0).then(|| num as f64 / den as f64)
    } else if is_decimal(text, 4, 6) {
        text.parse().ok()
    } else {
        None
    }
}

/// `^\d{1,9}[kM]?$`, in bits per second (FFmpeg reads `k` as 1000, `M` as 1000000).
pub fn bitrate(text: &str) -> Option<u64> {
    let (digits, multiplier) = if let Some(digits) = text.strip_suffix('k') {
        (digits, 1_000)
    } else if let Some(digits) = text.strip_suffix('M') {
        (digits, 1_000_000)
    } else {
        (text, 1)
    };
    parse_integer(digits)?.checked_mul(multiplier)
}
