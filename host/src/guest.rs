//! Which guest component runs, and where its compiled form is cached.

use std::path::PathBuf;

use br_sandbox::{CacheConfig, Limits, Sandbox, SandboxError};

/// The default guest, built by `build.rs` and embedded so the binary works from any folder.
pub const DEFAULT_GUEST: &[u8] = include_bytes!(env!("DEFAULT_GUEST_WASM"));

pub const CACHE_ENV: &str = "BLUEPRINT_RUNNER_CACHE_DIR";

#[derive(Debug, Clone)]
pub struct GuestChoice {
    /// A plugin component to load instead of the embedded default.
    pub path: Option<PathBuf>,
    pub cache: CacheConfig,
}

impl GuestChoice {
    pub fn load(&self, limits: Limits) -> Result<Sandbox, LoadError> {
        let wasm = match &self.path {
            None => std::borrow::Cow::Borrowed(DEFAULT_GUEST),
            Some(path) => std::borrow::Cow::Owned(
                std::fs::read(path).map_err(|source| LoadError::Read { path: path.clone(), source })?,
            ),
        };
        Sandbox::load(&wasm, limits, &self.cache).map_err(LoadError::Sandbox)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the guest component {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Sandbox(SandboxError),
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Prepared clips go only to guests whose contract can be told about them, manifests
    /// only to guests that export `validate-manifest`, settings only to guests that import
    /// `host.settings`, the song's loudness only to guests that import `host.loudness`, the
    /// check's options and the timeline's fit only to guests of 0.8.0 and later, a place to
    /// keep data for `plan` only to 0.9.0 and later, keyframe grids only to 0.10.0: the built-in
    /// guest (0.10.0) takes all seven, the one frozen at 0.9.0 all but the grids (so it is given
    /// only clips with keyframes every GOP from the first), the one frozen at 0.8.0 neither the
    /// grids nor the keeping, the one frozen at 0.7.0 neither that nor the fit, the one
    /// frozen at 0.6.0 neither the fit nor the loudness, the same decisions built against
    /// 0.4.0 take prepared clips only, the hostile test guest (0.2.0) none.
    #[test]
    fn each_contract_version_gets_what_it_can_be_told() {
        let uncached = br_sandbox::CacheConfig { dir: None };
        let limits = br_sandbox::Limits::default();
        let load = |wasm: &[u8]| br_sandbox::Sandbox::load(wasm, limits.clone(), &uncached).unwrap();
        let told = |sandbox: &br_sandbox::Sandbox| {
            let version = sandbox.contract_version();
            let (fits, keeps, grids) = (sandbox.fits_timelines(), sandbox.keeps_data(), sandbox.knows_keyframe_grids());
            (
                version,
                sandbox.takes_prepared_clips(),
                sandbox.checks_manifests(),
                sandbox.takes_settings(),
                sandbox.takes_loudness(),
                fits,
                keeps,
                grids,
            )
        };
        let builtin = load(super::DEFAULT_GUEST);
        assert_eq!(told(&builtin), ("0.10.0", true, true, true, true, true, true, true));
        let frozen = |version: &str| {
            let path = format!("{}/../tests/fixtures/guests/default-guest-{version}.wasm", env!("CARGO_MANIFEST_DIR"));
            load(&std::fs::read(path).unwrap())
        };
        assert_eq!(told(&frozen("0.9.0")), ("0.9.0", true, true, true, true, true, true, false));
        assert_eq!(told(&frozen("0.8.0")), ("0.8.0", true, true, true, true, true, false, false));
        assert_eq!(told(&frozen("0.7.0")), ("0.7.0", true, true, true, true, false, false, false));
        assert_eq!(told(&frozen("0.6.0")), ("0.6.0", true, true, true, false, false, false, false));
        let older = load(&std::fs::read(test_programs::CONTRACT_0_4_GUEST).unwrap());
        assert_eq!(told(&older), ("0.4.0", true, false, false, false, false, false, false));
        let hostile = load(&std::fs::read(test_programs::HOSTILE_GUEST).unwrap());
        assert_eq!(told(&hostile), ("0.2.0", false, false, false, false, false, false, false));
        // Settings for a guest that cannot be told them are refused, not dropped.
        let settings = br_sandbox::GuestSettings::parse(r#"{"max_moves": 10}"#).unwrap();
        let refused = older.with_settings(Some(settings.clone())).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("contract 0.4.0 has no settings"), "{refused}");
        assert!(builtin.with_settings(Some(settings)).is_ok());
    }

    /// A guest of contract 0.4.0 still validates and plans through the host, and is
    /// told it cannot check a manifest; the built-in guest checks one entry by entry.
    #[tokio::test]
    async fn a_contract_0_4_guest_keeps_working_and_manifests_go_to_0_5() {
        let uncached = br_sandbox::CacheConfig { dir: None };
        let limits = br_sandbox::Limits::default();
        let older = br_sandbox::Sandbox::load(
            &std::fs::read(test_programs::CONTRACT_0_4_GUEST).unwrap(),
            limits.clone(),
            &uncached,
        )
        .unwrap();
        let example = include_str!("../../examples/backend-blueprint.json");
        let validation = older.validate(example, &br_blueprint::CheckOptions::default()).await.unwrap();
        assert_eq!(validation.verdict.unwrap().moves.len(), 22);
        let manifest = r#"[{"task_id": "a-1", "blueprint_uri": "gs://bucket/a.json"}, {"task_id": "b 2", "blueprint_uri": "gs://bucket/b.json"}]"#;
        assert!(matches!(older.validate_manifest(manifest).await, Err(br_sandbox::SandboxError::Incompatible(_))));
        let builtin = br_sandbox::Sandbox::load(super::DEFAULT_GUEST, limits, &uncached).unwrap();
        let entries = builtin.validate_manifest(manifest).await.unwrap().verdict.unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries[0].problem.is_none());
        assert_eq!(entries[1].problem.as_ref().map(|p| p.pointer.as_str()), Some("/1/task_id"));
        let refused = builtin.validate_manifest("{}").await.unwrap().verdict.unwrap_err();
        assert_eq!(refused[0].pointer, "");
    }

    /// The build scripts (the host's for the embedded guest, `test-programs`' for the
    /// tests' guests) must rebuild a guest whenever anything it is built from changes.
    /// Checked here against `cargo tree`, independently of how `br-guest-build` finds its
    /// list: every local package in each guest's dependency tree must lie under a path
    /// its build script watches.
    #[test]
    fn every_local_crate_of_the_guests_is_watched_by_the_build_script() {
        let paths = |list: &str| list.split(';').map(PathBuf::from).collect::<Vec<_>>();
        for (guest, watched) in [
            ("blueprint-guest", paths(env!("GUEST_WATCHED_PATHS"))),
            ("hostile-guest", paths(test_programs::WATCHED_PATHS)),
        ] {
            check_watched(guest, &watched);
        }
    }

    fn check_watched(guest: &str, watched: &[PathBuf]) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ sits in the workspace");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = std::process::Command::new(cargo)
            .current_dir(root)
            .args(["tree", "--offline", "--target", "wasm32-wasip2", "-e", "normal,build", "--prefix", "none"])
            .args(["-p", guest])
            .output()
            .expect("running cargo tree");
        assert!(output.status.success(), "cargo tree: {}", String::from_utf8_lossy(&output.stderr));
        let tree = String::from_utf8(output.stdout).expect("cargo tree prints UTF-8");
        // Local packages are printed as `name vX.Y.Z (/their/folder)`.
        let local: Vec<&str> = tree.lines().filter_map(|line| line.split_once(" (/").map(|(_, rest)| rest)).collect();
        assert!(!local.is_empty(), "{guest} and its path crates were not found in:\n{tree}");
        if guest == "blueprint-guest" {
            // The planner: the crate a hand-written list once missed.
            assert!(local.iter().any(|rest| rest.contains("crates/plan)")), "crates/plan not in:\n{tree}");
        }
        for rest in local {
            let folder = PathBuf::from(format!("/{}", rest.split(')').next().unwrap_or_default()));
            assert!(
                watched.iter().any(|w| folder.starts_with(w)),
                "{} is a path dependency of {guest} but its build script does not watch it (watched: {watched:?})",
                folder.display()
            );
        }
        for always in ["wit", "Cargo.lock", "Cargo.toml"] {
            assert!(watched.contains(&root.join(always)), "the build script of {guest} does not watch {always}");
        }
    }
}
