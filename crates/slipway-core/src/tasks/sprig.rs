//! Sprig v2.22 functions for task templates beyond the ones the template
//! engine keeps with Go's builtins (`crate::tasks::template`): math,
//! conversions, text, lists and dicts, paths and Go's escapers.
//!
//! Contract: Sprig v2.22.0 documentation and `functions.go` (the version
//! acr-builder pins): integer math is int64 through `cast.ToInt64`, `merge`
//! keeps the destination's keys, `indent` pads every line, `nindent`
//! starts with a newline; Go's `html`, `js` and `urlquery` escape as
//! `text/template` does.

use serde_json::{Map, Value};

use super::template::{arity, err, eval_args, loose_eq, text, truthy, TemplateError};

/// Sprig's `toInt64` (cast.ToInt64): numbers truncated, numeric strings
/// parsed, anything else 0.
pub(super) fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n
            .as_i64()
            .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        Value::Bool(b) => i64::from(*b),
        _ => 0,
    }
}

/// Sprig's `toFloat64` (cast.ToFloat64).
fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

/// A list argument: a list, nothing for nil, or the one value.
pub(super) fn list_of(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => vec![],
        other => vec![other.clone()],
    }
}

/// Sprig's regular-expression functions (Go's RE2 syntax, which the
/// `regex` crate shares): `regexMatch re s`, `regexFind re s`,
/// `regexFindAll re s n`, `regexReplaceAll re s repl` (`$1`, `${name}`),
/// `regexReplaceAllLiteral re s repl`, `regexSplit re s n` (`n` < 0: all).
/// As in Sprig, a bad expression makes `regexMatch` false and the others
/// empty, never a failed run.
fn regex_call(name: &str, args: &[Value], off: usize) -> Result<Value, TemplateError> {
    let want = match name {
        "regexMatch" | "regexFind" => 2,
        _ => 3,
    };
    arity(name, want, args.len(), off)?;
    let re = regex::RegexBuilder::new(&text(&args[0]))
        .size_limit(1 << 20)
        .build()
        .ok();
    let s = text(&args[1]);
    let limit = |v: &Value| usize::try_from(to_i64(v)).unwrap_or(usize::MAX);
    let strings =
        |v: Vec<&str>| Value::Array(v.into_iter().map(|x| Value::String(x.into())).collect());
    Ok(match (name, re) {
        ("regexMatch", re) => Value::Bool(re.is_some_and(|r| r.is_match(&s))),
        ("regexFind", Some(r)) => Value::String(
            r.find(&s)
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
        ),
        ("regexFindAll", Some(r)) => strings(
            r.find_iter(&s)
                .take(limit(&args[2]))
                .map(|m| m.as_str())
                .collect(),
        ),
        ("regexReplaceAll", Some(r)) => {
            Value::String(r.replace_all(&s, text(&args[2]).as_str()).into_owned())
        }
        ("regexReplaceAllLiteral", Some(r)) => Value::String(
            r.replace_all(&s, regex::NoExpand(&text(&args[2])))
                .into_owned(),
        ),
        ("regexSplit", Some(r)) => match limit(&args[2]) {
            0 => Value::Array(vec![]),
            usize::MAX => strings(r.split(&s).collect()),
            n => strings(r.splitn(&s, n).collect()),
        },
        ("regexFindAll" | "regexSplit", None) => Value::Array(vec![]),
        _ => Value::String(String::new()),
    })
}

/// Go's `path.Clean`.
fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// The Sprig v2.22 functions beyond the template engine's own: math (`add sub mul div mod
/// add1 max min floor ceil round`), conversions (`int int64 atoi float64`),
/// text (`indent nindent ternary sha256sum toPrettyJson kindOf fail`),
/// lists and dicts (`first last rest initial has hasKey keys pick omit
/// merge uniq sortAlpha until`), paths (`base dir ext clean`) and Go's
/// escapers (`html js urlquery`). Integer math is int64 as in Sprig.
/// Go's `json.Marshal` (`MarshalIndent` with two spaces when `pretty`) of a
/// template value, as Sprig's `toJson`/`toPrettyJson` print it: times as
/// RFC 3339 strings, versions as their text, and `<`, `>`, `&`, U+2028,
/// U+2029 escaped as `\u003c`… (Go's HTML-safe encoding).
pub(in crate::tasks) fn go_json(v: &Value, pretty: bool) -> String {
    fn plain(v: &Value) -> Value {
        if let Some(t) = super::sprig_dates::as_time(v) {
            return Value::String(super::sprig_dates::format(
                &t,
                "2006-01-02T15:04:05.999999999Z07:00",
            ));
        }
        if let Some(s) = v.get(super::semver::SEMVER_KEY).and_then(Value::as_str) {
            return Value::String(s.to_string());
        }
        match v {
            Value::Array(a) => Value::Array(a.iter().map(plain).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
            }
            other => other.clone(),
        }
    }
    let v = plain(v);
    let text = if pretty {
        serde_json::to_string_pretty(&v)
    } else {
        serde_json::to_string(&v)
    }
    .unwrap_or_default();
    // These characters occur only inside JSON strings, so replacing them in
    // the text escapes exactly Go's set.
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

pub(super) fn call(name: &str, args: &[Value], off: usize) -> Result<Value, TemplateError> {
    let n = args.len();
    let want = |k: usize| arity(name, k, n, off);
    let at_least = |k: usize| -> Result<(), TemplateError> {
        if n >= k {
            Ok(())
        } else {
            err(
                off,
                format!("wrong number of args for {name}: want at least {k} got {n}"),
            )
        }
    };
    let ints = || args.iter().map(to_i64);
    Ok(match name {
        "add" => Value::from(ints().fold(0i64, i64::wrapping_add)),
        "mul" => Value::from(ints().fold(1i64, i64::wrapping_mul)),
        "add1" => {
            want(1)?;
            Value::from(to_i64(&args[0]).wrapping_add(1))
        }
        "sub" | "div" | "mod" => {
            want(2)?;
            let (a, b) = (to_i64(&args[0]), to_i64(&args[1]));
            if name != "sub" && b == 0 {
                return err(off, format!("error calling {name}: integer divide by zero"));
            }
            Value::from(match name {
                "sub" => a.wrapping_sub(b),
                "div" => a.wrapping_div(b),
                _ => a.wrapping_rem(b),
            })
        }
        "max" | "min" => {
            at_least(1)?;
            let it = ints();
            Value::from(if name == "max" { it.max() } else { it.min() }.unwrap_or(0))
        }
        "floor" | "ceil" => {
            want(1)?;
            let f = to_f64(&args[0]);
            Value::from(if name == "floor" { f.floor() } else { f.ceil() })
        }
        "round" => {
            at_least(2)?;
            let (f, places) = (to_f64(&args[0]), to_i64(&args[1]));
            let round_on = args.get(2).map_or(0.5, to_f64);
            let pow = 10f64.powi(places.clamp(-15, 15) as i32);
            let digit = f * pow;
            let (int, frac) = (digit.trunc(), digit.fract());
            Value::from(
                if frac.abs() >= round_on {
                    int + frac.signum()
                } else {
                    int
                } / pow,
            )
        }
        "int" | "int64" => {
            want(1)?;
            Value::from(to_i64(&args[0]))
        }
        "atoi" => {
            want(1)?;
            Value::from(text(&args[0]).parse::<i64>().unwrap_or(0))
        }
        "float64" => {
            want(1)?;
            Value::from(to_f64(&args[0]))
        }
        "indent" | "nindent" => {
            want(2)?;
            let pad = " ".repeat(to_i64(&args[0]).clamp(0, 10_000) as usize);
            let body = format!("{pad}{}", text(&args[1]).replace('\n', &format!("\n{pad}")));
            Value::String(if name == "nindent" {
                format!("\n{body}")
            } else {
                body
            })
        }
        "ternary" => {
            want(3)?;
            if truthy(&args[2]) {
                args[0].clone()
            } else {
                args[1].clone()
            }
        }
        "sha256sum" => {
            want(1)?;
            use sha2::Digest as _;
            Value::String(hex::encode(sha2::Sha256::digest(text(&args[0]).as_bytes())))
        }
        "toPrettyJson" => {
            want(1)?;
            Value::String(go_json(&args[0], true))
        }
        "kindOf" => {
            want(1)?;
            Value::String(
                match &args[0] {
                    Value::Null => "invalid",
                    Value::String(_) => "string",
                    Value::Bool(_) => "bool",
                    Value::Number(x) if x.is_f64() => "float64",
                    Value::Number(_) => "int",
                    Value::Array(_) => "slice",
                    Value::Object(_) => "map",
                }
                .into(),
            )
        }
        "fail" => {
            want(1)?;
            return err(off, format!("error calling fail: {}", text(&args[0])));
        }
        "first" | "last" => {
            want(1)?;
            let l = list_of(&args[0]);
            (if name == "first" { l.first() } else { l.last() })
                .cloned()
                .unwrap_or(Value::Null)
        }
        "rest" | "initial" => {
            want(1)?;
            let l = list_of(&args[0]);
            Value::Array(match (name, l.len()) {
                (_, 0) => vec![],
                ("rest", _) => l[1..].to_vec(),
                _ => l[..l.len() - 1].to_vec(),
            })
        }
        "has" => {
            want(2)?;
            Value::Bool(list_of(&args[1]).iter().any(|v| loose_eq(v, &args[0])))
        }
        "hasKey" => {
            want(2)?;
            Value::Bool(args[0].get(text(&args[1])).is_some())
        }
        "keys" => {
            let mut keys: Vec<String> = args
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|m| m.keys().cloned())
                .collect();
            keys.sort();
            Value::Array(keys.into_iter().map(Value::String).collect())
        }
        "pick" | "omit" => {
            at_least(1)?;
            let names: Vec<String> = args[1..].iter().map(text).collect();
            let m = args[0].as_object().cloned().unwrap_or_default();
            Value::Object(
                m.into_iter()
                    .filter(|(k, _)| names.contains(k) == (name == "pick"))
                    .collect(),
            )
        }
        "merge" => {
            at_least(1)?;
            // Sprig's merge: the destination's keys win; maps merge deeply.
            fn merge_into(dst: &mut Map<String, Value>, src: &Map<String, Value>) {
                for (k, v) in src {
                    match (dst.get_mut(k), v) {
                        (Some(Value::Object(d)), Value::Object(s)) => merge_into(d, s),
                        (Some(_), _) => {}
                        (None, v) => {
                            dst.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            let mut dst = args[0].as_object().cloned().unwrap_or_default();
            for src in args[1..].iter().filter_map(Value::as_object) {
                merge_into(&mut dst, src);
            }
            Value::Object(dst)
        }
        "uniq" => {
            want(1)?;
            let mut out: Vec<Value> = Vec::new();
            for v in list_of(&args[0]) {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Value::Array(out)
        }
        "sortAlpha" => {
            want(1)?;
            let mut l: Vec<String> = list_of(&args[0]).iter().map(text).collect();
            l.sort();
            Value::Array(l.into_iter().map(Value::String).collect())
        }
        "until" => {
            want(1)?;
            let k = to_i64(&args[0]).clamp(-10_000, 10_000);
            Value::Array(if k >= 0 {
                (0..k).map(Value::from).collect()
            } else {
                (k + 1..=0).rev().map(Value::from).collect()
            })
        }
        "base" | "dir" | "ext" | "clean" => {
            want(1)?;
            let p = text(&args[0]);
            let cleaned = clean_path(&p);
            Value::String(match name {
                "clean" => cleaned,
                "base" if p.is_empty() => ".".into(),
                "base" => {
                    let t = p.trim_end_matches('/');
                    if t.is_empty() {
                        "/".into()
                    } else {
                        t.rsplit('/').next().unwrap_or(t).to_string()
                    }
                }
                "dir" => match p.rfind('/') {
                    Some(i) => clean_path(&p[..=i]),
                    None => ".".into(),
                },
                _ => {
                    let last = p.rsplit('/').next().unwrap_or("");
                    last.rfind('.')
                        .map(|i| last[i..].to_string())
                        .unwrap_or_default()
                }
            })
        }
        "urlquery" => Value::String(
            eval_args(args)
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    b' ' => "+".into(),
                    b => format!("%{b:02X}"),
                })
                .collect(),
        ),
        "html" => Value::String(
            eval_args(args)
                .chars()
                .map(|c| match c {
                    '&' => "&amp;".into(),
                    '\'' => "&#39;".into(),
                    '<' => "&lt;".into(),
                    '>' => "&gt;".into(),
                    '"' => "&#34;".into(),
                    '\0' => "\u{FFFD}".into(),
                    c => c.to_string(),
                })
                .collect(),
        ),
        "js" => Value::String(
            eval_args(args)
                .chars()
                .map(|c| match c {
                    '\\' => "\\\\".into(),
                    '\'' => "\\'".into(),
                    '"' => "\\\"".into(),
                    '<' => "\\u003C".into(),
                    '>' => "\\u003E".into(),
                    '&' => "\\u0026".into(),
                    '=' => "\\u003D".into(),
                    '\n' => "\\u000A".into(),
                    '\r' => "\\u000D".into(),
                    '\t' => "\\u0009".into(),
                    c if (c as u32) < 0x20 => format!("\\u{:04X}", c as u32),
                    c => c.to_string(),
                })
                .collect(),
        ),
        "regexMatch"
        | "regexFind"
        | "regexFindAll"
        | "regexReplaceAll"
        | "regexReplaceAllLiteral"
        | "regexSplit" => return regex_call(name, args, off),
        other => {
            return super::sprig_more::call(other, args, off)
                .or_else(|| super::sprig_dates::call(other, args, off))
                .or_else(|| super::sprig_crypto::call(other, args, off))
                .or_else(|| super::sprig_certs::call(other, args, off))
                .unwrap_or_else(|| err(off, format!("function \"{other}\" not defined")))
        }
    })
}
