//! Sprig v2.22's key and certificate functions, with Go's output formats:
//! `genPrivateKey` (`rsa`: 4096-bit PKCS#1 `RSA PRIVATE KEY`; `ecdsa`:
//! P-256 SEC1 `EC PRIVATE KEY`), `genCA`, `genSelfSignedCert`,
//! `genSignedCert` (2048-bit RSA keys, SHA-256 signatures, a random
//! 128-bit serial; the result is a dict `{Cert, Key}` of PEM text) and
//! `buildCustomCert` (a `{Cert, Key}` from base64 PEM text, both checked).
//!
//! Contract: Masterminds/sprig `crypto.go` (v2.14 certificates, v2.15
//! custom CA, v2.9 `genPrivateKey`). Left out: `dsa` keys (DSA is
//! deprecated and no maintained Rust crate generates its parameters; the
//! call fails naming what is supported).

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, PKCS_RSA_SHA256,
};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::EncodePrivateKey;
use serde_json::{json, Value};

use super::sprig::{list_of, to_i64};
use super::template::{arity, err, text, TemplateError};

/// An RSA key of `bits` as PKCS#1 PEM (Go's `x509.MarshalPKCS1PrivateKey`).
fn rsa_key(bits: usize) -> Result<rsa::RsaPrivateKey, String> {
    rsa::RsaPrivateKey::new(&mut rand_core::OsRng, bits).map_err(|e| e.to_string())
}

fn pkcs1_pem(key: &rsa::RsaPrivateKey) -> Result<String, String> {
    key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
        .map(|p| p.to_string())
        .map_err(|e| e.to_string())
}

/// A P-256 key as SEC1 PEM (Go's `x509.MarshalECPrivateKey`).
fn ecdsa_pem() -> Result<String, String> {
    use p256::pkcs8::LineEnding;
    loop {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        // Out-of-range scalars (about 2^-32 of draws) are drawn again.
        if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
            return k
                .to_sec1_pem(LineEnding::LF)
                .map(|p| p.to_string())
                .map_err(|e| e.to_string());
        }
    }
}

/// rcgen's signing key for an RSA key.
fn signing_key(key: &rsa::RsaPrivateKey) -> Result<KeyPair, String> {
    let pem = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| e.to_string())?;
    KeyPair::from_pem_and_sign_algo(&pem, &PKCS_RSA_SHA256).map_err(|e| e.to_string())
}

/// Sprig's certificate template: subject CN, validity now … now + days,
/// a random 128-bit serial.
fn params(cn: &str, days: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    let now = time_now();
    p.not_before = now;
    p.not_after = now + time_days(days);
    let mut serial = [0u8; 16];
    rand::fill(&mut serial);
    serial[0] &= 0x7f;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn time_days(days: i64) -> time::Duration {
    time::Duration::days(days)
}

/// Subject alternative names: IPs (each must parse) then DNS names.
fn alt_names(ips: &Value, dns: &Value) -> Result<Vec<SanType>, String> {
    let mut out = Vec::new();
    for ip in list_of(ips) {
        let s = text(&ip);
        let addr: IpAddr = s.parse().map_err(|_| format!("error parsing ip: {s}"))?;
        out.push(SanType::IpAddress(addr));
    }
    for d in list_of(dns) {
        let s = text(&d);
        out.push(SanType::DnsName(
            s.clone()
                .try_into()
                .map_err(|e| format!("DNS name '{s}': {e}"))?,
        ));
    }
    Ok(out)
}

fn cert_dict(cert: &str, key: &str) -> Value {
    json!({"Cert": cert, "Key": key})
}

fn gen_ca(cn: &str, days: i64) -> Result<Value, String> {
    let key = rsa_key(2048)?;
    let mut p = params(cn, days);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    let cert = p
        .self_signed(&signing_key(&key)?)
        .map_err(|e| e.to_string())?;
    Ok(cert_dict(&cert.pem(), &pkcs1_pem(&key)?))
}

fn leaf(cn: &str, ips: &Value, dns: &Value, days: i64) -> Result<CertificateParams, String> {
    let mut p = params(cn, days);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.subject_alt_names = alt_names(ips, dns)?;
    Ok(p)
}

fn gen_self_signed(cn: &str, ips: &Value, dns: &Value, days: i64) -> Result<Value, String> {
    let key = rsa_key(2048)?;
    let cert = leaf(cn, ips, dns, days)?
        .self_signed(&signing_key(&key)?)
        .map_err(|e| e.to_string())?;
    Ok(cert_dict(&cert.pem(), &pkcs1_pem(&key)?))
}

fn gen_signed(cn: &str, ips: &Value, dns: &Value, days: i64, ca: &Value) -> Result<Value, String> {
    let ca_cert = ca["Cert"]
        .as_str()
        .ok_or("the CA has no Cert (expected genCA's result)")?;
    let ca_key = ca["Key"]
        .as_str()
        .ok_or("the CA has no Key (expected genCA's result)")?;
    let ca_key = rsa::RsaPrivateKey::from_pkcs1_pem(ca_key)
        .map_err(|e| format!("error parsing CA key: {e}"))?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert, signing_key(&ca_key)?)
        .map_err(|e| format!("error parsing CA certificate: {e}"))?;
    let key = rsa_key(2048)?;
    let cert = leaf(cn, ips, dns, days)?
        .signed_by(&signing_key(&key)?, &issuer)
        .map_err(|e| e.to_string())?;
    Ok(cert_dict(&cert.pem(), &pkcs1_pem(&key)?))
}

fn build_custom(cert_b64: &str, key_b64: &str) -> Result<Value, String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let cert = b64
        .decode(cert_b64)
        .map_err(|e| format!("unable to decode base64 certificate: {e}"))?;
    let key = b64
        .decode(key_b64)
        .map_err(|e| format!("unable to decode base64 private key: {e}"))?;
    let cert = String::from_utf8(cert).map_err(|_| "the certificate is not PEM text")?;
    let key = String::from_utf8(key).map_err(|_| "the private key is not PEM text")?;
    x509_check(&cert)?;
    rsa::RsaPrivateKey::from_pkcs1_pem(&key)
        .map_err(|e| format!("error parsing private key: {e}"))?;
    Ok(cert_dict(&cert, &key))
}

fn x509_check(pem_text: &str) -> Result<(), String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
        .map_err(|e| format!("error decoding certificate: {e}"))?;
    pem.parse_x509()
        .map(|_| ())
        .map_err(|e| format!("error parsing certificate: {e}"))
}

/// The functions of this module; `None` when `name` is none of them.
pub(super) fn call(name: &str, args: &[Value], off: usize) -> Option<Result<Value, TemplateError>> {
    let n = args.len();
    let s = |i: usize| text(&args[i]);
    let fail = |e: String| err(off, format!("{name}: {e}"));
    let r = match name {
        "genPrivateKey" => arity(name, 1, n, off).and_then(|()| {
            match s(0).as_str() {
                "" | "rsa" => rsa_key(4096).and_then(|k| pkcs1_pem(&k)),
                "ecdsa" => ecdsa_pem(),
                "dsa" => Err("'dsa' keys are not supported: expected \"rsa\" or \"ecdsa\"".into()),
                // Sprig prints this instead of failing.
                other => Ok(format!("Unknown type {other}")),
            }
            .map(Value::String)
            .or_else(fail)
        }),
        "genCA" => {
            arity(name, 2, n, off).and_then(|()| gen_ca(&s(0), to_i64(&args[1])).or_else(fail))
        }
        "genSelfSignedCert" => arity(name, 4, n, off).and_then(|()| {
            gen_self_signed(&s(0), &args[1], &args[2], to_i64(&args[3])).or_else(fail)
        }),
        "genSignedCert" => arity(name, 5, n, off).and_then(|()| {
            gen_signed(&s(0), &args[1], &args[2], to_i64(&args[3]), &args[4]).or_else(fail)
        }),
        "buildCustomCert" => {
            arity(name, 2, n, off).and_then(|()| build_custom(&s(0), &s(1)).or_else(fail))
        }
        _ => return None,
    };
    Some(r)
}
