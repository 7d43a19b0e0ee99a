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
/// where there is none.
///
/// A dict in Go is a reference: `$v := .Values`, `with .Values`, `range`
/// over a list of dicts and the root all name one map, so Sprig's
/// `set`/`unset`/`merge` through any of them is seen through the others.
/// An entry bound to a dict read from a field chain of another entry keeps
/// that place as its [`Origin`]: it reads the dict there (live) and writes
/// go there. (Go would keep the old map when that place is later given a
/// new one; Slipway then reads the new one.)
pub(super) type Scope = Vec<Entry>;

/// One name in scope.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    name: String,
    /// The value as bound; what is read when the entry has no origin or
    /// its origin no longer holds a dict.
    value: Value,
    origin: Option<Origin>,
}

impl Entry {
    /// An entry holding `value` of its own.
    pub(super) fn owned(name: &str, value: Value) -> Entry {
        Entry {
            name: name.to_string(),
            value,
            origin: None,
        }
    }
}

/// Where a dict an entry names lives: beneath the value of the owned
/// entry at `slot` (an index below the entry's own: scopes are a stack),
/// along `path`.
#[derive(Debug, Clone, PartialEq)]
struct Origin {
    slot: usize,
    path: Vec<Step>,
}

/// One step down a value: a dict key or a list index.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The scope name of `$`.
pub(super) const ROOT: &str = "$";
/// The scope name of a `with`/`range` body's dot.
const DOT: &str = ".";

/// The index of the entry dot (`root` false) or `$` (`root` true) reads.
fn data_index(vars: &Scope, root: bool) -> Option<usize> {
    if root {
        None
    } else {
        vars.iter().rposition(|e| e.name == DOT)
    }
    .or_else(|| vars.iter().position(|e| e.name == ROOT))
}

/// The index of the innermost variable `name`.
fn var_index(vars: &Scope, name: &str) -> Option<usize> {
    vars.iter().rposition(|e| e.name == name)
}

fn walk<'v>(mut v: &'v Value, path: &[Step]) -> Option<&'v Value> {
    for step in path {
        v = match (step, v) {
            (Step::Key(k), Value::Object(m)) => m.get(k)?,
            (Step::Index(i), Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

fn walk_mut<'v>(mut v: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    for step in path {
        v = match (step, v) {
            (Step::Key(k), Value::Object(m)) => m.get_mut(k)?,
            (Step::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

/// What entry `i` names now: the dict at its origin while one is there,
/// else its own value.
fn entry_value(vars: &Scope, i: usize) -> &Value {
    let e = &vars[i];
    e.origin
        .as_ref()
        .and_then(|o| walk(&vars[o.slot].value, &o.path))
        .filter(|v| v.is_object())
        .unwrap_or(&e.value)
}

/// The place the field chain `path` below entry `i` leads to: below its
/// origin while that holds a dict, else below the entry itself.
fn place(vars: &Scope, i: usize, path: &[String]) -> Origin {
    let (slot, mut steps) = match &vars[i].origin {
        Some(o) if walk(&vars[o.slot].value, &o.path).is_some_and(Value::is_object) => {
            (o.slot, o.path.clone())
        }
        _ => (i, Vec::new()),
    };
    steps.extend(path.iter().cloned().map(Step::Key));
    Origin { slot, path: steps }
}

/// The place a pipeline's value was read from, when it is a bare field
/// chain of dot, `$` or a variable (`.Values`, `$.Values.a`, `$v.b`), or
/// `index` of one with literal keys (`index .Values "a" 0`).
fn place_of(p: &Pipeline, vars: &Scope) -> Option<Origin> {
    match p.as_slice() {
        [Command::Operand(o)] => place_of_operand(o, vars),
        [Command::Call(name, ops)] if name == "index" => {
            let (first, keys) = ops.split_first()?;
            let mut at = place_of_operand(first, vars)?;
            for k in keys {
                at.path.push(match k {
                    Operand::Literal(Value::String(k)) => Step::Key(k.clone()),
                    Operand::Literal(Value::Number(n)) => {
                        Step::Index(usize::try_from(n.as_u64()?).ok()?)
                    }
                    _ => return None,
                });
            }
            Some(at)
        }
        _ => None,
    }
}

fn place_of_operand(o: &Operand, vars: &Scope) -> Option<Origin> {
    match o {
        Operand::Field { root, path } => Some(place(vars, data_index(vars, *root)?, path)),
        Operand::Var { name, path } => Some(place(vars, var_index(vars, name)?, path)),
        Operand::Sub(p) => place_of(p, vars),
        Operand::SubField(p, path) => {
            let mut at = place_of(p, vars)?;
            at.path.extend(path.iter().cloned().map(Step::Key));
            Some(at)
        }
        Operand::Literal(_) => None,
    }
}

/// An entry bound to `value`, read from `from`: a dict keeps its place.
fn bound(name: &str, value: Value, from: Option<Origin>) -> Entry {
    let origin = from.filter(|_| value.is_object());
    Entry {
        name: name.to_string(),
        value,
        origin,
    }
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
                let (v, from) = match data {
                    Some(p) => (eval(p, vars, *off)?, place_of(p, vars)),
                    None => (Value::Null, None),
                };
                let depth = tpl.depth.get();
                if depth >= MAX_TEMPLATE_DEPTH {
                    return err(
                        *off,
                        format!("exceeded maximum template depth ({MAX_TEMPLATE_DEPTH})"),
                    );
                }
                tpl.depth.set(depth + 1);
                let is_dict = v.is_object();
                let mut called = vec![Entry::owned(ROOT, v)];
                let r = exec(body, &mut called, out, tpl);
                tpl.depth.set(depth);
                // The template was given the caller's dict, not a copy:
                // what it changed there, the caller sees.
                if let Some(place) = from.filter(|_| is_dict) {
                    store(vars, &place, called.swap_remove(0).value);
                }
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
                let from = place_of(value, vars);
                if *assign {
                    match var_index(vars, name) {
                        // Rebinding: the variable names another value now.
                        Some(i) => vars[i] = bound(name, v, from.filter(|o| o.slot < i)),
                        None => return err(*off, format!("undefined variable: ${name}")),
                    }
                } else {
                    vars.push(bound(name, v, from));
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
                    let from = place_of(p, vars);
                    let declared: Vec<Entry> = names
                        .iter()
                        .map(String::as_str)
                        .chain([DOT])
                        .map(|n| bound(n, v.clone(), from.clone()))
                        .collect();
                    block(body, vars, out, &declared, tpl)?
                } else {
                    block(otherwise, vars, out, &[], tpl)?
                }
            }
            Node::Range(names, p, body, otherwise, off) => {
                let v = eval(p, vars, *off)?;
                let from = place_of(p, vars);
                // Each element with the step to it from the ranged value.
                let items: Vec<(Value, Value, Option<Step>)> = match v {
                    Value::Array(a) => a
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (Value::from(i), v, Some(Step::Index(i))))
                        .collect(),
                    Value::Object(m) => {
                        let mut keys: Vec<_> = m.into_iter().collect();
                        keys.sort_by(|a, b| a.0.cmp(&b.0));
                        keys.into_iter()
                            .map(|(k, v)| (Value::String(k.clone()), v, Some(Step::Key(k))))
                            .collect()
                    }
                    Value::Null => vec![],
                    // Go ranges over an integer n as 0..n.
                    Value::Number(n) if n.as_u64().is_some() => (0..n.as_u64().unwrap_or(0))
                        .map(|i| (Value::from(i), Value::from(i), None))
                        .collect(),
                    other => {
                        return err(*off, format!("range can't iterate over {}", print(&other)))
                    }
                };
                if items.is_empty() {
                    block(otherwise, vars, out, &[], tpl)?
                } else {
                    for (key, item, step) in &items {
                        let at = from.clone().zip(step.clone()).map(|(mut o, s)| {
                            o.path.push(s);
                            o
                        });
                        let mut declared: Vec<Entry> = match names.as_slice() {
                            [v] => vec![bound(v, item.clone(), at.clone())],
                            [k, v] => vec![
                                Entry::owned(k, key.clone()),
                                bound(v, item.clone(), at.clone()),
                            ],
                            _ => vec![],
                        };
                        declared.push(bound(DOT, item.clone(), at));
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
    declared: &[Entry],
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

/// Replaces the value `target` (a field chain of a variable, dot or `$`)
/// reads with `v`, at the place it lives (the dict a variable or dot was
/// read from, when it was); other operands are left alone.
fn write_back(vars: &mut Scope, target: &Operand, v: Value) {
    if let Some(place) = place_of_operand(target, vars) {
        store(vars, &place, v);
    }
}

/// Puts `v` at `place`; a place that is no longer there is left alone.
fn store(vars: &mut Scope, place: &Origin, v: Value) {
    if let Some(slot) = walk_mut(&mut vars[place.slot].value, &place.path) {
        *slot = v;
    }
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
        Operand::Field { root, path } => match data_index(vars, *root) {
            Some(i) => (entry_value(vars, i), path),
            None => return Ok(Value::Null),
        },
        Operand::Var { name, path } => match var_index(vars, name) {
            Some(i) => (entry_value(vars, i), path),
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
