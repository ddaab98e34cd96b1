//! `blueprint-runner plugin new DIR`: a plugin crate that builds on the guest SDK and,
//! unchanged, decides exactly as the built-in guest does.

use std::path::{Path, PathBuf};

use br_engine::exit;

const CARGO_TOML: &str = include_str!("../../../templates/plugin/Cargo.toml.in");
const LIB_RS: &str = include_str!("../../../templates/plugin/src/lib.rs");
const README: &str = include_str!("../../../templates/plugin/README.md");
const GITIGNORE: &str = include_str!("../../../templates/plugin/gitignore");
/// The versions this project builds and tests its own guests with (wit-bindgen and the
/// rest): the plugin starts from them, and cargo drops what it does not use.
const TESTED_LOCK: &str = include_str!("../../../../Cargo.lock");

/// The SDK in the source tree this binary was built from: the default when it is still
/// there (a developer's checkout); a binary elsewhere (the image) must be told.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/guest-sdk");

/// Where the plugin takes the SDK from.
#[derive(Debug, Clone, PartialEq)]
pub enum SdkSource {
    Path(PathBuf),
    Git { url: String, rev: Option<String> },
}

impl SdkSource {
    /// `--sdk PATH`, else `--sdk-git URL [--sdk-rev REV]`, else the source tree this binary
    /// was built from: pinned to its commit in its `origin` repository when it has one and
    /// the SDK and contract are committed there (a dependency that builds anywhere, CI
    /// included), else its folder (which builds only on this machine).
    pub fn choose(path: Option<PathBuf>, git: Option<String>, rev: Option<String>) -> Result<SdkSource, String> {
        match (path, git) {
            (Some(_), Some(_)) => Err("give --sdk or --sdk-git, not both".into()),
            (Some(path), None) => Ok(SdkSource::Path(path)),
            (None, Some(url)) => Ok(SdkSource::Git { url, rev }),
            (None, None) if Path::new(BUILT_FROM_SDK).join("Cargo.toml").is_file() => {
                Ok(pinned_revision(Path::new(BUILT_FROM_SDK))
                    .unwrap_or_else(|| SdkSource::Path(PathBuf::from(BUILT_FROM_SDK))))
            }
            (None, None) => Err("this binary was not built from a source tree here: give --sdk PATH (the \
                                 crates/guest-sdk folder of a checkout) or --sdk-git URL"
                .into()),
        }
    }

    /// The dependency's value in `Cargo.toml`.
    fn dependency(&self) -> Result<String, String> {
        match self {
            SdkSource::Path(path) => {
                let path = path.canonicalize().map_err(|e| format!("the SDK folder {}: {e}", path.display()))?;
                if !path.join("Cargo.toml").is_file() {
                    return Err(format!("{} has no Cargo.toml: it is not the SDK crate", path.display()));
                }
                let text = path.to_str().ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
                Ok(format!("{{ path = {} }}", toml_string(text)))
            }
            SdkSource::Git { url, rev: Some(rev) } => {
                Ok(format!("{{ git = {}, rev = {} }}", toml_string(url), toml_string(rev)))
            }
            SdkSource::Git { url, rev: None } => Ok(format!("{{ git = {} }}", toml_string(url))),
        }
    }
}

/// The SDK folder `sdk` as its repository's `origin` at the commit checked out, when the
/// SDK, the crates beside it that it is built from (the validator, the planner, the
/// policy) and the contract it reads (`wit/`) are exactly as committed there; None
/// otherwise (no git, no remote, uncommitted changes: the commit would not be what this
/// binary has, e.g. a planner changed since would plan otherwise than the built-in guest).
fn pinned_revision(sdk: &Path) -> Option<SdkSource> {
    let git = |args: &[&str]| -> Option<String> {
        let output = std::process::Command::new("git").arg("-C").arg(sdk).args(args).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let remote = git(&["remote", "get-url", "origin"]).filter(|url| !url.is_empty())?;
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let url = cargo_git_url(&remote, Path::new(&top))?;
    let rev = git(&["rev-parse", "HEAD"]).filter(|rev| rev.len() == 40)?;
    let changed = git(&["status", "--porcelain", "--", "..", "../../wit"])?;
    changed.is_empty().then_some(SdkSource::Git { url, rev: Some(rev) })
}

/// A git remote as the URL cargo's `git =` accepts. Git also takes a local path (absolute,
/// or relative to the checkout) and the scp-like `user@host:path`; cargo takes neither, so a
/// path becomes a `file://` URL and the scp-like form an `ssh://` URL. None when the remote
/// is a path that does not exist here.
fn cargo_git_url(remote: &str, checkout: &Path) -> Option<String> {
    if remote.contains("://") {
        return Some(remote.to_owned());
    }
    // git's own rule: a colon before any slash makes it scp-like (a local path with a colon
    // is written `./foo:bar` for git).
    let scp_like = remote.split_once(':').filter(|(host, _)| !host.is_empty() && !host.contains('/'));
    if let Some((host, path)) = scp_like {
        return Some(format!("ssh://{host}/{}", path.trim_start_matches('/')));
    }
    let path = checkout.join(remote).canonicalize().ok()?;
    url::Url::from_file_path(path).ok().map(String::from)
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A package name cargo accepts and a crate name Rust accepts: lower-case letters,
/// digits, `-` and `_`, starting with a letter.
fn name_problem(name: &str) -> Option<String> {
    let well_formed = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    (!well_formed).then(|| {
        format!(
            "{name:?} is not a plugin name: lower-case letters, digits, - and _, starting with a letter, at most 64"
        )
    })
}

/// Writes the plugin crate into `dir`, which must not exist or be empty.
pub fn new_plugin(dir: &Path, name: Option<String>, sdk: &SdkSource) -> Result<Vec<PathBuf>, String> {
    let name = match name {
        Some(name) => name,
        None => dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("{}: give --name (the folder has no usable name)", dir.display()))?,
    };
    if let Some(problem) = name_problem(&name) {
        return Err(problem);
    }
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(format!("{} exists and is not empty: nothing was written", dir.display()));
        }
    }
    let crate_name = name.replace('-', "_");
    let fill = |template: &str| -> Result<String, String> {
        let sdk = if template.contains("@SDK@") { sdk.dependency()? } else { String::new() };
        Ok(template.replace("@NAME@", &name).replace("@CRATE@", &crate_name).replace("@SDK@", &sdk))
    };
    let files = [
        ("Cargo.toml", fill(CARGO_TOML)?),
        ("src/lib.rs", fill(LIB_RS)?),
        ("README.md", fill(README)?),
        (".gitignore", GITIGNORE.to_owned()),
        ("Cargo.lock", TESTED_LOCK.to_owned()),
    ];
    let mut written = Vec::new();
    for (relative, text) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The command: prints what it wrote and the next steps.
pub fn run(
    dir: &Path,
    name: Option<String>,
    sdk: Option<PathBuf>,
    sdk_git: Option<String>,
    sdk_rev: Option<String>,
) -> u8 {
    let created = SdkSource::choose(sdk, sdk_git, sdk_rev).and_then(|sdk| new_plugin(dir, name, &sdk));
    match created {
        Ok(files) => {
            for file in files {
                println!("wrote {}", file.display());
            }
            println!("next: cd {} && cargo test && cargo build --release --target wasm32-wasip2", dir.display());
            exit::OK
        }
        Err(message) => {
            eprintln!("error: {message}");
            exit::USAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scaffold_names_the_sdk_and_the_crate() {
        let folder = tempfile::tempdir().unwrap();
        let dir = folder.path().join("my-plugin");
        let sdk = SdkSource::Git { url: "https://example.com/blueprint-runner.git".into(), rev: Some("abc123".into()) };
        new_plugin(&dir, None, &sdk).unwrap();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-plugin\""), "{manifest}");
        assert!(
            manifest.contains(r#"br-guest-sdk = { git = "https://example.com/blueprint-runner.git", rev = "abc123" }"#),
            "{manifest}"
        );
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("release/my_plugin.wasm") && !lib.contains('@'), "{lib}");
    }

    /// `git -C dir ARGS` as user t; its stdout, trimmed. Panics when git fails.
    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A repository at `dir` with an SDK crate and a contract, committed; no remote.
    fn committed_sdk_checkout(dir: &Path) {
        std::fs::create_dir_all(dir.join("crates/guest-sdk")).unwrap();
        std::fs::create_dir_all(dir.join("wit")).unwrap();
        std::fs::write(dir.join("crates/guest-sdk/Cargo.toml"), "[package]").unwrap();
        std::fs::write(dir.join("wit/contract.wit"), "package a:b@0.9.0;").unwrap();
        std::fs::create_dir_all(dir.join("crates/plan/src")).unwrap();
        std::fs::write(dir.join("crates/plan/src/planner.rs"), "// the planner").unwrap();
        git(dir, &["init", "-q"]);
        git(dir, &["add", "."]);
        git(dir, &["commit", "-qm", "sdk"]);
    }

    /// From a checkout with a remote and the SDK committed, the plugin depends on that
    /// repository at that commit; with a change to the SDK, a crate it is built from or the
    /// contract not committed, or no remote, there is no revision that has what this
    /// binary has.
    #[test]
    fn a_committed_checkout_pins_the_sdk_to_its_revision() {
        let repo = tempfile::tempdir().unwrap();
        committed_sdk_checkout(repo.path());
        let sdk = repo.path().join("crates/guest-sdk");
        assert_eq!(pinned_revision(&sdk), None, "no remote: nowhere to fetch it from");
        git(repo.path(), &["remote", "add", "origin", "https://example.com/runner.git"]);
        let head = git(repo.path(), &["rev-parse", "HEAD"]);
        assert_eq!(
            pinned_revision(&sdk),
            Some(SdkSource::Git { url: "https://example.com/runner.git".into(), rev: Some(head) })
        );
        std::fs::write(repo.path().join("crates/plan/src/planner.rs"), "// another planner").unwrap();
        assert_eq!(pinned_revision(&sdk), None, "the planner the SDK is built from changed since the commit");
        git(repo.path(), &["checkout", "-q", "--", "crates/plan"]);
        assert!(pinned_revision(&sdk).is_some(), "as committed again");
        std::fs::write(repo.path().join("wit/contract.wit"), "package a:b@0.10.0;").unwrap();
        assert_eq!(pinned_revision(&sdk), None, "the contract changed since the commit");
    }

    /// CI and many machines clone from a local path or with the scp-like `git@host:path`;
    /// cargo refuses both as a `git =` URL, so they become `file://` and `ssh://` URLs.
    #[test]
    fn a_remote_git_takes_but_cargo_does_not_becomes_a_url_cargo_takes() {
        let checkout = tempfile::tempdir().unwrap();
        let bare = checkout.path().join("repo.git");
        std::fs::create_dir(&bare).unwrap();
        let bare = bare.canonicalize().unwrap();
        let expected = format!("file://{}", bare.display());
        assert_eq!(cargo_git_url(bare.to_str().unwrap(), Path::new("/")), Some(expected.clone()), "absolute path");
        assert_eq!(cargo_git_url("repo.git", checkout.path()), Some(expected), "relative to the checkout");
        assert_eq!(cargo_git_url("missing.git", checkout.path()), None, "a path that is not here");
        assert_eq!(
            cargo_git_url("git@github.com:owner/runner.git", checkout.path()).as_deref(),
            Some("ssh://git@github.com/owner/runner.git")
        );
        for url in ["https://example.com/runner.git", "ssh://git@example.com/runner.git", "file:///srv/runner.git"] {
            assert_eq!(cargo_git_url(url, checkout.path()).as_deref(), Some(url));
        }
    }

    /// A checkout cloned from a local repository (as CI's is) pins the SDK to a `file://`
    /// URL of that repository, and git can fetch the pinned commit from it.
    #[test]
    fn a_checkout_cloned_from_a_local_path_pins_a_file_url_that_has_the_commit() {
        let root = tempfile::tempdir().unwrap();
        committed_sdk_checkout(&root.path().join("upstream"));
        git(root.path(), &["clone", "-q", "--bare", "upstream", "repo.git"]);
        git(root.path(), &["clone", "-q", "repo.git", "clone"]);
        let clone = root.path().join("clone");
        let head = git(&clone, &["rev-parse", "HEAD"]);
        let pinned = pinned_revision(&clone.join("crates/guest-sdk"));
        let bare = root.path().join("repo.git").canonicalize().unwrap();
        let url = format!("file://{}", bare.display());
        assert_eq!(pinned, Some(SdkSource::Git { url: url.clone(), rev: Some(head.clone()) }));
        let listed = git(root.path(), &["ls-remote", &url]);
        assert!(listed.contains(&head), "{listed}");
    }

    #[test]
    fn a_folder_with_files_is_never_overwritten() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("keep.txt"), "mine").unwrap();
        let sdk = SdkSource::Git { url: "u".into(), rev: None };
        let refused = new_plugin(folder.path(), Some("ok".into()), &sdk).unwrap_err();
        assert!(refused.contains("not empty"), "{refused}");
        assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 1);
    }

    #[test]
    fn names_cargo_would_refuse_are_refused() {
        for bad in ["My-Plugin", "1st", "a b", "a/../b", ""] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(name_problem("beat-cuts_2").is_none());
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
