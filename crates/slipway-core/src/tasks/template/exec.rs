//! Executing a parsed template: scopes, control flow, pipelines and
//! printing values the way Go does.

use serde_json::Value;

use super::builtins::call;
use super::{
    err, Command, Flow, Node, Operand, Pipeline, TemplateError, Templates, MAX_TEMPLATE_DEPTH,
};

/// Variables in scope, innermost last, with two names no `$name` can
/// spell: [`ROOT`] (`$`, the data the template runs on) comes first, and a
/// [`DOT`] entry is declared by each `with` and `range` body for the value
/// dot is set to there. Dot is the innermost [`DOT`] entry, or the root
/// where there is none: at the top level `.` and `$` are one value, so
/// Sprig's `set .Values "k" v` changes what later actions read, as in Go
/// (where both are the same map). A `with`/`range` dot and a variable are
/// copies: `set` on them is seen through them, not through `$`.
pub(super) type Scope = Vec<(String, Value)>;

/// The scope name of `$`.
pub(super) const ROOT: &str = "$";
/// The scope name of a `with`/`range` body's dot.
const DOT: &str = ".";

/// The scope entry dot (`root` false) or `$` (`root` true) reads.
fn data_slot(vars: &mut Scope, root: bool) -> Option<&mut Value> {
    let at = if root {
        None
    } else {
        vars.iter().rposition(|(n, _)| n == DOT)
    }
    .or_else(|| vars.iter().position(|(n, _)| n == ROOT))?;
    Some(&mut vars[at].1)
}

pub(super) fn exec(
    nodes: &[Node],
    vars: &mut Scope,
    out: &mut String,
    tpl: &Templates,
) -> Result<Flow, TemplateError> {
    for n in nodes {
        let flow = match n {
            Node::Break(off) => Flow::Break(*off),
            Node::Continue(off) => Flow::Continue(*off),
            Node::Define { .. } => Flow::Normal,
            Node::Scoped(inner) => block(inner, vars, out, &[], tpl)?,
            Node::Template { name, data, off } => {
                let Some(body) = tpl.defs.get(name) else {
                    return err(*off, format!("template \"{name}\" not defined"));
                };
                let v = match data {
                    Some(p) => eval(p, vars, *off)?,
                    None => Value::Null,
                };
                let depth = tpl.depth.get();
                if depth >= MAX_TEMPLATE_DEPTH {
                    return err(
                        *off,
                        format!("exceeded maximum template depth ({MAX_TEMPLATE_DEPTH})"),
                    );
                }
                tpl.depth.set(depth + 1);
                let r = exec(body, &mut vec![(ROOT.to_string(), v)], out, tpl);
                tpl.depth.set(depth);
                match r? {
                    Flow::Normal => Flow::Normal,
                    Flow::Break(o) | Flow::Continue(o) => {
                        return err(o, "{{break}} or {{continue}} outside {{range}}")
                    }
                }
            }
            Node::Text(t) => {
                out.push_str(t);
                Flow::Normal
            }
            Node::Action(p, off) => {
                out.push_str(&print(&eval(p, vars, *off)?));
                Flow::Normal
            }
            Node::Variable {
                name,
                assign,
                value,
                off,
            } => {
                let v = eval(value, vars, *off)?;
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
                    if truthy(&eval(cond, vars, *off)?) {
                        chosen = body;
                        break;
                    }
                }
                block(chosen, vars, out, &[], tpl)?
            }
            Node::With(names, p, body, otherwise, off) => {
                let v = eval(p, vars, *off)?;
                if truthy(&v) {
                    let declared: Vec<(String, Value)> = names
                        .iter()
                        .map(|n| (n.clone(), v.clone()))
                        .chain([(DOT.to_string(), v.clone())])
                        .collect();
                    block(body, vars, out, &declared, tpl)?
                } else {
                    block(otherwise, vars, out, &[], tpl)?
                }
            }
            Node::Range(names, p, body, otherwise, off) => {
                let v = eval(p, vars, *off)?;
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
                    block(otherwise, vars, out, &[], tpl)?
                } else {
                    for (key, item) in &items {
                        let mut declared: Vec<(String, Value)> = match names.as_slice() {
                            [v] => vec![(v.clone(), item.clone())],
                            [k, v] => vec![(k.clone(), key.clone()), (v.clone(), item.clone())],
                            _ => vec![],
                        };
                        declared.push((DOT.to_string(), item.clone()));
                        if let Flow::Break(_) = block(body, vars, out, &declared, tpl)? {
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
pub(super) fn block(
    nodes: &[Node],
    vars: &mut Scope,
    out: &mut String,
    declared: &[(String, Value)],
    tpl: &Templates,
) -> Result<Flow, TemplateError> {
    let mark = vars.len();
    vars.extend_from_slice(declared);
    let r = exec(nodes, vars, out, tpl);
    vars.truncate(mark);
    r
}

pub(super) fn eval(p: &Pipeline, vars: &mut Scope, off: usize) -> Result<Value, TemplateError> {
    let mut prev: Option<Value> = None;
    for cmd in p {
        let v = match cmd {
            Command::Operand(o) if prev.is_some() && super::parse::has_chain(o) => {
                let args = prev.take().into_iter().collect();
                method(o, args, vars, off)?
            }
            Command::Method(o, ops) => {
                let mut args = ops
                    .iter()
                    .map(|a| operand_value(a, vars, off))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(p) = prev.take() {
                    args.push(p);
                }
                method(o, args, vars, off)?
            }
            Command::Operand(o) => {
                if prev.is_some() {
                    return err(off, "a value cannot take piped input");
                }
                if matches!(o, Operand::Literal(Value::Null)) {
                    return err(off, "nil is not a command");
                }
                operand_value(o, vars, off)?
            }
            Command::Call(name, ops) => {
                let mut args = ops
                    .iter()
                    .map(|o| operand_value(o, vars, off))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(p) = prev.take() {
                    args.push(p);
                }
                let r = call(name, args, off)?;
                // Sprig's set/unset/merge/mergeOverwrite change the dict
                // they are given (a Go map is a reference): the variable,
                // dot or `$` it was read from sees the change.
                if matches!(name.as_str(), "set" | "unset" | "merge" | "mergeOverwrite") {
                    if let Some(target) = ops.first() {
                        write_back(vars, target, r.clone());
                    }
                }
                r
            }
        };
        prev = Some(v);
    }
    Ok(prev.unwrap_or(Value::Null))
}

/// Calls the method the last name of `o`'s chain names on the value the
/// rest of the chain leads to. Values with methods: semantic versions
/// (`semver`).
fn method(
    o: &Operand,
    args: Vec<Value>,
    vars: &mut Scope,
    off: usize,
) -> Result<Value, TemplateError> {
    let Some((receiver, name)) = o.split_method() else {
        return err(off, "a value cannot take arguments");
    };
    let r = operand_value(&receiver, vars, off)?;
    match crate::tasks::semver::method(&r, &name, &args) {
        Some(result) => result.or_else(|e| err(off, e)),
        None => err(
            off,
            format!(
                "can't call method \"{name}\" on {}",
                crate::tasks::gofmt::type_name(&r)
            ),
        ),
    }
}

/// Replaces the value `target` (a variable's, dot's or `$`'s field chain)
/// reads with `v`; other operands are left alone.
fn write_back(vars: &mut Scope, target: &Operand, v: Value) {
    let (slot, path) = match target {
        Operand::Var { name, path } => (
            vars.iter_mut()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v),
            path,
        ),
        Operand::Field { root, path } => (data_slot(vars, *root), path),
        _ => return,
    };
    let Some(slot) = slot else {
        return;
    };
    let mut target = slot;
    for key in path {
        match target.get_mut(key) {
            Some(next) => target = next,
            None => return,
        }
    }
    *target = v;
}

pub(super) fn operand_value(
    o: &Operand,
    vars: &mut Scope,
    off: usize,
) -> Result<Value, TemplateError> {
    let (start, path) = match o {
        Operand::Literal(v) => return Ok(v.clone()),
        Operand::Sub(p) => return eval(p, vars, off),
        Operand::SubField(p, path) => {
            let mut v = eval(p, vars, off)?;
            for key in path {
                v = v.get(key).cloned().unwrap_or(Value::Null);
            }
            return Ok(v);
        }
        Operand::Field { root, path } => match data_slot(vars, *root) {
            Some(v) => (&*v, path),
            None => return Ok(Value::Null),
        },
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
pub(in crate::tasks) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// What an action prints: Go's `%v` ([`crate::tasks::gofmt::value`]), except
/// that a missing value prints `<no value>` (removed by [`render`]).
pub(super) fn print(v: &Value) -> String {
    if let Some(t) = crate::tasks::sprig_dates::as_time(v) {
        return crate::tasks::sprig_dates::go_string(&t);
    }
    if let Some(s) = v
        .get(crate::tasks::semver::SEMVER_KEY)
        .and_then(Value::as_str)
    {
        return s.to_string();
    }
    match v {
        Value::Null => "<no value>".into(),
        other => crate::tasks::gofmt::value(other),
    }
}

/// Refuses a call of `name` with `got` arguments where it takes `want`.
pub(in crate::tasks) fn arity(
    name: &str,
    want: usize,
    got: usize,
    off: usize,
) -> Result<(), TemplateError> {
    if got == want {
        Ok(())
    } else {
        err(
            off,
            format!("wrong number of args for {name}: want {want} got {got}"),
        )
    }
}

/// Go's `fmt.Sprint`: operands printed as [`strval`] does, a space between
/// two operands when neither is a string.
pub(in crate::tasks) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !args[i - 1].is_string() && !a.is_string() {
            out.push(' ');
        }
        out.push_str(&strval(a));
    }
    out
}

/// text/template's `evalArgs` (the text `html`, `js` and `urlquery`
/// escape): [`sprint`] with a nil operand as the string `<no value>`.
pub(in crate::tasks) fn eval_args(args: &[Value]) -> String {
    let printable: Vec<Value> = args
        .iter()
        .map(|a| match a {
            Value::Null => Value::String("<no value>".into()),
            other => other.clone(),
        })
        .collect();
    sprint(&printable)
}

/// Sprig v2.22's `strval` of a list element (`join`, `toStrings`): as
/// printed, with nil as Go's `<nil>` (Sprig 3 drops nil elements instead).
pub(in crate::tasks) fn strval(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        other => print(other),
    }
}

pub(in crate::tasks) fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        other => print(other),
    }
}
