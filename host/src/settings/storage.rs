//! [`StorageSettings`]: where a job's objects live (a folder or a bucket), and the
//! clients that reach them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use br_engine::storage::{GcsConfig, GcsStorage, LocalFolder, Storage};

use super::Environment;
use crate::cli::{StorageFlags, StorageKind};

/// Where a job's objects live, resolved from `StorageFlags` and the environment.
#[derive(Clone)]
pub struct StorageSettings {
    pub(super) flags: StorageFlags,
    pub(super) kind: StorageKind,
    /// `--data-dir`, else `DATA_DIR` (clap reads both into the flag), else
    /// `LOCAL_STORAGE_PATH` (the predecessor's name, which the backend's compose set-up
    /// uses). The more specific name wins, as `BLUEPRINT_RUNNER_LOG` does over `LOG_LEVEL`.
    pub(super) data_dir: Option<PathBuf>,
    /// The warning for a `LOCAL_STORAGE_PATH` that `DATA_DIR` overrides.
    ignored_alias: Option<String>,
    /// `STORAGE_EMULATOR_HOST`: a fake-gcs-server instead of Google's endpoint.
    pub(super) emulator_host: Option<String>,
}

impl StorageSettings {
    pub fn resolve(flags: &StorageFlags, env: &Environment) -> StorageSettings {
        // `job` refuses any other value at start (`config`); `run` reads anything else as no.
        let use_gcs = env.get("USE_GCS").is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        StorageSettings {
            flags: flags.clone(),
            kind: flags.kind.unwrap_or(if use_gcs { StorageKind::Gcs } else { StorageKind::Local }),
            data_dir: flags.data_dir.clone().or_else(|| local_storage_path(&env.lookup()).map(Into::into)),
            ignored_alias: ignored_local_storage_path(&env.lookup()),
            emulator_host: env.get("STORAGE_EMULATOR_HOST").filter(|host| !host.is_empty()),
        }
    }

    /// The job's own bucket, when its storage is GCS.
    pub fn bucket(&self) -> Option<&str> {
        match self.kind {
            StorageKind::Gcs => self.flags.bucket.as_deref(),
            StorageKind::Local => None,
        }
    }

    /// The backend's `data/` (`GCS_STRIP_PREFIX`), which names the storage's root.
    pub fn strip_prefix(&self) -> &str {
        &self.flags.strip_prefix
    }

    pub fn download_concurrency(&self) -> usize {
        usize::from(self.flags.download_concurrency).max(1)
    }

    /// The storage backend these settings name.
    pub async fn open(&self) -> Result<Box<dyn Storage>, String> {
        match self.kind {
            StorageKind::Local => {
                if let Some(ignored) = &self.ignored_alias {
                    tracing::warn!("{ignored}");
                }
                let dir = self
                    .data_dir
                    .as_ref()
                    .ok_or("local storage needs --data-dir (or DATA_DIR, or LOCAL_STORAGE_PATH)")?;
                Ok(Box::new(LocalFolder::open(dir, &self.flags.strip_prefix).map_err(|e| e.to_string())?))
            }
            StorageKind::Gcs => {
                let bucket = self.flags.bucket.clone().ok_or("GCS storage needs --bucket (or GCS_BUCKET_NAME)")?;
                Ok(Box::new(GcsStorage::connect(self.gcs(bucket)).await.map_err(|e| e.to_string())?))
            }
        }
    }

    /// A reader of one `gs://BUCKET/KEY` address (a blueprint, a manifest): the bucket may
    /// differ from the media's, and the key is used as given, with the job's retry policy.
    pub async fn open_address_bucket(&self, bucket: &str) -> Result<GcsStorage, String> {
        let config = GcsConfig { strip_prefix: String::new(), object_prefix: String::new(), ..self.gcs(bucket.into()) };
        GcsStorage::connect(config).await.map_err(|e| e.to_string())
    }

    fn gcs(&self, bucket: String) -> GcsConfig {
        GcsConfig {
            emulator_host: self.emulator_host.clone(),
            strip_prefix: self.flags.strip_prefix.clone(),
            object_prefix: self.flags.object_prefix.clone(),
            max_attempts: self.flags.storage_attempts,
            object_deadline: Duration::from_secs(self.flags.storage_deadline.max(1)),
            first_backoff: Duration::from_millis(self.flags.storage_backoff_ms),
            ..GcsConfig::new(bucket)
        }
    }
}

/// The data folder from the environment: `DATA_DIR`, else its alias `LOCAL_STORAGE_PATH`
/// (the predecessor's name, which the backend's compose set-up passes); empty is unset.
/// Returns the value and the variable it came from.
pub fn data_dir_variable(get: &dyn Fn(&str) -> Option<String>) -> Option<(&'static str, String)> {
    let set = |name: &'static str| get(name).filter(|v| !v.is_empty()).map(|v| (name, v));
    set("DATA_DIR").or_else(|| set("LOCAL_STORAGE_PATH"))
}

/// `LOCAL_STORAGE_PATH` when it is the data folder (`DATA_DIR` unset).
pub fn local_storage_path(get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    data_dir_variable(get).filter(|(name, _)| *name == "LOCAL_STORAGE_PATH").map(|(_, dir)| dir)
}

/// The warning for a `LOCAL_STORAGE_PATH` that `DATA_DIR` overrides with another folder
/// (the same folder twice is no news).
pub fn ignored_local_storage_path(get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let set = |name: &str| get(name).filter(|v| !v.is_empty());
    let (data_dir, alias) = (set("DATA_DIR")?, set("LOCAL_STORAGE_PATH")?);
    (Path::new(&data_dir) != Path::new(&alias))
        .then(|| format!("LOCAL_STORAGE_PATH={alias} is ignored: DATA_DIR={data_dir} is set and names the data folder"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_storage_path_is_the_data_folder_unless_data_dir_is_set() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let both = vars(&[("DATA_DIR", "/a"), ("LOCAL_STORAGE_PATH", "/app/data")]);
        let alias_only = vars(&[("DATA_DIR", ""), ("LOCAL_STORAGE_PATH", "/app/data")]);
        assert_eq!(data_dir_variable(&both), Some(("DATA_DIR", "/a".into())));
        assert_eq!(data_dir_variable(&alias_only), Some(("LOCAL_STORAGE_PATH", "/app/data".into())));
        assert_eq!(local_storage_path(&alias_only).as_deref(), Some("/app/data"));
        assert_eq!(local_storage_path(&both), None);
        let warning = ignored_local_storage_path(&both).expect("a warning");
        assert!(warning.contains("LOCAL_STORAGE_PATH=/app/data is ignored"), "{warning}");
        assert!(warning.contains("DATA_DIR=/a"), "{warning}");
        let same = vars(&[("DATA_DIR", "/app/data/"), ("LOCAL_STORAGE_PATH", "/app/data")]);
        assert_eq!(ignored_local_storage_path(&same), None);
        assert_eq!(ignored_local_storage_path(&alias_only), None);
    }
}
