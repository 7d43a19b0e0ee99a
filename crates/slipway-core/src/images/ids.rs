//! Image ids in Slipway's image store and gallery versioning.
//!
//! Templates may carry Azure-shaped ids
//! (`/subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.Compute/images/<name>`,
//! `…/galleries/<g>/images/<def>[/versions/<x.y.z>]`); only the trailing
//! `images/…` or `galleries/…` segments matter. Canonical Slipway ids are
//! `/slipway/images/<name>` and `/slipway/galleries/<g>/images/<def>/versions/<x.y.z>`.
//!
//! Contract: `../shared/reference/image-builder.md` §1.7 (`Latest` versioning).

use std::fmt;

/// An image in the store, parsed from an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// A managed image.
    Managed {
        /// Image name.
        name: String,
    },
    /// A gallery image definition, or one of its versions.
    Gallery {
        /// Gallery name.
        gallery: String,
        /// Image definition name.
        definition: String,
        /// `x.y.z`, `latest`, or `None` (automatic versioning).
        version: Option<String>,
    },
}

impl fmt::Display for ImageRef {
    /// The canonical Slipway id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Managed { name } => write!(f, "/slipway/images/{name}"),
            ImageRef::Gallery {
                gallery,
                definition,
                version,
            } => {
                write!(f, "/slipway/galleries/{gallery}/images/{definition}")?;
                if let Some(v) = version {
                    write!(f, "/versions/{v}")?;
                }
                Ok(())
            }
        }
    }
}

fn name_ok(s: &str) -> bool {
    (1..=80).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// An image id that names no managed image or gallery image (version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image id '{id}' {why}: expected …/images/<name>, …/galleries/<gallery>/images/<definition> or …/galleries/<gallery>/images/<definition>/versions/<x.y.z|latest>")]
pub struct ImageIdError {
    /// The id given.
    pub id: String,
    /// What is wrong with it, e.g. `has no images segment`.
    pub why: &'static str,
}

/// Parses an image id (Azure-shaped or canonical).
///
/// Errors: names the id and the expected forms.
pub fn parse_image_id(id: &str) -> Result<ImageRef, ImageIdError> {
    let bad = |why: &'static str| ImageIdError {
        id: crate::echo::truncate(id),
        why,
    };
    let segs: Vec<&str> = id.trim_matches('/').split('/').collect();
    let pos = |key: &str| segs.iter().position(|s| s.eq_ignore_ascii_case(key));
    let r = if let Some(g) = pos("galleries") {
        let rest = &segs[g + 1..];
        match rest {
            [gallery, images, def] if images.eq_ignore_ascii_case("images") => ImageRef::Gallery {
                gallery: gallery.to_string(),
                definition: def.to_string(),
                version: None,
            },
            [gallery, images, def, versions, v]
                if images.eq_ignore_ascii_case("images")
                    && versions.eq_ignore_ascii_case("versions") =>
            {
                if !v.eq_ignore_ascii_case("latest") && parse_version(v).is_none() {
                    return Err(bad("has a bad version (x.y.z of integers, or latest)"));
                }
                ImageRef::Gallery {
                    gallery: gallery.to_string(),
                    definition: def.to_string(),
                    version: Some(v.to_ascii_lowercase()),
                }
            }
            _ => return Err(bad("is malformed")),
        }
    } else if let Some(i) = segs.iter().rposition(|s| s.eq_ignore_ascii_case("images")) {
        match &segs[i + 1..] {
            [name] => ImageRef::Managed {
                name: name.to_string(),
            },
            _ => return Err(bad("is malformed")),
        }
    } else {
        return Err(bad("has no images segment"));
    };
    let names: Vec<&str> = match &r {
        ImageRef::Managed { name } => vec![name],
        ImageRef::Gallery {
            gallery,
            definition,
            ..
        } => vec![gallery, definition],
    };
    if names.iter().any(|n| !name_ok(n)) {
        return Err(bad("has a bad name (1-80 of A-Z a-z 0-9 - _ .)"));
    }
    Ok(r)
}

/// `x.y.z` of non-negative integers (gallery version form).
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.split('.').map(|p| {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            p.parse::<u64>().ok()
        }
    });
    let r = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(r)
}

/// The next version under AIB's `Latest` scheme: the highest existing
/// version (within `major` when `major >= 0`) with its patch + 1. With no
/// version in range: `<major>.0.0` (`1.0.0` for major -1, `0.0.1` for 0).
/// Unparseable existing versions are ignored.
pub fn next_latest_version<'a>(existing: impl IntoIterator<Item = &'a str>, major: i64) -> String {
    let best = existing
        .into_iter()
        .filter_map(parse_version)
        .filter(|(m, _, _)| major < 0 || *m as i64 == major)
        .max();
    match best {
        Some((m, n, p)) => format!("{m}.{n}.{}", p + 1),
        None if major < 0 => "1.0.0".into(),
        None if major == 0 => "0.0.1".into(),
        None => format!("{major}.0.0"),
    }
}

/// The version `latest` stands for: the highest version not excluded from
/// latest, or `None`.
pub fn latest_version<'a>(versions: impl IntoIterator<Item = (&'a str, bool)>) -> Option<String> {
    versions
        .into_iter()
        .filter(|(_, excluded)| !excluded)
        .filter_map(|(v, _)| parse_version(v).map(|p| (p, v)))
        .max()
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_scheme_follows_aib_example() {
        let have = [
            "0.1.1", "0.1.2", "1.0.0", "1.0.1", "1.1.0", "1.1.1", "1.2.0", "2.0.0", "2.0.1",
            "2.1.0",
        ];
        assert_eq!(next_latest_version(have, -1), "2.1.1");
        assert_eq!(next_latest_version(have, 2), "2.1.1");
        assert_eq!(next_latest_version(have, 1), "1.2.1");
        assert_eq!(next_latest_version(have, 0), "0.1.3");
        assert_eq!(next_latest_version(have, 7), "7.0.0");
        assert_eq!(next_latest_version([], -1), "1.0.0");
        assert_eq!(next_latest_version(["1.10.0", "1.9.5"], -1), "1.10.1");
    }

    #[test]
    fn latest_skips_excluded_versions() {
        let v = [("1.0.0", false), ("1.0.2", true), ("1.0.1", false)];
        assert_eq!(latest_version(v).as_deref(), Some("1.0.1"));
        assert_eq!(latest_version([("1.0.0", true)]), None);
    }

    #[test]
    fn azure_and_canonical_ids_parse() {
        let az = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g1/images/web/versions/1.2.3";
        let r = parse_image_id(az).unwrap();
        assert_eq!(
            r.to_string(),
            "/slipway/galleries/g1/images/web/versions/1.2.3"
        );
        assert_eq!(parse_image_id(&r.to_string()).unwrap(), r);
        let m = parse_image_id(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/base",
        )
        .unwrap();
        assert_eq!(
            m,
            ImageRef::Managed {
                name: "base".into()
            }
        );
        assert!(matches!(
            parse_image_id("/slipway/galleries/g/images/d").unwrap(),
            ImageRef::Gallery { version: None, .. }
        ));
        let e = parse_image_id("/slipway/galleries/g/images/d/versions/one")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'/slipway/galleries/g/images/d/versions/one'") && e.contains("x.y.z"),
            "{e}"
        );
        assert!(parse_image_id("/nothing/here").is_err());
        assert!(parse_image_id("/slipway/images/a b").is_err());
    }
}
