//! Google Cloud Storage, through the official `google-cloud-storage` crate.
//!
//! Keys map to object names by the rule the data folder uses too (docs/JOB.md, *Storage*):
//! a leading `strip_prefix` (default `data/`, how the backend names local files) is
//! removed, then `object_prefix` is put in front. Every transfer is streamed between the network and
//! a file (never a whole object in memory) and retried here, not in the crate, so that
//! a retry always starts a fresh attempt: transient failures (connection, timeouts,
//! 408, 429, 5xx, a short or corrupt body) get at most `max_attempts` attempts with
//! exponential backoff and jitter inside a deadline; a 404 is final at once.

use std::path::Path;
use std::time::{Duration, Instant};

use google_cloud_storage::client::Storage as Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{listed_key, partial_name, stored_name, Storage, StorageError, StorageFuture};
use crate::budget::ledger::Gate;

#[derive(Debug, Clone)]
pub struct GcsConfig {
    pub bucket: String,
    /// `STORAGE_EMULATOR_HOST`: talk to an emulator at this address with anonymous
    /// credentials (the crate does not read the variable itself).
    pub emulator_host: Option<String>,
    pub strip_prefix: String,
    pub object_prefix: String,
    pub max_attempts: u32,
    /// Total time for one object, every attempt and pause included.
    pub object_deadline: Duration,
    pub first_backoff: Duration,
}

impl GcsConfig {
    /// The object name for a blueprint key (docs/JOB.md, *Storage*).
    pub fn object_name(&self, key: &str) -> String {
        format!("{}{}", self.object_prefix, stored_name(key, &self.strip_prefix))
    }

    pub fn new(bucket: String) -> GcsConfig {
        GcsConfig {
            bucket,
            emulator_host: None,
            strip_prefix: "data/".into(),
            object_prefix: String::new(),
            max_attempts: 3,
            object_deadline: Duration::from_secs(600),
            first_backoff: Duration::from_millis(250),
        }
    }
}

pub struct GcsStorage {
    client: Client,
    config: GcsConfig,
    bucket_path: String,
    /// Lists objects through the JSON API: the crate lists only over gRPC
    /// (`StorageControl`), which the emulator the tests run does not speak.
    lister: Lister,
}

struct Lister {
    http: reqwest::Client,
    /// `https://storage.googleapis.com`, or the emulator's address.
    endpoint: String,
    /// None for the emulator (anonymous).
    credentials: Option<google_cloud_auth::credentials::Credentials>,
}

/// Objects per page of a listing (the JSON API's own maximum is 1,000).
const LIST_PAGE: &str = "1000";

/// How one attempt ended, when it did not succeed.
enum Failure {
    NotFound,
    /// The object can never fit the work folder.
    TooLarge(crate::budget::ledger::TooLarge),
    Transient(String),
    Permanent(String),
}

fn classify(error: &google_cloud_storage::Error) -> Failure {
    match error.http_status_code() {
        Some(404) => Failure::NotFound,
        Some(408 | 429 | 500..=599) => Failure::Transient(error.to_string()),
        Some(_) => Failure::Permanent(error.to_string()),
        // No HTTP status: the connection failed, timed out, or the body was cut short
        // or did not match its checksum. Another attempt may well succeed.
        None if error.is_connect()
            || error.is_timeout()
            || error.is_io()
            || error.is_transport()
            || error.is_deserialization() =>
        {
            Failure::Transient(error.to_string())
        }
        None => Failure::Permanent(error.to_string()),
    }
}

impl GcsStorage {
    pub async fn connect(config: GcsConfig) -> Result<GcsStorage, StorageError> {
        let shown = format!("gs://{}", config.bucket);
        let mut builder = Client::builder()
            .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry)
            .with_read_resume_policy(google_cloud_storage::read_resume_policy::NeverResume);
        let lister = match &config.emulator_host {
            Some(host) => {
                let endpoint = if host.contains("://") { host.clone() } else { format!("http://{host}") };
                builder = builder
                    .with_endpoint(endpoint.clone())
                    .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build());
                Lister { http: reqwest::Client::new(), endpoint, credentials: None }
            }
            None => {
                // Application Default Credentials, as the crate's own client finds them
                // (on Cloud Run: the job's service account, from the metadata server).
                let credentials = google_cloud_auth::credentials::Builder::default()
                    .build()
                    .map_err(|e| StorageError::Open { store: shown.clone(), message: e.to_string() })?;
                Lister {
                    http: reqwest::Client::new(),
                    endpoint: "https://storage.googleapis.com".into(),
                    credentials: Some(credentials),
                }
            }
        };
        let client = builder.build().await.map_err(|e| StorageError::Open { store: shown, message: e.to_string() })?;
        let bucket_path = format!("projects/_/buckets/{}", config.bucket);
        Ok(GcsStorage { client, config, bucket_path, lister })
    }

    /// A GET on the JSON API, with the credentials' headers unless talking to the emulator.
    async fn json_get(&self, url: impl reqwest::IntoUrl, query: &[(&str, &str)]) -> Result<reqwest::Response, Failure> {
        let mut request = self.lister.http.get(url).query(query);
        if let Some(credentials) = &self.lister.credentials {
            let headers = credentials
                .headers(Default::default())
                .await
                .map_err(|e| Failure::Permanent(format!("credentials: {e}")))?;
            if let google_cloud_auth::credentials::CacheableResource::New { data, .. } = headers {
                request = request.headers(data);
            }
        }
        request.send().await.map_err(|e| Failure::Transient(e.to_string()))
    }

    /// One page of object names under `object_prefix`, and the next page's token.
    async fn list_page(
        &self,
        object_prefix: &str,
        page: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), Failure> {
        let url = format!("{}/storage/v1/b/{}/o", self.lister.endpoint, self.config.bucket);
        let mut query =
            vec![("prefix", object_prefix), ("maxResults", LIST_PAGE), ("fields", "items(name),nextPageToken")];
        if let Some(token) = page {
            query.push(("pageToken", token));
        }
        let response = self.json_get(url, &query).await?;
        let status = response.status().as_u16();
        if status != 200 {
            let message = format!("listing answered HTTP {status}");
            return Err(if matches!(status, 408 | 429 | 500..=599) {
                Failure::Transient(message)
            } else {
                Failure::Permanent(message)
            });
        }
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            items: Vec<Item>,
            #[serde(rename = "nextPageToken")]
            next_page_token: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Item {
            name: String,
        }
        let page: Page = response.json().await.map_err(|e| Failure::Transient(e.to_string()))?;
        Ok((page.items.into_iter().map(|item| item.name).collect(), page.next_page_token))
    }

    /// An object's size from its metadata (JSON API), for a read that did not state it.
    async fn object_size(&self, object: &str) -> Result<u64, Failure> {
        let mut url =
            reqwest::Url::parse(&self.lister.endpoint).map_err(|e| Failure::Permanent(format!("endpoint: {e}")))?;
        url.path_segments_mut().map_err(|()| Failure::Permanent("endpoint cannot take a path".into()))?.extend([
            "storage",
            "v1",
            "b",
            self.config.bucket.as_str(),
            "o",
            object,
        ]);
        let response = self.json_get(url, &[("fields", "size")]).await?;
        let status = response.status().as_u16();
        if status != 200 {
            let message = format!("reading its size answered HTTP {status}");
            return Err(match status {
                404 => Failure::NotFound,
                408 | 429 | 500..=599 => Failure::Transient(message),
                _ => Failure::Permanent(message),
            });
        }
        #[derive(serde::Deserialize)]
        struct Metadata {
            size: String,
        }
        let metadata: Metadata = response.json().await.map_err(|e| Failure::Transient(e.to_string()))?;
        metadata.size.parse().map_err(|_| Failure::Permanent(format!("its size {:?} is not a number", metadata.size)))
    }

    pub fn object_name(&self, key: &str) -> String {
        self.config.object_name(key)
    }

    fn shown(&self) -> String {
        format!("gs://{}", self.config.bucket)
    }

    /// Runs `attempt` on `object` (the name `key` maps to) until it succeeds, fails for
    /// good, or the attempts or the deadline run out.
    async fn with_retries<T, F, Fut>(
        &self,
        key: &str,
        object: &str,
        what: &str,
        mut attempt: F,
    ) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let started = Instant::now();
        let mut pauses = retry_pauses(self.config.first_backoff);
        let mut number = 0;
        loop {
            number += 1;
            let remaining = self.config.object_deadline.saturating_sub(started.elapsed());
            let outcome = match tokio::time::timeout(remaining, attempt()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Failure::Transient(format!(
                    "no answer within the deadline of {} s",
                    self.config.object_deadline.as_secs()
                ))),
            };
            let message = match outcome {
                Ok(value) => return Ok(value),
                Err(Failure::NotFound) => {
                    let looked_for = format!("object {object:?} in bucket {:?}", self.config.bucket);
                    return Err(StorageError::NotFound { key: key.to_owned(), looked_for });
                }
                Err(Failure::Permanent(message)) => {
                    return Err(StorageError::Io {
                        key: key.to_owned(),
                        store: self.shown(),
                        message: format!("{what}: {message}"),
                        source: None,
                    })
                }
                Err(Failure::TooLarge(too_large)) => {
                    return Err(StorageError::TooLarge { key: key.to_owned(), too_large })
                }
                Err(Failure::Transient(message)) => message,
            };
            let jittered = pauses.next().unwrap_or(self.config.object_deadline);
            if number >= self.config.max_attempts || started.elapsed() + jittered >= self.config.object_deadline {
                return Err(StorageError::GaveUp {
                    key: key.to_owned(),
                    store: self.shown(),
                    attempts: number,
                    message: format!("{what}: {message}"),
                });
            }
            tracing::warn!(
                key,
                attempt = number,
                pause_ms = jittered.as_millis() as u64,
                "{what} failed, retrying: {message}"
            );
            tokio::time::sleep(jittered).await;
        }
    }

    async fn download_once(&self, object: &str, partial: &Path, gate: &dyn Gate) -> Result<u64, Failure> {
        let mut response = self.client.read_object(&self.bucket_path, object).send().await.map_err(|e| classify(&e))?;
        // Admitted at the size the object declares, before a byte is written; the body
        // may not be longer than that.
        let declared = match u64::try_from(response.object().size) {
            Ok(size) if size > 0 => size,
            // The service sends the stored length with every read; an emulator may not.
            // Zero could be an empty object or no header: the metadata says which.
            _ => self.object_size(object).await?,
        };
        let limit = gate.admit(declared).await.map_err(Failure::TooLarge)?;
        let local = |e: std::io::Error| Failure::Permanent(format!("writing {}: {e}", partial.display()));
        let mut file = tokio::fs::File::create(partial).await.map_err(local)?;
        let mut bytes = 0u64;
        while let Some(chunk) = response.next().await {
            let chunk = chunk.map_err(|e| classify(&e))?;
            bytes += chunk.len() as u64;
            if bytes > limit {
                return Err(Failure::Permanent(format!(
                    "the body is longer than the {limit} bytes the object declares"
                )));
            }
            file.write_all(&chunk).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        file.sync_all().await.map_err(local)?;
        Ok(bytes)
    }

    async fn upload_once(&self, source: &Path, object: &str, crc32c: u32) -> Result<u64, Failure> {
        let local = |e: std::io::Error| Failure::Permanent(format!("reading {}: {e}", source.display()));
        let file = tokio::fs::File::open(source).await.map_err(local)?;
        let written = self
            .client
            .write_object(&self.bucket_path, object, file)
            .set_content_type(content_type(object))
            // A known checksum travels in the request's metadata: the service verifies
            // the whole upload against it.
            .with_known_crc32c(crc32c)
            // Writing the same bytes to the same name again is harmless (see `store`).
            .with_idempotency(true)
            .send_unbuffered()
            .await
            .map_err(|e| classify(&e))?;
        Ok(written.size.max(0) as u64)
    }
}

impl Storage for GcsStorage {
    /// Streams the object into memory and stops at the first chunk past `limit`.
    fn read_small<'a>(&'a self, key: &'a str, limit: usize) -> StorageFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let object = self.object_name(key);
            self.with_retries(key, &object, "download", || async {
                let request = self.client.read_object(&self.bucket_path, &object);
                let mut response = request.send().await.map_err(|e| classify(&e))?;
                let mut bytes = Vec::new();
                while let Some(chunk) = response.next().await {
                    let chunk = chunk.map_err(|e| classify(&e))?;
                    if bytes.len() + chunk.len() > limit {
                        return Ok(None);
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(Some(bytes))
            })
            .await
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StorageFuture<'a, Vec<String>> {
        Box::pin(async move {
            // Names map back to keys spelled like the prefix (the backend's `data/...` for
            // its blueprints), so jobs find what `prepare` made of them.
            let object_prefix = self.object_name(prefix);
            let mut keys = Vec::new();
            let mut page: Option<String> = None;
            loop {
                let list_page = || self.list_page(&object_prefix, page.as_deref());
                let (names, next) = self.with_retries(prefix, &object_prefix, "list", list_page).await?;
                for name in names {
                    let Some(rest) = name.strip_prefix(object_prefix.as_str()) else { continue };
                    if keys.len() == super::MAX_LISTED {
                        return Err(super::too_many(self.shown(), prefix));
                    }
                    keys.push(listed_key(prefix, &self.config.strip_prefix, rest));
                }
                match next {
                    Some(token) => page = Some(token),
                    None => break,
                }
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn identity<'a>(&'a self, key: &'a str) -> StorageFuture<'a, String> {
        Box::pin(async move {
            let object = self.object_name(key);
            self.with_retries(key, &object, "look up", || async {
                // One byte read: the response's headers carry the generation (the
                // metadata API is gRPC-only in this client).
                let mut response = self
                    .client
                    .read_object(&self.bucket_path, &object)
                    .set_read_range(google_cloud_storage::model_ext::ReadRange::head(1))
                    .send()
                    .await
                    .map_err(|e| classify(&e))?;
                let generation = response.object().generation;
                while let Some(chunk) = response.next().await {
                    chunk.map_err(|e| classify(&e))?;
                }
                Ok(format!("generation {generation}"))
            })
            .await
        })
    }

    fn describe(&self) -> String {
        self.shown()
    }

    fn url(&self, key: &str) -> String {
        format!("gs://{}/{}", self.config.bucket, self.object_name(key))
    }

    fn fetch<'a>(&'a self, key: &'a str, destination: &'a Path, gate: &'a dyn Gate) -> StorageFuture<'a, u64> {
        Box::pin(async move {
            let object = self.object_name(key);
            let partial = partial_name(destination);
            let started = Instant::now();
            let result = self
                .with_retries(key, &object, "download", || async {
                    // Every attempt starts a new file: nothing of a failed one is kept.
                    let _ = tokio::fs::remove_file(&partial).await;
                    self.download_once(&object, &partial, gate).await
                })
                .await;
            let bytes = match result {
                Ok(bytes) => bytes,
                Err(error) => {
                    let _ = tokio::fs::remove_file(&partial).await;
                    return Err(error);
                }
            };
            tokio::fs::rename(&partial, destination).await.map_err(|e| StorageError::Io {
                key: key.to_owned(),
                store: self.shown(),
                message: format!("renaming the download: {e}"),
                source: Some(Box::new(e)),
            })?;
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(
                key,
                object,
                bytes,
                seconds,
                mib_per_s = bytes as f64 / 1048576.0 / seconds.max(1e-6),
                "downloaded"
            );
            Ok(bytes)
        })
    }

    /// Overwrites the object: a re-run of the same task writes the same video to the
    /// same name, and a GCS write is atomic (readers see the old or the new object,
    /// never a mix), so a retried job needs no precondition.
    fn store<'a>(&'a self, source: &'a Path, key: &'a str) -> StorageFuture<'a, u64> {
        Box::pin(async move {
            let object = self.object_name(key);
            let crc32c = file_crc32c(source).await.map_err(|e| StorageError::Io {
                key: key.to_owned(),
                store: self.shown(),
                message: format!("reading {}: {e}", source.display()),
                source: Some(Box::new(e)),
            })?;
            let started = Instant::now();
            let bytes = self.with_retries(key, &object, "upload", || self.upload_once(source, &object, crc32c)).await?;
            tracing::info!(key, object, bytes, seconds = started.elapsed().as_secs_f64(), "uploaded");
            Ok(bytes)
        })
    }
}

fn content_type(object: &str) -> &'static str {
    if object.ends_with(".mp4") {
        "video/mp4"
    } else {
        "application/octet-stream"
    }
}

async fn file_crc32c(path: &Path) -> std::io::Result<u32> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut buffer = vec![0u8; 256 * 1024];
    let mut crc = 0u32;
    loop {
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            return Ok(crc);
        }
        crc = crc32c::crc32c_append(crc, &buffer[..n]);
    }
}

/// The pauses before each retry: `first`, doubling, each with a random jitter of up to
/// itself added (backon's exponential backoff); the caller stops at its attempts and deadline.
fn retry_pauses(first: Duration) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::new()
        .with_min_delay(first)
        .with_factor(2.0)
        .with_jitter()
        .without_max_delay()
        .without_max_times()
        .build()
}

/// `gs://bucket/key` → (bucket, key).
pub fn parse_gs_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("gs://")?;
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gs_uris() {
        assert_eq!(parse_gs_uri("gs://b/blueprints/x.json"), Some(("b", "blueprints/x.json")));
        assert_eq!(parse_gs_uri("gs://b/"), None);
        assert_eq!(parse_gs_uri("s3://b/x"), None);
    }

    #[test]
    fn retry_pauses_double_from_the_first_with_at_most_as_much_again_of_jitter() {
        let first = Duration::from_millis(250);
        let pauses: Vec<Duration> = retry_pauses(first).take(4).collect();
        for (n, pause) in pauses.iter().enumerate() {
            let base = first * 2u32.pow(n as u32);
            assert!(*pause >= base && *pause < base * 2, "pause {n}: {pause:?} from {base:?}");
        }
        assert!(retry_pauses(Duration::ZERO).take(3).all(|pause| pause.is_zero()), "no pause asked, none made");
    }

    #[test]
    fn backend_paths_and_bucket_keys_name_the_same_object() {
        let mut config = GcsConfig::new("b".into());
        assert_eq!(config.object_name("data/Bachata_steps/basic/basic.mp4"), "Bachata_steps/basic/basic.mp4");
        assert_eq!(config.object_name("Bachata_steps/basic/basic.mp4"), "Bachata_steps/basic/basic.mp4");
        assert_eq!(config.object_name("database/x.mp4"), "database/x.mp4");
        config.object_prefix = "choreo/".into();
        assert_eq!(config.object_name("data/songs/a.mp3"), "choreo/songs/a.mp3");
        config.strip_prefix = String::new();
        assert_eq!(config.object_name("data/songs/a.mp3"), "choreo/data/songs/a.mp3");
    }
}
