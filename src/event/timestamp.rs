//! RFC 3339 timestamps at millisecond precision, the only time format in
//! events and leaves.
//!
//! Invariant: every instant this module accepts or produces lies in
//! [`MIN_UNIX_MS`]`..=`[`MAX_UNIX_MS`] (1970-01-01 to the end of 9999, UTC), so
//! its canonical text always has the fixed shape `YYYY-MM-DDTHH:MM:SS.mmmZ` and
//! `parse_rfc3339_ms(&format_rfc3339_ms(ms)) == Ok(ms)` for every `ms` in range.
//!
//! The calendar arithmetic is written out (proleptic Gregorian, days counted
//! from the Unix epoch) so that formatting is a total function; the tests
//! cross-check it against the `time` crate.

use thiserror::Error;

/// First instant accepted: 1970-01-01T00:00:00.000Z.
pub const MIN_UNIX_MS: i64 = 0;
/// Last instant accepted: 9999-12-31T23:59:59.999Z.
pub const MAX_UNIX_MS: i64 = 253_402_300_799_999;

const MS_PER_DAY: i64 = 86_400_000;

/// Why a string is not an acceptable RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimeError {
    /// The text does not follow the RFC 3339 §5.6 `date-time` grammar.
    #[error("not an RFC 3339 date-time (e.g. 2026-11-25T09:34:52.123Z): expected {expected}")]
    Syntax {
        /// What the parser expected where it stopped.
        expected: &'static str,
    },
    /// A component is outside its range (month 13, 31 April, hour 24, ...).
    #[error("not a valid RFC 3339 date-time: {component} out of range")]
    Component {
        /// The offending component.
        component: &'static str,
    },
    /// Second 60: Unix time cannot represent leap seconds.
    #[error("leap seconds (second 60) are not supported; send 59.999 instead")]
    LeapSecond,
    /// More than nine fractional-second digits.
    #[error("at most 9 fractional-second digits are accepted")]
    Fraction,
    /// The instant, in UTC, is before 1970 or after 9999.
    #[error(
        "outside the supported range 1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z (UTC)"
    )]
    OutOfRange,
}

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
///
/// Inputs outside [`MIN_UNIX_MS`]`..=`[`MAX_UNIX_MS`] are clamped to the
/// nearest end, because RFC 3339 has four-digit years only; callers holding
/// untrusted values check them with [`check_unix_ms`] first.
pub fn format_rfc3339_ms(unix_ms: i64) -> String {
    let ms = unix_ms.clamp(MIN_UNIX_MS, MAX_UNIX_MS);
    let days = ms.div_euclid(MS_PER_DAY);
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    // Written digit by digit: this runs for every event accepted, and
    // `format!` with padding costs several times as much.
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut n: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, in_day / 3_600_000);
    put(14, 2, in_day / 60_000 % 60);
    put(17, 2, in_day / 1000 % 60);
    put(20, 3, in_day % 1000);
    out.iter().map(|&b| char::from(b)).collect()
}

/// Checks that Unix milliseconds lie in the range this module represents.
pub fn check_unix_ms(unix_ms: i64) -> Result<i64, TimeError> {
    if (MIN_UNIX_MS..=MAX_UNIX_MS).contains(&unix_ms) {
        Ok(unix_ms)
    } else {
        Err(TimeError::OutOfRange)
    }
}

/// Parses any RFC 3339 `date-time` (any offset, 0 to 9 fractional digits,
/// `T`/`Z` in either case) into Unix milliseconds.
///
/// Sub-millisecond digits are truncated, never rounded, so an instant is never
/// moved into the next second (or day, or year). The instant must lie in
/// 1970..=9999 once converted to UTC. `-00:00` ("offset unknown", RFC 3339
/// §4.3) denotes the same instant as `Z`. A space instead of `T` is rejected.
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, TimeError> {
    match canonical_ms(s.as_bytes()) {
        Some(ms) => Ok(ms),
        None => parse_any_rfc3339_ms(s),
    }
}

/// [`parse_rfc3339_ms`] for every shape the grammar allows.
fn parse_any_rfc3339_ms(s: &str) -> Result<i64, TimeError> {
    let b = s.as_bytes();
    let mut p = Cursor { b, at: 0 };
    // RFC 3339 §5.6: full-date "T" partial-time time-offset
    let year = p.digits(4, "a four-digit year")?;
    p.literal(b'-', "'-' after the year")?;
    let month = p.digits(2, "a two-digit month")?;
    p.literal(b'-', "'-' after the month")?;
    let day = p.digits(2, "a two-digit day")?;
    match p.next() {
        Some(b'T' | b't') => {}
        _ => {
            return Err(TimeError::Syntax {
                expected: "'T' between date and time",
            });
        }
    }
    let hour = p.digits(2, "a two-digit hour")?;
    p.literal(b':', "':' after the hour")?;
    let minute = p.digits(2, "two-digit minutes")?;
    p.literal(b':', "':' after the minutes")?;
    let second = p.digits(2, "two-digit seconds")?;

    let mut millis = 0;
    if p.peek() == Some(b'.') {
        p.at += 1;
        let start = p.at;
        while matches!(p.peek(), Some(b'0'..=b'9')) {
            p.at += 1;
        }
        let frac = &b[start..p.at];
        if frac.is_empty() {
            return Err(TimeError::Syntax {
                expected: "digits after '.'",
            });
        }
        if frac.len() > 9 {
            return Err(TimeError::Fraction);
        }
        // Truncate to milliseconds: take the first three digits, padded.
        millis = frac
            .iter()
            .chain(std::iter::repeat(&b'0'))
            .take(3)
            .fold(0, |acc, d| acc * 10 + i64::from(d - b'0'));
    }

    let offset_minutes = match p.next() {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let oh = p.digits(2, "a two-digit offset hour")?;
            p.literal(b':', "':' in the offset")?;
            let om = p.digits(2, "two-digit offset minutes")?;
            if oh > 23 {
                return Err(TimeError::Component {
                    component: "offset hour",
                });
            }
            if om > 59 {
                return Err(TimeError::Component {
                    component: "offset minutes",
                });
            }
            let m = oh * 60 + om;
            if sign == b'-' { -m } else { m }
        }
        _ => {
            return Err(TimeError::Syntax {
                expected: "'Z' or an offset like +01:00",
            });
        }
    };
    if p.at != b.len() {
        return Err(TimeError::Syntax {
            expected: "nothing after the offset",
        });
    }

    if !(1..=12).contains(&month) {
        return Err(TimeError::Component { component: "month" });
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(TimeError::Component { component: "day" });
    }
    if hour > 23 {
        return Err(TimeError::Component { component: "hour" });
    }
    if minute > 59 {
        return Err(TimeError::Component {
            component: "minutes",
        });
    }
    if second == 60 {
        return Err(TimeError::LeapSecond);
    }
    if second > 59 {
        return Err(TimeError::Component {
            component: "seconds",
        });
    }

    let local_ms = days_from_civil(year, month, day) * MS_PER_DAY
        + hour * 3_600_000
        + minute * 60_000
        + second * 1000
        + millis;
    // local time = UTC + offset, so UTC = local - offset.
    check_unix_ms(local_ms - offset_minutes * 60_000)
}

/// The instant of `b` when it is a valid timestamp in the canonical form
/// (`YYYY-MM-DDTHH:MM:SS.mmmZ`, as every accepted event holds it), read
/// at fixed positions; `None` for anything else, which the general parser
/// then reads (and explains). The alert rules read the time of every event
/// they watch, so this shape is the one worth reading fast.
fn canonical_ms(b: &[u8]) -> Option<i64> {
    let b: &[u8; 24] = b.try_into().ok()?;
    let punctuation = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ];
    if punctuation.iter().any(|&(at, c)| b[at] != c) {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<i64> {
        b[from..to].iter().try_fold(0i64, |v, &d| {
            d.is_ascii_digit().then(|| v * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    let millis = number(20, 23)?;
    let valid = (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour <= 23
        && minute <= 59
        && second <= 59;
    if !valid {
        return None;
    }
    let ms = days_from_civil(year, month, day) * MS_PER_DAY
        + hour * 3_600_000
        + minute * 60_000
        + second * 1000
        + millis;
    check_unix_ms(ms).ok()
}

/// Re-encodes any accepted RFC 3339 timestamp in the canonical UTC
/// millisecond form (`2026-11-25T10:34:52.123456+01:00` becomes
/// `2026-11-25T09:34:52.123Z`).
pub fn normalize_rfc3339(s: &str) -> Result<String, TimeError> {
    parse_rfc3339_ms(s).map(format_rfc3339_ms)
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        if c.is_some() {
            self.at += 1;
        }
        c
    }

    fn literal(&mut self, want: u8, expected: &'static str) -> Result<(), TimeError> {
        match self.next() {
            Some(c) if c == want => Ok(()),
            _ => Err(TimeError::Syntax { expected }),
        }
    }

    fn digits(&mut self, n: usize, expected: &'static str) -> Result<i64, TimeError> {
        let mut v = 0;
        for _ in 0..n {
            match self.next() {
                Some(d @ b'0'..=b'9') => v = v * 10 + i64::from(d - b'0'),
                _ => return Err(TimeError::Syntax { expected }),
            }
        }
        Ok(v)
    }
}

fn is_leap_year(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap_year(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`; eras of 400 years, March-based years).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn formats_fixed_points() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(MAX_UNIX_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            format_rfc3339_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_rfc3339_ms(1_795_599_292_123),
            "2026-11-25T09:34:52.123Z"
        );
    }

    proptest! {
        /// The fixed-position reading of the canonical form agrees with the
        /// general parser on every canonical timestamp and on every string
        /// one byte away from one, and accepts nothing the parser refuses.
        #[test]
        fn the_canonical_fast_path_agrees_with_the_parser(
            ms in MIN_UNIX_MS..=MAX_UNIX_MS,
            at in 0usize..24,
            byte in prop::sample::select(b"0123456789-:.TZtz+ ".to_vec()),
        ) {
            let text = format_rfc3339_ms(ms);
            prop_assert_eq!(canonical_ms(text.as_bytes()), Some(ms));
            prop_assert_eq!(parse_any_rfc3339_ms(&text), Ok(ms));
            let mut changed = text.into_bytes();
            changed[at] = byte;
            let changed = String::from_utf8(changed).unwrap();
            if let Some(fast) = canonical_ms(changed.as_bytes()) {
                prop_assert_eq!(parse_any_rfc3339_ms(&changed), Ok(fast));
            }
        }
    }

    #[test]
    fn the_canonical_fast_path_refuses_invalid_dates() {
        for bad in [
            "2026-02-29T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-04-31T00:00:00.000Z",
            "2026-11-25T24:00:00.000Z",
            "2026-11-25T23:60:00.000Z",
            "2026-11-25T23:59:60.000Z",
            "1969-12-31T23:59:59.999Z",
            "2026-11-25T09:34:52.123+",
        ] {
            assert_eq!(canonical_ms(bad.as_bytes()), None, "{bad}");
            assert!(parse_rfc3339_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn format_clamps_out_of_range() {
        assert_eq!(format_rfc3339_ms(-1), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(i64::MIN), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(check_unix_ms(-1), Err(TimeError::OutOfRange));
        assert_eq!(check_unix_ms(MAX_UNIX_MS + 1), Err(TimeError::OutOfRange));
        assert_eq!(check_unix_ms(MAX_UNIX_MS), Ok(MAX_UNIX_MS));
    }

    #[test]
    fn parses_and_normalises() {
        let cases = [
            ("2026-11-25T09:34:52.123Z", "2026-11-25T09:34:52.123Z"),
            ("2026-11-25T09:34:52Z", "2026-11-25T09:34:52.000Z"),
            ("2026-11-25t09:34:52.1z", "2026-11-25T09:34:52.100Z"),
            (
                "2026-11-25T10:34:52.123999999+01:00",
                "2026-11-25T09:34:52.123Z",
            ),
            ("2026-11-24T23:04:52.5-10:30", "2026-11-25T09:34:52.500Z"),
            ("2026-11-25T09:34:52-00:00", "2026-11-25T09:34:52.000Z"),
            ("2024-02-29T00:00:00+00:00", "2024-02-29T00:00:00.000Z"),
            // Offsets move the date across year ends.
            ("2026-01-01T00:30:00+01:00", "2025-12-31T23:30:00.000Z"),
            ("1970-01-01T01:00:00+01:00", "1970-01-01T00:00:00.000Z"),
            ("9999-12-31T22:59:59.999-01:00", "9999-12-31T23:59:59.999Z"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_rfc3339(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_malformed_and_out_of_range() {
        let cases: [(&str, TimeError); 24] = [
            (
                "",
                TimeError::Syntax {
                    expected: "a four-digit year",
                },
            ),
            (
                "2026-11-25",
                TimeError::Syntax {
                    expected: "'T' between date and time",
                },
            ),
            (
                "2026-11-25 09:34:52Z",
                TimeError::Syntax {
                    expected: "'T' between date and time",
                },
            ),
            (
                "2026-11-25T09:34Z",
                TimeError::Syntax {
                    expected: "':' after the minutes",
                },
            ),
            (
                "2026-11-25T09:34:52",
                TimeError::Syntax {
                    expected: "'Z' or an offset like +01:00",
                },
            ),
            (
                "2026-11-25T09:34:52.Z",
                TimeError::Syntax {
                    expected: "digits after '.'",
                },
            ),
            ("2026-11-25T09:34:52.1234567890Z", TimeError::Fraction),
            (
                "2026-11-25T09:34:52+0100",
                TimeError::Syntax {
                    expected: "':' in the offset",
                },
            ),
            (
                "2026-11-25T09:34:52Z ",
                TimeError::Syntax {
                    expected: "nothing after the offset",
                },
            ),
            (
                "2026-11-25T09:34:52ZZ",
                TimeError::Syntax {
                    expected: "nothing after the offset",
                },
            ),
            (
                "26-11-25T09:34:52Z",
                TimeError::Syntax {
                    expected: "a four-digit year",
                },
            ),
            (
                "+2026-11-25T09:34:52Z",
                TimeError::Syntax {
                    expected: "a four-digit year",
                },
            ),
            (
                "2026-1-25T09:34:52Z",
                TimeError::Syntax {
                    expected: "a two-digit month",
                },
            ),
            (
                "2026-13-01T00:00:00Z",
                TimeError::Component { component: "month" },
            ),
            (
                "2026-00-01T00:00:00Z",
                TimeError::Component { component: "month" },
            ),
            (
                "2025-02-29T00:00:00Z",
                TimeError::Component { component: "day" },
            ),
            (
                "2026-04-31T00:00:00Z",
                TimeError::Component { component: "day" },
            ),
            (
                "2026-04-00T00:00:00Z",
                TimeError::Component { component: "day" },
            ),
            (
                "2026-04-01T24:00:00Z",
                TimeError::Component { component: "hour" },
            ),
            (
                "2026-04-01T23:60:00Z",
                TimeError::Component {
                    component: "minutes",
                },
            ),
            ("2016-12-31T23:59:60Z", TimeError::LeapSecond),
            (
                "2026-04-01T00:00:00+24:00",
                TimeError::Component {
                    component: "offset hour",
                },
            ),
            ("1969-12-31T23:59:59.999Z", TimeError::OutOfRange),
            ("9999-12-31T23:59:59.999-00:01", TimeError::OutOfRange),
        ];
        for (input, want) in cases {
            assert_eq!(parse_rfc3339_ms(input), Err(want), "{input:?}");
        }
        assert_eq!(
            parse_rfc3339_ms("0001-01-01T00:00:00Z"),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            parse_rfc3339_ms("1970-01-01T00:00:00+00:01"),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-04-01T00:00:00+01:60"),
            Err(TimeError::Component {
                component: "offset minutes"
            })
        );
        assert!(parse_rfc3339_ms("2026-04-01T00:00:00\u{ff10}Z").is_err());
    }

    proptest! {
        /// Formatting agrees with the `time` crate and parses back exactly.
        #[test]
        fn format_matches_time_crate_and_round_trips(ms in MIN_UNIX_MS..=MAX_UNIX_MS) {
            let s = format_rfc3339_ms(ms);
            let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
            let want = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second(), t.millisecond()
            );
            prop_assert_eq!(&s, &want);
            prop_assert_eq!(parse_rfc3339_ms(&s), Ok(ms));
        }

        /// Parsing agrees with the `time` crate's RFC 3339 parser for any
        /// offset and precision, truncating below a millisecond.
        #[test]
        fn parse_matches_time_crate(
            ms in 86_400_000i64..(MAX_UNIX_MS - 86_400_000),
            sub_ms in 0u32..1_000_000,
            digits in 0usize..=9,
            offset_min in -(23 * 60 + 59)..=(23 * 60 + 59i32),
        ) {
            let nanos = i128::from(ms) * 1_000_000 + i128::from(sub_ms);
            let offset = time::UtcOffset::from_whole_seconds(offset_min * 60).unwrap();
            let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap().to_offset(offset);
            let frac = format!("{:09}", t.nanosecond());
            let sign = if offset_min < 0 { '-' } else { '+' };
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{}{sign}{:02}:{:02}",
                t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second(),
                if digits == 0 { "" } else { "." }, &frac[..digits],
                offset_min.abs() / 60, offset_min.abs() % 60
            );
            let parsed_by_time = OffsetDateTime::parse(&text, &Rfc3339).unwrap();
            let want = i64::try_from(parsed_by_time.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap();
            prop_assert_eq!(parse_rfc3339_ms(&text), Ok(want), "{}", text);
        }
    }
}
