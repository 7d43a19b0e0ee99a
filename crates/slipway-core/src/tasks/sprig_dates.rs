//! Sprig v2.22's date functions for task templates: `now`, `date`,
//! `dateInZone` (`date_in_zone`), `htmlDate`, `htmlDateInZone`,
//! `unixEpoch`, `toDate`, `dateModify` (`date_modify`), `ago`, `duration`.
//!
//! Contract: Sprig v2.22.0 `date.go` over Go's `time` package: a date
//! argument is a time, or Unix seconds (int); anything else means "now".
//! An unknown zone falls back to UTC (Sprig ignores `LoadLocation`'s
//! error). Layouts are Go reference layouts (`2006-01-02 15:04:05 MST`);
//! durations print as Go's `Duration.String` (`1h2m3s`). The server's
//! `Local` zone is taken as UTC, the zone of Slipway's containers.
//!
//! A time travels between functions as a JSON object with the one key
//! [`TIME_KEY`]: `[unix seconds, nanoseconds, zone name]`; printed, it is
//! Go's `Time.String()` without the monotonic clock reading.

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::template::{arity, text, TemplateError};

/// The key of a time value (not a key a values file can write: it holds a
/// NUL character).
pub(super) const TIME_KEY: &str = "\u{0}time";

fn zone(name: &str) -> Tz {
    match name {
        "" | "Local" | "UTC" => Tz::UTC,
        other => other.parse().unwrap_or(Tz::UTC),
    }
}

fn time_value(t: DateTime<Tz>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(
        TIME_KEY.into(),
        serde_json::json!([
            t.timestamp(),
            t.timestamp_subsec_nanos(),
            t.timezone().name()
        ]),
    );
    Value::Object(m)
}

/// The time a value holds, if it is one.
pub(super) fn as_time(v: &Value) -> Option<DateTime<Tz>> {
    let parts = v.as_object().filter(|m| m.len() == 1)?.get(TIME_KEY)?;
    let secs = parts.get(0)?.as_i64()?;
    let nanos = parts.get(1)?.as_u64()? as u32;
    let tz = zone(parts.get(2)?.as_str()?);
    Some(tz.from_utc_datetime(&DateTime::from_timestamp(secs, nanos)?.naive_utc()))
}

/// Sprig's date argument: a time, Unix seconds, or else now.
fn date_arg(v: &Value) -> DateTime<Tz> {
    if let Some(t) = as_time(v) {
        return t;
    }
    match v.as_i64().and_then(|s| DateTime::from_timestamp(s, 0)) {
        Some(t) => t.with_timezone(&Tz::UTC),
        None => Utc::now().with_timezone(&Tz::UTC),
    }
}

/// Go's `Time.String()` (without the monotonic reading).
pub(super) fn go_string(t: &DateTime<Tz>) -> String {
    format(t, "2006-01-02 15:04:05.999999999 -0700 MST")
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// One element of a Go layout.
#[derive(Debug, Clone, PartialEq)]
enum Chunk {
    Lit(String),
    Year4,
    Year2,
    MonthName,
    MonthShort,
    Month2,
    Month,
    Day2,
    DaySpace,
    Day,
    YearDay,
    WeekDay,
    WeekDayShort,
    Hour24,
    Hour12Zero,
    Hour12,
    Minute2,
    Minute,
    Second2,
    Second,
    Pm(bool),
    ZoneName,
    /// `-0700`-style: (Z for UTC, colon, with seconds, hours only).
    Offset {
        z: bool,
        colon: bool,
        hours_only: bool,
    },
    /// `.000` (fixed) or `.999` (trimmed) with this many digits and separator.
    Frac {
        digits: usize,
        trim: bool,
        sep: char,
    },
}

/// Splits a Go layout into chunks (Go's `nextStdChunk`, in its order).
fn chunks(layout: &str) -> Vec<Chunk> {
    let b = layout.as_bytes();
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let starts = |i: usize, s: &str| layout[i..].starts_with(s);
    while i < b.len() {
        let (chunk, len): (Option<Chunk>, usize) = match b[i] {
            b'J' if starts(i, "January") => (Some(Chunk::MonthName), 7),
            b'J' if starts(i, "Jan") => (Some(Chunk::MonthShort), 3),
            b'M' if starts(i, "Monday") => (Some(Chunk::WeekDay), 6),
            b'M' if starts(i, "Mon") => (Some(Chunk::WeekDayShort), 3),
            b'M' if starts(i, "MST") => (Some(Chunk::ZoneName), 3),
            b'0' if starts(i, "002") => (Some(Chunk::YearDay), 3),
            b'0' if i + 1 < b.len() && (b'1'..=b'6').contains(&b[i + 1]) => (
                Some(match b[i + 1] {
                    b'1' => Chunk::Month2,
                    b'2' => Chunk::Day2,
                    b'3' => Chunk::Hour12Zero,
                    b'4' => Chunk::Minute2,
                    b'5' => Chunk::Second2,
                    _ => Chunk::Year2,
                }),
                2,
            ),
            b'1' if starts(i, "15") => (Some(Chunk::Hour24), 2),
            b'1' => (Some(Chunk::Month), 1),
            b'2' if starts(i, "2006") => (Some(Chunk::Year4), 4),
            b'2' => (Some(Chunk::Day), 1),
            b'_' if starts(i, "_2") && !starts(i, "_2006") => (Some(Chunk::DaySpace), 2),
            b'3' => (Some(Chunk::Hour12), 1),
            b'4' => (Some(Chunk::Minute), 1),
            b'5' => (Some(Chunk::Second), 1),
            b'P' if starts(i, "PM") => (Some(Chunk::Pm(true)), 2),
            b'p' if starts(i, "pm") => (Some(Chunk::Pm(false)), 2),
            b'-' | b'Z' => {
                let z = b[i] == b'Z';
                let rest = &layout[i + 1..];
                if rest.starts_with("07:00") {
                    (
                        Some(Chunk::Offset {
                            z,
                            colon: true,
                            hours_only: false,
                        }),
                        6,
                    )
                } else if rest.starts_with("0700") {
                    (
                        Some(Chunk::Offset {
                            z,
                            colon: false,
                            hours_only: false,
                        }),
                        5,
                    )
                } else if rest.starts_with("07") {
                    (
                        Some(Chunk::Offset {
                            z,
                            colon: false,
                            hours_only: true,
                        }),
                        3,
                    )
                } else {
                    (None, 1)
                }
            }
            b'.' | b',' if i + 1 < b.len() && (b[i + 1] == b'0' || b[i + 1] == b'9') => {
                let digit = b[i + 1];
                let mut j = i + 1;
                while j < b.len() && b[j] == digit {
                    j += 1;
                }
                if j < b.len() && b[j].is_ascii_digit() {
                    (None, 1)
                } else {
                    (
                        Some(Chunk::Frac {
                            digits: j - i - 1,
                            trim: digit == b'9',
                            sep: b[i] as char,
                        }),
                        j - i,
                    )
                }
            }
            _ => (None, 1),
        };
        match chunk {
            Some(c) => {
                if !lit.is_empty() {
                    out.push(Chunk::Lit(std::mem::take(&mut lit)));
                }
                out.push(c);
                i += len;
            }
            None => {
                let ch = layout[i..].chars().next().unwrap_or(' ');
                lit.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    if !lit.is_empty() {
        out.push(Chunk::Lit(lit));
    }
    out
}

/// Go's `Time.Format(layout)`.
pub(super) fn format(t: &DateTime<Tz>, layout: &str) -> String {
    let mut out = String::new();
    let offset = t.offset().fix().local_minus_utc();
    for c in chunks(layout) {
        match c {
            Chunk::Lit(s) => out.push_str(&s),
            Chunk::Year4 => out.push_str(&format!("{:04}", t.year())),
            Chunk::Year2 => out.push_str(&format!("{:02}", t.year().rem_euclid(100))),
            Chunk::MonthName => out.push_str(MONTHS[t.month0() as usize]),
            Chunk::MonthShort => out.push_str(&MONTHS[t.month0() as usize][..3]),
            Chunk::Month2 => out.push_str(&format!("{:02}", t.month())),
            Chunk::Month => out.push_str(&t.month().to_string()),
            Chunk::Day2 => out.push_str(&format!("{:02}", t.day())),
            Chunk::DaySpace => out.push_str(&format!("{:>2}", t.day())),
            Chunk::Day => out.push_str(&t.day().to_string()),
            Chunk::YearDay => out.push_str(&format!("{:03}", t.ordinal())),
            Chunk::WeekDay => out.push_str(DAYS[t.weekday().num_days_from_sunday() as usize]),
            Chunk::WeekDayShort => {
                out.push_str(&DAYS[t.weekday().num_days_from_sunday() as usize][..3])
            }
            Chunk::Hour24 => out.push_str(&format!("{:02}", t.hour())),
            Chunk::Hour12Zero => out.push_str(&format!("{:02}", (t.hour() + 11) % 12 + 1)),
            Chunk::Hour12 => out.push_str(&((t.hour() + 11) % 12 + 1).to_string()),
            Chunk::Minute2 => out.push_str(&format!("{:02}", t.minute())),
            Chunk::Minute => out.push_str(&t.minute().to_string()),
            Chunk::Second2 => out.push_str(&format!("{:02}", t.second())),
            Chunk::Second => out.push_str(&t.second().to_string()),
            Chunk::Pm(upper) => out.push_str(match (t.hour() >= 12, upper) {
                (true, true) => "PM",
                (false, true) => "AM",
                (true, false) => "pm",
                (false, false) => "am",
            }),
            Chunk::ZoneName => {
                let abbr = t.offset().to_string();
                // chrono-tz abbreviations like "+03" are Go's too.
                out.push_str(&abbr)
            }
            Chunk::Offset {
                z,
                colon,
                hours_only,
            } => {
                if z && offset == 0 {
                    out.push('Z');
                } else {
                    let sign = if offset < 0 { '-' } else { '+' };
                    let a = offset.abs();
                    out.push(sign);
                    out.push_str(&format!("{:02}", a / 3600));
                    if !hours_only {
                        if colon {
                            out.push(':');
                        }
                        out.push_str(&format!("{:02}", (a % 3600) / 60));
                    }
                }
            }
            Chunk::Frac { digits, trim, sep } => {
                let nanos = format!("{:09}", t.nanosecond() % 1_000_000_000);
                let mut f = nanos[..digits.min(9)].to_string();
                if trim {
                    f = f.trim_end_matches('0').to_string();
                    if f.is_empty() {
                        continue;
                    }
                }
                out.push(sep);
                out.push_str(&f);
            }
        }
    }
    out
}

/// Go's `time.ParseInLocation(layout, value, UTC)` for numeric fields,
/// month and weekday names, AM/PM, offsets and fractions; `None` where Go
/// reports an error.
fn parse(layout: &str, value: &str) -> Option<DateTime<Tz>> {
    let mut rest = value;
    let (mut year, mut month, mut day) = (1i32, 1u32, 1u32);
    let (mut hour, mut minute, mut second, mut nanos) = (0u32, 0u32, 0u32, 0u32);
    let mut pm: Option<bool> = None;
    let mut offset: Option<i32> = None;
    let mut abbreviation: Option<&str> = None;
    let num = |rest: &mut &str, min: usize, max: usize| -> Option<u32> {
        let n = rest
            .bytes()
            .take(max)
            .take_while(u8::is_ascii_digit)
            .count();
        if n < min {
            return None;
        }
        let v = rest[..n].parse().ok()?;
        *rest = &rest[n..];
        Some(v)
    };
    for c in chunks(layout) {
        match c {
            Chunk::Lit(s) => rest = rest.strip_prefix(s.as_str())?,
            Chunk::Year4 => year = num(&mut rest, 4, 4)? as i32,
            Chunk::Year2 => {
                let y = num(&mut rest, 2, 2)? as i32;
                year = if y >= 69 { 1900 + y } else { 2000 + y };
            }
            Chunk::MonthName | Chunk::MonthShort => {
                let i = MONTHS.iter().position(|m| {
                    let m = if c == Chunk::MonthShort { &m[..3] } else { m };
                    rest.len() >= m.len() && rest[..m.len()].eq_ignore_ascii_case(m)
                })?;
                let len = if c == Chunk::MonthShort {
                    3
                } else {
                    MONTHS[i].len()
                };
                rest = &rest[len..];
                month = i as u32 + 1;
            }
            Chunk::WeekDay | Chunk::WeekDayShort => {
                let i = DAYS.iter().position(|d| {
                    let d = if c == Chunk::WeekDayShort { &d[..3] } else { d };
                    rest.len() >= d.len() && rest[..d.len()].eq_ignore_ascii_case(d)
                })?;
                let len = if c == Chunk::WeekDayShort {
                    3
                } else {
                    DAYS[i].len()
                };
                rest = &rest[len..];
            }
            Chunk::Month2 => month = num(&mut rest, 2, 2)?,
            Chunk::Month => month = num(&mut rest, 1, 2)?,
            Chunk::Day2 => day = num(&mut rest, 2, 2)?,
            Chunk::DaySpace => {
                rest = rest.strip_prefix(' ').unwrap_or(rest);
                day = num(&mut rest, 1, 2)?
            }
            Chunk::Day => day = num(&mut rest, 1, 2)?,
            Chunk::YearDay => {
                num(&mut rest, 3, 3)?;
            }
            Chunk::Hour24 => hour = num(&mut rest, 2, 2)?,
            Chunk::Hour12Zero => hour = num(&mut rest, 2, 2)?,
            Chunk::Hour12 => hour = num(&mut rest, 1, 2)?,
            Chunk::Minute2 => minute = num(&mut rest, 2, 2)?,
            Chunk::Minute => minute = num(&mut rest, 1, 2)?,
            Chunk::Second2 => {
                second = num(&mut rest, 2, 2)?;
                // Go accepts a fraction after seconds even when the layout has none.
                if let Some(f) = rest
                    .strip_prefix('.')
                    .filter(|f| f.starts_with(|c: char| c.is_ascii_digit()))
                {
                    let n = f.bytes().take_while(u8::is_ascii_digit).count();
                    nanos = format!("{:0<9}", &f[..n.min(9)]).parse().ok()?;
                    rest = &f[n..];
                }
            }
            Chunk::Second => second = num(&mut rest, 1, 2)?,
            Chunk::Pm(_) => {
                let p = rest.get(..2)?.to_ascii_uppercase();
                pm = Some(match p.as_str() {
                    "PM" => true,
                    "AM" => false,
                    _ => return None,
                });
                rest = &rest[2..];
            }
            Chunk::ZoneName => {
                let n = rest.bytes().take_while(u8::is_ascii_uppercase).count();
                if n < 3 {
                    return None;
                }
                abbreviation = Some(&rest[..n]);
                rest = &rest[n..];
            }
            Chunk::Offset {
                z,
                colon,
                hours_only,
            } => {
                if z && rest.starts_with('Z') {
                    rest = &rest[1..];
                    offset = Some(0);
                } else {
                    let sign = match rest.as_bytes().first()? {
                        b'+' => 1,
                        b'-' => -1,
                        _ => return None,
                    };
                    rest = &rest[1..];
                    let h = num(&mut rest, 2, 2)? as i32;
                    let mut m = 0;
                    if !hours_only {
                        if colon {
                            rest = rest.strip_prefix(':')?;
                        }
                        m = num(&mut rest, 2, 2)? as i32;
                    }
                    offset = Some(sign * (h * 3600 + m * 60));
                }
            }
            Chunk::Frac { sep, .. } => {
                if let Some(f) = rest.strip_prefix(sep) {
                    let n = f.bytes().take_while(u8::is_ascii_digit).count();
                    nanos = format!("{:0<9}", &f[..n.min(9)]).parse().ok()?;
                    rest = &f[n..];
                }
            }
        }
    }
    if !rest.is_empty() {
        return None;
    }
    match pm {
        Some(true) if hour < 12 => hour += 12,
        Some(false) if hour == 12 => hour = 0,
        _ => {}
    }
    let naive =
        NaiveDate::from_ymd_opt(year, month, day)?.and_hms_nano_opt(hour, minute, second, nanos)?;
    let utc = naive - chrono::Duration::seconds(i64::from(offset.unwrap_or(0)));
    // Go keeps a parsed "GMT" as a zero-offset zone of that name (in a UTC
    // local zone every other abbreviation but "UTC" is one too; only GMT
    // has a zone here to carry its name).
    let tz = match (abbreviation, offset) {
        (Some("GMT"), None) => Tz::GMT,
        _ => Tz::UTC,
    };
    Some(tz.from_utc_datetime(&utc))
}

/// Go's `Duration.String()` of `nanos` nanoseconds.
pub(super) fn duration_string(nanos: i128) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let body = if u < 1_000_000_000 {
        let (unit, scale) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        format!("{}{unit}", frac(u, scale))
    } else {
        let secs = u / 1_000_000_000;
        let sub = u % 1_000_000_000;
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        let s = frac(s * 1_000_000_000 + sub, 1_000_000_000) + "s";
        match (h, m) {
            (0, 0) => s,
            (0, m) => format!("{m}m{s}"),
            (h, m) => format!("{h}h{m}m{s}"),
        }
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

/// `v / scale` with the remainder as trimmed decimals.
fn frac(v: u128, scale: u128) -> String {
    let whole = v / scale;
    let rem = v % scale;
    if rem == 0 {
        return whole.to_string();
    }
    let width = scale.to_string().len() - 1;
    let digits = format!("{rem:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Go's `time.ParseDuration`, nanoseconds.
fn parse_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if n == 0 {
            return None;
        }
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += v * scale;
    }
    let t = total.round() as i128;
    Some(if neg { -t } else { t })
}

/// The date functions; `None` when `name` is none of them.
pub(super) fn call(name: &str, args: &[Value], off: usize) -> Option<Result<Value, TemplateError>> {
    let want = |k: usize| arity(name, k, args.len(), off);
    let s = |i: usize| text(&args[i]);
    let result = match name {
        "now" => want(0).map(|()| time_value(Utc::now().with_timezone(&Tz::UTC))),
        "date" => want(2).map(|()| Value::String(format(&date_arg(&args[1]), &s(0)))),
        "dateInZone" | "date_in_zone" => want(3).map(|()| {
            let t = date_arg(&args[1]).with_timezone(&zone(&s(2)));
            Value::String(format(&t, &s(0)))
        }),
        "htmlDate" => want(1).map(|()| Value::String(format(&date_arg(&args[0]), "2006-01-02"))),
        "htmlDateInZone" => want(2).map(|()| {
            let t = date_arg(&args[0]).with_timezone(&zone(&s(1)));
            Value::String(format(&t, "2006-01-02"))
        }),
        "unixEpoch" => want(1).map(|()| Value::String(date_arg(&args[0]).timestamp().to_string())),
        // `toDate layout s`: the zero time when s does not fit the layout.
        "toDate" => want(2).map(|()| {
            time_value(parse(&s(0), &s(1)).unwrap_or_else(|| {
                Tz::UTC.from_utc_datetime(
                    &NaiveDate::from_ymd_opt(1, 1, 1)
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .unwrap_or_default(),
                )
            }))
        }),
        // `dateModify "-1.5h" t`: t moved; t itself for a bad duration.
        "dateModify" | "date_modify" => want(2).map(|()| {
            let t = date_arg(&args[1]);
            match parse_duration(&s(0)) {
                Some(d) => time_value(t + chrono::Duration::nanoseconds(d as i64)),
                None => time_value(t),
            }
        }),
        // `ago t`: the time since t, to the second.
        "ago" => want(1).map(|()| {
            let since = Utc::now().timestamp() - date_arg(&args[0]).timestamp();
            Value::String(duration_string(i128::from(since) * 1_000_000_000))
        }),
        // `duration secs`: Go's Duration of that many seconds.
        "duration" => want(1).map(|()| {
            let secs: i64 = match &args[0] {
                Value::Number(n) => n.as_i64().unwrap_or(0),
                other => text(other).trim().parse().unwrap_or(0),
            };
            Value::String(duration_string(i128::from(secs) * 1_000_000_000))
        }),
        _ => return None,
    };
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::template::render;
    use serde_json::json;

    /// Go's `time` format tests (`format_test.go` `formatTests`, on
    /// 2009-02-04 21:00:57.012345600 PST) and Sprig's `date_test.go`.
    #[test]
    fn go_layouts_format_and_parse() {
        let pst: Tz = "America/Los_Angeles".parse().unwrap();
        let t = pst.with_ymd_and_hms(2009, 2, 4, 21, 0, 57).unwrap()
            + chrono::Duration::nanoseconds(12_345_600);
        for (layout, want) in [
            ("Mon Jan _2 15:04:05 2006", "Wed Feb  4 21:00:57 2009"),
            (
                "Mon Jan _2 15:04:05 MST 2006",
                "Wed Feb  4 21:00:57 PST 2009",
            ),
            ("02 Jan 06 15:04 MST", "04 Feb 09 21:00 PST"),
            (
                "Monday, 02-Jan-06 15:04:05 MST",
                "Wednesday, 04-Feb-09 21:00:57 PST",
            ),
            ("2006-01-02T15:04:05Z07:00", "2009-02-04T21:00:57-08:00"),
            (
                "2006-01-02T15:04:05.999999999Z07:00",
                "2009-02-04T21:00:57.0123456-08:00",
            ),
            ("3:04PM", "9:00PM"),
            ("Jan _2 15:04:05.000", "Feb  4 21:00:57.012"),
            ("Jan _2 15:04:05.999999", "Feb  4 21:00:57.012345"),
            ("2006-01-02 002", "2009-02-04 035"),
            ("-07 -0700", "-08 -0800"),
        ] {
            assert_eq!(format(&t, layout), want, "{layout}");
        }
        let parsed = parse("2006-01-02T15:04:05Z07:00", "2009-02-04T21:00:57-08:00").unwrap();
        assert_eq!(parsed.timestamp(), t.timestamp());
        assert_eq!(
            parse("Jan _2 2006 3:04PM", "Feb  4 2009 9:00PM").map(|t| t.timestamp()),
            Some(1_233_781_200)
        );
        assert!(parse("2006-01-02", "2009-13-40").is_none());
        assert_eq!(duration_string(95_000_000_000), "1m35s");
        assert_eq!(duration_string(3_600_000_000_000), "1h0m0s");
        assert_eq!(duration_string(1_500_000), "1.5ms");
        assert_eq!(duration_string(-5_000_000_000), "-5s");
        assert_eq!(parse_duration("-1.5h"), Some(-5_400_000_000_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("10x"), None);
    }

    #[test]
    fn sprig_date_functions() {
        let d = json!({"t": 1_233_781_257i64});
        for (text, want) in [
            (r#"{{ date "2006-01-02" .t }}"#, "2009-02-04"),
            (
                r#"{{ dateInZone "2006-01-02 15:04 MST" .t "America/New_York" }}"#,
                "2009-02-04 16:00 EST",
            ),
            (r#"{{ date_in_zone "15:04" .t "Nowhere/Else" }}"#, "21:00"),
            (r#"{{ htmlDateInZone .t "Asia/Tokyo" }}"#, "2009-02-05"),
            (r#"{{ unixEpoch .t }}"#, "1233781257"),
            (
                r#"{{ toDate "2006-01-02" "2017-12-31" | date "02/01/2006" }}"#,
                "31/12/2017",
            ),
            (
                r#"{{ toDate "2006-01-02" "2017-12-31" | unixEpoch }}"#,
                "1514678400",
            ),
            (
                r#"{{ toDate "2006-01-02" "not a date" | date "2006" }}"#,
                "0001",
            ),
            (
                r#"{{ toDate "2006-01-02" "2017-12-31" | dateModify "-1.5h" | date "2006-01-02 15:04" }}"#,
                "2017-12-30 22:30",
            ),
            (r#"{{ duration 95 }}|{{ duration "3600" }}"#, "1m35s|1h0m0s"),
            (
                r#"{{ toDate "2006-01-02 15:04:05" "2017-12-31 10:00:00.5" }}"#,
                "2017-12-31 10:00:00.5 +0000 UTC",
            ),
        ] {
            assert_eq!(render(text, &d).unwrap(), want, "{text}");
        }
        let today = render(r#"{{ now | date "2006" }}"#, &d).unwrap();
        assert_eq!(today, Utc::now().format("%Y").to_string());
        assert_eq!(render("{{ now | ago }}", &d).unwrap(), "0s");
    }
}
