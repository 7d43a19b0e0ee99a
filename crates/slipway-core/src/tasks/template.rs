//! A Go `text/template` engine for task files, with the Sprig functions
//! task authors use.
//!
//! Contract (reference `acr-tasks.md` §2.1): acb renders task YAML with Go
//! `text/template` + Sprig, `missingkey=zero`, then removes every literal
//! `<no value>`, so a missing key renders as the empty string. Supported:
//! actions `{{ pipeline }}` with `{{-`/`-}}` trimming, comments `{{/* */}}`,
//! variables (`{{$x := …}}`, `{{$x = …}}`, `$x.field`, scoped to the
//! enclosing block as in Go), `if`/`else if`/`else`/`end`, `with [$x :=]`,
//! `range [[$i,] $v :=]` over lists, maps (sorted keys) and integers,
//! field chains (`.Run.ID`, `.Values.a.b`, `$`), string, raw string, rune,
//! bool and number literals (`0x1F`, `0o17`, `017`, `0b1`, `1_000`, `1e3`),
//! `}}` inside literals, parenthesised pipelines, Go's builtins and `fmt`
//! verbs ([`super::gofmt`]) and Sprig's functions (here and in `sprig`,
//! regular expressions included), `break`/`continue`, `else with`, fields
//! of a parenthesised result. Not yet: `define`/`template`/`block`, date,
//! semver, crypto and random functions.

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

pub(super) fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError {
        offset,
        message: message.into(),
    })
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline, usize),
    /// `{{$x := p}}` (declare) or `{{$x = p}}` (assign): prints nothing.
    Variable {
        name: String,
        assign: bool,
        value: Pipeline,
        off: usize,
    },
    If(Vec<(Pipeline, Vec<Node>)>, Vec<Node>, usize),
    /// `with [$x :=] p`.
    With(Vars, Pipeline, Vec<Node>, Vec<Node>, usize),
    /// `range [[$i,] $v :=] p`.
    Range(Vars, Pipeline, Vec<Node>, Vec<Node>, usize),
    /// `{{break}}` / `{{continue}}` of the innermost `range`.
    Break(usize),
    Continue(usize),
}

/// How a list of nodes ended: normally or by `break`/`continue` (with its offset).
enum Flow {
    Normal,
    Break(usize),
    Continue(usize),
}

/// The variables a `range`/`with` declares: none, `$v`, or `$i, $v`.
type Vars = Vec<String>;

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
    /// `$name.a.b`: a variable and a field chain below it.
    Var {
        name: String,
        path: Vec<String>,
    },
    Literal(Value),
    Sub(Pipeline),
    /// `(pipeline).a.b`.
    SubField(Pipeline, Vec<String>),
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
    match exec(&nodes, data, data, &mut Vec::new(), &mut out)? {
        Flow::Normal => Ok(out.replace("<no value>", "")),
        Flow::Break(off) | Flow::Continue(off) => {
            err(off, "{{break}} or {{continue}} outside {{range}}")
        }
    }
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
fn action_end(inner: &str) -> Option<usize> {
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
                    "with" | "range" => nodes.push(parse_with_or_range(kw, rest, toks, pos, off)?),
                    "break" | "continue" if rest.is_empty() => nodes.push(if kw == "break" {
                        Node::Break(off)
                    } else {
                        Node::Continue(off)
                    }),
                    "define" | "template" | "block" => {
                        return err(off, format!("'{kw}' is not supported in task files"))
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
fn parse_with_or_range(
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
        "if" | "with" | "range" | "end" | "else" | "define" | "template" | "block" | "break"
        | "continue" => (kw, a[kw_end..].trim()),
        _ => ("", a),
    }
}

/// Marks a word that is a field chain applied to the parenthesised
/// pipeline just before it (`(index .Values "x").y`).
const FIELD_OF_SUB: char = '\u{1}';

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

fn parse_pipeline(src: &str, off: usize) -> Result<Pipeline, TemplateError> {
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
fn parse_declaration(
    src: &str,
    off: usize,
) -> Result<Option<(Vars, bool, Pipeline)>, TemplateError> {
    let w = words(src, off)?;
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
    err(
        off,
        format!("unexpected '{word}': expected a field, a literal or a function"),
    )
}

/// Variables in scope, innermost last.
type Scope = Vec<(String, Value)>;

/// Go's number literals: decimal, `0x`/`0o`/`0b` and leading-zero octal
/// integers, `_` between digits, floats with a fraction or exponent.
fn number_literal(word: &str) -> Option<Value> {
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
    if lower.starts_with("0x") || lower.starts_with("0o") || lower.starts_with("0b") {
        return None;
    }
    lower
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(|f| Value::from(if neg { -f } else { f }))
}

/// Go's rune literals: `'a'`, `'\n'`, `'\''`, `'\\'`, `'\x41'`, `'\u00e9'`.
fn char_literal(word: &str) -> Option<char> {
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

fn exec(
    nodes: &[Node],
    dot: &Value,
    root: &Value,
    vars: &mut Scope,
    out: &mut String,
) -> Result<Flow, TemplateError> {
    for n in nodes {
        let flow = match n {
            Node::Break(off) => Flow::Break(*off),
            Node::Continue(off) => Flow::Continue(*off),
            Node::Text(t) => {
                out.push_str(t);
                Flow::Normal
            }
            Node::Action(p, off) => {
                out.push_str(&print(&eval(p, dot, root, vars, *off)?));
                Flow::Normal
            }
            Node::Variable {
                name,
                assign,
                value,
                off,
            } => {
                let v = eval(value, dot, root, vars, *off)?;
                if *assign {
                    match vars.iter_mut().rev().find(|(n, _)| n == name) {
                        Some(slot) => slot.1 = v,
                        None => return err(*off, format!("undefined variable: ${name}")),
                    }
                } else {
                    vars.push((name.clone(), v));
                }
                Flow::Normal
            }
            Node::If(branches, otherwise, off) => {
                let mut chosen = otherwise;
                for (cond, body) in branches {
                    if truthy(&eval(cond, dot, root, vars, *off)?) {
                        chosen = body;
                        break;
                    }
                }
                block(chosen, dot, root, vars, out, &[])?
            }
            Node::With(names, p, body, otherwise, off) => {
                let v = eval(p, dot, root, vars, *off)?;
                if truthy(&v) {
                    let declared: Vec<(String, Value)> =
                        names.iter().map(|n| (n.clone(), v.clone())).collect();
                    block(body, &v, root, vars, out, &declared)?
                } else {
                    block(otherwise, dot, root, vars, out, &[])?
                }
            }
            Node::Range(names, p, body, otherwise, off) => {
                let v = eval(p, dot, root, vars, *off)?;
                let items: Vec<(Value, Value)> = match v {
                    Value::Array(a) => a
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (Value::from(i), v))
                        .collect(),
                    Value::Object(m) => {
                        let mut keys: Vec<_> = m.into_iter().collect();
                        keys.sort_by(|a, b| a.0.cmp(&b.0));
                        keys.into_iter()
                            .map(|(k, v)| (Value::String(k), v))
                            .collect()
                    }
                    Value::Null => vec![],
                    // Go ranges over an integer n as 0..n.
                    Value::Number(n) if n.as_u64().is_some() => (0..n.as_u64().unwrap_or(0))
                        .map(|i| (Value::from(i), Value::from(i)))
                        .collect(),
                    other => {
                        return err(*off, format!("range can't iterate over {}", print(&other)))
                    }
                };
                if items.is_empty() {
                    block(otherwise, dot, root, vars, out, &[])?
                } else {
                    for (key, item) in &items {
                        let declared: Vec<(String, Value)> = match names.as_slice() {
                            [v] => vec![(v.clone(), item.clone())],
                            [k, v] => vec![(k.clone(), key.clone()), (v.clone(), item.clone())],
                            _ => vec![],
                        };
                        if let Flow::Break(_) = block(body, item, root, vars, out, &declared)? {
                            break;
                        }
                    }
                    Flow::Normal
                }
            }
        };
        if !matches!(flow, Flow::Normal) {
            return Ok(flow);
        }
    }
    Ok(Flow::Normal)
}

/// Runs a control structure's body with `declared` in scope; variables
/// declared inside end with it (Go: a variable's scope extends to the
/// `end` of the control structure that declares it).
fn block(
    nodes: &[Node],
    dot: &Value,
    root: &Value,
    vars: &mut Scope,
    out: &mut String,
    declared: &[(String, Value)],
) -> Result<Flow, TemplateError> {
    let mark = vars.len();
    vars.extend_from_slice(declared);
    let r = exec(nodes, dot, root, vars, out);
    vars.truncate(mark);
    r
}

fn eval(
    p: &Pipeline,
    dot: &Value,
    root: &Value,
    vars: &Scope,
    off: usize,
) -> Result<Value, TemplateError> {
    let mut prev: Option<Value> = None;
    for cmd in p {
        let v = match cmd {
            Command::Operand(o) => {
                if prev.is_some() {
                    return err(off, "a value cannot take piped input");
                }
                operand_value(o, dot, root, vars, off)?
            }
            Command::Call(name, ops) => {
                let mut args = ops
                    .iter()
                    .map(|o| operand_value(o, dot, root, vars, off))
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
    vars: &Scope,
    off: usize,
) -> Result<Value, TemplateError> {
    let (start, path) = match o {
        Operand::Literal(v) => return Ok(v.clone()),
        Operand::Sub(p) => return eval(p, dot, root, vars, off),
        Operand::SubField(p, path) => {
            let mut v = eval(p, dot, root, vars, off)?;
            for key in path {
                v = v.get(key).cloned().unwrap_or(Value::Null);
            }
            return Ok(v);
        }
        Operand::Field { root: r, path } => (if *r { root } else { dot }, path),
        Operand::Var { name, path } => match vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => (v, path),
            None => return err(off, format!("undefined variable: ${name}")),
        },
    };
    let mut v = start;
    for key in path {
        match v.get(key) {
            Some(next) => v = next,
            None => return Ok(Value::Null),
        }
    }
    Ok(v.clone())
}

/// Go's truth: false, 0, nil, "" and empty collections are false.
pub(super) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// What an action prints: Go's `%v` ([`super::gofmt::value`]), except
/// that a missing value prints `<no value>` (removed by [`render`]).
fn print(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        other => super::gofmt::value(other),
    }
}

/// Refuses a call of `name` with `got` arguments where it takes `want`.
pub(super) fn arity(name: &str, want: usize, got: usize, off: usize) -> Result<(), TemplateError> {
    if got == want {
        Ok(())
    } else {
        err(
            off,
            format!("wrong number of args for {name}: want {want} got {got}"),
        )
    }
}

pub(super) fn text(v: &Value) -> String {
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
        // fmt.Sprint: a space between operands when neither is a string.
        "print" => {
            let mut out = String::new();
            for (i, a) in args.iter().enumerate() {
                if i > 0 && !args[i - 1].is_string() && !a.is_string() {
                    out.push(' ');
                }
                out.push_str(&text(a));
            }
            Value::String(out)
        }
        "println" => Value::String(format!(
            "{}\n",
            args.iter().map(text).collect::<Vec<_>>().join(" ")
        )),
        "printf" => {
            if n == 0 {
                return err(off, "wrong number of args for printf: want at least 1");
            }
            Value::String(super::gofmt::sprintf(&s(0), &args[1..]))
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
        _ => return super::sprig::call(name, &args, off),
    })
}

pub(super) fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
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

    /// Cases from Go's `text/template` exec tests (variables, range with
    /// index and element), Sprig's tests and acr-builder's templating
    /// tests (`{{.foo | add .bar}}`).
    #[test]
    fn variables_printf_and_sprig_render_as_go_and_sprig_do() {
        let d = json!({"Values": {"images": ["web", "api"], "foo": 2, "bar": 3, "tag": 1.0, "big": 1000000.0,
                       "m": {"b": 2, "a": 1}, "yaml": "a: 1\nb: 2"}});
        let cases = [
            ("{{$x := 1}}{{$x}}", "1"),
            ("{{$x := 1}}{{$x = 2}}{{$x}}", "2"),
            ("{{range $i, $img := .Values.images}}{{$i}}={{$img}} {{end}}", "0=web 1=api "),
            ("{{range $img := .Values.images}}[{{$img}}]{{end}}", "[web][api]"),
            ("{{range $k, $v := .Values.m}}{{$k}}{{$v}}{{end}}", "a1b2"),
            ("{{with $v := .Values.foo}}{{$v}}{{end}}", "2"),
            ("{{$x := 1}}{{if true}}{{$x := 2}}{{$x}}{{end}}{{$x}}", "21"),
            ("{{range .Values.images}}{{$.Values.foo}}{{end}}", "22"),
            ("{{.Values.foo | add .Values.bar}}", "5"),
            ("{{printf \"%05d\" 42}}", "00042"),
            ("{{printf \"%s-%03d\" \"app\" 7}}", "app-007"),
            ("app:{{.Values.tag}}", "app:1"),
            ("{{.Values.big}}", "1e+06"),
            ("{{print 1 2 3}}", "1 2 3"),
            ("{{print \"a\" 1 2 \"b\"}}", "a1 2b"),
            ("{{title \"hello-world\"}}", "Hello-World"),
            ("x:{{.Values.yaml | nindent 2}}", "x:\n  a: 1\n  b: 2"),
            ("{{.Values.yaml | indent 4}}", "    a: 1\n    b: 2"),
            ("{{ternary \"yes\" \"no\" true}}", "yes"),
            ("{{sub 5 3}} {{mul 2 3 4}} {{div 7 2}} {{mod 7 2}} {{add1 1}} {{max 1 5 3}} {{min 4 2}}", "2 24 3 1 2 5 2"),
            ("{{first .Values.images}} {{last .Values.images}} {{rest .Values.images}}", "web api [api]"),
            ("{{has \"api\" .Values.images}} {{hasKey .Values.m \"a\"}} {{keys .Values.m}}", "true true [a b]"),
            ("{{base \"/a/b.tar.gz\"}} {{dir \"/a/b.tar.gz\"}} {{ext \"/a/b.tar.gz\"}} {{clean \"a//b/../c\"}}", "b.tar.gz /a .gz a/c"),
            ("{{until 3}} {{uniq (list 1 1 2)}} {{sortAlpha (list \"b\" \"a\")}}", "[0 1 2] [1 2] [a b]"),
            ("{{int \"42\"}} {{atoi \"x\"}} {{float64 \"1.5\"}} {{kindOf 1.5}} {{kindOf .Values.images}}", "42 0 1.5 float64 slice"),
            ("{{sha256sum \"abc\"}}", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("{{urlquery \"a b&c\"}} {{html \"<a href='x'>\"}}", "a+b%26c &lt;a href=&#39;x&#39;&gt;"),
            ("{{round 5.43216 2}} {{floor 1.7}} {{ceil 1.2}}", "5.43 1 2"),
            // Go's lexer: number forms, rune literals, `}}` inside a string.
            ("{{0x1F}} {{0o17}} {{017}} {{0b101}} {{1_000}} {{-2}} {{1e3}} {{'a'}} {{'\\n'}}", "31 15 15 5 1000 -2 1000 97 10"),
            ("{{\"}}\"}}", "}}"),
            // Go 1.23's else with, break and continue, a field of a parenthesised result.
            ("{{with .Values.none}}a{{else with .Values.foo}}b{{.}}{{else}}c{{end}}", "b2"),
            ("{{range $i, $v := until 6}}{{if eq $v 1}}{{continue}}{{end}}{{if eq $v 4}}{{break}}{{end}}{{$v}}{{end}}", "023"),
            ("{{(index .Values \"m\").b}} {{(dict \"k\" (dict \"x\" 7)).k.x}}", "2 7"),
            // Sprig's regex examples.
            ("{{regexMatch \"^[a-z]+$\" \"abc\"}} {{regexMatch \"(\" \"x\"}}", "true false"),
            ("{{regexFindAll \"[2,4,6,8]\" \"123456789\" -1}} {{regexFind \"[a-zA-Z][1-9]\" \"abcd1234\"}}", "[2 4 6 8] d1"),
            ("{{regexReplaceAll \"a(x*)b\" \"-ab-axxb-\" \"${1}W\"}} {{regexReplaceAllLiteral \"a(x*)b\" \"-ab-axxb-\" \"${1}\"}}", "-W-xxW- -${1}-${1}-"),
            ("{{regexSplit \"z+\" \"pizza\" -1}} {{regexSplit \"z+\" \"pizza\" 1}}", "[pi a] [pizza]"),
        ];
        for (t, want) in cases {
            assert_eq!(render(t, &d).unwrap(), want, "{t}");
        }
        let e = render("{{$y}}", &d).unwrap_err();
        assert!(e.message.contains("undefined variable: $y"), "{e}");
        let e = render("{{fail \"stop here\"}}", &d).unwrap_err();
        assert!(e.message.contains("stop here"), "{e}");
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
