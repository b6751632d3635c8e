//! Fetching a registry URL (`file://`, `https://`) at start and every `registry_refresh`
//! seconds: conditional requests (ETag / If-Modified-Since, RFC 9110 section 13.1), a
//! jittered period and a back-off after failures, a size cap, timeouts and a redirect limit.
//! A fetched registry is kept (written to the cache, `registry_cache`) only when its
//! signature verifies, it is not a rollback, and the whole config loads with it; then the
//! run loop reconciles as `braid reload` does. When the source is unreachable the node runs
//! on the last good copy. docs/registry.md, "Registry from a URL".

use crate::load::{self, Candidate};
use crate::registry_file::{self, Location, RegistryState, unix_now};
use braid_model::Config;
use braid_model::signed;
use braid_model::source::RegistrySource;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The largest registry accepted, bytes (a 10 000-node registry is about 2 MB).
pub const MAX_REGISTRY_BYTES: u64 = 4 * 1024 * 1024;
/// The largest signature file accepted, bytes (a minisign signature is about 350).
pub const MAX_SIGNATURE_BYTES: u64 = 16 * 1024;
/// Time to set up a connection (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a whole request, body included (a server that hangs is given up on).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Redirects followed per request (a loop is refused after them).
pub const MAX_REDIRECTS: usize = 3;
/// The first retry after a failure; it doubles with each further failure, up to the period.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);

/// The fetcher's state, in `braid status --json` (`registry.fetch`) and /metrics.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FetchState {
    /// The configured period, seconds.
    pub refresh_seconds: u32,
    /// Unix times: the last attempt, the last one that reached the source and found a
    /// good (or unchanged) registry, the last new version kept, the next attempt.
    pub last_attempt_at: Option<u64>,
    /// Unix time of the last attempt that found a good (or unchanged) registry.
    pub last_success_at: Option<u64>,
    /// Unix time of the last new version kept.
    pub last_change_at: Option<u64>,
    /// Unix time of the next attempt.
    pub next_attempt_at: Option<u64>,
    /// Attempts that failed or were refused in a row (0 after a success).
    pub consecutive_failures: u32,
    /// Why the last attempt failed or was refused; null after a success.
    pub last_error: Option<String>,
    /// Attempts by result: `changed`, `unchanged`, `not_modified`, `refused`, `failed`.
    pub results: BTreeMap<String, u64>,
}

/// What one fetch brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// 304: the server's copy has the validators of the last one kept.
    NotModified,
    /// 200: the registry's text.
    Body {
        /// The body, as UTF-8 text.
        text: String,
        /// The `.minisig` beside it; `None` when there is none (or no key is trusted).
        signature: Option<String>,
        /// Validators for the next conditional request.
        etag: Option<String>,
        /// The `Last-Modified` validator, for the next conditional request.
        last_modified: Option<String>,
    },
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The source could not be reached (DNS, connection, TLS).
    #[error("cannot reach {url}: {detail}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What failed.
        detail: String,
    },
    /// No complete answer within [`REQUEST_TIMEOUT`].
    #[error("{url} did not answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout {
        /// The URL asked.
        url: String,
    },
    /// The server answered with an HTTP status other than 200 or 304.
    #[error("{url} answered HTTP {code}")]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status code.
        code: u16,
    },
    /// A redirect braid does not follow.
    #[error("{url}: {detail}")]
    Redirect {
        /// The URL asked.
        url: String,
        /// Where it pointed, and why that was refused.
        detail: String,
    },
    /// The body was larger than the limit.
    #[error("{url} sent more than {max} bytes; refused (the limit protects the node)")]
    TooLarge {
        /// The URL asked.
        url: String,
        /// The limit, bytes.
        max: u64,
    },
    /// The body was not UTF-8.
    #[error("{url} is not UTF-8 text")]
    NotText {
        /// The URL asked.
        url: String,
    },
    /// Something on this node failed (a file: URL, the CA file, the HTTP client).
    #[error("{what}: {detail}")]
    Local {
        /// What was being done.
        what: String,
        /// What failed.
        detail: String,
    },
}

impl FetchError {
    /// How to fix it.
    pub fn fix(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } => {
                "check the server and the network; the node runs on its last good copy meanwhile"
            }
            Self::Status { .. } => "publish the registry at that URL",
            Self::Redirect { .. } => {
                "point registry at the final https:// URL (braid follows at most 3 redirects, to https:// only)"
            }
            Self::TooLarge { .. } => {
                "serve the registry itself (at most 4 MiB); check what the URL serves"
            }
            Self::NotText { .. } => "serve the registry as UTF-8 JSON",
            Self::Local { .. } => "check the file and its permissions",
        }
    }

    /// `too_large` counts as a refusal; the others are failures to fetch.
    fn refusal_reason(&self) -> Option<&'static str> {
        matches!(self, Self::TooLarge { .. }).then_some("too_large")
    }
}

/// The delay before the next attempt: the period, or after `failures` failed attempts in a
/// row [`FIRST_RETRY`] doubled for each further failure, at most the period; then scaled
/// by a factor in [0.8, 1.0] from `random` (spreading nodes out so they do not fetch in
/// step, and never later than one period).
pub fn next_delay(period: Duration, failures: u32, random: u32) -> Duration {
    let base = if failures == 0 {
        period
    } else {
        FIRST_RETRY
            .saturating_mul(1u32 << (failures - 1).min(20))
            .min(period)
    };
    let factor = 0.8 + 0.2 * (f64::from(random) / f64::from(u32::MAX));
    base.mul_f64(factor)
}

/// The outcome of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// A new version was kept: reconcile.
    Changed,
    /// Reached the source; nothing new.
    Unchanged,
    /// Refused or failed; the running registry stays.
    Failed,
    /// The config's registry is a path (or the config is unreadable): nothing to fetch.
    Idle,
}

/// Fetches one registry URL again and again; owns the validators of the last good copy.
pub struct Fetcher {
    config_path: PathBuf,
    state: Arc<Mutex<RegistryState>>,
    /// The source the validators belong to, and the validators.
    validators: Option<(String, Option<String>, Option<String>)>,
    failures: u32,
    period: Duration,
}

fn lock(state: &Mutex<RegistryState>) -> std::sync::MutexGuard<'_, RegistryState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fetcher {
    /// A fetcher for the registry URL of the config at `config_path`, reporting into
    /// `state` (shared with the status document).
    pub fn new(config_path: &Path, state: Arc<Mutex<RegistryState>>) -> Self {
        Self {
            config_path: config_path.to_path_buf(),
            state,
            validators: None,
            failures: 0,
            period: Duration::from_secs(u64::from(braid_model::source::DEFAULT_REFRESH)),
        }
    }

    /// One attempt: fetch, verify, check against the last good copy, validate with the
    /// config, keep. Records the outcome in the shared state and the log.
    pub async fn attempt(&mut self) -> Attempt {
        let config = match load::config(&self.config_path) {
            Ok((config, _)) => config,
            Err(_) => return Attempt::Idle,
        };
        if !config.registry_source.is_url() {
            lock(&self.state).fetch = None;
            return Attempt::Idle;
        }
        self.period = Duration::from_secs(u64::from(config.registry_options.refresh));
        let now = unix_now();
        {
            let mut state = lock(&self.state);
            let fetch = state.fetch.get_or_insert_with(FetchState::default);
            fetch.refresh_seconds = config.registry_options.refresh;
            fetch.last_attempt_at = Some(now);
        }
        let location = registry_file::locate(&self.config_path, &config);
        let outcome = self.fetch_and_keep(&config, &location).await;
        let shared = self.state.clone();
        let mut state = lock(&shared);
        let (attempt, result) = match outcome {
            Ok(Kept::Changed(signed)) => {
                tracing::info!(
                    source = %config.registry,
                    version = signed.as_ref().map(|s| s.timestamp),
                    key = signed.as_ref().map(|s| s.key_id.clone()),
                    "registry: new version fetched"
                );
                (Attempt::Changed, "changed")
            }
            Ok(Kept::Unchanged) => (Attempt::Unchanged, "unchanged"),
            Ok(Kept::NotModified) => (Attempt::Unchanged, "not_modified"),
            Err(Failure::Refused { reason, message }) => {
                tracing::error!("{message}; the running registry stays");
                state.refuse(reason, message.clone(), now);
                self.record_failure(&mut state, message);
                return Attempt::Failed;
            }
            Err(Failure::Failed(message)) => {
                let cached = location.file.exists();
                tracing::warn!(
                    "registry fetch failed: {message}; {}",
                    if cached {
                        "running on the last good copy"
                    } else {
                        "no copy fetched yet"
                    }
                );
                self.record_failure(&mut state, message);
                return Attempt::Failed;
            }
        };
        self.failures = 0;
        let fetch = state.fetch.get_or_insert_with(FetchState::default);
        *fetch.results.entry(result.into()).or_default() += 1;
        fetch.consecutive_failures = 0;
        fetch.last_error = None;
        fetch.last_success_at = Some(now);
        if attempt == Attempt::Changed {
            fetch.last_change_at = Some(now);
        }
        attempt
    }

    fn record_failure(&mut self, state: &mut RegistryState, message: String) {
        self.failures = self.failures.saturating_add(1);
        let fetch = state.fetch.get_or_insert_with(FetchState::default);
        let result = if message.contains(registry_file::REFUSED) {
            "refused"
        } else {
            "failed"
        };
        *fetch.results.entry(result.into()).or_default() += 1;
        fetch.consecutive_failures = self.failures;
        fetch.last_error = Some(message);
    }

    /// The delay before the next attempt (see [`next_delay`]), noted in the state.
    pub fn next_delay(&self) -> Duration {
        let mut random = [0u8; 4];
        // Without randomness the jitter is lost, nothing else.
        let _ = getrandom::fill(&mut random);
        let delay = next_delay(self.period, self.failures, u32::from_le_bytes(random));
        if let Some(fetch) = lock(&self.state).fetch.as_mut() {
            fetch.next_attempt_at = Some(unix_now() + delay.as_secs());
        }
        delay
    }

    async fn fetch_and_keep(
        &mut self,
        config: &Config,
        location: &Location,
    ) -> Result<Kept, Failure> {
        let source = config.registry.clone();
        let want_signature = !config.registry_options.keys.is_empty();
        let fetched = match self.fetch(config, &source, want_signature).await? {
            Some(fetched) => fetched,
            None => return Ok(Kept::Unchanged),
        };
        let (text, signature, etag, last_modified) = match fetched {
            Fetched::NotModified => return Ok(Kept::NotModified),
            Fetched::Body {
                text,
                signature,
                etag,
                last_modified,
            } => (text, signature, etag, last_modified),
        };
        let cached = registry_file::read_cache(location);
        let keep_validators = |me: &mut Self| {
            me.validators = Some((source.clone(), etag.clone(), last_modified.clone()));
        };
        if cached.as_ref().is_some_and(|(t, s)| {
            *t == text && (!want_signature || s.as_deref() == signature.as_deref())
        }) {
            keep_validators(self);
            return Ok(Kept::Unchanged);
        }
        let signed = verified(
            config,
            &source,
            &text,
            signature.as_deref(),
            cached.as_ref(),
        )?;
        let signed = self.validated(&source, &text, signed)?;
        let signature = signature.filter(|_| want_signature);
        self.keep(location, &text, signature.as_deref())?;
        keep_validators(self);
        Ok(Kept::Changed(signed))
    }

    /// Fetches the configured source (conditionally, with the validators of the copy last
    /// kept from it); `None` for a plain path, which is not fetched.
    async fn fetch(
        &self,
        config: &Config,
        source: &str,
        want_signature: bool,
    ) -> Result<Option<Fetched>, Failure> {
        let validators = self
            .validators
            .as_ref()
            .filter(|(s, _, _)| s == source)
            .map(|(_, e, m)| (e.clone(), m.clone()));
        let fetched = match &config.registry_source {
            RegistrySource::File(path) => fetch_file(path, want_signature),
            RegistrySource::Https(url) => {
                let ca_file = config.registry_options.ca_file.as_deref().map(|ca| {
                    load::registry_path(&self.config_path, ca)
                        .display()
                        .to_string()
                });
                fetch_https(url, ca_file.as_deref(), want_signature, validators).await
            }
            RegistrySource::Path(_) => return Ok(None),
        };
        let fetched = fetched.map_err(|e| match e.refusal_reason() {
            Some(reason) => Failure::Refused {
                reason,
                message: format!(
                    "error: {source}: {}{e}; fix: {}",
                    registry_file::REFUSED,
                    e.fix()
                ),
            },
            None => Failure::Failed(format!("{e}; fix: {}", e.fix())),
        })?;
        Ok(Some(fetched))
    }

    /// The whole config must load with the fetched registry: the same validation as
    /// `braid reload`. Returns what its signature says, as the load saw it.
    fn validated(
        &self,
        source: &str,
        text: &str,
        signed: Option<signed::Signed>,
    ) -> Result<Option<signed::Signed>, Failure> {
        let candidate = Candidate {
            text: text.to_string(),
            signed,
        };
        match load::load_candidate(&self.config_path, candidate) {
            Ok(loaded) => Ok(loaded.signed),
            Err(problems) => {
                let errors: Vec<String> = problems.errors().map(ToString::to_string).collect();
                Err(Failure::Refused {
                    reason: "invalid",
                    message: format!(
                        "error: {source}: {}it does not validate with this node's config:\n{}",
                        registry_file::REFUSED,
                        errors.join("\n")
                    ),
                })
            }
        }
    }

    /// Writes the registry and its signature to the cache, under the lock the reconciler
    /// reads the cache with.
    fn keep(
        &self,
        location: &Location,
        text: &str,
        signature: Option<&str>,
    ) -> Result<(), Failure> {
        let written = {
            // Under the lock the reconciler reads the cache with.
            let _cache = lock(&self.state);
            registry_file::write_cache(location, text, signature)
        };
        written.map_err(|e| {
            Failure::Failed(format!(
                "cannot keep the registry in {}: {e}; fix: make its directory writable, or set registry_cache",
                location.file.display()
            ))
        })
    }
}

/// What an attempt kept.
enum Kept {
    Changed(Option<signed::Signed>),
    Unchanged,
    NotModified,
}

/// Checks the fetched registry's signature (when the config trusts keys) and that it is
/// not a rollback of the cached copy (`signed::freshness`). Returns what the signature
/// says.
fn verified(
    config: &Config,
    source: &str,
    text: &str,
    signature: Option<&str>,
    cached: Option<&(String, Option<String>)>,
) -> Result<Option<signed::Signed>, Failure> {
    let signature_url = signed::signature_location(source);
    let signed = registry_file::check_signature(config, source, text, signature, &signature_url)
        .map_err(|problem| Failure::Refused {
            reason: registry_file::refusal_reason(&problem).unwrap_or("invalid"),
            message: problem.to_string(),
        })?;
    if let (Some(new), Some((cached_text, Some(cached_sig)))) = (&signed, cached)
        && let Some(running) = signed::signature_timestamp(cached_sig)
        && let Err(e) = signed::freshness(
            Some((running, &load::digest(cached_text))),
            (new.timestamp, &load::digest(text)),
        )
    {
        return Err(Failure::Refused {
            reason: e.reason(),
            message: format!(
                "error: {source}: {}{e}; fix: {}",
                registry_file::REFUSED,
                e.fix()
            ),
        });
    }
    Ok(signed)
}

/// Why an attempt kept nothing.
enum Failure {
    /// The source answered with something not acceptable: a refusal (counted by reason).
    Refused {
        reason: &'static str,
        message: String,
    },
    /// The source could not be read; the node runs on the last good copy.
    Failed(String),
}

/// Reads a file:// source and its signature, refusing anything over the size caps.
pub fn fetch_file(path: &str, want_signature: bool) -> Result<Fetched, FetchError> {
    let url = format!("file://{path}");
    let read = |p: &str, max: u64| -> Result<Option<String>, FetchError> {
        let local = |e: std::io::Error| FetchError::Local {
            what: format!("file://{p}"),
            detail: e.to_string(),
        };
        let file = match std::fs::File::open(p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(local(e)),
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, max + 1), &mut bytes)
            .map_err(local)?;
        if bytes.len() as u64 > max {
            return Err(FetchError::TooLarge {
                url: format!("file://{p}"),
                max,
            });
        }
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| FetchError::NotText {
                url: format!("file://{p}"),
            })
    };
    let text = read(path, MAX_REGISTRY_BYTES)?.ok_or_else(|| FetchError::Local {
        what: url.clone(),
        detail: "no such file".into(),
    })?;
    let signature = if want_signature {
        read(&signed::signature_location(path), MAX_SIGNATURE_BYTES)?
    } else {
        None
    };
    Ok(Fetched::Body {
        text,
        signature,
        etag: None,
        last_modified: None,
    })
}

/// The HTTPS client: rustls with the system's roots, or only the CAs of `ca_file` (the
/// config's `registry_ca_file`); https only, bounded redirects (to https:// only), timeouts.
pub fn client(ca_file: Option<&str>) -> Result<reqwest::Client, FetchError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("braid/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(format!(
                    "more than {MAX_REDIRECTS} redirects (a redirect loop?)"
                ))
            } else if attempt.url().scheme() != "https" {
                let to = attempt.url().to_string();
                attempt.error(format!("a redirect to {to}, which is not https://"))
            } else {
                attempt.follow()
            }
        }));
    if let Some(ca_file) = ca_file {
        let local = |detail: String| FetchError::Local {
            what: format!("registry_ca_file {ca_file}"),
            detail,
        };
        let pem = std::fs::read(ca_file).map_err(|e| local(e.to_string()))?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| local(e.to_string()))?;
        if certs.is_empty() {
            return Err(local("holds no PEM certificate".into()));
        }
        builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| FetchError::Local {
        what: "the HTTPS client".into(),
        detail: chain(&e),
    })
}

/// An error and its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

fn request_error(url: &str, e: &reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout { url: url.into() };
    }
    if e.is_redirect() {
        return FetchError::Redirect {
            url: url.into(),
            detail: chain(e),
        };
    }
    FetchError::Unreachable {
        url: url.into(),
        detail: chain(e),
    }
}

/// GETs `url` and reads at most `max` bytes of its body.
async fn get(
    client: &reqwest::Client,
    url: &str,
    max: u64,
    validators: Option<&(Option<String>, Option<String>)>,
) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>), FetchError> {
    let mut request = client.get(url);
    if let Some((etag, modified)) = validators {
        if let Some(etag) = etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(modified) = modified {
            request = request.header(reqwest::header::IF_MODIFIED_SINCE, modified);
        }
    }
    let mut response = request.send().await.map_err(|e| request_error(url, &e))?;
    let status = response.status();
    let headers = response.headers().clone();
    if response.content_length().is_some_and(|n| n > max) {
        return Err(FetchError::TooLarge {
            url: url.into(),
            max,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| request_error(url, &e))? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > max {
            return Err(FetchError::TooLarge {
                url: url.into(),
                max,
            });
        }
    }
    Ok((status, headers, body))
}

/// GETs an https:// source (conditionally, with `validators`) and its signature.
pub async fn fetch_https(
    url: &str,
    ca_file: Option<&str>,
    want_signature: bool,
    validators: Option<(Option<String>, Option<String>)>,
) -> Result<Fetched, FetchError> {
    let client = client(ca_file)?;
    let (status, headers, body) =
        get(&client, url, MAX_REGISTRY_BYTES, validators.as_ref()).await?;
    if status == reqwest::StatusCode::NOT_MODIFIED && validators.is_some() {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.into(),
            code: status.as_u16(),
        });
    }
    let text = String::from_utf8(body).map_err(|_| FetchError::NotText { url: url.into() })?;
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let signature = if want_signature {
        let sig_url = signed::signature_location(url);
        let (status, _, body) = get(&client, &sig_url, MAX_SIGNATURE_BYTES, None).await?;
        match status {
            s if s.is_success() => Some(String::from_utf8_lossy(&body).into_owned()),
            reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::GONE => None,
            s => {
                return Err(FetchError::Status {
                    url: sig_url,
                    code: s.as_u16(),
                });
            }
        }
    } else {
        None
    };
    Ok(Fetched::Body {
        text,
        signature,
        etag: header(reqwest::header::ETAG),
        last_modified: header(reqwest::header::LAST_MODIFIED),
    })
}

/// Starts fetching: one attempt now (before the first reconcile, so a node that starts
/// with no copy gets one), then a task that attempts again after each delay, or at once
/// when `now` is notified (`braid reload`, SIGHUP), and sends on `changed` when a new
/// version was kept.
pub async fn start(
    config_path: &Path,
    state: Arc<Mutex<RegistryState>>,
    now: Arc<tokio::sync::Notify>,
    changed: tokio::sync::mpsc::Sender<()>,
) -> tokio::task::JoinHandle<()> {
    let mut fetcher = Fetcher::new(config_path, state);
    fetcher.attempt().await;
    tokio::spawn(async move {
        loop {
            let delay = fetcher.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = now.notified() => {}
            }
            if fetcher.attempt().await == Attempt::Changed && changed.send(()).await.is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_jittered_within_the_period_and_back_off() {
        let period = Duration::from_secs(300);
        assert_eq!(next_delay(period, 0, u32::MAX), period);
        assert_eq!(next_delay(period, 0, 0), Duration::from_secs(240));
        assert_eq!(next_delay(period, 1, u32::MAX), Duration::from_secs(5));
        assert_eq!(next_delay(period, 2, u32::MAX), Duration::from_secs(10));
        assert_eq!(next_delay(period, 4, u32::MAX), Duration::from_secs(40));
        assert_eq!(next_delay(period, 10, u32::MAX), period);
        assert_eq!(next_delay(period, u32::MAX, u32::MAX), period);
        // A period shorter than the first retry: never longer than the period.
        let short = Duration::from_secs(3);
        assert_eq!(next_delay(short, 3, u32::MAX), short);
    }

    #[test]
    fn file_sources_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; MAX_REGISTRY_BYTES as usize + 1]).unwrap();
        let e = fetch_file(big.to_str().unwrap(), false).unwrap_err();
        assert!(matches!(e, FetchError::TooLarge { .. }), "{e}");
        let small = dir.path().join("r.json");
        std::fs::write(&small, "[]").unwrap();
        assert_eq!(
            fetch_file(small.to_str().unwrap(), true),
            Ok(Fetched::Body {
                text: "[]".into(),
                signature: None,
                etag: None,
                last_modified: None
            })
        );
    }
}
