//! The functions a pipeline calls by name: Go's builtins and the Sprig
//! functions not in [`crate::tasks::sprig`].

use serde_json::{Map, Value};

use super::exec::{arity, print, sprint, strval, text, truthy};
use super::{err, TemplateError};

/// Calls a template function. Go builtins: `and or not eq ne lt le gt ge
/// len index print printf println`; Sprig: `upper lower title trim trimAll
/// trimPrefix trimSuffix replace quote squote default empty coalesce
/// contains hasPrefix hasSuffix join split splitList b64enc b64dec toJson
/// toString repeat substr nospace trunc list dict`. With a pipe, the piped
/// value is the last argument (Go semantics).
pub(super) fn call(name: &str, args: Vec<Value>, off: usize) -> Result<Value, TemplateError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let n = args.len();
    let want = |k: usize| arity(name, k, n, off);
    let s = |i: usize| text(&args[i]);
    Ok(match name {
        "and" => args
            .iter()
            .find(|v| !truthy(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "or" => args
            .iter()
            .find(|v| truthy(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "not" => {
            want(1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "eq" => Value::Bool(n >= 2 && args[1..].iter().any(|v| loose_eq(&args[0], v))),
        "ne" => {
            want(2)?;
            Value::Bool(!loose_eq(&args[0], &args[1]))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let ord = match (args[0].as_f64(), args[1].as_f64()) {
                (Some(a), Some(b)) => a.partial_cmp(&b),
                _ => Some(s(0).cmp(&s(1))),
            };
            let Some(o) = ord else {
                return Ok(Value::Bool(false));
            };
            Value::Bool(match name {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        "len" => {
            want(1)?;
            Value::from(match &args[0] {
                Value::String(x) => x.len(),
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                Value::Null => return err(off, "error calling len: len of nil pointer"),
                _ => return err(off, "error calling len: len of a non-collection"),
            })
        }
        "index" => {
            if n == 0 {
                return err(off, "wrong number of args for index: want at least 1");
            }
            // Go's `index`: a missing map key is the zero value (nil for
            // acb's values); a bad index or an index into nil is an error.
            let mut v = args[0].clone();
            for k in &args[1..] {
                let fail = |why: String| err(off, format!("error calling index: {why}"));
                v = match (&v, k) {
                    (Value::Object(m), Value::String(key)) => {
                        m.get(key).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Object(_), other) => {
                        return fail(format!(
                            "value {} has the wrong type for a map key: expected string",
                            print(other)
                        ))
                    }
                    (Value::Array(a), Value::Number(i)) => match i.as_i64() {
                        Some(i) if i >= 0 && (i as usize) < a.len() => a[i as usize].clone(),
                        Some(i) => return fail(format!("index out of range: {i}")),
                        None => return fail(format!("cannot index slice/array with {i}")),
                    },
                    (Value::String(s), Value::Number(i)) => match i.as_i64() {
                        Some(i) if i >= 0 && (i as usize) < s.len() => {
                            Value::from(s.as_bytes()[i as usize])
                        }
                        _ => return fail(format!("index out of range: {i}")),
                    },
                    (Value::Null, _) => return fail("index of untyped nil".into()),
                    (_, other) => {
                        return fail(format!("cannot index {} with {}", print(&v), print(other)))
                    }
                };
            }
            v
        }
        // Go's `slice item [low [high [max]]]`: a string by bytes (two
        // indexes at most), a list (its capacity is its length).
        "slice" => {
            if n == 0 {
                return err(off, "wrong number of args for slice: want at least 1 got 0");
            }
            let idx: Vec<i64> = args[1..]
                .iter()
                .map(|a| {
                    a.as_i64()
                        .ok_or_else(|| format!("cannot slice with {}", print(a)))
                })
                .collect::<Result<_, _>>()
                .or_else(|m| err(off, format!("error calling slice: {m}")))?;
            let len = match &args[0] {
                Value::Array(a) => a.len(),
                Value::String(s) => s.len(),
                Value::Null => return err(off, "error calling slice: slice of untyped nil"),
                other => {
                    return err(
                        off,
                        format!(
                            "error calling slice: can't slice item of type {}",
                            print(other)
                        ),
                    )
                }
            } as i64;
            if idx.len() > 3 || (args[0].is_string() && idx.len() > 2) {
                return err(off, "error calling slice: too many slice indexes");
            }
            let low = idx.first().copied().unwrap_or(0);
            let high = idx.get(1).copied().unwrap_or(len);
            let max = idx.get(2).copied().unwrap_or(len);
            if low < 0 || high < low || max < high || max > len {
                return err(
                    off,
                    format!(
                        "error calling slice: invalid slice index: {low} > {high} or out of range"
                    ),
                );
            }
            let (low, high) = (low as usize, high as usize);
            match &args[0] {
                Value::Array(a) => Value::Array(a[low..high].to_vec()),
                Value::String(s) => {
                    Value::String(String::from_utf8_lossy(&s.as_bytes()[low..high]).into_owned())
                }
                _ => Value::Null,
            }
        }
        // fmt.Sprint: a space between operands when neither is a string.
        // fmt.Sprint: a nil (or a missing key under missingkey=zero, an
        // interface{} zero value) prints `<nil>`.
        "print" => Value::String(sprint(&args)),
        "println" => Value::String(format!(
            "{}\n",
            args.iter().map(strval).collect::<Vec<_>>().join(" ")
        )),
        "printf" => {
            if n == 0 {
                return err(off, "wrong number of args for printf: want at least 1");
            }
            Value::String(crate::tasks::gofmt::sprintf(&s(0), &args[1..]))
        }
        "upper" => {
            want(1)?;
            Value::String(s(0).to_uppercase())
        }
        "lower" => {
            want(1)?;
            Value::String(s(0).to_lowercase())
        }
        // strings.Title: a letter after anything but a letter, digit or
        // '_' starts a word ("hello-world" → "Hello-World").
        "title" => {
            want(1)?;
            let mut prev_sep = true;
            Value::String(
                s(0).chars()
                    .map(|c| {
                        let out = if prev_sep {
                            c.to_uppercase().collect()
                        } else {
                            c.to_string()
                        };
                        prev_sep = !(c.is_alphanumeric() || c == '_');
                        out
                    })
                    .collect(),
            )
        }
        "trim" => {
            want(1)?;
            Value::String(s(0).trim().to_string())
        }
        "nospace" => {
            want(1)?;
            Value::String(s(0).chars().filter(|c| !c.is_whitespace()).collect())
        }
        "trimAll" => {
            want(2)?;
            let cut: Vec<char> = s(0).chars().collect();
            Value::String(s(1).trim_matches(|c| cut.contains(&c)).to_string())
        }
        "trimPrefix" => {
            want(2)?;
            let v = s(1);
            Value::String(v.strip_prefix(&s(0)).unwrap_or(&v).to_string())
        }
        "trimSuffix" => {
            want(2)?;
            let v = s(1);
            Value::String(v.strip_suffix(&s(0)).unwrap_or(&v).to_string())
        }
        "replace" => {
            want(3)?;
            Value::String(s(2).replace(&s(0), &s(1)))
        }
        "repeat" => {
            want(2)?;
            let count = args[0].as_u64().unwrap_or(0).min(10_000) as usize;
            Value::String(s(1).repeat(count))
        }
        "substr" => {
            want(3)?;
            let v: Vec<char> = s(2).chars().collect();
            let a = args[0].as_i64().unwrap_or(0).clamp(0, v.len() as i64) as usize;
            let b = args[1].as_i64().unwrap_or(v.len() as i64);
            let b = if b < 0 {
                v.len()
            } else {
                (b as usize).min(v.len())
            };
            Value::String(v[a.min(b)..b].iter().collect())
        }
        "trunc" => {
            want(2)?;
            let v: Vec<char> = s(1).chars().collect();
            let k = args[0].as_i64().unwrap_or(0);
            Value::String(if k >= 0 {
                v.iter().take(k as usize).collect()
            } else {
                v[v.len().saturating_sub((-k) as usize)..].iter().collect()
            })
        }
        "quote" => Value::String(
            args.iter()
                .filter(|v| !v.is_null())
                .map(|v| format!("{:?}", text(v)))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "squote" => Value::String(
            args.iter()
                .filter(|v| !v.is_null())
                .map(|v| format!("'{}'", text(v)))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "default" => {
            if n == 0 {
                return err(off, "wrong number of args for default: want 1 or 2");
            }
            if n >= 2 && truthy(&args[n - 1]) {
                args[n - 1].clone()
            } else {
                args[0].clone()
            }
        }
        "empty" => {
            want(1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "coalesce" => args
            .iter()
            .find(|v| truthy(v))
            .cloned()
            .unwrap_or(Value::Null),
        "contains" => {
            want(2)?;
            Value::Bool(s(1).contains(&s(0)))
        }
        "hasPrefix" => {
            want(2)?;
            Value::Bool(s(1).starts_with(&s(0)))
        }
        "hasSuffix" => {
            want(2)?;
            Value::Bool(s(1).ends_with(&s(0)))
        }
        "join" => {
            want(2)?;
            let items = match &args[1] {
                Value::Array(a) => a.iter().map(strval).collect::<Vec<_>>(),
                Value::Null => vec![],
                other => vec![text(other)],
            };
            Value::String(items.join(&s(0)))
        }
        "split" => {
            want(2)?;
            let mut m = Map::new();
            for (i, part) in s(1).split(s(0).as_str()).enumerate() {
                m.insert(format!("_{i}"), Value::String(part.to_string()));
            }
            Value::Object(m)
        }
        "splitList" => {
            want(2)?;
            Value::Array(
                s(1).split(s(0).as_str())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            )
        }
        "list" => Value::Array(args),
        "dict" => {
            let mut m = Map::new();
            for pair in args.chunks(2) {
                m.insert(text(&pair[0]), pair.get(1).cloned().unwrap_or(Value::Null));
            }
            Value::Object(m)
        }
        // acb overrides b64enc so nil renders "".
        "b64enc" => {
            want(1)?;
            Value::String(if args[0].is_null() {
                String::new()
            } else {
                b64.encode(s(0).as_bytes())
            })
        }
        "b64dec" => {
            want(1)?;
            Value::String(
                base64_lenient()
                    .decode(s(0).trim())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_else(|_| format!("{} is not valid base64", s(0))),
            )
        }
        "toJson" => {
            want(1)?;
            Value::String(crate::tasks::sprig::go_json(&args[0], false))
        }
        "toString" => {
            want(1)?;
            Value::String(text(&args[0]))
        }
        _ => return crate::tasks::sprig::call(name, &args, off),
    })
}

pub(in crate::tasks) fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Standard alphabet, padding optional when decoding.
pub(super) fn base64_lenient() -> base64::engine::GeneralPurpose {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}
