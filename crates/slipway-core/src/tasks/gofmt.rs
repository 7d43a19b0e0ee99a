//! Go's `fmt` formatting for template values: `%v` of every JSON value
//! (floats as Go prints them: `2`, `0.5`, `1e+06`) and `Sprintf` with
//! flags, width and precision.
//!
//! Contract: Go `fmt` package documentation ("Printing": verbs `%v %s %q
//! %d %b %o %O %x %X %c %U %e %E %f %F %g %G %t %T %%`, flags `+ - # 0
//! space`, width and `.precision`, `*` taking an argument, errors such as
//! `%!d(string=x)`, `%!v(MISSING)` and `%!(EXTRA type=value)`) and
//! `strconv.FormatFloat` (`'g'` with the shortest precision — `%v`, `%g` —
//! switches to an exponent when it is below -4 or at least 6; with a
//! precision, at least that precision).

use serde_json::Value;

/// Go's `%v` of `v`; `nil` prints `<nil>` (templates print `<no value>`
/// for a missing key themselves).
pub fn value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(u)) => u.to_string(),
            _ => float_g(n.as_f64().unwrap_or(0.0), None),
        },
        Value::Array(a) => format!("[{}]", a.iter().map(value).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<_> = m.iter().collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            format!(
                "map[{}]",
                keys.iter()
                    .map(|(k, v)| format!("{k}:{}", value(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

/// Go's type name of a JSON value (`%T`).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::String(_) => "string",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// `strconv.FormatFloat(f, 'g', prec, 64)`; `None` is the shortest form.
fn float_g(f: f64, prec: Option<usize>) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Digits and decimal exponent of the shortest (or `prec`-digit) form.
    let sci = match prec {
        None => format!("{f:e}"),
        Some(p) => format!("{:.*e}", p.max(1) - 1, f),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let limit = match prec {
        None => 6,
        Some(p) => p.max(1) as i32,
    };
    let neg = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = match prec {
        // %g drops trailing zeros.
        Some(_) => digits.trim_end_matches('0').to_string(),
        None => digits,
    };
    let digits = if digits.is_empty() {
        "0".to_string()
    } else {
        digits
    };
    let sign = if neg { "-" } else { "" };
    if exp < -4 || exp >= limit {
        let (head, tail) = digits.split_at(1);
        let frac = if tail.is_empty() {
            String::new()
        } else {
            format!(".{tail}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{head}{frac}e{esign}{:02}", exp.abs())
    } else if exp < 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            format!("{sign}{digits}{}", "0".repeat(point - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..point], &digits[point..])
        }
    }
}

/// `%e` with `prec` digits after the point (Go: at least two exponent digits).
fn float_e(f: f64, prec: usize, upper: bool) -> String {
    let s = format!("{:.*e}", prec, f);
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    let out = format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    if upper {
        out.to_uppercase()
    } else {
        out
    }
}

/// Go's `strconv.Quote`.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Default, Clone, Copy)]
struct Spec {
    plus: bool,
    minus: bool,
    sharp: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

impl Spec {
    /// Pads `s` to the width (zeros after a sign when `zero` and numeric).
    fn pad(&self, s: String, numeric: bool) -> String {
        let Some(w) = self.width else { return s };
        let len = s.chars().count();
        if len >= w {
            return s;
        }
        let fill = w - len;
        if self.minus {
            format!("{s}{}", " ".repeat(fill))
        } else if self.zero && numeric {
            let (sign, rest) = match s.chars().next() {
                Some(c @ ('+' | '-' | ' ')) => (c.to_string(), s[1..].to_string()),
                _ => (String::new(), s),
            };
            format!("{sign}{}{rest}", "0".repeat(fill))
        } else {
            format!("{}{s}", " ".repeat(fill))
        }
    }

    fn sign(&self, neg: bool, body: String) -> String {
        if neg {
            format!("-{body}")
        } else if self.plus {
            format!("+{body}")
        } else if self.space {
            format!(" {body}")
        } else {
            body
        }
    }
}

fn bad(verb: char, v: &Value) -> String {
    format!("%!{verb}({}={})", type_name(v), value(v))
}

/// An integer argument: a JSON integer, or a float with no fraction
/// (values read from YAML/JSON). Go would refuse the latter; task values
/// have no integer type of their own.
fn int_of(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        _ => None,
    }
}

fn format_int(spec: &Spec, verb: char, i: i128) -> String {
    let neg = i < 0;
    let u = i.unsigned_abs();
    let mut body = match verb {
        'b' => format!("{u:b}"),
        'o' | 'O' => format!("{u:o}"),
        'x' => format!("{u:x}"),
        'X' => format!("{u:X}"),
        _ => u.to_string(),
    };
    if let Some(p) = spec.prec {
        if body.len() < p {
            body = format!("{}{body}", "0".repeat(p - body.len()));
        }
        if p == 0 && u == 0 {
            body.clear();
        }
    }
    let prefix = match verb {
        'O' => "0o",
        'o' if spec.sharp && !body.starts_with('0') => "0",
        'x' if spec.sharp => "0x",
        'X' if spec.sharp => "0X",
        'b' if spec.sharp => "0b",
        _ => "",
    };
    let mut spec = *spec;
    if spec.prec.is_some() {
        spec.zero = false;
    }
    spec.pad(spec.sign(neg, format!("{prefix}{body}")), true)
}

fn format_one(spec: &Spec, verb: char, v: &Value) -> String {
    match verb {
        'v' => match v {
            Value::Number(n) if n.is_f64() => format_float(spec, 'g', n.as_f64().unwrap_or(0.0)),
            Value::Number(_) => format_int(spec, 'd', int_of(v).unwrap_or(0)),
            Value::String(s) if spec.sharp => spec.pad(quote(s), false),
            _ => spec.pad(value(v), false),
        },
        's' => match v {
            Value::String(s) => spec.pad(truncate(s, spec.prec), false),
            Value::Number(_) | Value::Bool(_) => bad(verb, v),
            _ => spec.pad(truncate(&value(v), spec.prec), false),
        },
        'q' => match v {
            Value::String(s) if spec.sharp && !s.contains('`') => spec.pad(format!("`{s}`"), false),
            Value::String(s) => spec.pad(quote(s), false),
            _ => match int_of(v)
                .and_then(|i| u32::try_from(i).ok())
                .and_then(char::from_u32)
            {
                Some(c) => spec.pad(format!("'{c}'"), false),
                None => bad(verb, v),
            },
        },
        'd' | 'b' | 'o' | 'O' | 'x' | 'X' => match (int_of(v), v) {
            (Some(i), _) => format_int(spec, verb, i),
            (None, Value::String(s)) if verb == 'x' || verb == 'X' => {
                let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
                spec.pad(if verb == 'X' { hex.to_uppercase() } else { hex }, false)
            }
            (None, Value::Number(n)) if verb == 'x' || verb == 'X' || verb == 'b' => {
                // Go prints floats in hex/binary exponent forms; rare in task files.
                spec.pad(value(&Value::Number(n.clone())), true)
            }
            _ => bad(verb, v),
        },
        'c' => match int_of(v)
            .and_then(|i| u32::try_from(i).ok())
            .and_then(char::from_u32)
        {
            Some(c) => spec.pad(c.to_string(), false),
            None => bad(verb, v),
        },
        'U' => match int_of(v) {
            Some(i) => spec.pad(format!("U+{:04X}", i), false),
            None => bad(verb, v),
        },
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => match v {
            Value::Number(n) => format_float(spec, verb, n.as_f64().unwrap_or(0.0)),
            _ => bad(verb, v),
        },
        't' => match v {
            Value::Bool(b) => spec.pad(b.to_string(), false),
            _ => bad(verb, v),
        },
        'T' => spec.pad(type_name(v).to_string(), false),
        _ => format!("%!{verb}({}={})", type_name(v), value(v)),
    }
}

fn truncate(s: &str, prec: Option<usize>) -> String {
    match prec {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    }
}

fn format_float(spec: &Spec, verb: char, f: f64) -> String {
    let neg = f.is_sign_negative();
    let a = f.abs();
    let body = match verb {
        'e' | 'E' => float_e(a, spec.prec.unwrap_or(6), verb == 'E'),
        'f' | 'F' => format!("{:.*}", spec.prec.unwrap_or(6), a),
        _ => {
            let g = float_g(a, spec.prec);
            if verb == 'G' {
                g.to_uppercase()
            } else {
                g
            }
        }
    };
    if a.is_nan() {
        return spec.pad("NaN".into(), false);
    }
    let body = body.trim_start_matches('+').to_string();
    spec.pad(spec.sign(neg, body), true)
}

/// Go's `fmt.Sprintf(format, args...)`.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let chars: Vec<char> = format.chars().collect();
    let mut next = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.get(i) {
            match f {
                '+' => spec.plus = true,
                '-' => spec.minus = true,
                '#' => spec.sharp = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                _ => break,
            }
            i += 1;
        }
        let number = |i: &mut usize, next: &mut usize| -> Option<usize> {
            if chars.get(*i) == Some(&'*') {
                *i += 1;
                let n = args
                    .get(*next)
                    .and_then(int_of)
                    .and_then(|n| usize::try_from(n).ok());
                *next += 1;
                return n;
            }
            let start = *i;
            while chars.get(*i).is_some_and(char::is_ascii_digit) {
                *i += 1;
            }
            (start < *i).then(|| {
                chars[start..*i]
                    .iter()
                    .collect::<String>()
                    .parse()
                    .unwrap_or(0)
            })
        };
        spec.width = number(&mut i, &mut next);
        if chars.get(i) == Some(&'.') {
            i += 1;
            spec.prec = Some(number(&mut i, &mut next).unwrap_or(0));
        }
        let Some(&verb) = chars.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            Some(v) => out.push_str(&format_one(&spec, verb, v)),
            None => out.push_str(&format!("%!{verb}(MISSING)")),
        }
        next += 1;
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|v| format!("{}={}", type_name(v), value(v)))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Cases from Go's `fmt` documentation and `fmt_test.go` (`fmtTests`).
    #[test]
    fn sprintf_follows_gos_fmt() {
        let cases: &[(&str, Value, &str)] = &[
            ("%d", json!(42), "42"),
            ("%05d", json!(42), "00042"),
            ("%-5d|", json!(42), "42   |"),
            ("%+d", json!(42), "+42"),
            ("% d", json!(42), " 42"),
            ("%.3d", json!(7), "007"),
            ("%x", json!(255), "ff"),
            ("%#x", json!(255), "0xff"),
            ("%X", json!(255), "FF"),
            ("%o", json!(8), "10"),
            ("%b", json!(5), "101"),
            ("%c", json!(65), "A"),
            ("%q", json!("a\"b"), "\"a\\\"b\""),
            ("%s", json!("hi"), "hi"),
            ("%5s|", json!("hi"), "   hi|"),
            ("%-5s|", json!("hi"), "hi   |"),
            ("%.2s", json!("hello"), "he"),
            ("%x", json!("hi"), "6869"),
            ("%f", json!(5.43216), "5.432160"),
            ("%.2f", json!(5.43216), "5.43"),
            ("%8.3f|", json!(5.43216), "   5.432|"),
            ("%08.3f", json!(-5.43216), "-005.432"),
            ("%e", json!(1234.5678), "1.234568e+03"),
            ("%g", json!(1234.5678), "1234.5678"),
            ("%g", json!(1e6), "1e+06"),
            ("%g", json!(100000.0), "100000"),
            ("%.3g", json!(1234.5678), "1.23e+03"),
            ("%v", json!(2.0), "2"),
            ("%v", json!(1e6), "1e+06"),
            ("%v", json!(1e21), "1e+21"),
            ("%v", json!(123456789.0), "1.23456789e+08"),
            ("%v", json!(0.5), "0.5"),
            ("%v", json!(0.00001), "1e-05"),
            ("%t", json!(true), "true"),
            ("%T", json!(1.5), "float64"),
            ("%T", json!("s"), "string"),
            ("%v", json!([1, "a"]), "[1 a]"),
            ("%v", json!({"b": 1, "a": 2}), "map[a:2 b:1]"),
            ("%d", json!("x"), "%!d(string=x)"),
            ("%d%%", json!(5), "5%"),
        ];
        for (f, arg, want) in cases {
            assert_eq!(sprintf(f, std::slice::from_ref(arg)), *want, "{f} of {arg}");
        }
        assert_eq!(
            sprintf("%d", &[json!(1), json!("x")]),
            "1%!(EXTRA string=x)"
        );
        assert_eq!(sprintf("%d %d", &[json!(1)]), "1 %!d(MISSING)");
        assert_eq!(sprintf("%*d|", &[json!(5), json!(42)]), "   42|");
        assert_eq!(sprintf("%s-%s", &[json!("a"), json!("b")]), "a-b");
    }

    #[test]
    fn floats_print_as_go_prints_them() {
        for (f, want) in [
            (2.0, "2"),
            (1.0, "1"),
            (1000000.0, "1e+06"),
            (123456.0, "123456"),
            (0.1, "0.1"),
            (1.5e-7, "1.5e-07"),
            (-2.5, "-2.5"),
        ] {
            assert_eq!(value(&json!(f)), want, "{f}");
        }
    }
}
