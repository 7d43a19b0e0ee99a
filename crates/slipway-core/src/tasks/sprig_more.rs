//! More Sprig v2.22 functions: text shaping (`abbrev abbrevboth untitle
//! trimall initials swapcase snakecase camelcase kebabcase wrap wrapWith
//! cat plural`), encodings and digests (`b32enc b32dec sha1sum
//! adler32sum`), random values (`uuidv4 randAlphaNum randAlpha randNumeric
//! randAscii`), conversions (`toDecimal toStrings splitn untilStep
//! biggest`), types (`typeOf typeIs typeIsLike kindIs deepEqual`), paths
//! (`isAbs`), lists (`tuple append push prepend reverse without compact`)
//! and dicts (`set unset pluck values mergeOverwrite`). `env` and
//! `expandenv` are refused: a task template never reads the server's
//! environment.
//!
//! Contract: Sprig v2.22.0 `functions.go`, `strings.go`, `list.go`,
//! `dict.go`, `crypto.go` and the goutils/xstrings helpers it calls (the
//! versions acr-builder pins); each function's doc line says the rule.

use serde_json::{Map, Value};

use super::sprig::{list_of, to_i64};
use super::template::{arity, err, loose_eq, strval, text, truthy, TemplateError};

/// goutils `AbbreviateFull(s, offset, max)` (commons-lang's rule), `None`
/// where it errors.
fn abbreviate_full(s: &str, offset: i64, max: i64) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    let len = chars.len() as i64;
    if max < 4 {
        return None;
    }
    if len <= max {
        return Some(s.to_string());
    }
    let mut offset = offset.min(len);
    if len - offset < max - 3 {
        offset = len - (max - 3);
    }
    let cut = |a: i64, b: i64| chars[a as usize..b as usize].iter().collect::<String>();
    if offset <= 4 {
        return Some(cut(0, max - 3) + "...");
    }
    if max < 7 {
        return None;
    }
    if offset + max - 3 < len {
        let rest = cut(offset, len);
        return Some(format!("...{}", abbreviate_full(&rest, 0, max - 3)?));
    }
    Some(format!("...{}", cut(len - (max - 3), len)))
}

/// Words of an identifier for xstrings' case conversions: split at `_`,
/// `-`, spaces and case changes (`HTTPServer` → `HTTP`, `Server`).
fn case_words(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut words = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' || c == '-' || c.is_whitespace() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1).copied();
        let boundary = c.is_uppercase()
            && !cur.is_empty()
            && (prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(char::is_uppercase) && next.is_some_and(char::is_lowercase)));
        if boundary {
            words.push(std::mem::take(&mut cur));
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// goutils `WrapCustom(s, width, sep, false)`: breaks at spaces so lines
/// stay within `width` where a word allows it.
fn wrap(s: &str, width: usize, sep: &str) -> String {
    let width = width.max(1);
    let mut lines: Vec<String> = Vec::new();
    for para in s.split('\n') {
        let mut line = String::new();
        for word in para.split(' ').filter(|w| !w.is_empty()) {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines.join(sep)
}

/// Go's `%T` of a decoded value.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's `reflect.Kind` name of a decoded value.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "invalid",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

fn random_from(alphabet: &[u8], n: i64) -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..n.max(0))
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// The functions of this module; `None` when `name` is none of them.
pub(super) fn call(name: &str, args: &[Value], off: usize) -> Option<Result<Value, TemplateError>> {
    let n = args.len();
    let want = |k: usize| arity(name, k, n, off);
    let s = |i: usize| text(&args[i]);
    let run = |f: &dyn Fn() -> Result<Value, TemplateError>| Some(f());
    match name {
        // `abbrev width s`: s, or its first width-3 characters and "...".
        "abbrev" => run(&|| {
            want(2)?;
            let w = to_i64(&args[0]);
            let v = s(1);
            Ok(Value::String(if w < 4 {
                v
            } else {
                abbreviate_full(&v, 0, w).unwrap_or_default()
            }))
        }),
        // `abbrevboth left right s`.
        "abbrevboth" => run(&|| {
            want(3)?;
            let (l, r) = (to_i64(&args[0]), to_i64(&args[1]));
            let v = s(2);
            Ok(Value::String(if r < 4 || (l > 0 && r < 7) {
                v
            } else {
                abbreviate_full(&v, l, r).unwrap_or_default()
            }))
        }),
        // `untitle s`: each word's first letter lowercased.
        "untitle" => run(&|| {
            want(1)?;
            let mut out = String::new();
            let mut start = true;
            for c in s(0).chars() {
                if start && !c.is_whitespace() {
                    out.extend(c.to_lowercase());
                } else {
                    out.push(c);
                }
                start = c.is_whitespace();
            }
            Ok(Value::String(out))
        }),
        // `trimall cutset s` (Sprig's older name of trimAll).
        "trimall" => run(&|| {
            want(2)?;
            let cut: Vec<char> = s(0).chars().collect();
            Ok(Value::String(
                s(1).trim_matches(|c| cut.contains(&c)).to_string(),
            ))
        }),
        // `initials s`: the first letter of each whitespace-separated word.
        "initials" => run(&|| {
            want(1)?;
            Ok(Value::String(
                s(0).split_whitespace()
                    .filter_map(|w| w.chars().next())
                    .collect(),
            ))
        }),
        // `swapcase s`: upper to lower, lower to upper (goutils SwapCase;
        // its title case after whitespace is upper case for these letters).
        "swapcase" => run(&|| {
            want(1)?;
            Ok(Value::String(
                s(0).chars()
                    .flat_map(|c| {
                        if c.is_uppercase() {
                            c.to_lowercase().collect::<Vec<_>>()
                        } else {
                            c.to_uppercase().collect()
                        }
                    })
                    .collect(),
            ))
        }),
        "snakecase" | "kebabcase" => run(&|| {
            want(1)?;
            let sep = if name == "snakecase" { "_" } else { "-" };
            Ok(Value::String(
                case_words(&s(0))
                    .iter()
                    .map(|w| w.to_lowercase())
                    .collect::<Vec<_>>()
                    .join(sep),
            ))
        }),
        // `camelcase s`: `http_server` → `HttpServer`.
        "camelcase" => run(&|| {
            want(1)?;
            Ok(Value::String(
                s(0).split('_')
                    .filter(|w| !w.is_empty())
                    .map(|w| {
                        let mut cs = w.chars();
                        cs.next()
                            .map(|f| f.to_uppercase().chain(cs).collect::<String>())
                            .unwrap_or_default()
                    })
                    .collect(),
            ))
        }),
        "wrap" => run(&|| {
            want(2)?;
            Ok(Value::String(wrap(
                &s(1),
                to_i64(&args[0]).max(1) as usize,
                "\n",
            )))
        }),
        "wrapWith" => run(&|| {
            want(3)?;
            Ok(Value::String(wrap(
                &s(2),
                to_i64(&args[0]).max(1) as usize,
                &s(1),
            )))
        }),
        // `cat a b …`: non-nil arguments joined by spaces.
        "cat" => run(&|| {
            Ok(Value::String(
                args.iter()
                    .filter(|v| !v.is_null())
                    .map(text)
                    .collect::<Vec<_>>()
                    .join(" "),
            ))
        }),
        // `plural one many n`.
        "plural" => run(&|| {
            want(3)?;
            Ok(if to_i64(&args[2]) == 1 {
                args[0].clone()
            } else {
                args[1].clone()
            })
        }),
        "b32enc" => run(&|| {
            want(1)?;
            Ok(Value::String(base32_encode(s(0).as_bytes())))
        }),
        // `b32dec s`: the decoded text, or Go's error text as Sprig returns it.
        "b32dec" => run(&|| {
            want(1)?;
            Ok(Value::String(match base32_decode(&s(0)) {
                Some(b) => String::from_utf8_lossy(&b).into_owned(),
                None => "illegal base32 data".into(),
            }))
        }),
        "sha1sum" => run(&|| {
            want(1)?;
            use sha1::Digest;
            Ok(Value::String(hex::encode(sha1::Sha1::digest(
                s(0).as_bytes(),
            ))))
        }),
        // `adler32sum s`: the checksum in decimal.
        "adler32sum" => run(&|| {
            want(1)?;
            let (mut a, mut b) = (1u32, 0u32);
            for byte in s(0).bytes() {
                a = (a + u32::from(byte)) % 65521;
                b = (b + a) % 65521;
            }
            Ok(Value::String(((b << 16) | a).to_string()))
        }),
        "uuidv4" => run(&|| {
            want(0)?;
            Ok(Value::String(uuid::Uuid::new_v4().to_string()))
        }),
        "randAlphaNum" | "randAlpha" | "randNumeric" | "randAscii" => run(&|| {
            want(1)?;
            let alphabet: Vec<u8> = match name {
                "randAlphaNum" => (b'0'..=b'9')
                    .chain(b'A'..=b'Z')
                    .chain(b'a'..=b'z')
                    .collect(),
                "randAlpha" => (b'A'..=b'Z').chain(b'a'..=b'z').collect(),
                "randNumeric" => (b'0'..=b'9').collect(),
                _ => (b' '..=b'~').collect(),
            };
            Ok(Value::String(random_from(&alphabet, to_i64(&args[0]))))
        }),
        // `toDecimal s`: an octal string as a number (0 when not octal).
        "toDecimal" => run(&|| {
            want(1)?;
            Ok(Value::from(
                i64::from_str_radix(s(0).trim(), 8).unwrap_or(0),
            ))
        }),
        "toStrings" => run(&|| {
            want(1)?;
            Ok(Value::Array(
                list_of(&args[0])
                    .iter()
                    .map(|v| Value::String(strval(v)))
                    .collect(),
            ))
        }),
        // `splitn sep n s`: `{_0: …, _1: …}` of at most n parts.
        "splitn" => run(&|| {
            want(3)?;
            let limit = to_i64(&args[1]);
            let (sep, v) = (s(0), s(2));
            let parts: Vec<&str> = if limit < 0 {
                v.split(sep.as_str()).collect()
            } else {
                v.splitn(limit as usize, sep.as_str()).collect()
            };
            Ok(Value::Object(
                parts
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| (format!("_{i}"), Value::String(p.into())))
                    .collect(),
            ))
        }),
        // `untilStep start stop step`: Go's loop `for i := start; i < stop; i += step`
        // (or `>` for a negative step); nothing for a zero step or the wrong direction.
        "untilStep" => run(&|| {
            want(3)?;
            let (start, stop, step) = (to_i64(&args[0]), to_i64(&args[1]), to_i64(&args[2]));
            let mut out = Vec::new();
            let mut i = start;
            while step != 0
                && ((step > 0 && i < stop) || (step < 0 && i > stop))
                && out.len() < 100_000
            {
                out.push(Value::from(i));
                i += step;
            }
            Ok(Value::Array(out))
        }),
        "biggest" => run(&|| {
            if n == 0 {
                return err(
                    off,
                    "wrong number of args for biggest: want at least 1 got 0",
                );
            }
            Ok(Value::from(args.iter().map(to_i64).max().unwrap_or(0)))
        }),
        "typeOf" => run(&|| {
            want(1)?;
            Ok(Value::String(type_of(&args[0]).into()))
        }),
        "typeIs" | "typeIsLike" => run(&|| {
            want(2)?;
            let t = type_of(&args[1]);
            let asked = s(0);
            Ok(Value::Bool(
                t == asked || (name == "typeIsLike" && asked.strip_prefix('*') == Some(t)),
            ))
        }),
        "kindIs" => run(&|| {
            want(2)?;
            Ok(Value::Bool(kind_of(&args[1]) == s(0)))
        }),
        "deepEqual" => run(&|| {
            want(2)?;
            Ok(Value::Bool(args[0] == args[1]))
        }),
        "isAbs" => run(&|| {
            want(1)?;
            Ok(Value::Bool(s(0).starts_with('/')))
        }),
        "tuple" => run(&|| Ok(Value::Array(args.to_vec()))),
        "append" | "push" => run(&|| {
            want(2)?;
            let mut l = list_of(&args[0]);
            l.push(args[1].clone());
            Ok(Value::Array(l))
        }),
        "prepend" => run(&|| {
            want(2)?;
            let mut l = list_of(&args[0]);
            l.insert(0, args[1].clone());
            Ok(Value::Array(l))
        }),
        "reverse" => run(&|| {
            want(1)?;
            let mut l = list_of(&args[0]);
            l.reverse();
            Ok(Value::Array(l))
        }),
        // `without list v …`: the list without those values.
        "without" => run(&|| {
            if n == 0 {
                return err(
                    off,
                    "wrong number of args for without: want at least 1 got 0",
                );
            }
            Ok(Value::Array(
                list_of(&args[0])
                    .into_iter()
                    .filter(|v| !args[1..].iter().any(|o| loose_eq(v, o)))
                    .collect(),
            ))
        }),
        // `compact list`: the list without empty values.
        "compact" => run(&|| {
            want(1)?;
            Ok(Value::Array(
                list_of(&args[0]).into_iter().filter(truthy).collect(),
            ))
        }),
        // `set d k v` / `unset d k`: the changed dict (Go changes it in place).
        "set" => run(&|| {
            want(3)?;
            let mut d = args[0].as_object().cloned().unwrap_or_default();
            d.insert(s(1), args[2].clone());
            Ok(Value::Object(d))
        }),
        "unset" => run(&|| {
            want(2)?;
            let mut d = args[0].as_object().cloned().unwrap_or_default();
            d.remove(&s(1));
            Ok(Value::Object(d))
        }),
        // `pluck key d …`: the values of key in each dict that has it.
        "pluck" => run(&|| {
            if n == 0 {
                return err(off, "wrong number of args for pluck: want at least 1 got 0");
            }
            let key = s(0);
            Ok(Value::Array(
                args[1..]
                    .iter()
                    .filter_map(|d| d.get(&key).cloned())
                    .collect(),
            ))
        }),
        // `values d`: the dict's values (by key order; Go's is unordered).
        "values" => run(&|| {
            want(1)?;
            Ok(Value::Array(
                args[0]
                    .as_object()
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default(),
            ))
        }),
        // `mergeOverwrite dst src …`: later dicts win; maps merge deeply.
        "mergeOverwrite" => run(&|| {
            if n == 0 {
                return err(
                    off,
                    "wrong number of args for mergeOverwrite: want at least 1 got 0",
                );
            }
            fn over(dst: &mut Map<String, Value>, src: &Map<String, Value>) {
                for (k, v) in src {
                    match (dst.get_mut(k), v) {
                        (Some(Value::Object(d)), Value::Object(s)) => over(d, s),
                        _ => {
                            dst.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            let mut dst = args[0].as_object().cloned().unwrap_or_default();
            for src in args[1..].iter().filter_map(Value::as_object) {
                over(&mut dst, src);
            }
            Ok(Value::Object(dst))
        }),
        // `semverCompare constraint version` (Masterminds semver v1 rules).
        "semverCompare" => run(&|| {
            want(2)?;
            super::semver::satisfies(&s(0), &s(1))
                .map(Value::Bool)
                .or_else(|e| err(off, format!("error calling semverCompare: {e}")))
        }),
        "semver" => run(&|| {
            want(1)?;
            match super::semver::Version::parse(&s(0)) {
                Some(v) => Ok(super::semver::version_value(&v)),
                None => err(off, "error calling semver: Invalid Semantic Version"),
            }
        }),
        "env" | "expandenv" => run(&|| {
            err(
                off,
                format!("function \"{name}\" is not available: task templates cannot read the server's environment (use --set or a values file)"),
            )
        }),
        _ => None,
    }
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 with padding (Go's `base32.StdEncoding`).
fn base32_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let bits = buf.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < chars {
                out.push(BASE32[((bits >> (35 - i * 5)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let t = text.trim_end_matches('=');
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u64, 0u32);
    for c in t.chars() {
        let v = BASE32.iter().position(|b| *b as char == c)? as u64;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use crate::tasks::template::render;
    use serde_json::json;

    /// Examples of Sprig v2.22's documentation (`docs/strings.md`,
    /// `docs/encoding.md`, `docs/conversion.md`, `docs/lists.md`,
    /// `docs/dicts.md`, `docs/reflection.md`) and `strings_test.go`.
    #[test]
    fn sprig_documentation_examples() {
        let d = json!({"fish": [1, 2], "d1": {"name1": "a"}, "d2": {"name1": "b"}, "d3": {},
            "dst": {"a": 1, "m": {"x": 1, "y": 2}}, "src": {"a": 2, "m": {"y": 3}}});
        for (text, want) in [
            (r#"{{ "hello world" | abbrev 5 }}"#, "he..."),
            (r#"{{ abbrevboth 5 10 "1234 5678 9123" }}"#, "...5678..."),
            (r#"{{ "Hello World" | untitle }}"#, "hello world"),
            (r#"{{ trimall "$" "$5.00" }}"#, "5.00"),
            (r#"{{ "First Try" | initials }}"#, "FT"),
            (r#"{{ "This Is A.Test" | swapcase }}"#, "tHIS iS a.tEST"),
            (
                r#"{{ snakecase "FirstName" }}|{{ snakecase "HTTPServer" }}"#,
                "first_name|http_server",
            ),
            (r#"{{ camelcase "http_server" }}"#, "HttpServer"),
            (r#"{{ kebabcase "FirstName" }}"#, "first-name"),
            (r#"{{ wrap 5 "Hello World" }}"#, "Hello\nWorld"),
            (r#"{{ wrapWith 5 "\t" "Hello World" }}"#, "Hello\tWorld"),
            (
                r#"{{ cat "hello" "beautiful" "world" }}"#,
                "hello beautiful world",
            ),
            (
                r#"{{ len .fish | plural "one anchovy" "many anchovies" }}"#,
                "many anchovies",
            ),
            (
                r#"{{ b32enc "Hello" }}|{{ "JBSWY3DP" | b32dec }}"#,
                "JBSWY3DP|Hello",
            ),
            (
                r#"{{ sha1sum "Hello world!" }}"#,
                "d3486ae9136e7856bc42212385ea797094475802",
            ),
            (r#"{{ adler32sum "Hello world!" }}"#, "487130206"),
            (r#"{{ "0777" | toDecimal }}"#, "511"),
            (
                r#"{{ $a := splitn "$" 2 "foo$bar$baz" }}{{ $a._0 }}|{{ $a._1 }}"#,
                "foo|bar$baz",
            ),
            (r#"{{ untilStep 3 6 2 }}"#, "[3 5]"),
            (r#"{{ biggest 1 2 3 }}"#, "3"),
            (
                r#"{{ typeOf 1.5 }}|{{ kindIs "int" 1 }}|{{ typeIs "string" "x" }}"#,
                "float64|true|true",
            ),
            (
                r#"{{ deepEqual (list 1 2) (list 1 2) }}|{{ deepEqual 1 "1" }}"#,
                "true|false",
            ),
            (r#"{{ isAbs "/a" }}|{{ isAbs "a" }}"#, "true|false"),
            (r#"{{ without (list 1 2 3 4) 3 }}"#, "[1 2 4]"),
            (r#"{{ compact (list 1 "" "foo") }}"#, "[1 foo]"),
            (
                r#"{{ append (list 1 2) 3 }}|{{ prepend (list 1 2) 0 }}|{{ reverse (list 1 2 3) }}"#,
                "[1 2 3]|[0 1 2]|[3 2 1]",
            ),
            (r#"{{ pluck "name1" .d1 .d2 .d3 }}"#, "[a b]"),
            (
                r#"{{ $d := set .d3 "k" "v" }}{{ $d.k }}|{{ unset .d1 "name1" | len }}"#,
                "v|0",
            ),
            (
                r#"{{ $m := mergeOverwrite .dst .src }}{{ $m.a }} {{ $m.m.x }} {{ $m.m.y }}"#,
                "2 1 3",
            ),
            (r#"{{ toStrings (list 1 2) | join "," }}"#, "1,2"),
            (r#"{{ tuple 1 "a" }}"#, "[1 a]"),
            (
                r#"{{ semverCompare "^1.2.0" "1.2.3" }}|{{ semverCompare ">=2" "1.9" }}"#,
                "true|false",
            ),
            (
                r#"{{ $v := semver "v1.2.3-beta+b7" }}{{ $v.Major }}.{{ $v.Minor }} {{ $v.Prerelease }} {{ $v }}"#,
                "1.2 beta 1.2.3-beta+b7",
            ),
            (r#"{{ (semver "1.4").Minor }}"#, "4"),
        ] {
            assert_eq!(render(text, &d).unwrap(), want, "{text}");
        }
        let id = render("{{ uuidv4 }}", &d).unwrap();
        assert!(
            regex::Regex::new(
                "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
            )
            .unwrap()
            .is_match(&id),
            "{id}"
        );
        let r = render("{{ randAlphaNum 12 }}|{{ randNumeric 4 }}", &d).unwrap();
        let (a, b) = r.split_once('|').unwrap();
        assert!(
            a.len() == 12 && a.chars().all(|c| c.is_ascii_alphanumeric()),
            "{r}"
        );
        assert!(b.len() == 4 && b.chars().all(|c| c.is_ascii_digit()), "{r}");
        let e = render(r#"{{ semverCompare "bad constraint!" "1.0.0" }}"#, &d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("improper constraint"), "{e}");
        let e = render(r#"{{ env "HOME" }}"#, &d).unwrap_err().to_string();
        assert!(e.contains("cannot read the server's environment"), "{e}");
    }
}
