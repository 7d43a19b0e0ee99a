//! The template's lexer and parser: actions, pipelines, operands and
//! Go's literal forms, into the [`super::Node`] tree.

use serde_json::Value;

use super::{err, Command, Node, Operand, Pipeline, TemplateError, Vars};

#[derive(Debug)]
pub(super) enum Tok {
    Text(String),
    Action(String, usize),
}

pub(super) fn lex(text: &str) -> Result<Vec<Tok>, TemplateError> {
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
        let Some(end_rel) = action_end(&rest[inner_start..]) else {
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

/// Where an action's `}}` is, skipping string, raw string and rune
/// literals (a `}}` inside `"…"` does not end the action).
pub(super) fn action_end(inner: &str) -> Option<usize> {
    let b = inner.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    // Comments end at `*/}}` whatever they hold.
    if inner.trim_start().starts_with("/*") {
        return inner
            .find("*/")
            .and_then(|c| inner[c..].find("}}").map(|e| c + e));
    }
    while i < b.len() {
        match (quote, b[i]) {
            (None, b'}') if b.get(i + 1) == Some(&b'}') => return Some(i),
            (None, q @ (b'"' | b'`' | b'\'')) => quote = Some(q),
            (Some(q), b'\\') if q != b'`' => i += 1,
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        i += 1;
    }
    None
}

pub(super) type End = Option<(String, usize)>;

/// Parses nodes until `end`, `else…` or the input ends; returns the closing
/// keyword (`end`, `else`, `else if …`) with its offset.
pub(super) fn parse_list(toks: &[Tok], pos: &mut usize) -> Result<(Vec<Node>, End), TemplateError> {
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
                        // `if $x := p`: $x is declared for the whole `if`.
                        let declared = match parse_declaration(rest, off)? {
                            Some((mut vars, false, value)) if vars.len() == 1 => {
                                Some((vars.remove(0), value))
                            }
                            Some(_) => return err(off, "'if' declares one variable with ':='"),
                            None => None,
                        };
                        let first = match &declared {
                            Some((name, _)) => vec![Command::Operand(Operand::Var {
                                name: name.clone(),
                                path: vec![],
                            })],
                            None => parse_pipeline(rest, off)?,
                        };
                        let mut branches = vec![(first, Vec::new())];
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
                        let node = Node::If(branches, otherwise, off);
                        nodes.push(match declared {
                            Some((name, value)) => Node::Scoped(vec![
                                Node::Variable {
                                    name,
                                    assign: false,
                                    value,
                                    off,
                                },
                                node,
                            ]),
                            None => node,
                        });
                    }
                    "with" | "range" => nodes.push(parse_with_or_range(kw, rest, toks, pos, off)?),
                    "break" | "continue" if rest.is_empty() => nodes.push(if kw == "break" {
                        Node::Break(off)
                    } else {
                        Node::Continue(off)
                    }),
                    "define" => {
                        let (name, _) = template_name(rest, off, "define")?;
                        let (body, end) = parse_list(toks, pos)?;
                        expect_end(end, off)?;
                        nodes.push(Node::Define {
                            name,
                            body,
                            block: false,
                            off,
                        });
                    }
                    "template" => {
                        let (name, tail) = template_name(rest, off, "template")?;
                        let data = if tail.is_empty() {
                            None
                        } else {
                            Some(parse_pipeline(tail, off)?)
                        };
                        nodes.push(Node::Template { name, data, off });
                    }
                    "block" => {
                        // `block` = `define` here + `template` with the pipeline.
                        let (name, tail) = template_name(rest, off, "block")?;
                        if tail.is_empty() {
                            return err(off, "'block' needs a pipeline after its name");
                        }
                        let data = Some(parse_pipeline(tail, off)?);
                        let (body, end) = parse_list(toks, pos)?;
                        expect_end(end, off)?;
                        nodes.push(Node::Define {
                            name: name.clone(),
                            body,
                            block: true,
                            off,
                        });
                        nodes.push(Node::Template { name, data, off });
                    }
                    _ => match parse_declaration(a, off)? {
                        Some((mut vars, assign, value)) if vars.len() == 1 => {
                            nodes.push(Node::Variable {
                                name: vars.remove(0),
                                assign,
                                value,
                                off,
                            })
                        }
                        Some(_) => return err(off, "only 'range' declares two variables"),
                        None => nodes.push(Node::Action(parse_pipeline(a, off)?, off)),
                    },
                }
            }
        }
    }
    Ok((nodes, None))
}

/// `with`/`range` from after the keyword to its `end`; `else with …`
/// continues a `with` chain (Go 1.23).
pub(super) fn parse_with_or_range(
    kw: &str,
    rest: &str,
    toks: &[Tok],
    pos: &mut usize,
    off: usize,
) -> Result<Node, TemplateError> {
    let (vars, p) = match parse_declaration(rest, off)? {
        Some((vars, false, p)) if vars.len() == 1 || kw == "range" => (vars, p),
        Some(_) => {
            return err(
                off,
                format!("'{kw}' declares '$v' or (range only) '$i, $v' with ':='"),
            )
        }
        None => (Vec::new(), parse_pipeline(rest, off)?),
    };
    let (body, end) = parse_list(toks, pos)?;
    let otherwise = match end {
        Some((e, _)) if e == "end" => Vec::new(),
        Some((e, _)) if e == "else" => {
            let (b, end) = parse_list(toks, pos)?;
            expect_end(end, off)?;
            b
        }
        Some((e, eoff)) if kw == "with" && e.starts_with("else with ") => {
            vec![parse_with_or_range(
                "with",
                e["else with ".len()..].trim(),
                toks,
                pos,
                eoff,
            )?]
        }
        _ => return err(off, format!("'{kw}' without a matching {{{{end}}}}")),
    };
    Ok(if kw == "with" {
        Node::With(vars, p, body, otherwise, off)
    } else {
        Node::Range(vars, p, body, otherwise, off)
    })
}

/// The quoted name that starts `rest` (after `define`, `template` or
/// `block`) and what follows it.
fn template_name<'a>(
    rest: &'a str,
    off: usize,
    kw: &str,
) -> Result<(String, &'a str), TemplateError> {
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '`');
    let Some(q) = quote else {
        return err(off, format!("'{kw}' needs a quoted template name"));
    };
    let mut escaped = false;
    let end = rest
        .char_indices()
        .skip(1)
        .find(|&(_, c)| {
            let closes = c == q && !escaped;
            escaped = q == '"' && c == '\\' && !escaped;
            closes
        })
        .map(|(i, _)| i + 1);
    let Some(end) = end else {
        return err(off, format!("unterminated template name in '{kw}'"));
    };
    match operand(&rest[..end], off)? {
        Operand::Literal(serde_json::Value::String(name)) => Ok((name, rest[end..].trim())),
        _ => err(off, format!("'{kw}' needs a quoted template name")),
    }
}

pub(super) fn expect_end(end: End, off: usize) -> Result<(), TemplateError> {
    match end {
        Some((e, _)) if e == "end" => Ok(()),
        _ => err(off, "block without a matching {{end}}"),
    }
}

pub(super) fn split_keyword(a: &str) -> (&str, &str) {
    let kw_end = a.find(|c: char| c.is_whitespace()).unwrap_or(a.len());
    let kw = &a[..kw_end];
    match kw {
        "if" | "with" | "range" | "end" | "else" | "define" | "template" | "block" | "break"
        | "continue" => (kw, a[kw_end..].trim()),
        _ => ("", a),
    }
}

/// Marks a word that is a field chain applied to the parenthesised
/// pipeline just before it (`(index .Values "x").y`).
pub(super) const FIELD_OF_SUB: char = '\u{1}';

/// Splits a pipeline into words: strings (with escapes), parentheses, `|`.
pub(super) fn words(src: &str, off: usize) -> Result<Vec<String>, TemplateError> {
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
            // `(pipeline).field`: a field chain right after `)` (marked).
            if c == '.' && i > 0 && chars[i - 1] == ')' {
                s.push(FIELD_OF_SUB);
            }
            while i < chars.len() && !chars[i].is_whitespace() && !"()|".contains(chars[i]) {
                s.push(chars[i]);
                i += 1;
            }
            out.push(s);
        }
    }
    Ok(out)
}

pub(super) fn parse_pipeline(src: &str, off: usize) -> Result<Pipeline, TemplateError> {
    let w = words(src, off)?;
    let mut pos = 0;
    let p = parse_pipe_words(&w, &mut pos, off)?;
    if pos != w.len() {
        return err(off, format!("unexpected '{}' in '{src}'", w[pos]));
    }
    Ok(p)
}

/// `$x := p`, `$x = p` or `$i, $v := p`: the variable names (without
/// `$`), whether it assigns (`=`) rather than declares, and the pipeline;
/// `None` when `src` is no declaration.
pub(super) fn parse_declaration(
    src: &str,
    off: usize,
) -> Result<Option<(Vars, bool, Pipeline)>, TemplateError> {
    // `$x:=p` without spaces is `$x := p`, as Go's lexer sees it.
    let w: Vec<String> = words(src, off)?
        .into_iter()
        .flat_map(|w| match w.split_once(":=") {
            Some((name, rest)) if w.starts_with('$') => {
                let mut parts = vec![name.to_string(), ":=".to_string()];
                if !rest.is_empty() {
                    parts.push(rest.to_string());
                }
                parts
            }
            _ => vec![w],
        })
        .collect();
    let Some(at) = w.iter().position(|x| x == ":=" || x == "=") else {
        return Ok(None);
    };
    let names = w[..at].concat();
    if at == 0 || !names.starts_with('$') {
        return Ok(None);
    }
    let mut vars = Vec::new();
    for v in names.split(',') {
        match v.strip_prefix('$') {
            Some(n) if is_ident(n) => vars.push(n.to_string()),
            _ => return err(off, format!("bad variable '{v}': expected $name")),
        }
    }
    let mut pos = at + 1;
    let p = parse_pipe_words(&w, &mut pos, off)?;
    if pos != w.len() {
        return err(off, format!("unexpected '{}' in '{src}'", w[pos]));
    }
    Ok(Some((vars, w[at] == "=", p)))
}

pub(super) fn parse_pipe_words(
    w: &[String],
    pos: &mut usize,
    off: usize,
) -> Result<Pipeline, TemplateError> {
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
                match w.get(*pos).and_then(|x| x.strip_prefix(FIELD_OF_SUB)) {
                    Some(chain) => {
                        *pos += 1;
                        let path = chain
                            .split('.')
                            .filter(|p| !p.is_empty())
                            .map(str::to_string)
                            .collect();
                        ops.push(Operand::SubField(sub, path));
                    }
                    None => ops.push(Operand::Sub(sub)),
                }
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
            None if has_chain(&ops[0]) => {
                let receiver = ops.remove(0);
                Command::Method(receiver, ops)
            }
            None => return err(off, "a value cannot take arguments"),
        });
        if w.get(*pos).map(String::as_str) == Some("|") {
            *pos += 1;
        } else {
            return Ok(cmds);
        }
    }
}

pub(super) fn is_ident(w: &str) -> bool {
    w.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn operand(word: &str, off: usize) -> Result<Operand, TemplateError> {
    if word == "." {
        return Ok(Operand::Field {
            root: false,
            path: vec![],
        });
    }
    if let Some(rest) = word.strip_prefix('$') {
        let mut parts = rest.split('.');
        let name = parts.next().unwrap_or_default();
        let path = parts
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if name.is_empty() {
            return Ok(Operand::Field { root: true, path });
        }
        if !is_ident(name) {
            return err(off, format!("bad variable '${name}'"));
        }
        return Ok(Operand::Var {
            name: name.to_string(),
            path,
        });
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
    if let Some(v) = number_literal(word) {
        return Ok(Operand::Literal(v));
    }
    if let Some(c) = char_literal(word) {
        return Ok(Operand::Literal(Value::from(u32::from(c))));
    }
    // A function name as an argument is a call without arguments
    // (`without list`).
    if is_ident(word) {
        return Ok(Operand::Sub(vec![Command::Call(word.to_string(), vec![])]));
    }
    err(
        off,
        format!("unexpected '{word}': expected a field, a literal or a function"),
    )
}

/// Whether an operand ends in a field chain (`.a.b`, `$x.a`, `(p).a`),
/// whose last name may be a method.
pub(super) fn has_chain(o: &Operand) -> bool {
    match o {
        Operand::Field { path, .. } | Operand::Var { path, .. } | Operand::SubField(_, path) => {
            !path.is_empty()
        }
        _ => false,
    }
}

/// Go's number literals: decimal, `0x`/`0o`/`0b` and leading-zero octal
/// integers, `_` between digits, floats with a fraction or exponent.
pub(super) fn number_literal(word: &str) -> Option<Value> {
    let (neg, body) = match word.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, word.strip_prefix('+').unwrap_or(word)),
    };
    if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    if body.contains('_') && (body.starts_with('_') || body.ends_with('_') || body.contains("__")) {
        return None;
    }
    let digits = body.replace('_', "");
    let lower = digits.to_ascii_lowercase();
    let radix = |p: &str, r: u32| i64::from_str_radix(&lower[p.len()..], r).ok();
    let int = if lower.starts_with("0x") {
        radix("0x", 16)
    } else if lower.starts_with("0o") {
        radix("0o", 8)
    } else if lower.starts_with("0b") {
        radix("0b", 2)
    } else if lower.len() > 1 && lower.starts_with('0') && lower.chars().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else {
        lower.parse::<i64>().ok()
    };
    if let Some(i) = int {
        return Some(Value::from(if neg { -i } else { i }));
    }
    if let Some(hex) = lower.strip_prefix("0x") {
        // Go's hexadecimal floats: mantissa `h.h`, binary exponent `p±d`.
        let (mantissa, exp) = hex.split_once('p')?;
        let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let mut value = 0f64;
        for c in whole.chars().chain(frac.chars()) {
            value = value * 16.0 + f64::from(c.to_digit(16)?);
        }
        let exp: i32 = exp.parse().ok()?;
        let v = value * 2f64.powi(exp - 4 * frac.len() as i32);
        return v.is_finite().then(|| Value::from(if neg { -v } else { v }));
    }
    if lower.starts_with("0o") || lower.starts_with("0b") {
        return None;
    }
    lower
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(|f| Value::from(if neg { -f } else { f }))
}

/// Go's rune literals: `'a'`, `'\n'`, `'\''`, `'\\'`, `'\x41'`, `'\u00e9'`.
pub(super) fn char_literal(word: &str) -> Option<char> {
    let inner = word.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut chars = inner.chars();
    let c = chars.next()?;
    if c != '\\' {
        return chars.next().is_none().then_some(c);
    }
    let rest: String = chars.collect();
    match rest.as_str() {
        "n" => Some('\n'),
        "t" => Some('\t'),
        "r" => Some('\r'),
        "\\" => Some('\\'),
        "'" => Some('\''),
        "0" => Some('\0'),
        _ => {
            let hex = rest
                .strip_prefix('x')
                .or_else(|| rest.strip_prefix('u'))
                .or_else(|| rest.strip_prefix('U'))?;
            char::from_u32(u32::from_str_radix(hex, 16).ok()?)
        }
    }
}
