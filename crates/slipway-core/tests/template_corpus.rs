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

/// Sprig's `crypto_test.go` key and certificate tests (TestGenPrivateKey,
/// TestGenCA, TestGenSelfSignedCert, TestGenSignedCert,
/// TestBuildCustomCert): the checks Sprig makes on the PEM it prints.
#[test]
fn sprig_key_and_certificate_tests() {
    use x509_parser::pem::parse_x509_pem;
    let run = |t: &str| render(t, &Value::Null);
    // TestGenPrivateKey.
    for (t, marker) in [
        (r#"{{genPrivateKey ""}}"#, "-----BEGIN RSA PRIVATE KEY-----"),
        (
            r#"{{genPrivateKey "rsa"}}"#,
            "-----BEGIN RSA PRIVATE KEY-----",
        ),
        (
            r#"{{genPrivateKey "ecdsa"}}"#,
            "-----BEGIN EC PRIVATE KEY-----",
        ),
    ] {
        let out = run(t).unwrap();
        assert!(out.starts_with(marker), "{t}: {out}");
    }
    assert_eq!(
        run(r#"{{genPrivateKey "bad"}}"#).unwrap(),
        "Unknown type bad"
    );
    let dsa = run(r#"{{genPrivateKey "dsa"}}"#).unwrap_err().to_string();
    assert!(dsa.contains("'dsa'") && dsa.contains("ecdsa"), "{dsa}");
    // TestGenCA.
    let ca = run(r#"{{- $ca := genCA "foo-ca" 365 }}{{ $ca.Cert }}"#).unwrap();
    let (_, pem) = parse_x509_pem(ca.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let cn = |c: &x509_parser::certificate::X509Certificate| {
        c.subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(cn(&cert), "foo-ca");
    assert!(cert.is_ca());
    let days =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86400;
    assert_eq!(days, 365);
    // TestGenSelfSignedCert and TestGenSignedCert.
    let check_leaf = |out: &str, issuer: &str| {
        let (_, pem) = parse_x509_pem(out.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        assert_eq!(cn(&cert), "foo.com");
        assert!(!cert.is_ca());
        assert!(
            cert.raw_serial().iter().any(|b| *b != 0),
            "a positive serial"
        );
        let issuer_cn = cert
            .issuer()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_string();
        assert_eq!(issuer_cn, issuer);
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san
            .general_names
            .iter()
            .map(|g| match g {
                x509_parser::extensions::GeneralName::IPAddress(ip) => {
                    ip.iter().map(u8::to_string).collect::<Vec<_>>().join(".")
                }
                x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["10.0.0.1", "10.0.0.2", "bar.com", "bat.com"]);
    };
    let own = run(r#"{{- $cert := genSelfSignedCert "foo.com" (list "10.0.0.1" "10.0.0.2") (list "bar.com" "bat.com") 365 }}{{ $cert.Cert }}"#).unwrap();
    check_leaf(&own, "foo.com");
    let signed = run(r#"{{- $ca := genCA "foo" 365 }}{{- $cert := genSignedCert "foo.com" (list "10.0.0.1" "10.0.0.2") (list "bar.com" "bat.com") 365 $ca }}{{ $cert.Cert }}"#).unwrap();
    check_leaf(&signed, "foo");
    let bad_ip = run(r#"{{ genSelfSignedCert "foo.com" (list "10.0.0.300") (list) 365 }}"#)
        .unwrap_err()
        .to_string();
    assert!(bad_ip.contains("error parsing ip: 10.0.0.300"), "{bad_ip}");
    // TestBuildCustomCert: the CA round-trips; a broken certificate fails.
    let same = run(r#"{{- $ca := genCA "example.com" 365 }}{{- $c := buildCustomCert ($ca.Cert | b64enc) ($ca.Key | b64enc) }}{{ eq $c.Cert $ca.Cert }} {{ eq $c.Key $ca.Key }}"#).unwrap();
    assert_eq!(same, "true true");
    let broken = run(r#"{{- $ca := genCA "example.com" 365 }}{{ buildCustomCert ("fail" | b64enc) ($ca.Key | b64enc) }}"#)
        .unwrap_err()
        .to_string();
    assert!(broken.contains("certificate"), "{broken}");
}
