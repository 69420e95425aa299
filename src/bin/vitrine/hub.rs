//! The Hub's client for `vitrine fetch` and `--model hf:ORG/NAME[@REV]`:
//! a Hub model's files into the Hugging Face cache, laid out as Python's `huggingface_hub`
//! lays them out, so that each side finds what the other downloaded.
//!
//! Per file, as `hf_hub_download` does: a HEAD of
//! `{endpoint}/{repo}/resolve/{revision}/{file}` (relative redirects
//! followed, the one to another host not) gives the commit
//! (`X-Repo-Commit`), the blob's name (`X-Linked-Etag`, else `ETag`) and
//! size (`X-Linked-Size`, else `Content-Length`); the bytes go to
//! `blobs/{etag}.incomplete` (resumed with a Range request when a part is
//! there), renamed to `blobs/{etag}` once whole, then linked from
//! `snapshots/{commit}/{file}`; `refs/{revision}` holds the commit. A file
//! the repo lacks is noted in `.no_exist/{commit}/`. With `HF_HUB_OFFLINE`
//! set, or the Hub unreachable and the model cached, the cache is used
//! as it is (as transformers does).
//!
//! HTTP through `ureq`; the Hub's own Rust client (`hf-hub`) is either
//! without error codes, offline mode and the cache fallback (0.4) or
//! asynchronous on tokio (1.x).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vitrine::checkpoint::hf_cache::{HubRef, hf_home, hub_cache, snapshot};

/// The weights, in the order a model's files are looked for.
pub const WEIGHTS: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// Where and how to ask: the endpoint, the token, offline or not.
pub struct Hub {
    endpoint: String,
    token: Option<String>,
    offline: bool,
    cache: PathBuf,
    agent: ureq::Agent,
}

/// What the Hub says of one file before it is downloaded.
struct Meta {
    commit: String,
    etag: String,
    size: Option<u64>,
    /// Where the bytes are (the CDN, for a file in LFS).
    location: String,
}

enum Failure {
    /// No answer from the endpoint (the cache may stand in).
    Unreachable(String),
    /// The file is not in the repo (`EntryNotFound`).
    NoFile,
    /// Anything else, said in one line.
    Other(String),
}

impl Hub {
    /// From the environment as `huggingface_hub` reads it (`var` looks a
    /// variable up): `HF_ENDPOINT`, `HF_TOKEN` (else `$HF_HOME/token`),
    /// `HF_HUB_OFFLINE`; the cache folder is `cache`.
    pub fn from_env(cache: PathBuf, var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let endpoint = set("HF_ENDPOINT")
            .unwrap_or_else(|| "https://huggingface.co".into())
            .trim_end_matches('/')
            .to_string();
        let token = set("HF_TOKEN").or_else(|| {
            let file = set("HF_TOKEN_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| hf_home(&var).join("token"));
            let token = std::fs::read_to_string(file).ok()?;
            Some(token.trim().to_string()).filter(|t| !t.is_empty())
        });
        let offline = set("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true")
        });
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .max_redirects_will_error(false)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .user_agent(concat!("vitrine/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Self {
            endpoint,
            token,
            offline,
            cache,
            agent,
        }
    }

    /// `model`'s folder in the cache, with its config, preprocessing
    /// config (if the repo has one) and weights, downloaded where missing.
    pub fn snapshot(&self, model: &HubRef) -> Result<PathBuf, String> {
        if self.offline {
            return snapshot(&self.cache, model)
                .map_err(|e| format!("{e} (HF_HUB_OFFLINE is set)"));
        }
        match self.download(model) {
            Ok(dir) => Ok(dir),
            Err(Failure::Unreachable(why)) => match snapshot(&self.cache, model) {
                Ok(dir) if has_weights(&dir) => {
                    eprintln!(
                        "vitrine: {} is unreachable ({why}); using {}@{} from the Hugging Face cache",
                        self.endpoint, model.repo, model.revision
                    );
                    Ok(dir)
                }
                _ => Err(format!(
                    "cannot reach {} ({why}), and {}@{} is not in the Hugging Face cache ({})",
                    self.endpoint,
                    model.repo,
                    model.revision,
                    self.cache.display()
                )),
            },
            Err(Failure::NoFile) => Err(format!(
                "{}@{} has no config.json: not a model vitrine can load",
                model.repo, model.revision
            )),
            Err(Failure::Other(e)) => Err(e),
        }
    }

    fn download(&self, model: &HubRef) -> Result<PathBuf, Failure> {
        let dir = self.file(model, "config.json")?;
        match self.file(model, "preprocessor_config.json") {
            Ok(_) | Err(Failure::NoFile) => {}
            Err(e) => return Err(e),
        }
        for weights in WEIGHTS {
            match self.file(model, weights) {
                Ok(_) => return Ok(dir),
                Err(Failure::NoFile) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Failure::Other(format!(
            "{}@{} has neither {}: no weights vitrine can load",
            model.repo,
            model.revision,
            WEIGHTS.join(" nor ")
        )))
    }

    /// One file into the cache; its snapshot folder.
    fn file(&self, model: &HubRef, name: &str) -> Result<PathBuf, Failure> {
        let repo_dir = self
            .cache
            .join(format!("models--{}", model.repo.replace('/', "--")));
        let url = format!(
            "{}/{}/resolve/{}/{name}",
            self.endpoint,
            model.repo,
            encode_revision(&model.revision)
        );
        let meta = match self.meta(&url, model, name) {
            Err(Failure::NoFile) => {
                // As huggingface_hub: remember the absence under the commit.
                if let Some(commit) = self.known_commit(&repo_dir, model) {
                    let marker = repo_dir.join(".no_exist").join(&commit).join(name);
                    let _ = std::fs::create_dir_all(marker.parent().expect("a folder"))
                        .and_then(|_| std::fs::write(&marker, b""));
                }
                return Err(Failure::NoFile);
            }
            other => other?,
        };
        let io = |what: &str, e: std::io::Error| {
            Failure::Other(format!(
                "cannot write {what} in the Hugging Face cache: {e}"
            ))
        };
        if meta.commit != model.revision {
            let refs = repo_dir.join("refs").join(&model.revision);
            std::fs::create_dir_all(refs.parent().expect("a folder"))
                .and_then(|_| std::fs::write(&refs, &meta.commit))
                .map_err(|e| io("a ref", e))?;
        }
        let snapshot_dir = repo_dir.join("snapshots").join(&meta.commit);
        let link = snapshot_dir.join(name);
        let blob = repo_dir.join("blobs").join(&meta.etag);
        if !blob.is_file() {
            std::fs::create_dir_all(blob.parent().expect("a folder"))
                .map_err(|e| io("blobs", e))?;
            self.fetch_blob(&meta, &blob, &format!("{}/{name}", model.repo))?;
        }
        std::fs::create_dir_all(&snapshot_dir).map_err(|e| io("a snapshot", e))?;
        if std::fs::symlink_metadata(&link).is_ok() {
            std::fs::remove_file(&link).map_err(|e| io("a snapshot", e))?;
        }
        link_blob(&meta.etag, &link).map_err(|e| io("a snapshot", e))?;
        Ok(snapshot_dir)
    }

    /// The commit `model`'s revision names, as far as the cache knows.
    fn known_commit(&self, repo_dir: &Path, model: &HubRef) -> Option<String> {
        let is_commit =
            model.revision.len() == 40 && model.revision.bytes().all(|b| b.is_ascii_hexdigit());
        if is_commit {
            return Some(model.revision.clone());
        }
        std::fs::read_to_string(repo_dir.join("refs").join(&model.revision))
            .ok()
            .map(|c| c.trim().to_string())
    }

    /// A request, with the token where it goes to the endpoint only.
    fn request(
        &self,
        method: &str,
        url: &str,
        range: Option<u64>,
    ) -> Result<ureq::http::Response<ureq::Body>, Failure> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("Accept-Encoding", "identity");
        if let Some(token) = &self.token
            && url.starts_with(&format!("{}/", self.endpoint))
        {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(from) = range {
            request = request.header("Range", format!("bytes={from}-"));
        }
        let request = request
            .body(())
            .map_err(|e| Failure::Other(format!("bad request to {url}: {e}")))?;
        self.agent.run(request).map_err(|e| match e {
            ureq::Error::Io(_)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(_) => Failure::Unreachable(e.to_string()),
            e => Failure::Other(format!("{url}: {e}")),
        })
    }

    /// HEAD of `url`, relative redirects followed; the Hub's errors in words.
    fn meta(&self, url: &str, model: &HubRef, name: &str) -> Result<Meta, Failure> {
        let mut url = url.to_string();
        for _ in 0..5 {
            let response = self.request("HEAD", &url, None)?;
            let status = response.status().as_u16();
            let header = |k: &str| {
                response
                    .headers()
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            if (300..400).contains(&status) {
                let location = header("location").unwrap_or_default();
                if location.starts_with('/') {
                    url = format!("{}{location}", origin(&url));
                    continue;
                }
                // The CDN's answer is not the Hub's: its headers are here.
                return self.meta_of(&header, location, model, name);
            }
            if status >= 400 {
                return Err(hub_error(
                    status,
                    header("x-error-code"),
                    model,
                    name,
                    &self.endpoint,
                ));
            }
            return self.meta_of(&header, url, model, name);
        }
        Err(Failure::Other(format!("{url}: too many redirects")))
    }

    fn meta_of(
        &self,
        header: &dyn Fn(&str) -> Option<String>,
        location: String,
        model: &HubRef,
        name: &str,
    ) -> Result<Meta, Failure> {
        let commit = header("x-repo-commit").ok_or_else(|| {
            Failure::Other(format!(
                "{} did not say which commit {}@{} is ({name}): is it a Hub endpoint?",
                self.endpoint, model.repo, model.revision
            ))
        })?;
        let etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .filter(|e| !e.is_empty() && !e.contains(['/', '\\']) && e != "." && e != "..")
            .ok_or_else(|| {
                Failure::Other(format!(
                    "{} gave {name} no ETag: cannot cache it",
                    self.endpoint
                ))
            })?;
        let commit_ok = commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit());
        if !commit_ok {
            return Err(Failure::Other(format!(
                "{} named `{commit}` as the commit of {}: not a commit",
                self.endpoint, model.repo
            )));
        }
        let size = header("x-linked-size")
            .or_else(|| header("content-length"))
            .and_then(|s| s.parse().ok());
        Ok(Meta {
            commit,
            etag,
            size,
            location,
        })
    }

    /// The file's bytes into `blob`, through `blob.incomplete`, resuming a
    /// part left by an interrupted download.
    fn fetch_blob(&self, meta: &Meta, blob: &Path, what: &str) -> Result<(), Failure> {
        let partial = blob.with_extension("incomplete");
        let have = std::fs::metadata(&partial).map_or(0, |m| m.len());
        let mut url = meta.location.clone();
        let mut response = None;
        for _ in 0..5 {
            let r = self.request("GET", &url, (have > 0).then_some(have))?;
            let status = r.status().as_u16();
            if (300..400).contains(&status) {
                let location = r
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                url = if location.starts_with('/') {
                    format!("{}{location}", origin(&url))
                } else {
                    location
                };
                continue;
            }
            response = Some(r);
            break;
        }
        let response =
            response.ok_or_else(|| Failure::Other(format!("{url}: too many redirects")))?;
        let status = response.status().as_u16();
        let resumed = status == 206 && have > 0;
        if status == 416 && meta.size == Some(have) {
            // The part was whole already.
            return std::fs::rename(&partial, blob)
                .map_err(|e| Failure::Other(format!("cannot finish {what} in the cache: {e}")));
        }
        if !(200..300).contains(&status) {
            return Err(Failure::Other(format!(
                "downloading {what}: HTTP {status} from {url}"
            )));
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(&partial)
            .map_err(|e| Failure::Other(format!("cannot write {what} in the cache: {e}")))?;
        let mut done = if resumed { have } else { 0 };
        let mut reader = response.into_body().into_reader();
        let mut buffer = vec![0u8; 1 << 16];
        let progress = Progress::new(what, meta.size);
        let cut = |done: u64| {
            Failure::Other(format!(
                "the download of {what} was cut off at {}{}: run the command again to resume it",
                megabytes(done),
                meta.size
                    .map(|s| format!(" of {}", megabytes(s)))
                    .unwrap_or_default()
            ))
        };
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) => return Err(cut(done)),
            };
            file.write_all(&buffer[..n])
                .map_err(|e| Failure::Other(format!("cannot write {what} in the cache: {e}")))?;
            done += n as u64;
            progress.show(done);
        }
        progress.end();
        if meta.size.is_some_and(|s| s != done) {
            return Err(cut(done));
        }
        drop(file);
        std::fs::rename(&partial, blob)
            .map_err(|e| Failure::Other(format!("cannot finish {what} in the cache: {e}")))
    }
}

/// Whether a snapshot folder has weights to load.
fn has_weights(dir: &Path) -> bool {
    WEIGHTS.iter().any(|w| dir.join(w).is_file())
}

/// `snapshots/{commit}/{name}` → `../../blobs/{etag}` (deeper for a
/// file in a subfolder), a relative link as huggingface_hub makes.
fn link_blob(etag: &str, link: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let _ = link;
        std::os::unix::fs::symlink(Path::new("../../blobs").join(etag), link)
    }
    #[cfg(not(unix))]
    {
        // Where links need privileges, huggingface_hub copies the blob.
        let blob = link.parent().and_then(Path::parent).and_then(Path::parent);
        let blob = blob
            .expect("under the repo's folder")
            .join("blobs")
            .join(etag);
        std::fs::copy(blob, link).map(|_| ())
    }
}

/// `scheme://host[:port]` of `url`.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// A revision in a URL path: `refs/pr/1` as `refs%2Fpr%2F1`, as the Hub
/// clients send it.
fn encode_revision(revision: &str) -> String {
    revision.replace('/', "%2F")
}

/// The Hub's error answers in one line each.
fn hub_error(
    status: u16,
    code: Option<String>,
    model: &HubRef,
    name: &str,
    endpoint: &str,
) -> Failure {
    let HubRef { repo, revision } = model;
    match (status, code.as_deref()) {
        (_, Some("GatedRepo")) => Failure::Other(format!(
            "{repo} is gated: accept its terms on the Hub, then set HF_TOKEN to a token of that account"
        )),
        (_, Some("EntryNotFound")) => Failure::NoFile,
        (_, Some("RevisionNotFound")) => Failure::Other(format!(
            "{repo} has no revision `{revision}` (a branch, tag or commit)"
        )),
        (401 | 404, Some("RepoNotFound") | None) => Failure::Other(format!(
            "{repo} is not on {endpoint}, or it is private (set HF_TOKEN to a token that can read it)"
        )),
        (404, _) => Failure::NoFile,
        _ => Failure::Other(format!(
            "{endpoint} answered HTTP {status}{} for {repo}@{revision}/{name}",
            code.map(|c| format!(" ({c})")).unwrap_or_default()
        )),
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// A line on stderr, redrawn in place, when stderr is a terminal.
struct Progress<'a> {
    what: &'a str,
    total: Option<u64>,
    on: bool,
    started: Instant,
    last: std::cell::Cell<Instant>,
}

impl<'a> Progress<'a> {
    fn new(what: &'a str, total: Option<u64>) -> Self {
        let now = Instant::now();
        Self {
            what,
            total,
            on: std::io::stderr().is_terminal(),
            started: now,
            last: std::cell::Cell::new(now),
        }
    }

    fn show(&self, done: u64) {
        if !self.on || self.last.get().elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last.set(Instant::now());
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let of = self
            .total
            .map(|t| format!(" of {}", megabytes(t)))
            .unwrap_or_default();
        eprint!(
            "\r{}: {}{of}, {}/s   ",
            self.what,
            megabytes(done),
            megabytes(rate as u64)
        );
    }

    fn end(&self) {
        if self.on && self.started.elapsed() >= Duration::from_millis(200) {
            eprintln!();
        }
    }
}

/// The Hub and cache the environment names.
pub fn hub_from_env() -> Hub {
    let var = |k: &str| std::env::var(k).ok();
    Hub::from_env(hub_cache(var), var)
}
