//! Discovery of definition folders and their content snapshots.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use slipway_archive::zip_folder;
use slipway_core::manifest::{parse_manifest, peek_name, ManifestError, MANIFEST_FILE_NAMES};
use slipway_core::EnvironmentDefinitionManifest;
use slipway_store::DefinitionRecord;

/// ADE code for a `templatePath` that is missing or leaves the definition folder.
pub const TEMPLATE_PATH_INVALID: &str = "TemplatePathInvalid";
/// ADE code for content that references something outside the definition
/// folder (a symlink leaving it, or one that dangles).
pub const INVALID_REFERENCE: &str = "InvalidReference";
/// ADE code for two definitions with one name.
pub const DUPLICATE_NAME: &str = "DuplicateEnvironmentName";

/// One valid definition found in a catalog.
#[derive(Debug, Clone)]
pub struct DiscoveredDefinition {
    /// Folder relative to the catalog root (`/`-separated; empty for the root).
    pub folder: String,
    /// Parsed manifest.
    pub manifest: EnvironmentDefinitionManifest,
    /// Zip of the folder's content; `None` when the folder is unchanged since
    /// the previous snapshot (same git tree) and its stored blob is reused.
    pub content: Option<Vec<u8>>,
    /// sha256 hex of the content zip.
    pub digest: String,
    /// Manifest warnings.
    pub warnings: Vec<String>,
    /// Git tree id of the folder, when the source is git.
    pub source_tree: Option<String>,
}

/// A definition folder that failed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct DefinitionError {
    /// Manifest path from the catalog root, with a leading `/` (ADE `path`).
    pub path: String,
    /// Folder relative to the catalog root.
    pub folder: String,
    /// The manifest's `name`, when it could be read.
    pub name: Option<String>,
    /// ADE error code (`ParseError`, `TemplatePathInvalid`, `InvalidReference`).
    pub code: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Everything discovery found.
#[derive(Debug, Clone, Default)]
pub struct DiscoveredCatalog {
    /// Valid, uniquely named definitions, sorted by name.
    pub definitions: Vec<DiscoveredDefinition>,
    /// `(manifest path, "DuplicateEnvironmentName")` for every definition sharing a name.
    pub conflicts: Vec<(String, String)>,
    /// Every invalid definition folder.
    pub errors: Vec<DefinitionError>,
}

/// sha256 as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Walks `root` and returns every definition folder's result. Folders named
/// `.git` are skipped; a definition folder is not searched for nested ones.
///
/// `trees` maps folders (relative to `root`) to git tree ids; a folder whose
/// tree equals the `source_tree` of a valid record in `previous` is taken
/// from that record without reading or zipping it.
pub fn discover(
    root: &Path,
    trees: &HashMap<String, String>,
    previous: &[DefinitionRecord],
) -> std::io::Result<DiscoveredCatalog> {
    let mut folders = Vec::new();
    find_definition_folders(root, &mut folders)?;
    let reusable: HashMap<(&str, &str), &DefinitionRecord> = previous
        .iter()
        .filter(|r| r.is_valid())
        .filter_map(|r| Some(((r.folder.as_str(), r.source_tree.as_deref()?), r)))
        .collect();
    let mut out = DiscoveredCatalog::default();
    let mut valid: Vec<(String, DiscoveredDefinition)> = Vec::new();
    for (folder, manifest_file) in folders {
        let rel_folder = rel(root, &folder);
        let rel_manifest = format!("/{}", rel(root, &folder.join(&manifest_file)));
        let tree = trees.get(&rel_folder).cloned();
        let reused = tree
            .as_deref()
            .and_then(|t| reusable.get(&(rel_folder.as_str(), t)).copied());
        if let Some(r) = reused {
            valid.push((
                rel_manifest,
                DiscoveredDefinition {
                    folder: rel_folder,
                    manifest: r.manifest.clone(),
                    content: None,
                    digest: r.content_digest.clone(),
                    warnings: r.warnings.clone(),
                    source_tree: tree,
                },
            ));
            continue;
        }
        match load_definition(&folder, &manifest_file) {
            Ok((manifest, warnings, content)) => valid.push((
                rel_manifest,
                DiscoveredDefinition {
                    folder: rel_folder,
                    digest: sha256_hex(&content),
                    manifest,
                    content: Some(content),
                    warnings,
                    source_tree: tree,
                },
            )),
            Err(e) => out.errors.push(DefinitionError {
                path: rel_manifest,
                folder: rel_folder,
                name: e.name,
                code: e.code.to_string(),
                message: e.message,
            }),
        }
    }
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (_, d) in &valid {
        *by_name.entry(d.manifest.name.as_str()).or_default() += 1;
    }
    let duplicated: Vec<bool> = valid
        .iter()
        .map(|(_, d)| by_name[d.manifest.name.as_str()] > 1)
        .collect();
    for ((path, d), dup) in valid.into_iter().zip(duplicated) {
        if dup {
            out.conflicts.push((path, DUPLICATE_NAME.into()));
        } else {
            out.definitions.push(d);
        }
    }
    out.definitions
        .sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
    Ok(out)
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

fn find_definition_folders(dir: &Path, out: &mut Vec<(PathBuf, String)>) -> std::io::Result<()> {
    if let Some(m) = MANIFEST_FILE_NAMES.iter().find(|m| dir.join(m).is_file()) {
        out.push((dir.to_path_buf(), m.to_string()));
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        // Symlinked folders are not followed: a definition lives in the catalog's own tree.
        if e.file_type()?.is_dir() && e.file_name() != ".git" {
            find_definition_folders(&e.path(), out)?;
        }
    }
    Ok(())
}

/// The largest manifest read, bytes (1 MiB).
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

struct LoadError {
    name: Option<String>,
    code: &'static str,
    message: String,
}

fn load_definition(
    folder: &Path,
    manifest_file: &str,
) -> Result<(EnvironmentDefinitionManifest, Vec<String>, Vec<u8>), LoadError> {
    let fail = |name: Option<String>, code: &'static str, message: String| LoadError {
        name,
        code,
        message,
    };
    // Read beneath the folder: a manifest symlinked to a host file is an
    // error, never a read of that file.
    let bytes = slipway_hostfs::Tree::open(folder)
        .and_then(|t| t.read(manifest_file, MAX_MANIFEST_BYTES))
        .map_err(|e| {
            fail(
                None,
                "ParseError",
                format!("cannot read {manifest_file}: {e}"),
            )
        })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        fail(
            None,
            "ParseError",
            format!(
                "{manifest_file} is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    let name = peek_name(&text);
    let parsed = parse_manifest(&text).map_err(|e| {
        // A templatePath that is present but absolute or climbing out with
        // `..` is a reference error, like one that does not exist.
        let code = match &e {
            ManifestError::Schema { field, message }
                if field == "templatePath" && !message.starts_with("Missing") =>
            {
                TEMPLATE_PATH_INVALID
            }
            _ => e.code(),
        };
        fail(name.clone(), code, e.to_string())
    })?;
    let template_path = &parsed.manifest.template_path;
    let template = folder.join(template_path);
    let canonical_folder = folder
        .canonicalize()
        .map_err(|e| fail(name.clone(), "ParseError", e.to_string()))?;
    match template.canonicalize() {
        Ok(t) if t.starts_with(&canonical_folder) && t.is_file() => {}
        Ok(t) if t.starts_with(&canonical_folder) => {
            return Err(fail(
                name,
                TEMPLATE_PATH_INVALID,
                format!("templatePath '{template_path}' is a folder: expected a file inside the definition folder"),
            ))
        }
        Ok(_) => {
            return Err(fail(
                name,
                TEMPLATE_PATH_INVALID,
                format!("templatePath '{template_path}' leads outside the definition folder: definitions cannot reference content outside their folder"),
            ))
        }
        Err(_) => {
            return Err(fail(
                name,
                TEMPLATE_PATH_INVALID,
                format!("templatePath '{template_path}' does not exist in the definition folder: expected a path relative to {manifest_file}"),
            ))
        }
    }
    let content = zip_folder(folder, &[".git"]).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::InvalidData
            || e.kind() == std::io::ErrorKind::NotFound
        {
            INVALID_REFERENCE
        } else {
            "ParseError"
        };
        fail(
            name.clone(),
            code,
            format!("{e}: definitions cannot reference content outside their folder"),
        )
    })?;
    Ok((parsed.manifest, parsed.warnings, content))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn discovers_validates_and_reports_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(
            r,
            "Good/environment.yaml",
            "name: Good\ntemplatePath: main.tf\n",
        );
        write(r, "Good/main.tf", "");
        write(r, "Good/sub/extra.txt", "x");
        write(
            r,
            "Legacy/manifest.yml",
            "name: Legacy\ntemplatePath: t/main.tf\n",
        );
        write(r, "Legacy/t/main.tf", "");
        write(
            r,
            "DupA/environment.yaml",
            "name: Dup\ntemplatePath: main.tf\n",
        );
        write(r, "DupA/main.tf", "");
        write(
            r,
            "DupB/manifest.yaml",
            "name: Dup\ntemplatePath: main.tf\n",
        );
        write(r, "DupB/main.tf", "");
        write(r, "Broken/environment.yaml", "templatePath: main.tf\n");
        write(
            r,
            "NoTemplate/environment.yaml",
            "name: NoTemplate\ntemplatePath: missing.tf\n",
        );
        write(r, "outside.tf", "");
        std::os::unix::fs::symlink(r.join("outside.tf"), r.join("Escape.tf")).unwrap();
        write(
            r,
            "Escape/environment.yaml",
            "name: Escape\ntemplatePath: link.tf\n",
        );
        std::os::unix::fs::symlink(r.join("outside.tf"), r.join("Escape/link.tf")).unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("secret.yaml"), "name: HOST-SECRET\n").unwrap();
        std::fs::create_dir_all(r.join("HostLink")).unwrap();
        std::os::unix::fs::symlink(
            host.path().join("secret.yaml"),
            r.join("HostLink/environment.yaml"),
        )
        .unwrap();

        let found = discover(r, &HashMap::new(), &[]).unwrap();
        let names: Vec<_> = found
            .definitions
            .iter()
            .map(|d| d.manifest.name.as_str())
            .collect();
        assert_eq!(names, ["Good", "Legacy"]);
        assert_eq!(found.conflicts.len(), 2);
        assert!(found
            .conflicts
            .iter()
            .all(|(_, c)| c == "DuplicateEnvironmentName"));
        let codes: Vec<_> = found
            .errors
            .iter()
            .map(|e| (e.path.as_str(), e.code.as_str()))
            .collect();
        assert!(codes.contains(&("/Broken/environment.yaml", "ParseError")));
        assert!(codes.contains(&("/NoTemplate/environment.yaml", "TemplatePathInvalid")));
        assert!(codes.contains(&("/Escape/environment.yaml", "TemplatePathInvalid")));
        let host_link = found
            .errors
            .iter()
            .find(|e| e.path == "/HostLink/environment.yaml")
            .expect("a manifest symlinked out of the catalog is an error");
        assert!(
            host_link.message.contains("leads outside"),
            "{}",
            host_link.message
        );
        assert!(!format!("{host_link:?}").contains("HOST-SECRET"));
        let good = &found.definitions[0];
        let archive =
            zip::ZipArchive::new(std::io::Cursor::new(good.content.clone().unwrap())).unwrap();
        let mut files: Vec<String> = archive
            .file_names()
            .map(|n| n.unwrap().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["environment.yaml", "main.tf", "sub/extra.txt"]);
        // Deterministic: same content, same digest.
        assert_eq!(
            discover(r, &HashMap::new(), &[]).unwrap().definitions[0].digest,
            good.digest
        );
    }
}
