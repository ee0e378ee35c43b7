//! Exact storage billing math, in integers.
//!
//! Units: bytes, hours, and millicredits (1 credit = 1,000 millicredits); 1 GB = 10^9 bytes.
//! A day's charge for a tenant is
//!
//! ```text
//! excess_byte_hours = max(0, Σ_hours Σ_graphs bytes − included_gb · 10^9 · n_hours)
//! charge = round_half_up(excess_byte_hours · rate_per_gb_day / (n_hours · 10^9))
//! ```
//!
//! i.e. the day's average storage above the plan's included storage, in GB-days, times the
//! price per GB-day, rounded once, at the end, half up to a whole millicredit. `n_hours` is the
//! number of hourly snapshots in the day (23 or 25 on DST days), so a short day is not
//! over-billed.

/// Bytes in a GB (decimal, as storage vendors bill).
pub const BYTES_PER_GB: i128 = 1_000_000_000;

/// Divides, rounding half up (towards +∞ at exactly .5); `den` must be positive.
pub fn div_round_half_up(num: i128, den: i128) -> i128 {
    assert!(den > 0, "denominator must be positive");
    (2 * num + den).div_euclid(2 * den)
}

/// The day's storage charge in millicredits (positive; the ledger debits it).
pub fn storage_charge_millicredits(
    byte_hours: i128,
    n_hours: i128,
    included_gb: i64,
    rate_millicredits_per_gb_day: i64,
) -> i64 {
    if n_hours <= 0 {
        return 0;
    }
    let included_byte_hours = included_gb as i128 * BYTES_PER_GB * n_hours;
    let excess = (byte_hours - included_byte_hours).max(0);
    let charge = div_round_half_up(excess * rate_millicredits_per_gb_day as i128, n_hours * BYTES_PER_GB);
    i64::try_from(charge).expect("a day's charge fits in i64 millicredits")
}

/// Excess GB-days in thousandths (for metadata), rounded half up.
pub fn excess_milli_gb_days(byte_hours: i128, n_hours: i128, included_gb: i64) -> i64 {
    if n_hours <= 0 {
        return 0;
    }
    let excess = (byte_hours - included_gb as i128 * BYTES_PER_GB * n_hours).max(0);
    div_round_half_up(excess * 1000, n_hours * BYTES_PER_GB) as i64
}

/// A month's storage overage: the storage charges above the plan's monthly credits (never
/// negative). Exact: both are integer millicredits.
pub fn overage_millicredits(storage_charged: i64, monthly_allowance: i64) -> i64 {
    storage_charged.saturating_sub(monthly_allowance).max(0)
}

/// Formats thousandths as a decimal: `-9750` → `"-9.750"`.
pub fn format_milli(value: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn demo_tenants_are_billed_exactly() {
        // acme: 16.5 GB all day, 10 GB included, 1.5 credits per GB-day → 6.5 × 1.5 = 9.75 credits.
        assert_eq!(storage_charge_millicredits(16_500_000_000 * 24, 24, 10, 1_500), 9_750);
        // Within the included storage: nothing.
        assert_eq!(storage_charge_millicredits(3_000_000_000 * 24, 24, 10, 1_500), 0);
        // A 25-hour DST day with the same storage costs the same as a 24-hour day.
        assert_eq!(storage_charge_millicredits(16_500_000_000 * 25, 25, 10, 1_500), 9_750);
        // Half a millicredit rounds up, less rounds down: 1 byte-day over at 1 mc/GB-day is 0.
        assert_eq!(storage_charge_millicredits(10_000_000_000 * 24 + 500_000_000 * 24, 24, 10, 1), 1);
        assert_eq!(storage_charge_millicredits(10_000_000_000 * 24 + 499_999_999 * 24, 24, 10, 1), 0);
    }

    #[test]
    fn formatting_is_exact() {
        assert_eq!(format_milli(-9_750), "-9.750");
        assert_eq!(format_milli(150_000), "150.000");
        assert_eq!(format_milli(5), "0.005");
        assert_eq!(format_milli(0), "0.000");
    }

    proptest! {
        #[test]
        fn charge_is_monotonic_and_never_negative(a in 0i128..1_000_000_000_000_000, b in 0i128..1_000_000_000_000_000, hours in 23i128..=25) {
            let (lo, hi) = (a.min(b), a.max(b));
            let c_lo = storage_charge_millicredits(lo, hours, 10, 1_500);
            let c_hi = storage_charge_millicredits(hi, hours, 10, 1_500);
            prop_assert!(c_lo >= 0 && c_lo <= c_hi);
        }

        #[test]
        fn rounding_is_within_half_a_millicredit(byte_hours in 0i128..1_000_000_000_000_000, hours in 23i128..=25) {
            // charge ≈ excess · rate / (hours · 10^9), compared exactly in integers.
            let rate = 1_500i128;
            let c = storage_charge_millicredits(byte_hours, hours, 10, rate as i64) as i128;
            let excess = (byte_hours - 10 * BYTES_PER_GB * hours).max(0);
            let den = hours * BYTES_PER_GB;
            // |c − excess·rate/den| ≤ 1/2  ⇔  |2·c·den − 2·excess·rate| ≤ den
            prop_assert!((2 * c * den - 2 * excess * rate).abs() <= den);
        }
    }
}
