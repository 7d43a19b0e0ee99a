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
//! of a parenthesised result, `define`/`template`/`block` (nested calls
//! bounded by [`MAX_TEMPLATE_DEPTH`]), and the rest of Sprig in
//! `sprig_more` (text shaping, base32, digests, `uuidv4` and `rand*`,
//! types, list and dict helpers; `env`/`expandenv` refused) and
//! `sprig_dates` (Go layouts, zones, `toDate`, durations) and `semver`
//! (`semver`, `semverCompare` with Masterminds semver v1's rules). Not
//! yet: Sprig's key and certificate functions (`genCA`, `encryptAES`,
//! `derivePassword`…).

mod builtins;
mod exec;
mod parse;

use serde_json::Value;

pub(super) use builtins::loose_eq;
use exec::exec;
pub(super) use exec::{arity, eval_args, strval, text, truthy};
use parse::{lex, parse_list};

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
    /// Nodes whose variables end with them (an `if` that declares one).
    Scoped(Vec<Node>),
    /// `{{break}}` / `{{continue}}` of the innermost `range`.
    Break(usize),
    Continue(usize),
    /// `{{define "name"}}…{{end}}` (top level only), or the definition
    /// half of a `{{block}}` (anywhere): prints nothing where it stands.
    Define {
        name: String,
        body: Vec<Node>,
        block: bool,
        off: usize,
    },
    /// `{{template "name" [pipeline]}}`: runs the named template with dot
    /// (and `$`) set to the pipeline's value (nil without one).
    Template {
        name: String,
        data: Option<Pipeline>,
        off: usize,
    },
}

/// Named templates by name, and how deep template calls are nested.
pub(super) struct Templates {
    defs: std::collections::HashMap<String, Vec<Node>>,
    depth: std::cell::Cell<usize>,
}

/// How deeply `{{template}}` calls may nest (a template that calls itself
/// ends with an error instead of exhausting the stack).
pub(super) const MAX_TEMPLATE_DEPTH: usize = 100;

/// Go's `IsEmptyTree`: only whitespace text (and comments, already gone).
fn is_empty_tree(nodes: &[Node]) -> bool {
    nodes.iter().all(|n| match n {
        Node::Text(t) => t.trim().is_empty(),
        Node::Define { .. } => true,
        _ => false,
    })
}

/// Collects every definition: `define` at the top level only, `block`
/// anywhere. A second non-empty definition of a name is an error (Go:
/// "multiple definition of template"); an empty one never replaces a
/// non-empty one.
fn collect_definitions(
    nodes: &[Node],
    top: bool,
    defs: &mut std::collections::HashMap<String, Vec<Node>>,
) -> Result<(), TemplateError> {
    for n in nodes {
        match n {
            Node::Define {
                name,
                body,
                block,
                off,
            } => {
                if !top && !block {
                    return err(
                        *off,
                        "unexpected {{define}}: define is only allowed at the top level",
                    );
                }
                match defs.get(name) {
                    Some(old) if !is_empty_tree(old) && !is_empty_tree(body) => {
                        return err(
                            *off,
                            format!("template: multiple definition of template \"{name}\""),
                        )
                    }
                    Some(old) if !is_empty_tree(old) => {}
                    _ => {
                        defs.insert(name.clone(), body.clone());
                    }
                }
                collect_definitions(body, false, defs)?;
            }
            Node::Scoped(inner) => collect_definitions(inner, false, defs)?,
            Node::If(branches, otherwise, _) => {
                for (_, b) in branches {
                    collect_definitions(b, false, defs)?;
                }
                collect_definitions(otherwise, false, defs)?;
            }
            Node::With(_, _, body, otherwise, _) | Node::Range(_, _, body, otherwise, _) => {
                collect_definitions(body, false, defs)?;
                collect_definitions(otherwise, false, defs)?;
            }
            _ => {}
        }
    }
    Ok(())
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
    /// `(x).Method args…` / `$v.Method args…`: a method of the value the
    /// operand's chain leads to, the chain's last name being the method.
    Method(Operand, Vec<Operand>),
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

impl Operand {
    /// A method call's receiver and method name: the operand without the
    /// last name of its field chain, and that name (`$v.Compare` → `$v`,
    /// `Compare`). `None` for an operand without a chain.
    fn split_method(&self) -> Option<(Operand, String)> {
        let (path, rebuild): (&Vec<String>, &dyn Fn(Vec<String>) -> Operand) = match self {
            Operand::Field { root, path } => (path, &|p| Operand::Field {
                root: *root,
                path: p,
            }),
            Operand::Var { name, path } => (path, &|p| Operand::Var {
                name: name.clone(),
                path: p,
            }),
            Operand::SubField(pipe, path) => (path, &|p| Operand::SubField(pipe.clone(), p)),
            Operand::Literal(_) | Operand::Sub(_) => return None,
        };
        let (last, parent) = path.split_last()?;
        Some((rebuild(parent.to_vec()), last.clone()))
    }
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
    let mut defs = std::collections::HashMap::new();
    collect_definitions(&nodes, true, &mut defs)?;
    let templates = Templates {
        defs,
        depth: std::cell::Cell::new(0),
    };
    let mut out = String::new();
    let mut vars = vec![exec::Entry::owned(exec::ROOT, data.clone())];
    match exec(&nodes, &mut vars, &mut out, &templates)? {
        Flow::Normal => Ok(out.replace("<no value>", "")),
        Flow::Break(off) | Flow::Continue(off) => {
            err(off, "{{break}} or {{continue}} outside {{range}}")
        }
    }
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
    fn to_json_encodes_as_go_json_marshal_does() {
        let data = json!({"v": {"html": "<b>&</b>", "n": 1}});
        assert_eq!(
            r("{{ toJson .v }}", data.clone()),
            r#"{"html":"\u003cb\u003e\u0026\u003c/b\u003e","n":1}"#
        );
        assert_eq!(
            r(
                r#"{{ toDate "2006-01-02" "2017-12-31" | toJson }}"#,
                json!({})
            ),
            r#""2017-12-31T00:00:00Z""#
        );
        assert_eq!(
            r(r#"{{ semver "1.2.3-rc.1" | toJson }}"#, json!({})),
            r#""1.2.3-rc.1""#
        );
        assert_eq!(
            r("{{ toPrettyJson .v }}", data),
            "{\n  \"html\": \"\\u003cb\\u003e\\u0026\\u003c/b\\u003e\",\n  \"n\": 1\n}"
        );
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

    /// Named templates, after Go's `text/template` exec tests (the
    /// `template`/`define` cases of `execTests` and `TestBlock`,
    /// `exec_test.go`) with acb's `<no value>` removal.
    #[test]
    fn define_template_and_block() {
        let d = json!({"I": 17, "Inner": {"A": "a"}, "S": "hello",
            "Tree": [{"Name": "x"}, {"Children": [{"Name": "y"}, {"Name": "z"}]}]});
        for (text, want) in [
            (r#"{{define "x"}}TEXT{{end}}{{template "x"}}"#, "TEXT"),
            (r#"{{define "dot"}}{{.}}{{end}}{{template "dot" .I}}"#, "17"),
            (r#"{{define "x"}}[{{.}}]{{end}}{{template "x"}}"#, "[]"),
            (
                r#"{{define "x"}}{{$.A}}{{end}}{{template "x" .Inner}}"#,
                "a",
            ),
            (
                r#"a({{block "inner" .S}}bar({{.}})baz{{end}})b"#,
                "a(bar(hello)baz)b",
            ),
            (
                r#"{{define "list"}}{{range .}}{{if .Children}}[{{template "list" .Children}}]{{else}}{{.Name}}{{end}}{{end}}{{end}}{{template "list" .Tree}}"#,
                "x[yz]",
            ),
            (
                "{{define `raw`}}r{{end}}{{template `raw`}}{{template \"raw\"}}",
                "rr",
            ),
            // An empty definition does not replace a full one (Go's IsEmptyTree).
            (
                r#"{{define "x"}}full{{end}}{{define "x"}}  {{end}}{{template "x"}}"#,
                "full",
            ),
        ] {
            assert_eq!(render(text, &d).unwrap(), want, "{text}");
        }
        for (text, says) in [
            (r#"{{template "nope"}}"#, r#""nope" not defined"#),
            (
                r#"{{define "r"}}{{template "r"}}{{end}}{{template "r"}}"#,
                "maximum template depth",
            ),
            (
                r#"{{if true}}{{define "x"}}a{{end}}{{end}}"#,
                "only allowed at the top level",
            ),
            (
                r#"{{define "x"}}a{{end}}{{define "x"}}b{{end}}"#,
                "multiple definition",
            ),
            (
                r#"{{$v := 1}}{{define "x"}}{{$v}}{{end}}{{template "x"}}"#,
                "undefined variable",
            ),
            (r#"{{define x}}a{{end}}"#, "quoted template name"),
            (r#"{{block "b"}}a{{end}}"#, "needs a pipeline"),
            (
                r#"{{define "x"}}{{break}}{{end}}{{template "x"}}"#,
                "outside {{range}}",
            ),
        ] {
            let e = render(text, &d).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn set_on_the_data_changes_what_later_actions_read() {
        // Helm's and acb's idiom for a default: Sprig's `set` changes the
        // map it is given, and at the top level `.` and `$` are that map.
        let d = json!({"Values": {"tag": "v1"}});
        assert_eq!(
            r(
                r#"{{- $_ := set .Values "registry" (default "docker.io" .Values.registry) -}}{{ .Values.registry }}/app:{{ .Values.tag }}"#,
                d.clone()
            ),
            "docker.io/app:v1"
        );
        assert_eq!(
            r(
                r#"{{ $_ := set $.Values "tag" "v2" }}{{ .Values.tag }} {{ $.Values.tag }}"#,
                d.clone()
            ),
            "v2 v2"
        );
        assert_eq!(
            r(r#"{{ $_ := set . "extra" 7 }}{{ .extra }}"#, d.clone()),
            "7"
        );
        // Inside `with`, dot is the same map as `.Values`.
        assert_eq!(
            r(
                r#"{{ with .Values }}{{ $_ := set . "x" 1 }}{{ .x }}{{ end }}|{{ .Values.x }}|{{ .Values.tag }}"#,
                d.clone()
            ),
            "1|1|v1"
        );
        // `$` inside `range` is still the data.
        assert_eq!(
            r(
                r#"{{ range list 1 2 }}{{ $_ := set $.Values "n" . }}{{ end }}{{ .Values.n }}"#,
                d
            ),
            "2"
        );
    }

    #[test]
    fn a_dict_is_one_map_whichever_name_it_is_changed_through() {
        // Go: a map is a reference, so a variable, `with`'s dot and the
        // elements `range` visits name the map they were read from.
        let d = json!({"Values": {"tag": "v1", "images": [{"name": "a"}, {"name": "b"}]}});
        let cases = [
            (
                r#"{{ $v := .Values }}{{ $_ := set $v "tag" "v3" }}{{ .Values.tag }}"#,
                "v3",
            ),
            (
                r#"{{ $v := .Values }}{{ $_ := set .Values "tag" "v4" }}{{ $v.tag }}"#,
                "v4",
            ),
            (
                r#"{{ range .Values.images }}{{ $_ := set . "tag" "latest" }}{{ end }}{{ range .Values.images }}{{ .name }}:{{ .tag }} {{ end }}"#,
                "a:latest b:latest ",
            ),
            (
                r#"{{ range $i, $img := .Values.images }}{{ $_ := set $img "n" $i }}{{ end }}{{ range $.Values.images }}{{ .n }}{{ end }}"#,
                "01",
            ),
            (
                r#"{{ $a := dict "k" 1 }}{{ $b := $a }}{{ $_ := set $b "k" 2 }}{{ $a.k }}"#,
                "2",
            ),
            (
                r#"{{ $v := .Values }}{{ with $v }}{{ $_ := unset . "tag" }}{{ end }}{{ .Values.tag }}"#,
                "",
            ),
            // `index` gives the map itself.
            (
                r#"{{ $_ := set (index .Values "images" 1) "tag" "b1" }}{{ range .Values.images }}{{ .tag }}{{ end }}"#,
                "b1",
            ),
            (
                r#"{{ $_ := set (index $.Values "images" 0) "tag" "a2" }}{{ with (index .Values "images" 0) }}{{ .tag }}{{ end }}"#,
                "a2",
            ),
            // A string is a value, not a reference.
            (
                r#"{{ $t := .Values.tag }}{{ $_ := set .Values "tag" "z" }}{{ $t }}"#,
                "v1",
            ),
            // A template is given the map, not a copy.
            (
                r#"{{ define "tagged" }}{{ $_ := set . "tag" "t" }}{{ end }}{{ template "tagged" .Values }}{{ .Values.tag }}"#,
                "t",
            ),
            // Giving a variable another value leaves the map alone.
            (
                r#"{{ $v := .Values }}{{ $v = dict "tag" "other" }}{{ $_ := set $v "tag" "x" }}{{ .Values.tag }}"#,
                "v1",
            ),
        ];
        for (template, want) in cases {
            assert_eq!(r(template, d.clone()), want, "{template}");
        }
    }
}
