//! Sync against real git repositories (file://): stats, the unchanged-commit
//! short-circuit, tree reuse, failure keeping the snapshot, no overlapping syncs.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use slipway_catalog::{discover, fetch, sync_catalog, CatalogError};
use slipway_store::{CatalogSource, CatalogSpec, SecretKey, Store};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn definition(root: &Path, folder: &str, name: &str, template: &str) {
    write(
        root,
        &format!("Environments/{folder}/environment.yaml"),
        &format!("name: {name}\ntemplatePath: main.tf\n"),
    );
    write(root, &format!("Environments/{folder}/main.tf"), template);
}

fn commit(repo: &Path) {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "change"]);
}

async fn setup(dir: &Path) -> (Store, SecretKey, std::path::PathBuf) {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    definition(&repo, "A", "Alpha", "# a\n");
    definition(&repo, "B", "Beta", "# b\n");
    definition(&repo, "C", "Gamma", "# c\n");
    write(&repo, "README.md", "outside the catalog path\n");
    commit(&repo);
    let store = Store::open(&dir.join("data")).await.unwrap();
    let key = SecretKey::load_or_create(&dir.join("data/secret.key")).unwrap();
    let spec = CatalogSpec {
        source: CatalogSource {
            kind: "git".into(),
            uri: format!("file://{}", repo.display()),
            branch: Some("main".into()),
            path: Some("/Environments".into()),
        },
        project: None,
        sync_type: "Manual".into(),
        secret: None,
    };
    store.put_catalog("main", &spec).await.unwrap();
    (store, key, repo)
}

#[tokio::test]
async fn resync_skips_unchanged_commits_and_unchanged_folders() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key, repo) = setup(dir.path()).await;
    let work = dir.path().join("work");

    let first = sync_catalog(&store, "main", &work, &key, &roots(&work), &[])
        .await
        .unwrap();
    assert_eq!(first.stats["added"], 3, "{:?}", first.stats);
    assert!(!first.skipped_fetch);
    assert_eq!(first.commit, git(&repo, &["rev-parse", "HEAD"]));

    let again = sync_catalog(&store, "main", &work, &key, &roots(&work), &[])
        .await
        .unwrap();
    assert!(again.skipped_fetch, "same commit: no clone");
    assert_eq!(again.stats["unchanged"], 3);
    assert_eq!(again.stats["added"], 0);
    let cat = store.get_catalog("main").await.unwrap().unwrap();
    assert_eq!(cat.sync_state, "Succeeded");
    assert_eq!(cat.connection_state.as_deref(), Some("Connected"));

    // One folder changes, one is added, one removed.
    definition(&repo, "B", "Beta", "# b v2\n");
    definition(&repo, "D", "Delta", "# d\n");
    std::fs::remove_dir_all(repo.join("Environments/C")).unwrap();
    commit(&repo);
    let before = store.list_definitions(Some("main")).await.unwrap();

    // Discovery reuses the unchanged folder's record without zipping it.
    let cat = store.get_catalog("main").await.unwrap().unwrap();
    let fetched = fetch(&cat.spec.source, None, &roots(&work), &[], &work).unwrap();
    let found = discover(&fetched.root, &fetched.trees, &before).unwrap();
    let content: HashMap<_, _> = found
        .definitions
        .iter()
        .map(|d| (d.manifest.name.as_str(), d.content.is_some()))
        .collect();
    assert!(!content["Alpha"], "unchanged tree is reused");
    assert!(content["Beta"], "changed tree is read again");
    assert!(content["Delta"]);
    drop(fetched);

    let third = sync_catalog(&store, "main", &work, &key, &roots(&work), &[])
        .await
        .unwrap();
    assert!(!third.skipped_fetch);
    assert_eq!(
        (
            &third.stats["added"],
            &third.stats["updated"],
            &third.stats["unchanged"],
            &third.stats["removed"]
        ),
        (&1.into(), &1.into(), &1.into(), &1.into()),
        "{}",
        third.stats
    );
    let after = store.list_definitions(Some("main")).await.unwrap();
    let alpha = |v: &[slipway_store::DefinitionRecord]| {
        v.iter()
            .find(|d| d.name == "Alpha")
            .unwrap()
            .content_digest
            .clone()
    };
    assert_eq!(alpha(&before), alpha(&after));
    let names: Vec<_> = after.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["Alpha", "Beta", "Delta"]);
    assert!(after
        .iter()
        .all(|d| d.commit.as_deref() == Some(third.commit.as_str())));
    // Temporary clones are gone.
    let leftovers: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("git-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[tokio::test]
async fn failed_sync_keeps_the_snapshot_and_syncs_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key, _repo) = setup(dir.path()).await;
    let work = dir.path().join("work");
    sync_catalog(&store, "main", &work, &key, &roots(&work), &[])
        .await
        .unwrap();

    let mut cat = store.get_catalog("main").await.unwrap().unwrap();
    cat.spec.source.branch = Some("no-such-branch".into());
    store.put_catalog("main", &cat.spec).await.unwrap();
    let err = sync_catalog(&store, "main", &work, &key, &roots(&work), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Source(_)), "{err:?}");
    let cat = store.get_catalog("main").await.unwrap().unwrap();
    assert_eq!(cat.sync_state, "Failed");
    let details = cat.last_sync_errors.unwrap();
    assert_eq!(details["operationError"]["code"], "InvalidSource");
    assert!(
        details["operationError"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-branch"),
        "{details}"
    );
    assert_eq!(store.list_definitions(Some("main")).await.unwrap().len(), 3);

    // A sync in progress (another task or process) blocks a second one.
    assert!(store.begin_catalog_sync("main").await.unwrap());
    let err = sync_catalog(&store, "main", &work, &key, &roots(&work), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::SyncInProgress(_)), "{err:?}");
    // After a crash the start-up recovery marks it Canceled; the snapshot still serves.
    assert_eq!(store.cancel_interrupted_syncs().await.unwrap(), ["main"]);
    let cat = store.get_catalog("main").await.unwrap().unwrap();
    assert_eq!(cat.sync_state, "Canceled");
    assert_eq!(store.list_definitions(Some("main")).await.unwrap().len(), 3);
}

/// The test's temporary folder (which holds the repositories) as the one
/// folder `file://` URLs may name.
fn roots(work: &std::path::Path) -> slipway_catalog::LocalRoots {
    let top = work.parent().unwrap();
    slipway_catalog::LocalRoots::new(&[top.to_path_buf()]).unwrap()
}

#[tokio::test]
async fn registration_keeps_names_unique_checks_source_and_secret_and_says_when_to_sync() {
    use slipway_catalog::{register_catalog, Registered, RegistrationError};
    let dir = tempfile::tempdir().unwrap();
    let (store, key, repo) = setup(dir.path()).await;
    let work = dir.path().join("work");
    let roots = roots(&work);
    let spec = store.get_catalog("main").await.unwrap().unwrap().spec;
    // Registered by `setup` but never synced: the same spec still needs a sync.
    assert_eq!(
        register_catalog(&store, &roots, "main", &spec)
            .await
            .unwrap(),
        Registered {
            created: false,
            needs_sync: true
        }
    );
    sync_catalog(&store, "main", &work, &key, &roots, &[])
        .await
        .unwrap();
    let schedule_only = CatalogSpec {
        sync_type: "Scheduled".into(),
        ..spec.clone()
    };
    assert_eq!(
        register_catalog(&store, &roots, "main", &schedule_only)
            .await
            .unwrap(),
        Registered {
            created: false,
            needs_sync: false
        }
    );
    // The name belongs to the dev center: a project cannot take it.
    let in_project = CatalogSpec {
        project: Some("demo".into()),
        ..spec.clone()
    };
    let e = register_catalog(&store, &roots, "main", &in_project)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistrationError::NameTaken { .. }), "{e}");
    assert!(e.to_string().contains("the dev center"), "{e}");
    // A folder outside the allowed roots, and a secret that does not exist.
    let outside = CatalogSpec {
        source: CatalogSource {
            uri: "file:///etc".into(),
            ..spec.source.clone()
        },
        ..spec.clone()
    };
    let e = register_catalog(&store, &roots, "other", &outside)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistrationError::Source(_)), "{e}");
    let with_secret = CatalogSpec {
        secret: Some("missing".into()),
        ..spec.clone()
    };
    let e = register_catalog(&store, &roots, "other", &with_secret)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("create it with PUT /admin/secrets/missing"),
        "{e}"
    );
    assert!(store.get_catalog("other").await.unwrap().is_none());
    let created = register_catalog(&store, &roots, "other", &spec)
        .await
        .unwrap();
    assert!(created.created && created.needs_sync);
    drop(repo);
}
