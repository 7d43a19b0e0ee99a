//! Discovery of definition folders and their content snapshots.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use slipway_archive::zip_folder;
use slipway_core::manifest::{parse_manifest, MANIFEST_FILE_NAMES};
use slipway_core::EnvironmentDefinitionManifest;

/// One valid definition found in a catalog.
#[derive(Debug, Clone)]
pub struct DiscoveredDefinition {
    /// Folder relative to the catalog root (`/`-separated; empty for the root).
    pub folder: String,
    /// Parsed manifest.
    pub manifest: EnvironmentDefinitionManifest,
    /// Zip of the folder's content.
    pub content: Vec<u8>,
    /// sha256 hex of `content`.
    pub digest: String,
    /// Manifest warnings.
    pub warnings: Vec<String>,
}

/// Everything discovery found.
#[derive(Debug, Clone, Default)]
pub struct DiscoveredCatalog {
    /// Valid, uniquely named definitions, sorted by name.
    pub definitions: Vec<DiscoveredDefinition>,
    /// `(manifest path, "DuplicateEnvironmentName")` for every definition sharing a name.
    pub conflicts: Vec<(String, String)>,
    /// `(manifest path, code, message)` for every invalid definition.
    pub errors: Vec<(String, String, String)>,
}

/// sha256 as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Walks `root` and returns every definition folder's result. Folders named
/// `.git` are skipped; a definition folder is not searched for nested ones.
pub fn discover(root: &Path) -> std::io::Result<DiscoveredCatalog> {
    let mut folders = Vec::new();
    find_definition_folders(root, &mut folders)?;
    let mut out = DiscoveredCatalog::default();
    let mut valid: Vec<(String, DiscoveredDefinition)> = Vec::new();
    for (folder, manifest_file) in folders {
        let rel_manifest = format!("/{}", rel(root, &folder.join(&manifest_file)));
        match load_definition(root, &folder, &manifest_file) {
            Ok(d) => valid.push((rel_manifest, d)),
            Err((code, message)) => out.errors.push((rel_manifest, code, message)),
        }
    }
    for (path, d) in &valid {
        let dupes = valid
            .iter()
            .filter(|(_, o)| o.manifest.name == d.manifest.name)
            .count();
        if dupes > 1 {
            out.conflicts
                .push((path.clone(), "DuplicateEnvironmentName".into()));
        }
    }
    out.definitions = valid
        .into_iter()
        .filter(|(path, _)| !out.conflicts.iter().any(|(p, _)| p == path))
        .map(|(_, d)| d)
        .collect();
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
        let ft = e.file_type()?;
        if ft.is_dir() && e.file_name() != ".git" {
            find_definition_folders(&e.path(), out)?;
        }
    }
    Ok(())
}

fn load_definition(
    root: &Path,
    folder: &Path,
    manifest_file: &str,
) -> Result<DiscoveredDefinition, (String, String)> {
    let text = std::fs::read_to_string(folder.join(manifest_file)).map_err(|e| {
        (
            "ParseError".to_string(),
            format!("cannot read {manifest_file}: {e}"),
        )
    })?;
    let parsed = parse_manifest(&text).map_err(|e| (e.code().to_string(), e.to_string()))?;
    let template = folder.join(&parsed.manifest.template_path);
    let canonical_folder = folder
        .canonicalize()
        .map_err(|e| ("ParseError".to_string(), e.to_string()))?;
    match template.canonicalize() {
        Ok(t) if t.starts_with(&canonical_folder) && t.is_file() => {}
        Ok(_) => {
            return Err((
                "TemplatePathInvalid".into(),
                format!(
                    "templatePath '{}' must be a file inside the definition folder",
                    parsed.manifest.template_path
                ),
            ))
        }
        Err(_) => {
            return Err((
                "TemplatePathInvalid".into(),
                format!(
                    "templatePath '{}' does not exist in the definition folder",
                    parsed.manifest.template_path
                ),
            ))
        }
    }
    let content =
        zip_folder(folder, &[".git"]).map_err(|e| ("ParseError".to_string(), e.to_string()))?;
    Ok(DiscoveredDefinition {
        folder: rel(root, folder),
        digest: sha256_hex(&content),
        manifest: parsed.manifest,
        content,
        warnings: parsed.warnings,
    })
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

        let found = discover(r).unwrap();
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
            .map(|(p, c, _)| (p.as_str(), c.as_str()))
            .collect();
        assert!(codes.contains(&("/Broken/environment.yaml", "ParseError")));
        assert!(codes.contains(&("/NoTemplate/environment.yaml", "TemplatePathInvalid")));
        assert!(codes.contains(&("/Escape/environment.yaml", "TemplatePathInvalid")));
        let good = &found.definitions[0];
        let archive = zip::ZipArchive::new(std::io::Cursor::new(good.content.clone())).unwrap();
        let mut files: Vec<_> = archive.file_names().collect();
        files.sort();
        assert_eq!(files, ["environment.yaml", "main.tf", "sub/extra.txt"]);
        // Deterministic: same content, same digest.
        assert_eq!(discover(r).unwrap().definitions[0].digest, good.digest);
    }
}
