//! The task-template engine against upstream test tables: Go's
//! `text/template` exec tests (`tests/corpus/go_text_template_exec.tsv`,
//! the cases its JSON data can express). Prints the pass ratio; fails
//! below 95% (issue 20's bar) and lists every failing case.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use slipway_core::tasks::template::render;

/// exec_test.go's `tVal`, as JSON (pointers followed, nil pointers null).
fn t_val() -> Value {
    json!({
        "True": true, "I": 17, "U16": 16, "X": "x", "S": "xyz", "FloatZero": 0.0,
        "U": {"V": "v"},
        "SI": [3, 4, 5], "SICap": [0, 0, 0, 0, 0], "SIEmpty": [], "SB": [true, false],
        "AI": [3, 4, 5],
        "MSI": {"one": 1, "two": 2, "three": 3}, "MSIone": {"one": 1}, "MSIEmpty": {},
        "MXI": {"one": 1},
        "SMSI": [{"one": 1, "two": 2}, {"eleven": 11, "twelve": 12}],
        "Empty0": null, "Empty1": 3, "Empty2": "empty2", "Empty3": [7, 8],
        "Empty4": {"V": "UinEmpty"},
        "PI": 23, "PS": "a string", "PSI": [21, 22, 23], "NIL": null,
    })
}

#[test]
fn go_text_template_exec_tests() {
    let table = include_str!("corpus/go_text_template_exec.tsv");
    let (mut passed, mut failed) = (0, Vec::new());
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 5, "malformed corpus line: {line}");
        let (name, input, want, data, ok) = (cols[0], cols[1], cols[2], cols[3], cols[4] == "ok");
        let data = match data {
            "tVal" => t_val(),
            "nil" => Value::Null,
            other => serde_json::from_str(other).unwrap(),
        };
        let want = want.replace("\\n", "\n").replace("<no value>", "");
        let got = render(input, &data);
        let good = match (&got, ok) {
            (Ok(out), true) => *out == want,
            (Err(_), false) => true,
            _ => false,
        };
        if good {
            passed += 1;
        } else {
            failed.push(format!(
                "{name}: {input} → {got:?}, Go: {want:?} ({})",
                if ok { "ok" } else { "error" }
            ));
        }
    }
    let total = passed + failed.len();
    let ratio = passed as f64 / total as f64;
    println!(
        "Go text/template exec corpus: {passed}/{total} pass ({:.1}%)",
        ratio * 100.0
    );
    for f in &failed {
        println!("  FAIL {f}");
    }
    assert!(
        ratio >= 0.95,
        "{passed}/{total} below 95%:\n{}",
        failed.join("\n")
    );
}

/// Sprig's own tests (`tests/corpus/sprig_tests.tsv`): every row must
/// render as Sprig does under acb (`<no value>` removed, as acb removes it).
#[test]
fn sprig_tests() {
    let table = include_str!("corpus/sprig_tests.tsv");
    let (mut passed, mut failed) = (0, Vec::new());
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 4, "malformed corpus line: {line}");
        let source = cols[0];
        let input: String = serde_json::from_str(cols[1]).unwrap();
        let want: String = serde_json::from_str(cols[2]).unwrap();
        let data: Value = serde_json::from_str(cols[3]).unwrap();
        let want = want.replace("<no value>", "");
        match render(&input, &data) {
            Ok(out) if out == want => passed += 1,
            got => failed.push(format!("{source}: {input:?} → {got:?}, Sprig: {want:?}")),
        }
    }
    let total = passed + failed.len();
    println!(
        "Sprig test corpus: {passed}/{total} pass ({:.1}%)",
        passed as f64 * 100.0 / total as f64
    );
    for f in &failed {
        println!("  FAIL {f}");
    }
    assert!(failed.is_empty(), "{} of {total} rows fail", failed.len());
}
