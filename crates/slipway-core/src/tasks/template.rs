//! A Go `text/template` engine for task files, with the Sprig functions
//! task authors use.
//!
//! Contract (reference `acr-tasks.md` §2.1): acb renders task YAML with Go
//! `text/template` + Sprig, `missingkey=zero`, then removes every literal
//! `<no value>`, so a missing key renders as the empty string. Supported:
//! actions `{{ pipeline }}` with `{{-`/`-}}` trimming, comments `{{/* */}}`,
//! `if`/`else if`/`else`/`end`, `with`, `range` over lists and maps
//! (`range $i, $v := …` not supported: use `.`), field chains (`.Run.ID`,
//! `.Values.a.b`, `$`), string/number/bool literals, parenthesised pipelines
//! and the functions listed in [`call`].

use serde_json::{Map, Value};

/// A template error: `(byte offset, message)` rendered as
/// "template: at byte N: message".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: at byte {offset}: {message}")]
pub struct TemplateError {
    /// Byte offset in the template text.
    pub offset: usize,
    /// What went wrong and what was expected.
    pub message: String,
}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError {
        offset,
        message: message.into(),
    })
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline, usize),
    If(Vec<(Pipeline, Vec<Node>)>, Vec<Node>, usize),
    With(Pipeline, Vec<Node>, Vec<Node>, usize),
    Range(Pipeline, Vec<Node>, Vec<Node>, usize),
}

type Pipeline = Vec<Command>;

#[derive(Debug, Clone)]
enum Command {
    /// A function call (or a lone operand when `name` is empty and one arg).
    Call(String, Vec<Operand>),
    Operand(Operand),
}

#[derive(Debug, Clone)]
enum Operand {
    /// `.a.b` relative to dot (`[]` = dot itself); `$` root when `root`.
    Field {
        root: bool,
        path: Vec<String>,
    },
    Literal(Value),
    Sub(Pipeline),
}

/// Renders `text` against `data`. Missing keys render empty and every
/// `<no value>` left in the output is removed (acb).
///
/// Errors: [`TemplateError`] for unbalanced actions, unknown functions,
/// wrong argument counts.
pub fn render(text: &str, data: &Value) -> Result<String, TemplateError> {
    let tokens = lex(text)?;
    let mut pos = 0;
    let (nodes, end) = parse_list(&tokens, &mut pos)?;
    if let Some((kw, off)) = end {
        return err(off, format!("unexpected {{{{{kw}}}}}"));
    }
    let mut out = String::new();
    exec(&nodes, data, data, &mut out)?;
    Ok(out.replace("<no value>", ""))
}

#[derive(Debug)]
enum Tok {
    Text(String),
    Action(String, usize),
}

fn lex(text: &str) -> Result<Vec<Tok>, TemplateError> {
    let mut toks = Vec::new();
    let mut rest = text;
    let mut base = 0;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut before = &rest[..start];
        if trim_next {
            before = before.trim_start();
        }
        let inner_start = start + 2;
        let Some(end_rel) = rest[inner_start..].find("}}") else {
            return err(base + start, "unclosed action: expected '}}'");
        };
        let mut inner = &rest[inner_start..inner_start + end_rel];
        if inner.starts_with("- ")
            || inner == "-"
            || inner.starts_with("-\n")
            || inner.starts_with("-\t")
        {
            before = before.trim_end();
            inner = &inner[1..];
        }
        trim_next = false;
        if inner.ends_with(" -") || inner.ends_with("\n-") || inner.ends_with("\t-") {
            trim_next = true;
            inner = &inner[..inner.len() - 1];
        }
        if !before.is_empty() {
            toks.push(Tok::Text(before.to_string()));
        }
        let inner = inner.trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            toks.push(Tok::Action(inner.to_string(), base + start));
        }
        let consumed = inner_start + end_rel + 2;
        base += consumed;
        rest = &rest[consumed..];
    }
    let tail = if trim_next { rest.trim_start() } else { rest };
    if !tail.is_empty() {
        toks.push(Tok::Text(tail.to_string()));
    }
    Ok(toks)
}

type End = Option<(String, usize)>;

/// Parses nodes until `end`, `else…` or the input ends; returns the closing
/// keyword (`end`, `else`, `else if …`) with its offset.
fn parse_list(toks: &[Tok], pos: &mut usize) -> Result<(Vec<Node>, End), TemplateError> {
    let mut nodes = Vec::new();
    while *pos < toks.len() {
        let tok = &toks[*pos];
        *pos += 1;
        match tok {
            Tok::Text(t) => nodes.push(Node::Text(t.clone())),
            Tok::Action(a, off) => {
                let off = *off;
                let (kw, rest) = split_keyword(a);
                match kw {
                    "end" | "else" => return Ok((nodes, Some((a.clone(), off)))),
                    "if" => {
                        let mut branches = vec![(parse_pipeline(rest, off)?, Vec::new())];
                        let mut otherwise = Vec::new();
                        loop {
                            let (body, end) = parse_list(toks, pos)?;
                            let last = branches.len() - 1;
                            branches[last].1 = body;
                            match end {
                                Some((e, _)) if e == "end" => break,
                                Some((e, eoff)) if e.starts_with("else") => {
                                    let cond = e["else".len()..].trim();
                                    if let Some(c) = cond.strip_prefix("if ") {
                                        branches.push((parse_pipeline(c, eoff)?, Vec::new()));
                                    } else {
                                        let (body, end) = parse_list(toks, pos)?;
                                        otherwise = body;
                                        expect_end(end, off)?;
                                        break;
                                    }
                                }
                                _ => return err(off, "'if' without a matching {{end}}"),
                            }
                        }
                        nodes.push(Node::If(branches, otherwise, off));
                    }
                    "with" | "range" => {
                        let p = parse_pipeline(rest, off)?;
                        let (body, end) = parse_list(toks, pos)?;
                        let otherwise = match end {
                            Some((e, _)) if e == "end" => Vec::new(),
                            Some((e, _)) if e == "else" => {
                                let (b, end) = parse_list(toks, pos)?;
                                expect_end(end, off)?;
                                b
                            }
                            _ => return err(off, format!("'{kw}' without a matching {{{{end}}}}")),
                        };
                        nodes.push(if kw == "with" {
                            Node::With(p, body, otherwise, off)
                        } else {
                            Node::Range(p, body, otherwise, off)
                        });
                    }
                    "define" | "template" | "block" => {
                        return err(off, format!("'{kw}' is not supported in task files"))
                    }
                    _ => nodes.push(Node::Action(parse_pipeline(a, off)?, off)),
                }
            }
        }
    }
    Ok((nodes, None))
}

fn expect_end(end: End, off: usize) -> Result<(), TemplateError> {
    match end {
        Some((e, _)) if e == "end" => Ok(()),
        _ => err(off, "block without a matching {{end}}"),
    }
}

fn split_keyword(a: &str) -> (&str, &str) {
    let kw_end = a.find(|c: char| c.is_whitespace()).unwrap_or(a.len());
    let kw = &a[..kw_end];
    match kw {
        "if" | "with" | "range" | "end" | "else" | "define" | "template" | "block" => {
            (kw, a[kw_end..].trim())
        }
        _ => ("", a),
    }
}

/// Splits a pipeline into words: strings (with escapes), parentheses, `|`.
fn words(src: &str, off: usize) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' || c == '|' {
            out.push(c.to_string());
            i += 1;
        } else if c == '"' || c == '`' {
            let mut s = String::from(c);
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else {
                    return err(off, format!("unterminated string in '{src}'"));
                };
                s.push(d);
                i += 1;
                if d == '\\' && c == '"' {
                    if let Some(&e) = chars.get(i) {
                        s.push(e);
                        i += 1;
                    }
                } else if d == c {
                    break;
                }
            }
            out.push(s);
        } else {
            let mut s = String::new();
            while i < chars.len() && !chars[i].is_whitespace() && !"()|".contains(chars[i]) {
                s.push(chars[i]);
                i += 1;
            }
            out.push(s);
        }
    }
    Ok(out)
}

fn parse_pipeline(src: &str, off: usize) -> Result<Pipeline, TemplateError> {
    let w = words(src, off)?;
    let mut pos = 0;
    let p = parse_pipe_words(&w, &mut pos, off)?;
    if pos != w.len() {
        return err(off, format!("unexpected '{}' in '{src}'", w[pos]));
    }
    Ok(p)
}

fn parse_pipe_words(w: &[String], pos: &mut usize, off: usize) -> Result<Pipeline, TemplateError> {
    let mut cmds = Vec::new();
    loop {
        let mut ops = Vec::new();
        let mut name = None;
        while *pos < w.len() && w[*pos] != "|" && w[*pos] != ")" {
            let word = &w[*pos];
            *pos += 1;
            if word == "(" {
                let sub = parse_pipe_words(w, pos, off)?;
                if w.get(*pos).map(String::as_str) != Some(")") {
                    return err(off, "missing ')'");
                }
                *pos += 1;
                ops.push(Operand::Sub(sub));
            } else if ops.is_empty() && name.is_none() && is_ident(word) {
                name = Some(word.clone());
            } else {
                ops.push(operand(word, off)?);
            }
        }
        cmds.push(match name {
            Some(n) if n == "true" || n == "false" || n == "nil" => {
                let mut all = vec![operand(&n, off)?];
                all.extend(ops);
                if all.len() != 1 {
                    return err(off, format!("'{n}' is not a function"));
                }
                Command::Operand(all.remove(0))
            }
            Some(n) => Command::Call(n, ops),
            None if ops.len() == 1 => Command::Operand(ops.remove(0)),
            None if ops.is_empty() => return err(off, "empty command"),
            None => return err(off, "a value cannot take arguments"),
        });
        if w.get(*pos).map(String::as_str) == Some("|") {
            *pos += 1;
        } else {
            return Ok(cmds);
        }
    }
}

fn is_ident(w: &str) -> bool {
    w.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn operand(word: &str, off: usize) -> Result<Operand, TemplateError> {
    if word == "." {
        return Ok(Operand::Field {
            root: false,
            path: vec![],
        });
    }
    if let Some(rest) = word.strip_prefix('$') {
        let path = rest
            .split('.')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        return Ok(Operand::Field { root: true, path });
    }
    if let Some(rest) = word.strip_prefix('.') {
        return Ok(Operand::Field {
            root: false,
            path: rest.split('.').map(str::to_string).collect(),
        });
    }
    if word.starts_with('"') {
        return serde_json::from_str::<String>(word)
            .map(|s| Operand::Literal(Value::String(s)))
            .or_else(|_| err(off, format!("bad string literal {word}")));
    }
    if let Some(raw) = word.strip_prefix('`') {
        return Ok(Operand::Literal(Value::String(
            raw.strip_suffix('`').unwrap_or(raw).to_string(),
        )));
    }
    match word {
        "true" => return Ok(Operand::Literal(Value::Bool(true))),
        "false" => return Ok(Operand::Literal(Value::Bool(false))),
        "nil" => return Ok(Operand::Literal(Value::Null)),
        _ => {}
    }
    if let Ok(i) = word.parse::<i64>() {
        return Ok(Operand::Literal(Value::from(i)));
    }
    if let Ok(f) = word.parse::<f64>() {
        return Ok(Operand::Literal(Value::from(f)));
    }
    err(
        off,
        format!("unexpected '{word}': expected a field, a literal or a function"),
    )
}

fn exec(nodes: &[Node], dot: &Value, root: &Value, out: &mut String) -> Result<(), TemplateError> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p, off) => out.push_str(&print(&eval(p, dot, root, *off)?)),
            Node::If(branches, otherwise, off) => {
                let mut done = false;
                for (cond, body) in branches {
                    if truthy(&eval(cond, dot, root, *off)?) {
                        exec(body, dot, root, out)?;
                        done = true;
                        break;
                    }
                }
                if !done {
                    exec(otherwise, dot, root, out)?;
                }
            }
            Node::With(p, body, otherwise, off) => {
                let v = eval(p, dot, root, *off)?;
                if truthy(&v) {
                    exec(body, &v, root, out)?;
                } else {
                    exec(otherwise, dot, root, out)?;
                }
            }
            Node::Range(p, body, otherwise, off) => {
                let v = eval(p, dot, root, *off)?;
                let items: Vec<Value> = match v {
                    Value::Array(a) => a,
                    Value::Object(m) => {
                        let mut keys: Vec<_> = m.into_iter().collect();
                        keys.sort_by(|a, b| a.0.cmp(&b.0));
                        keys.into_iter().map(|(_, v)| v).collect()
                    }
                    Value::Null => vec![],
                    other => {
                        return err(*off, format!("range can't iterate over {}", print(&other)))
                    }
                };
                if items.is_empty() {
                    exec(otherwise, dot, root, out)?;
                }
                for item in &items {
                    exec(body, item, root, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval(p: &Pipeline, dot: &Value, root: &Value, off: usize) -> Result<Value, TemplateError> {
    let mut prev: Option<Value> = None;
    for cmd in p {
        let v = match cmd {
            Command::Operand(o) => {
                if prev.is_some() {
                    return err(off, "a value cannot take piped input");
                }
                operand_value(o, dot, root, off)?
            }
            Command::Call(name, ops) => {
                let mut args = ops
                    .iter()
                    .map(|o| operand_value(o, dot, root, off))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(p) = prev.take() {
                    args.push(p);
                }
                call(name, args, off)?
            }
        };
        prev = Some(v);
    }
    Ok(prev.unwrap_or(Value::Null))
}

fn operand_value(
    o: &Operand,
    dot: &Value,
    root: &Value,
    off: usize,
) -> Result<Value, TemplateError> {
    match o {
        Operand::Literal(v) => Ok(v.clone()),
        Operand::Sub(p) => eval(p, dot, root, off),
        Operand::Field { root: r, path } => {
            let mut v = if *r { root } else { dot };
            for key in path {
                match v.get(key) {
                    Some(next) => v = next,
                    None => return Ok(Value::Null),
                }
            }
            Ok(v.clone())
        }
    }
}

/// Go's truth: false, 0, nil, "" and empty collections are false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// Go's `%v` for the values task data holds; nil prints `<no value>`
/// (removed by [`render`]).
fn print(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(print).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<_> = m.iter().collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            format!(
                "map[{}]",
                keys.iter()
                    .map(|(k, v)| format!("{k}:{}", print(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        other => print(other),
    }
}

/// Calls a template function. Go builtins: `and or not eq ne lt le gt ge
/// len index print printf println`; Sprig: `upper lower title trim trimAll
/// trimPrefix trimSuffix replace quote squote default empty coalesce
/// contains hasPrefix hasSuffix join split splitList b64enc b64dec toJson
/// toString repeat substr nospace trunc list dict`. With a pipe, the piped
/// value is the last argument (Go semantics).
fn call(name: &str, args: Vec<Value>, off: usize) -> Result<Value, TemplateError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let n = args.len();
    let want = |k: usize| -> Result<(), TemplateError> {
        if n == k {
            Ok(())
        } else {
            err(
                off,
                format!("wrong number of args for {name}: want {k} got {n}"),
            )
        }
    };
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
                Value::Null => 0,
                _ => return err(off, "len of a non-collection"),
            })
        }
        "index" => {
            if n == 0 {
                return err(off, "wrong number of args for index: want at least 1");
            }
            let mut v = args[0].clone();
            for k in &args[1..] {
                v = match (&v, k) {
                    (Value::Object(m), _) => m.get(&text(k)).cloned().unwrap_or(Value::Null),
                    (Value::Array(a), Value::Number(i)) => i
                        .as_u64()
                        .and_then(|i| a.get(i as usize))
                        .cloned()
                        .unwrap_or(Value::Null),
                    _ => Value::Null,
                };
            }
            v
        }
        "print" => Value::String(args.iter().map(text).collect::<Vec<_>>().join("")),
        "println" => Value::String(format!(
            "{}\n",
            args.iter().map(text).collect::<Vec<_>>().join(" ")
        )),
        "printf" => {
            if n == 0 {
                return err(off, "wrong number of args for printf: want at least 1");
            }
            Value::String(printf(&s(0), &args[1..]))
        }
        "upper" => {
            want(1)?;
            Value::String(s(0).to_uppercase())
        }
        "lower" => {
            want(1)?;
            Value::String(s(0).to_lowercase())
        }
        "title" => {
            want(1)?;
            Value::String(
                s(0).split(' ')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next()
                            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
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
                Value::Array(a) => a.iter().map(text).collect::<Vec<_>>(),
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
            Value::String(args[0].to_string())
        }
        "toString" => {
            want(1)?;
            Value::String(text(&args[0]))
        }
        other => return err(off, format!("function \"{other}\" not defined")),
    })
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// `printf` for `%s %v %d %q %%` (others print as `%v`).
fn printf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('q') => out.push_str(&format!("{:?}", it.next().map(text).unwrap_or_default())),
            Some(_) => out.push_str(&it.next().map(text).unwrap_or_else(|| "%!v(MISSING)".into())),
            None => out.push('%'),
        }
    }
    out
}

/// Standard alphabet, padding optional when decoding.
fn base64_lenient() -> base64::engine::GeneralPurpose {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, d: Value) -> String {
        render(t, &d).unwrap()
    }

    #[test]
    fn fields_missing_keys_and_pipes() {
        let d =
            json!({"Run": {"ID": "cf4", "Registry": "reg.io"}, "Values": {"n": 3, "name": "web"}});
        assert_eq!(
            r("{{.Run.Registry}}/app:{{.Run.ID}}", d.clone()),
            "reg.io/app:cf4"
        );
        assert_eq!(
            r("[{{.Values.missing}}][{{.Nope.deeper}}]", d.clone()),
            "[][]"
        );
        assert_eq!(
            r("{{ .Values.name | upper | quote }}", d.clone()),
            "\"WEB\""
        );
        assert_eq!(
            r(
                "{{ default \"x\" .Values.missing }}-{{ .Values.missing | default \"y\" }}",
                d.clone()
            ),
            "x-y"
        );
        assert_eq!(r("{{ .Values.n }}", d.clone()), "3");
        assert_eq!(
            r(
                "{{ \"hi\" | b64enc }}|{{ .Values.none | b64enc }}",
                d.clone()
            ),
            "aGk=|"
        );
        assert_eq!(
            r(
                "{{ replace \"-\" \"_\" .Values.name }}",
                json!({"Values": {"name": "a-b"}})
            ),
            "a_b"
        );
        assert_eq!(
            r(
                "{{ index .Values \"a.b\" }}",
                json!({"Values": {"a.b": "flat"}})
            ),
            "flat"
        );
        assert_eq!(
            r("{{ printf \"%s:%d\" .Values.name .Values.n }}", d),
            "web:3"
        );
    }

    #[test]
    fn control_flow_and_trimming() {
        let d = json!({"Values": {"on": true, "items": ["a", "b"], "env": "prod"}});
        assert_eq!(r("{{if .Values.on}}yes{{else}}no{{end}}", d.clone()), "yes");
        assert_eq!(
            r(
                "{{if .Values.off}}yes{{else if eq .Values.env \"prod\"}}prod{{else}}no{{end}}",
                d.clone()
            ),
            "prod"
        );
        assert_eq!(
            r("{{range .Values.items}}<{{.}}>{{end}}", d.clone()),
            "<a><b>"
        );
        assert_eq!(r("a  {{- \"b\" -}}  c", d.clone()), "abc");
        assert_eq!(r("{{/* comment */}}x", d.clone()), "x");
        assert_eq!(r("{{with .Values.env}}{{.}}{{end}}", d), "prod");
    }

    #[test]
    fn errors_name_the_problem() {
        let e = render("{{ nosuch .X }}", &json!({})).unwrap_err();
        assert!(e.message.contains("\"nosuch\" not defined"), "{e}");
        let e = render("{{ if .X }}open", &json!({})).unwrap_err();
        assert!(e.message.contains("{{end}}"), "{e}");
        let e = render("{{ .X", &json!({})).unwrap_err();
        assert!(e.message.contains("unclosed"), "{e}");
    }
}
