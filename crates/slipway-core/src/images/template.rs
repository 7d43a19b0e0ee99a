//! The image template document (Azure VM Image Builder
//! `Microsoft.VirtualMachineImages/imageTemplates`, API 2024-02-01):
//! case-sensitive field names, unknown fields rejected, `type`
//! discriminators, and AIB's defaults and `ValidationFailed` wording.
//!
//! Contract: `../shared/reference/image-builder.md` §1.2–1.7.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// `buildTimeoutInMinutes` when 0 or omitted, minutes.
pub const DEFAULT_BUILD_TIMEOUT_MINUTES: u32 = 240;
/// Largest `buildTimeoutInMinutes`.
pub const MAX_BUILD_TIMEOUT_MINUTES: u32 = 960;

/// A template that failed validation: AIB's `ValidationFailed` error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("Validation failed: 'ImageTemplate.{path}': {detail}")]
pub struct ValidationFailed {
    /// Property path, `properties.customize[1].inline`.
    pub path: String,
    /// What is wrong and what was expected.
    pub detail: String,
}

impl ValidationFailed {
    fn new(path: impl Into<String>, detail: impl Into<String>) -> ValidationFailed {
        ValidationFailed {
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// The AIB error code, `ValidationFailed`.
    pub fn code(&self) -> &'static str {
        "ValidationFailed"
    }
}

/// The AIB API versions whose templates Slipway takes (`apiVersion` of an
/// ARM resource file), oldest first (reference `image-builder.md` §1.1).
pub const API_VERSIONS: [&str; 7] = [
    "2019-05-01-preview",
    "2020-02-14",
    "2021-10-01",
    "2022-02-14",
    "2022-07-01",
    "2023-07-01",
    "2024-02-01",
];

/// The ARM envelope around [`TemplateProperties`], as kept in ARM resource
/// files submitted with `az resource create --is-full-object`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageTemplate {
    /// `Microsoft.VirtualMachineImages/imageTemplates` when given.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// The AIB API version the file was written for (one of
    /// [`API_VERSIONS`]); fields newer than it are refused, naming the
    /// version they need. Omitted: the newest.
    #[serde(
        default,
        rename = "apiVersion",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<String>,
    /// The resource name in an ARM template (kept; the path names the template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ARM deployment ordering (kept, not used).
    #[serde(default, rename = "dependsOn", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub depends_on: Option<Vec<serde_json::Value>>,
    /// Region (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Managed identity (kept, not used: Slipway needs none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub identity: Option<serde_json::Value>,
    /// The template.
    pub properties: TemplateProperties,
}

/// `properties` (AIB `ImageTemplateProperties`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateProperties {
    /// The image to start from.
    pub source: Source,
    /// Customizers, run in order.
    #[serde(default)]
    pub customize: Vec<Customizer>,
    /// In-image validation after customizing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<Validate>,
    /// Where the image goes (at least one).
    pub distribute: Vec<Distributor>,
    /// Minutes; 0 or omitted = 240, at most 960.
    #[serde(default)]
    pub build_timeout_in_minutes: u32,
    /// Build machine size and OS disk size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_profile: Option<VmProfile>,
    /// What to keep when a customizer or validator fails.
    #[serde(default)]
    pub error_handling: ErrorHandling,
    /// Kept for compatibility; Slipway stages under its data folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_resource_group: Option<String>,
    /// `{state: Enabled|Disabled}`: run once on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_run: Option<AutoRun>,
    /// Kept, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_resource_tags: Option<BTreeMap<String, String>>,
    /// Kept, not used (`vmBoot` optimization has no local meaning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub optimize: Option<serde_json::Value>,
}

/// `autoRun`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoRun {
    /// `Enabled` | `Disabled`.
    pub state: EnabledState,
}

/// `Enabled` | `Disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EnabledState {
    /// On.
    Enabled,
    /// Off.
    Disabled,
}

/// The source image (`type` discriminator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", deny_unknown_fields, rename_all_fields = "camelCase")]
pub enum Source {
    /// A base image from Slipway's local catalog (built with debootstrap),
    /// addressed like a marketplace image; `version: latest` resolves at
    /// build time.
    PlatformImage {
        /// `Debian`.
        publisher: String,
        /// `debian-12`.
        offer: String,
        /// `12`.
        sku: String,
        /// A concrete version or `latest`.
        version: String,
        /// Kept, not used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Object>)]
        plan_info: Option<serde_json::Value>,
    },
    /// An image in Slipway's image store (`…/images/<name>`).
    ManagedImage {
        /// Image id.
        image_id: String,
    },
    /// A gallery image version (`…/images/<def>/versions/<x.y.z>|latest`).
    SharedImageVersion {
        /// Version id.
        image_version_id: String,
    },
    /// Slipway extension: a qcow2, raw or fixed-VHD file, a local path or
    /// an http(s) URL.
    DiskImage {
        /// Path or URL.
        uri: String,
        /// Lower-case hex sha256 of the file, checked when given.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sha256_checksum: String,
    },
}

/// A customizer (`type` discriminator); Windows-only types are parsed so
/// they can be refused by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", deny_unknown_fields, rename_all_fields = "camelCase")]
pub enum Customizer {
    /// A script run with `/bin/sh -e` (Packer `shell`).
    Shell {
        /// Shown in the log markers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// A script to download (path or http(s) URL)…
        #[serde(default, skip_serializing_if = "Option::is_none")]
        script_uri: Option<String>,
        /// …or inline commands (exactly one of the two).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inline: Option<Vec<String>>,
        /// Lower-case hex sha256 of `scriptUri`'s content.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sha256_checksum: String,
    },
    /// One file copied into the image.
    File {
        /// Shown in the log markers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Path or http(s) URL.
        source_uri: String,
        /// Absolute path in the image.
        destination: String,
        /// Lower-case hex sha256 of the file.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sha256_checksum: String,
    },
    /// Windows only: refused.
    #[schema(value_type = Object)]
    PowerShell(serde_json::Map<String, serde_json::Value>),
    /// Windows only: refused.
    #[schema(value_type = Object)]
    WindowsRestart(serde_json::Map<String, serde_json::Value>),
    /// Windows only: refused.
    #[schema(value_type = Object)]
    WindowsUpdate(serde_json::Map<String, serde_json::Value>),
}

impl Customizer {
    /// The name shown in `(telemetry) Starting provisioner <name>`: the
    /// customizer's `name`, else its type in lower case (`shell`, `file`).
    pub fn display_name(&self) -> String {
        match self {
            Customizer::Shell { name, .. } => name.clone().unwrap_or_else(|| "shell".into()),
            Customizer::File { name, .. } => name.clone().unwrap_or_else(|| "file".into()),
            Customizer::PowerShell(_) => "powershell".into(),
            Customizer::WindowsRestart(_) => "windows-restart".into(),
            Customizer::WindowsUpdate(_) => "windows-update".into(),
        }
    }
}

/// `validate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Validate {
    /// Distribute even when validation fails (the run is still Failed).
    #[serde(default)]
    pub continue_distribute_on_failure: bool,
    /// Validate the source image only, without customizing.
    #[serde(default)]
    pub source_validation_only: bool,
    /// Validators (`Shell`, `File`).
    #[serde(default, rename = "inVMValidations")]
    pub in_vm_validations: Vec<Customizer>,
}

/// A distributor (`type` discriminator), each with a `runOutputName`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", deny_unknown_fields, rename_all_fields = "camelCase")]
pub enum Distributor {
    /// A fixed VHD (virtual size a whole number of MiB).
    #[serde(rename = "VHD")]
    Vhd {
        /// Run output name.
        run_output_name: String,
        /// Output path; empty = in the run's output folder.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        uri: String,
        /// Tags on the artifact.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        artifact_tags: BTreeMap<String, String>,
    },
    /// An image in Slipway's image store.
    ManagedImage {
        /// Run output name.
        run_output_name: String,
        /// `…/images/<name>`.
        image_id: String,
        /// Kept, not used.
        location: String,
        /// Tags on the artifact.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        artifact_tags: BTreeMap<String, String>,
    },
    /// A version of a gallery image definition.
    SharedImage {
        /// Run output name.
        run_output_name: String,
        /// `…/galleries/<g>/images/<def>` (automatic version) or
        /// `…/images/<def>/versions/<x.y.z>`.
        gallery_image_id: String,
        /// `Latest` (default) or `Source`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        versioning: Option<Versioning>,
        /// Kept out of `latest`.
        #[serde(default)]
        exclude_from_latest: bool,
        /// Kept, not used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Object>)]
        target_regions: Option<serde_json::Value>,
        /// Kept, not used (deprecated in AIB).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replication_regions: Option<Vec<String>>,
        /// Tags on the artifact.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        artifact_tags: BTreeMap<String, String>,
    },
    /// Slipway extension: a qcow2 file.
    #[serde(rename = "Qcow2")]
    Qcow2 {
        /// Run output name.
        run_output_name: String,
        /// Output path; empty = in the run's output folder.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        uri: String,
    },
    /// Slipway extension: a raw disk file.
    #[serde(rename = "Raw")]
    Raw {
        /// Run output name.
        run_output_name: String,
        /// Output path; empty = in the run's output folder.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        uri: String,
    },
}

impl Distributor {
    /// The distributor's `runOutputName`.
    pub fn run_output_name(&self) -> &str {
        match self {
            Distributor::Vhd {
                run_output_name, ..
            }
            | Distributor::ManagedImage {
                run_output_name, ..
            }
            | Distributor::SharedImage {
                run_output_name, ..
            }
            | Distributor::Qcow2 {
                run_output_name, ..
            }
            | Distributor::Raw {
                run_output_name, ..
            } => run_output_name,
        }
    }
}

/// `versioning` of a `SharedImage` distributor (`scheme` discriminator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "scheme", deny_unknown_fields)]
pub enum Versioning {
    /// Next patch of the highest version (within `major` when ≥ 0).
    Latest {
        /// -1 (default) = the highest major.
        #[serde(default = "minus_one")]
        major: i64,
    },
    /// The source image's version.
    Source,
}

fn minus_one() -> i64 {
    -1
}

/// `vmProfile`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmProfile {
    /// `Standard_D2s_v3`…; mapped to vCPUs and memory for full-boot builds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vm_size: String,
    /// 0 = the source's size; can only grow the disk.
    #[serde(default, rename = "osDiskSizeGB")]
    pub os_disk_size_gb: u32,
    /// Slipway extension: where customizers and validators run. Default
    /// `Chroot`; `FullBoot` boots the image under qemu for scripts that need
    /// a running OS (services, systemd, kernel modules).
    #[serde(default, skip_serializing_if = "Executor::is_default")]
    pub executor: Executor,
    /// Kept, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_assigned_identities: Option<Vec<String>>,
    /// Kept, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub vnet_config: Option<serde_json::Value>,
}

/// Where customizers and validators run (`vmProfile.executor`, a Slipway
/// extension; AIB always boots a build VM).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Executor {
    /// Inside the loop-mounted image with `chroot`: no boot, no KVM, fast.
    /// Services do not start; `/proc`, `/sys` and `/dev` are the host's.
    #[default]
    Chroot,
    /// The image boots under qemu (KVM when it works, TCG otherwise) with a
    /// cloud-init NoCloud seed; customizers run over SSH as root. The
    /// image needs cloud-init and sshd (Slipway's base images have both).
    FullBoot,
}

impl Executor {
    /// `Chroot`, the default (left out when serializing).
    pub fn is_default(&self) -> bool {
        *self == Executor::Chroot
    }
}

/// `errorHandling`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ErrorHandling {
    /// What happens to the staging area when a customizer fails. Unset:
    /// kept (AIB keeps its staging resource group on failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_customizer_error: Option<OnError>,
    /// The same when validation fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_validation_error: Option<OnError>,
}

/// `cleanup` deletes the staging area (the working disk); `abort` keeps it
/// for inspection. The run's `customization.log` is kept either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Delete the staging area.
    Cleanup,
    /// Keep it.
    Abort,
}

impl OnError {
    /// Whether a failure under this setting (`None` = unset) keeps staging.
    pub fn keeps_staging(setting: Option<OnError>) -> bool {
        setting != Some(OnError::Cleanup)
    }
}

/// A `vmProfile.vmSize` that is not an Azure size Slipway can shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vmSize '{0}' is not known: expected Standard_<family><vCPUs>… (e.g. Standard_D2s_v3, Standard_B1s)")]
pub struct UnknownVmSize(pub String);

/// vCPUs and memory (MiB) of an Azure VM size, for full-boot builds:
/// `Standard_<family><vcpus>…` sizes map to their published shapes; an
/// empty size is AIB's default `Standard_D2ds_v4` (2 vCPUs, 8 GiB).
///
/// Errors: names the size and the expected form.
pub fn vm_shape(vm_size: &str) -> Result<(u32, u32), UnknownVmSize> {
    if vm_size.is_empty() {
        return Ok((2, 8192));
    }
    let bad = || UnknownVmSize(crate::echo::truncate(vm_size));
    let rest = vm_size.strip_prefix("Standard_").ok_or_else(bad)?;
    let family: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let digits: String = rest[family.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let vcpus: u32 = digits.parse().map_err(|_| bad())?;
    if vcpus == 0 {
        return Err(bad());
    }
    // GiB per vCPU by family letter (Azure's general-purpose ratios).
    let per_cpu_gib = match family.chars().next() {
        Some('B') if vcpus == 1 => return Ok((1, 1024)),
        Some('A') => 2,
        Some('B') | Some('D') => 4,
        Some('E') | Some('M') => 8,
        Some('F') => 2,
        _ => return Err(bad()),
    };
    Ok((vcpus, vcpus * per_cpu_gib * 1024))
}

/// [`validate_template_name`]'s rule as a regular expression, for API
/// descriptions.
pub const TEMPLATE_NAME_PATTERN: &str = "^[A-Za-z0-9_.-]{1,64}$";

fn name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Checks a template name against `^[A-Za-z0-9-_.]{1,64}$`.
///
/// Errors: [`ValidationFailed`] at path `name`.
pub fn validate_template_name(name: &str) -> Result<(), ValidationFailed> {
    if name_ok(name) {
        Ok(())
    } else {
        Err(ValidationFailed::new(
            "name",
            format!("Field 'name' has a bad value: '{name}'. Expected 1 to 64 characters from A-Z, a-z, 0-9, '-', '_' and '.'."),
        ))
    }
}

/// Parses and validates a template document (JSON). The timeout is
/// normalized (0 → 240).
///
/// Errors: [`ValidationFailed`] with the property path: unknown or
/// misspelled fields (names are case-sensitive), unknown `type`s, missing
/// required fields, Windows-only customizers, `Shell` without exactly one
/// of `scriptUri`/`inline`, a timeout above 960, an empty or duplicate
/// `runOutputName`, a `File` destination that is not absolute.
pub fn parse_template(json: &str) -> Result<ImageTemplate, ValidationFailed> {
    let de = &mut serde_json::Deserializer::from_str(json);
    let mut t: ImageTemplate = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ValidationFailed::new(path, e.into_inner().to_string())
    })?;
    check_api_version(&t)?;
    validate(&mut t.properties)?;
    Ok(t)
}

/// Refuses an unknown `apiVersion` and fields newer than it.
fn check_api_version(t: &ImageTemplate) -> Result<(), ValidationFailed> {
    let Some(version) = t.api_version.as_deref() else {
        return Ok(());
    };
    if !API_VERSIONS.contains(&version) {
        return Err(ValidationFailed::new(
            "apiVersion",
            format!(
                "Field 'apiVersion' has a bad value: '{}'. Expected one of {}.",
                crate::echo::truncate(version),
                API_VERSIONS.join(", ")
            ),
        ));
    }
    let p = &t.properties;
    let shared_image = |f: fn(&Distributor) -> bool| p.distribute.iter().any(f);
    let newer: [(&str, &str, bool); 7] = [
        ("properties.validate", "2022-02-14", p.validate.is_some()),
        (
            "properties.stagingResourceGroup",
            "2022-02-14",
            p.staging_resource_group.is_some(),
        ),
        (
            "properties.distribute[].versioning",
            "2022-07-01",
            shared_image(|d| {
                matches!(
                    d,
                    Distributor::SharedImage {
                        versioning: Some(_),
                        ..
                    }
                )
            }),
        ),
        (
            "properties.distribute[].targetRegions",
            "2022-07-01",
            shared_image(|d| {
                matches!(
                    d,
                    Distributor::SharedImage {
                        target_regions: Some(_),
                        ..
                    }
                )
            }),
        ),
        (
            "properties.errorHandling",
            "2023-07-01",
            p.error_handling != ErrorHandling::default(),
        ),
        ("properties.autoRun", "2024-02-01", p.auto_run.is_some()),
        (
            "properties.managedResourceTags",
            "2024-02-01",
            p.managed_resource_tags.is_some(),
        ),
    ];
    for (field, needs, used) in newer {
        // The versions are ISO dates: they order as strings.
        if used && version < needs {
            return Err(ValidationFailed::new(
                field,
                format!(
                    "Field '{field}' needs apiVersion {needs} or later; the template says apiVersion {version}."
                ),
            ));
        }
    }
    Ok(())
}

fn validate(p: &mut TemplateProperties) -> Result<(), ValidationFailed> {
    if p.build_timeout_in_minutes > MAX_BUILD_TIMEOUT_MINUTES {
        return Err(ValidationFailed::new(
            "properties.buildTimeoutInMinutes",
            format!(
                "Field 'buildTimeoutInMinutes' has a bad value: '{}'. Expected 0 (= 240) to 960 minutes.",
                p.build_timeout_in_minutes
            ),
        ));
    }
    if p.build_timeout_in_minutes == 0 {
        p.build_timeout_in_minutes = DEFAULT_BUILD_TIMEOUT_MINUTES;
    }
    if let Source::PlatformImage {
        publisher,
        offer,
        sku,
        version,
        ..
    } = &p.source
    {
        for (field, v) in [
            ("publisher", publisher),
            ("offer", offer),
            ("sku", sku),
            ("version", version),
        ] {
            if v.is_empty() {
                return Err(ValidationFailed::new(
                    "properties.source",
                    format!("Missing field {field}"),
                ));
            }
        }
    }
    check_customizers(&p.customize, "properties.customize")?;
    if let Some(v) = &p.validate {
        check_customizers(&v.in_vm_validations, "properties.validate.inVMValidations")?;
    }
    if p.distribute.is_empty() {
        return Err(ValidationFailed::new(
            "properties.distribute",
            "At least one distribute target is required (VHD, ManagedImage, SharedImage, Qcow2 or Raw).",
        ));
    }
    let mut seen = Vec::new();
    for (i, d) in p.distribute.iter().enumerate() {
        let name = d.run_output_name();
        let path = format!("properties.distribute[{i}]");
        if !name_ok(name) {
            return Err(ValidationFailed::new(
                path,
                format!("Field 'runOutputName' has a bad value: '{name}'. Expected 1 to 64 characters from A-Z, a-z, 0-9, '-', '_' and '.'."),
            ));
        }
        if seen.contains(&name) {
            return Err(ValidationFailed::new(
                path,
                format!("Field 'runOutputName' has a bad value: '{name}'. Run output names must be unique."),
            ));
        }
        seen.push(name);
    }
    if let Some(vm) = &p.vm_profile {
        vm_shape(&vm.vm_size)
            .map_err(|e| ValidationFailed::new("properties.vmProfile", e.to_string()))?;
    }
    Ok(())
}

fn check_customizers(list: &[Customizer], at: &str) -> Result<(), ValidationFailed> {
    for (i, c) in list.iter().enumerate() {
        let path = format!("{at}[{i}]");
        match c {
            Customizer::Shell {
                script_uri, inline, ..
            } => match (script_uri, inline) {
                (Some(_), None) | (None, Some(_)) => {}
                (Some(_), Some(_)) => {
                    return Err(ValidationFailed::new(
                        path,
                        "Only one of 'scriptUri' and 'inline' may be given.",
                    ))
                }
                (None, None) => {
                    return Err(ValidationFailed::new(
                        path,
                        "Missing field scriptUri or inline.",
                    ))
                }
            },
            Customizer::File { destination, .. } => {
                if !destination.starts_with('/') {
                    return Err(ValidationFailed::new(
                        path,
                        format!("Field 'destination' has a bad value: '{destination}'. Expected an absolute path in the image."),
                    ));
                }
            }
            other => {
                return Err(ValidationFailed::new(
                    path,
                    format!(
                        "Customizer type '{}' is not supported for Linux images (UnsupportedCustomizerType): expected Shell or File.",
                        match other {
                            Customizer::PowerShell(_) => "PowerShell",
                            Customizer::WindowsRestart(_) => "WindowsRestart",
                            _ => "WindowsUpdate",
                        }
                    ),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{
      "type": "Microsoft.VirtualMachineImages/imageTemplates",
      "location": "local",
      "properties": {
        "source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
        "customize": [
          {"type": "Shell", "name": "install", "inline": ["apt-get install -y hello"]},
          {"type": "File", "sourceUri": "files/motd", "destination": "/etc/motd"}
        ],
        "distribute": [{"type": "VHD", "runOutputName": "vhd"}, {"type": "Qcow2", "runOutputName": "qcow"}]
      }
    }"#;

    #[test]
    fn a_minimal_template_parses_with_defaults() {
        let t = parse_template(MINIMAL).unwrap();
        let p = &t.properties;
        assert_eq!(p.build_timeout_in_minutes, 240);
        assert_eq!(p.error_handling.on_customizer_error, None);
        assert!(OnError::keeps_staging(p.error_handling.on_customizer_error));
        assert_eq!(p.customize[0].display_name(), "install");
        assert_eq!(p.customize[1].display_name(), "file");
        assert_eq!(p.distribute[1].run_output_name(), "qcow");
    }

    fn err(json: &str) -> String {
        parse_template(json).unwrap_err().to_string()
    }

    #[test]
    fn fields_are_case_sensitive_and_unknown_ones_are_refused_with_their_path() {
        let e = err(&MINIMAL.replace("\"inline\"", "\"Inline\""));
        assert!(
            e.starts_with("Validation failed: 'ImageTemplate.properties.customize[0]"),
            "{e}"
        );
        assert!(e.contains("Inline"), "{e}");
        let e = err(&MINIMAL.replace("\"location\": \"local\",", "\"color\": 1,"));
        assert!(e.contains("unknown field `color`"), "{e}");
        let e = err(&MINIMAL.replace("\"type\": \"VHD\"", "\"type\": \"Vhdx\""));
        assert!(
            e.contains("properties.distribute[0]") && e.contains("Vhdx"),
            "{e}"
        );
    }

    #[test]
    fn rules_beyond_the_schema() {
        let e = err(&MINIMAL.replace(
            "\"customize\"",
            "\"buildTimeoutInMinutes\": 961, \"customize\"",
        ));
        assert!(
            e.contains("'ImageTemplate.properties.buildTimeoutInMinutes'") && e.contains("961"),
            "{e}"
        );
        let e = err(&MINIMAL.replace(
            "\"inline\": [\"apt-get install -y hello\"]",
            "\"inline\": [\"x\"], \"scriptUri\": \"s.sh\"",
        ));
        assert!(
            e.contains("properties.customize[0]") && e.contains("Only one"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("\"runOutputName\": \"qcow\"", "\"runOutputName\": \"vhd\""));
        assert!(
            e.contains("properties.distribute[1]") && e.contains("unique"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("\"/etc/motd\"", "\"etc/motd\""));
        assert!(e.contains("destination"), "{e}");
        let e = err(&MINIMAL.replace(
            "{\"type\": \"Shell\", \"name\": \"install\", \"inline\": [\"apt-get install -y hello\"]}",
            "{\"type\": \"PowerShell\", \"inline\": [\"x\"]}",
        ));
        assert!(e.contains("UnsupportedCustomizerType"), "{e}");
        let e = err(&MINIMAL.replace(
            "\"distribute\": [{\"type\": \"VHD\", \"runOutputName\": \"vhd\"}, {\"type\": \"Qcow2\", \"runOutputName\": \"qcow\"}]",
            "\"distribute\": []",
        ));
        assert!(e.contains("properties.distribute"), "{e}");
        assert!(validate_template_name("debian-12_web.v1").is_ok());
        assert!(validate_template_name("bad name")
            .unwrap_err()
            .to_string()
            .contains("'bad name'"));
    }

    #[test]
    fn the_executor_defaults_to_chroot_and_full_boot_is_opt_in() {
        let t = parse_template(MINIMAL).unwrap();
        assert!(t.properties.vm_profile.is_none());
        let with = |v: &str| {
            MINIMAL.replace(
                "\"customize\"",
                &format!("\"vmProfile\": {{\"vmSize\": \"Standard_B1s\", \"executor\": {v}}}, \"customize\""),
            )
        };
        let t = parse_template(&with("\"FullBoot\"")).unwrap();
        let vm = t.properties.vm_profile.as_ref().unwrap();
        assert_eq!(vm.executor, Executor::FullBoot);
        let round = serde_json::to_string(&t).unwrap();
        assert!(round.contains("\"executor\":\"FullBoot\""), "{round}");
        let t = parse_template(&with("\"Chroot\"")).unwrap();
        let round = serde_json::to_string(&t).unwrap();
        assert!(!round.contains("executor"), "{round}");
        let e = err(&with("\"Qemu\""));
        assert!(
            e.contains("properties.vmProfile.executor")
                && e.contains("Qemu")
                && e.contains("FullBoot"),
            "{e}"
        );
    }

    #[test]
    fn vm_sizes_map_to_shapes() {
        assert_eq!(vm_shape("").unwrap(), (2, 8192));
        assert_eq!(vm_shape("Standard_D2s_v3").unwrap(), (2, 8192));
        assert_eq!(vm_shape("Standard_B1s").unwrap(), (1, 1024));
        assert_eq!(vm_shape("Standard_E4ds_v4").unwrap(), (4, 32768));
        assert!(vm_shape("Large")
            .unwrap_err()
            .to_string()
            .contains("'Large'"));
    }

    #[test]
    fn an_arm_resource_file_is_taken_and_newer_fields_name_their_api_version() {
        // As `az resource create --is-full-object` files are written.
        let envelope = |version: &str, extra: &str| {
            format!(
                r#"{{"type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "{version}", "name": "[parameters('imageTemplateName')]", "location": "westus2", "dependsOn": [], "tags": {{"imagebuilderTemplate": "ubuntu1804"}}, "identity": {{"type": "UserAssigned", "userAssignedIdentities": {{"<imgBuilderId>": {{}}}}}}, "properties": {{"source": {{"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"}}, "distribute": [{{"type": "VHD", "runOutputName": "v"}}]{extra}}}}}"#
            )
        };
        for version in API_VERSIONS {
            let t = parse_template(&envelope(version, "")).unwrap();
            assert_eq!(t.api_version.as_deref(), Some(version));
        }
        let e = parse_template(&envelope(
            "2020-02-14",
            r#", "validate": {"inVMValidations": []}"#,
        ))
        .unwrap_err();
        assert_eq!(e.path, "properties.validate");
        assert_eq!(
            e.detail,
            "Field 'properties.validate' needs apiVersion 2022-02-14 or later; the template says apiVersion 2020-02-14."
        );
        let e = parse_template(&envelope(
            "2023-07-01",
            r#", "autoRun": {"state": "Enabled"}"#,
        ))
        .unwrap_err();
        assert!(e.detail.contains("needs apiVersion 2024-02-01"), "{e:?}");
        assert!(parse_template(&envelope(
            "2024-02-01",
            r#", "autoRun": {"state": "Enabled"}"#
        ))
        .is_ok());
        let e = parse_template(&envelope("2018-01-01", "")).unwrap_err();
        assert_eq!(e.path, "apiVersion");
        assert!(
            e.detail
                .contains("Expected one of 2019-05-01-preview, 2020-02-14"),
            "{e:?}"
        );
    }

    #[test]
    fn shared_image_versioning() {
        let t = parse_template(&MINIMAL.replace(
            "{\"type\": \"Qcow2\", \"runOutputName\": \"qcow\"}",
            "{\"type\": \"SharedImage\", \"runOutputName\": \"sig\", \"galleryImageId\": \"/galleries/g/images/web\", \"versioning\": {\"scheme\": \"Latest\"}}",
        ))
        .unwrap();
        match &t.properties.distribute[1] {
            Distributor::SharedImage { versioning, .. } => {
                assert_eq!(versioning, &Some(Versioning::Latest { major: -1 }))
            }
            d => panic!("{d:?}"),
        }
    }
}
