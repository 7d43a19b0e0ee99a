//! Sprig v2.22's password and cipher functions, byte-for-byte as Go's:
//! `derivePassword` (the Master Password algorithm: scrypt key from the
//! master password and user, HMAC-SHA256 seed from the site and counter,
//! a template of character classes per password type) and
//! `encryptAES`/`decryptAES` (AES-256-CBC, the password zero-padded or cut
//! to 32 bytes as the key, PKCS#7 padding, a random IV before the
//! ciphertext, standard base64).
//!
//! Contract: Masterminds/sprig `crypto.go` (v2.9 `derivePassword`, v2.21
//! `encryptAES`/`decryptAES`); its `crypto_test.go` vectors are in
//! `tests/corpus/sprig_tests.tsv`.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::sprig::to_i64;
use super::template::{arity, err, text, TemplateError};

/// The Master Password algorithm's key-derivation scope.
const MASTER_PASSWORD_SEED: &str = "com.lyndir.masterpassword";

/// Password templates per type (Master Password algorithm, version 3).
fn templates(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "maximum" => &["anoxxxxxxxxxxxxxxxxx", "axxxxxxxxxxxxxxxxxno"],
        "long" => &[
            "CvcvnoCvcvCvcv",
            "CvcvCvcvnoCvcv",
            "CvcvCvcvCvcvno",
            "CvccnoCvcvCvcv",
            "CvccCvcvnoCvcv",
            "CvccCvcvCvcvno",
            "CvcvnoCvccCvcv",
            "CvcvCvccnoCvcv",
            "CvcvCvccCvcvno",
            "CvcvnoCvcvCvcc",
            "CvcvCvcvnoCvcc",
            "CvcvCvcvCvccno",
            "CvccnoCvccCvcv",
            "CvccCvccnoCvcv",
            "CvccCvccCvcvno",
            "CvcvnoCvccCvcc",
            "CvcvCvccnoCvcc",
            "CvcvCvccCvccno",
            "CvccnoCvcvCvcc",
            "CvccCvcvnoCvcc",
            "CvccCvcvCvccno",
        ],
        "medium" => &["CvcnoCvc", "CvcCvcno"],
        "short" => &["Cvcn"],
        "basic" => &["aaanaaan", "aannaaan", "aaannaaa"],
        "pin" => &["nnnn"],
        _ => return None,
    })
}

/// The characters a template class stands for.
fn class(c: u8) -> &'static [u8] {
    match c {
        b'V' => b"AEIOU",
        b'C' => b"BCDFGHJKLMNPQRSTVWXYZ",
        b'v' => b"aeiou",
        b'c' => b"bcdfghjklmnpqrstvwxyz",
        b'A' => b"AEIOUBCDFGHJKLMNPQRSTVWXYZ",
        b'a' => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz",
        b'n' => b"0123456789",
        b'o' => b"@&%?,=[]_:-+*$#!'^~;()/.",
        _ => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz0123456789!@#$%^&*()",
    }
}

/// `derivePassword counter type password user site`.
fn derive_password(
    counter: u32,
    kind: &str,
    password: &str,
    user: &str,
    site: &str,
) -> Result<String, String> {
    let Some(templates) = templates(kind) else {
        // Sprig prints this instead of failing.
        return Ok(format!("cannot find password template {kind}"));
    };
    let mut salt = MASTER_PASSWORD_SEED.as_bytes().to_vec();
    salt.extend_from_slice(&(user.len() as u32).to_be_bytes());
    salt.extend_from_slice(user.as_bytes());
    let params = scrypt::Params::new(15, 8, 2, 64).map_err(|e| e.to_string())?;
    let mut key = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), &salt, &params, &mut key).map_err(|e| e.to_string())?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(MASTER_PASSWORD_SEED.as_bytes());
    mac.update(&(site.len() as u32).to_be_bytes());
    mac.update(site.as_bytes());
    mac.update(&counter.to_be_bytes());
    let seed = mac.finalize().into_bytes();
    let template = templates[usize::from(seed[0]) % templates.len()].as_bytes();
    Ok(template
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let chars = class(*c);
            char::from(chars[usize::from(seed[i + 1]) % chars.len()])
        })
        .collect())
}

/// The AES-256 key Sprig makes of a password: its bytes, zero-padded or cut
/// to 32.
fn aes_key(password: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    let b = password.as_bytes();
    let n = b.len().min(32);
    key[..n].copy_from_slice(&b[..n]);
    key
}

fn encrypt_aes(password: &str, plaintext: &str) -> String {
    if plaintext.is_empty() {
        return String::new();
    }
    let mut iv = [0u8; 16];
    rand::fill(&mut iv);
    let ct = cbc::Encryptor::<aes::Aes256>::new(&aes_key(password).into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes());
    let mut out = iv.to_vec();
    out.extend_from_slice(&ct);
    base64::engine::general_purpose::STANDARD.encode(out)
}

fn decrypt_aes(password: &str, encoded: &str) -> Result<String, String> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("decryptAES: the ciphertext is not base64: {e}"))?;
    if data.len() < 16 || (data.len() - 16) % 16 != 0 {
        return Err("decryptAES: the ciphertext is not an IV and whole AES blocks".into());
    }
    let (iv, ct) = data.split_at(16);
    let iv: [u8; 16] = iv
        .try_into()
        .map_err(|_| "decryptAES: short IV".to_string())?;
    let plain = cbc::Decryptor::<aes::Aes256>::new(&aes_key(password).into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(ct)
        .map_err(|_| {
            "decryptAES: wrong password or damaged ciphertext (bad padding)".to_string()
        })?;
    Ok(String::from_utf8_lossy(&plain).into_owned())
}

/// The functions of this module; `None` when `name` is none of them.
pub(super) fn call(name: &str, args: &[Value], off: usize) -> Option<Result<Value, TemplateError>> {
    let n = args.len();
    let s = |i: usize| text(&args[i]);
    let r = match name {
        "derivePassword" => arity(name, 5, n, off).and_then(|()| {
            let counter = u32::try_from(to_i64(&args[0])).unwrap_or(0);
            derive_password(counter, &s(1), &s(2), &s(3), &s(4))
                .map(Value::String)
                .or_else(|e| err(off, format!("derivePassword: {e}")))
        }),
        "encryptAES" => arity(name, 2, n, off).map(|()| Value::String(encrypt_aes(&s(0), &s(1)))),
        "decryptAES" => arity(name, 2, n, off).and_then(|()| {
            decrypt_aes(&s(0), &s(1))
                .map(Value::String)
                .or_else(|e| err(off, e))
        }),
        _ => return None,
    };
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_output_is_a_random_iv_and_whole_blocks_and_a_wrong_password_is_an_error() {
        let a = encrypt_aes("secretkey", "plaintext");
        let b = encrypt_aes("secretkey", "plaintext");
        assert_ne!(a, b, "a fresh IV per call");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .unwrap();
        assert_eq!(raw.len(), 32, "16-byte IV + one padded block");
        assert_eq!(decrypt_aes("secretkey", &a).unwrap(), "plaintext");
        assert_eq!(encrypt_aes("k", ""), "", "Sprig returns empty for empty");
        let e = decrypt_aes("other", &a);
        assert!(e.is_err() || e.as_deref() != Ok("plaintext"));
        assert!(decrypt_aes("k", "not base64!")
            .unwrap_err()
            .contains("base64"));
    }
}
