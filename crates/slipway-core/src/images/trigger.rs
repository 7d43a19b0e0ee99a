//! Image template triggers (AIB `…/imageTemplates/{t}/triggers/{name}`,
//! kind `SourceImage`): rebuild a template when a newer version of its
//! source appears. The pure parts: the request body, which sources a
//! trigger can follow, and whether a new image is one of them.
//!
//! Contract: `../shared/reference/image-builder.md` (triggers row; API
//! 2022-07-01 and later).

use serde::{Deserialize, Serialize};

use super::ids::{parse_image_id, ImageRef};
use super::template::{Source, ValidationFailed};

/// The only trigger kind AIB defines.
pub const SOURCE_IMAGE: &str = "SourceImage";

/// A trigger's read-only status (`properties.status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerStatus {
    /// `Healthy` while it can follow its template's source, `Unhealthy`
    /// when its last attempt to start a run failed.
    pub code: String,
    /// What it last did (`Started run r7 for new source image …`).
    pub message: String,
    /// When, RFC 3339.
    pub time: String,
}

/// A stored trigger (`properties` of the resource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerProperties {
    /// `SourceImage`.
    pub kind: String,
    /// Read-only.
    pub status: TriggerStatus,
    /// `Succeeded`.
    pub provisioning_state: String,
}

/// Reads a trigger request body, `{"properties": {"kind": "SourceImage"}}`
/// (an ARM resource envelope with `name`, `type`, `apiVersion` is accepted
/// around it).
///
/// Errors: [`ValidationFailed`] naming `triggers.properties.kind` and the
/// value given.
pub fn parse_trigger_request(body: &str) -> Result<String, ValidationFailed> {
    let bad = |path: &str, detail: String| ValidationFailed {
        path: format!("triggers.{path}"),
        detail,
    };
    let doc: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| bad("properties", format!("the body is not JSON: {e}")))?;
    let kind = &doc["properties"]["kind"];
    match kind.as_str() {
        Some(SOURCE_IMAGE) => Ok(SOURCE_IMAGE.to_string()),
        _ => Err(bad(
            "properties.kind",
            format!("is {kind}: expected \"{SOURCE_IMAGE}\""),
        )),
    }
}

/// What a `SourceImage` trigger follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackedSource {
    /// New versions of a gallery image definition (the source names
    /// `…/versions/latest`).
    Gallery {
        /// Gallery name.
        gallery: String,
        /// Image definition.
        definition: String,
    },
    /// A managed image that is replaced.
    Managed {
        /// Image name.
        name: String,
    },
    /// New versions of a base image in the platform-image catalog (the
    /// source names version `latest`).
    Platform {
        /// `Debian`.
        publisher: String,
        /// `debian-12`.
        offer: String,
        /// `12`.
        sku: String,
    },
}

impl std::fmt::Display for TrackedSource {
    /// How status messages name the followed source: `gallery image
    /// 'g/d' (versions/latest)`, `managed image 'n'`, `platform image
    /// 'Debian:debian-12:12' (latest)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrackedSource::Gallery {
                gallery,
                definition,
            } => write!(
                f,
                "gallery image '{gallery}/{definition}' (versions/latest)"
            ),
            TrackedSource::Managed { name } => write!(f, "managed image '{name}'"),
            TrackedSource::Platform {
                publisher,
                offer,
                sku,
            } => write!(f, "platform image '{publisher}:{offer}:{sku}' (latest)"),
        }
    }
}

/// The source a trigger on a template with `source` follows.
///
/// Errors: [`ValidationFailed`] on `properties.source` when the source has
/// no newer versions to follow: a gallery or platform image version other
/// than `latest`, or a disk file.
pub fn tracked_source(source: &Source) -> Result<TrackedSource, ValidationFailed> {
    let refuse = |detail: String| ValidationFailed {
        path: "properties.source".into(),
        detail,
    };
    match source {
        Source::SharedImageVersion { image_version_id } => {
            match parse_image_id(image_version_id).map_err(|e| refuse(e.to_string()))? {
                ImageRef::Gallery {
                    gallery,
                    definition,
                    version: Some(v),
                } if v == "latest" => Ok(TrackedSource::Gallery {
                    gallery,
                    definition,
                }),
                _ => Err(refuse(format!(
                    "a SourceImage trigger follows '…/versions/latest'; '{image_version_id}' names one version, which never changes"
                ))),
            }
        }
        Source::ManagedImage { image_id } => {
            match parse_image_id(image_id).map_err(|e| refuse(e.to_string()))? {
                ImageRef::Managed { name } => Ok(TrackedSource::Managed { name }),
                _ => Err(refuse(format!("'{image_id}' is not a managed image id"))),
            }
        }
        Source::PlatformImage {
            publisher,
            offer,
            sku,
            version,
            ..
        } => {
            if version.eq_ignore_ascii_case("latest") {
                Ok(TrackedSource::Platform {
                    publisher: publisher.clone(),
                    offer: offer.clone(),
                    sku: sku.clone(),
                })
            } else {
                Err(refuse(format!(
                    "a SourceImage trigger follows version 'latest' of a PlatformImage; '{version}' names one version, which never changes"
                )))
            }
        }
        other => Err(refuse(format!(
            "a SourceImage trigger needs a SharedImageVersion (…/versions/latest), ManagedImage or PlatformImage (version latest) source, not {}",
            serde_json::to_value(other)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_string))
                .unwrap_or_else(|| "this source".into())
        ))),
    }
}

impl TrackedSource {
    /// Whether the new image `id` (canonical) is a newer version of this
    /// source. A gallery version counts only when it may be `latest`.
    pub fn follows(&self, id: &str, exclude_from_latest: bool) -> bool {
        match (self, parse_image_id(id)) {
            (
                TrackedSource::Gallery {
                    gallery,
                    definition,
                },
                Ok(ImageRef::Gallery {
                    gallery: g,
                    definition: d,
                    version: Some(_),
                }),
            ) => !exclude_from_latest && *gallery == g && *definition == d,
            (TrackedSource::Managed { name }, Ok(ImageRef::Managed { name: n })) => *name == n,
            _ => false,
        }
    }

    /// Whether this follows platform image `publisher:offer:sku` (compared
    /// as the catalog does, ignoring ASCII case).
    pub fn follows_platform(&self, publisher: &str, offer: &str, sku: &str) -> bool {
        matches!(self, TrackedSource::Platform { publisher: p, offer: o, sku: s }
            if p.eq_ignore_ascii_case(publisher) && o.eq_ignore_ascii_case(offer) && s.eq_ignore_ascii_case(sku))
    }
}

/// The chain of a run a trigger would start for `template`, after a run
/// whose chain (the templates that led to it, itself last) is `chain`;
/// `None` when `template` is already in it — a template's own output, or
/// templates that feed each other, never rebuild in a loop.
pub fn extend_chain(chain: &[String], template: &str) -> Option<Vec<String>> {
    if chain.iter().any(|t| t == template) {
        return None;
    }
    let mut next = chain.to_vec();
    next.push(template.to_string());
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggered_runs_never_loop() {
        let a = extend_chain(&["A".to_string()], "B").unwrap();
        assert_eq!(a, ["A", "B"]);
        assert_eq!(extend_chain(&a, "A"), None, "B's output must not rebuild A");
        assert_eq!(extend_chain(&a, "B"), None, "nor B itself");
        assert_eq!(extend_chain(&a, "C").unwrap(), ["A", "B", "C"]);
    }

    #[test]
    fn only_sources_with_newer_versions_can_be_followed() {
        let sig = |v: &str| {
            Source::SharedImageVersion {
            image_version_id: format!("/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/galleries/g/images/d/versions/{v}"),
        }
        };
        let t = tracked_source(&sig("latest")).unwrap();
        assert!(t.follows("/slipway/galleries/g/images/d/versions/1.0.1", false));
        assert!(!t.follows("/slipway/galleries/g/images/d/versions/1.0.1", true));
        assert!(!t.follows("/slipway/galleries/g/images/other/versions/1.0.1", false));
        assert!(!t.follows("/slipway/images/d", false));
        let e = tracked_source(&sig("1.0.0")).unwrap_err();
        assert!(e.to_string().contains("versions/latest"), "{e}");
        let m = tracked_source(&Source::ManagedImage {
            image_id: "/slipway/images/base".into(),
        })
        .unwrap();
        assert!(m.follows("/slipway/images/base", false));
        assert_eq!(m.to_string(), "managed image 'base'");
        let platform = |v: &str| Source::PlatformImage {
            publisher: "Debian".into(),
            offer: "debian-12".into(),
            sku: "12".into(),
            version: v.into(),
            plan_info: None,
        };
        let p = tracked_source(&platform("Latest")).unwrap();
        assert!(p.follows_platform("debian", "DEBIAN-12", "12"));
        assert!(!p.follows_platform("Debian", "debian-13", "13"));
        assert!(!p.follows("/slipway/images/base", false));
        assert_eq!(
            p.to_string(),
            "platform image 'Debian:debian-12:12' (latest)"
        );
        let e = tracked_source(&platform("12.12.20261203")).unwrap_err();
        assert!(
            e.to_string().contains("'12.12.20261203' names one version"),
            "{e}"
        );
        assert_eq!(
            parse_trigger_request(r#"{"properties":{"kind":"SourceImage"}}"#).unwrap(),
            "SourceImage"
        );
        let e = parse_trigger_request(r#"{"properties":{"kind":"Timer"}}"#).unwrap_err();
        assert!(e.to_string().contains("\"Timer\""), "{e}");
    }
}
