//! Starting the configured services.

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tern_core::Config;
use tern_core::authguard::AuthGuard;
use tern_imap::ImapServer;
use tern_pop3::Pop3Server;
use tern_smtp::SmtpServer;
use tern_store::SharedStore;
use tern_store::postgres::PgStore;
use tern_store::sqlite::SqliteStore;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// A running server: the addresses actually bound (useful with port 0) and
/// the tasks serving them.
pub struct Running {
    /// SMTP (MX) listeners.
    pub smtp: Vec<SocketAddr>,
    /// Submission (STARTTLS) listeners.
    pub submission: Vec<SocketAddr>,
    /// Submission over implicit TLS listeners.
    pub submissions: Vec<SocketAddr>,
    /// POP3 listeners.
    pub pop3: Vec<SocketAddr>,
    /// POP3S listeners.
    pub pop3s: Vec<SocketAddr>,
    /// IMAP listeners.
    pub imap: Vec<SocketAddr>,
    /// IMAPS listeners.
    pub imaps: Vec<SocketAddr>,
    /// HTTP listeners.
    pub http: Vec<SocketAddr>,
    /// HTTPS listeners.
    pub https: Vec<SocketAddr>,
    /// The store the services use.
    pub store: SharedStore,
    tasks: JoinSet<()>,
}

impl Running {
    /// Waits until a service stops (normally never): that is an error.
    pub async fn wait(mut self) -> Result<()> {
        match self.tasks.join_next().await {
            Some(Err(e)) if e.is_panic() => anyhow::bail!("a service panicked: {e}"),
            Some(_) => anyhow::bail!("a service stopped unexpectedly"),
            None => Ok(()),
        }
    }

    /// Stops every service.
    pub fn shutdown(mut self) {
        self.tasks.abort_all();
    }
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("tern_store_commit_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(
                            "tern_store_commit_batch_size".into(),
                        ),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Opens the configured store, with the configured place for bodies (as
/// `tern` commands use it: they lease nothing).
pub async fn open_store(config: &Config) -> Result<SharedStore> {
    configured_store(config, None).await
}

/// [`open_store`] for `tern serve`: the store also names this node, the
/// owner of the queue leases it takes.
pub async fn open_node_store(config: &Config) -> Result<SharedStore> {
    let name = config.node.resolved(&config.server.hostname);
    configured_store(config, Some(&name)).await
}

async fn configured_store(config: &Config, node: Option<&str>) -> Result<SharedStore> {
    use tern_core::config::StoreBackend;
    let blobs = open_blobs(config)?;
    Ok(match config.store.backend {
        StoreBackend::Sqlite => {
            let path = config.resolve(&config.store.database);
            let mut store =
                SqliteStore::open_with(&path, config.store.max_batch, config.store.read_mmap_size)
                    .await
                    .with_context(|| format!("opening database {}", path.display()))?;
            if let Some(blobs) = blobs {
                store = store.with_blobs(blobs);
            }
            if let Some(node) = node {
                store = store.with_node(node);
            }
            Arc::new(store)
        }
        StoreBackend::Postgres => {
            if config.store.url.is_empty() {
                anyhow::bail!("[store] backend = \"postgres\" needs [store] url");
            }
            let mut store = PgStore::connect(&config.store.url, config.store.max_connections)
                .await
                .with_context(|| {
                    format!("connecting to PostgreSQL at {}", redact(&config.store.url))
                })?;
            // "local": bodies in PostgreSQL, with their rows.
            if let Some(blobs) = blobs {
                store = store.with_blobs(blobs);
            }
            if let Some(node) = node {
                store = store.with_node(node);
            }
            Arc::new(store)
        }
    })
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((auth, host)) => {
                let user = auth.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:…@{host}")
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

fn files_blobs(config: &Config) -> Result<Arc<dyn tern_store::Blobs>> {
    let path = config.resolve(&config.blobs.path);
    let files = tern_store::blobs::FileBlobs::open(&path)
        .with_context(|| format!("[blobs] path {}", path.display()))?;
    Ok(Arc::new(files))
}

/// The blob store of `[blobs]`, `None` for bodies in the database.
pub fn open_blobs(config: &Config) -> Result<Option<Arc<dyn tern_store::Blobs>>> {
    use tern_core::config::BlobBackend;
    let b = &config.blobs;
    Ok(match b.backend {
        BlobBackend::Local => None,
        BlobBackend::Files => Some(files_blobs(config)?),
        BlobBackend::S3 => {
            let s3 = tern_store::blobs::S3Blobs::new(b)?;
            Some(Arc::new(s3))
        }
    })
}

/// Says this node is alive every `[node] heartbeat` (`tern node list`), and
/// takes over the queue work of nodes silent for
/// [`tern_store::nodes::SILENT_BEATS`] beats.
async fn heartbeat_loop(store: SharedStore, every: i64) {
    let started = tern_core::now_unix();
    let version = env!("CARGO_PKG_VERSION");
    loop {
        if let Err(e) = store.heartbeat(started, std::process::id(), version).await {
            tracing::warn!(error = %e, "node: heartbeat failed");
        }
        let now = tern_core::now_unix();
        match store
            .take_over_silent(now, now - tern_store::nodes::SILENT_BEATS * every)
            .await
        {
            Ok(taken) => {
                for (node, leases) in &taken {
                    tracing::warn!(node = %node, leases, "node: silent; its queued recipients are due again here");
                }
                if !taken.is_empty() {
                    store.queue_wakeup().notify_one();
                }
            }
            Err(e) => tracing::warn!(error = %e, "node: cannot check for silent nodes"),
        }
        if let Err(e) = store.sweep_counters(now).await {
            tracing::warn!(error = %e, "node: cannot sweep lapsed counters");
        }
        tokio::time::sleep(std::time::Duration::from_secs(every as u64)).await;
    }
}

/// How long a body put in the blob store is safe from the collector: a
/// delivery by another process on this data folder commits within it.
const BLOB_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes bodies nothing refers to any more from the blob store, every
/// ten minutes, and sweeps one of its 256 shards each time for bodies a
/// crash left without a message (the whole store in about 43 hours).
async fn collect_loop(store: SharedStore) {
    let mut shards = tern_store::blobs::shards().cycle();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        match store.collect_blobs(BLOB_GRACE).await {
            Ok(c) if c.deleted > 0 => {
                tracing::info!(
                    deleted = c.deleted,
                    waiting = c.young,
                    "blobs: unreferenced bodies deleted"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "blobs: collecting unreferenced bodies failed"),
        }
        let Some(shard) = shards.next() else { continue };
        match store.sweep_blobs(&shard, BLOB_GRACE).await {
            Ok(s) if s.deleted > 0 => {
                tracing::info!(
                    shard,
                    deleted = s.deleted,
                    "blobs: bodies without a message deleted"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(shard, error = %e, "blobs: sweeping failed"),
        }
    }
}

async fn bind(addrs: &[SocketAddr], what: &str) -> Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for a in addrs {
        let l = TcpListener::bind(a)
            .await
            .with_context(|| format!("cannot listen for {what} on {a}"))?;
        out.push(l);
    }
    Ok(out)
}

fn local_addrs(ls: &[TcpListener]) -> Vec<SocketAddr> {
    ls.iter().filter_map(|l| l.local_addr().ok()).collect()
}

/// Binds every configured listener and starts the services.
pub async fn start(config: Config) -> Result<Running> {
    let metrics = metrics_handle();
    let store = open_node_store(&config).await?;
    if let Some(blobs) = store.blob_store() {
        tracing::info!(blobs = %blobs.describe(), "message bodies go to the blob store");
    }
    let tls = match tern_core::tls::server_config(
        &config.resolve(&config.tls.cert),
        &config.resolve(&config.tls.key),
    ) {
        Ok(c) => Some(tern_core::conn::acceptor(c)),
        Err(e) => {
            tracing::warn!(error = %e, "TLS is not available: STARTTLS, STLS, POP3S and IMAPS are off");
            None
        }
    };
    // Failed logins are counted in the store: every node sees them.
    let guard = Arc::new(AuthGuard::new(
        config.auth.clone(),
        store.clone() as Arc<dyn tern_store::Tallies>,
    ));
    let hostname = config.server.hostname.clone();

    let smtp_l = bind(&config.listen.smtp, "SMTP").await?;
    let submission_l = bind(&config.listen.submission, "submission").await?;
    let submissions_l = if tls.is_some() {
        bind(&config.listen.submissions, "submissions").await?
    } else {
        vec![]
    };
    let pop3_l = bind(&config.listen.pop3, "POP3").await?;
    let pop3s_l = if tls.is_some() {
        bind(&config.listen.pop3s, "POP3S").await?
    } else {
        vec![]
    };
    let imap_l = bind(&config.listen.imap, "IMAP").await?;
    let imaps_l = if tls.is_some() {
        bind(&config.listen.imaps, "IMAPS").await?
    } else {
        vec![]
    };
    let http_l = bind(&config.listen.http, "HTTP").await?;
    let https_l = if tls.is_some() {
        bind(&config.listen.https, "HTTPS").await?
    } else {
        vec![]
    };
    let mut running = Running {
        smtp: local_addrs(&smtp_l),
        submission: local_addrs(&submission_l),
        submissions: local_addrs(&submissions_l),
        pop3: local_addrs(&pop3_l),
        pop3s: local_addrs(&pop3s_l),
        imap: local_addrs(&imap_l),
        imaps: local_addrs(&imaps_l),
        http: local_addrs(&http_l),
        https: local_addrs(&https_l),
        store: store.clone(),
        tasks: JoinSet::new(),
    };

    let mut resolver = tern_dns::Resolver::new(&config.dns.nameservers)
        .context("setting up the DNS resolver ([dns] nameservers)")?;
    if config.queue.dane {
        let anchor = (!config.dns.trust_anchor.as_os_str().is_empty())
            .then(|| config.resolve(&config.dns.trust_anchor));
        resolver = resolver
            .with_dnssec(&config.dns.nameservers, anchor.as_deref())
            .context("setting up DNSSEC validation for DANE ([dns] trust_anchor)")?;
    }
    let extra_roots = extra_roots(&config)?;
    let queue = tern_queue::QueueService::new(
        store.clone(),
        resolver.clone(),
        config.queue.clone(),
        hostname.clone(),
        &extra_roots,
        Some(&config.data_dir),
    )?;
    let feedback_secret = shared_secret(&store, &config.data_dir, "feedback").await?;
    let feedback = Arc::new(feedback_settings(&config, &hostname, &feedback_secret)?);
    queue.intake().set_feedback(feedback.clone());
    let dmarc_reports = (config.inbound.authenticate && config.inbound.dmarc_reports)
        .then(|| Arc::new(tern_auth::DmarcReports::default()));
    let auth = config.inbound.authenticate.then(|| {
        let nets = config.inbound.trusted_forwarders.clone();
        let auth = tern_auth::InboundAuth::new(
            mail_auth::MessageAuthenticator(resolver.hickory()),
            &hostname,
        )
        .with_trusted_forwarders(nets);
        match &dmarc_reports {
            Some(r) => auth.with_reports(r.clone()),
            None => auth,
        }
    });
    if let Some(counter) = &dmarc_reports {
        let every = tern_core::config::parse_duration(&config.inbound.dmarc_report_interval)
            .map_err(anyhow::Error::msg)?;
        running.tasks.spawn(crate::reports::dmarc_report_loop(
            counter.clone(),
            queue.intake(),
            mail_auth::MessageAuthenticator(resolver.hickory()),
            hostname.clone(),
            every,
        ));
    }
    let tls_counter = config.queue.tls_reports.then(|| queue.tls_counter());
    if config.queue.tls_reports {
        let every = tern_core::config::parse_duration(&config.queue.tls_report_interval)
            .map_err(anyhow::Error::msg)?;
        running.tasks.spawn(crate::reports::tls_report_loop(
            queue.tls_counter(),
            queue.intake(),
            resolver.clone(),
            hostname.clone(),
            every,
        ));
    }
    if dmarc_reports.is_some() || tls_counter.is_some() {
        running.tasks.spawn(crate::reports::flush_loop(
            dmarc_reports.clone(),
            tls_counter,
            store.clone(),
        ));
    }
    let filter = config.filter.enabled.then(|| {
        Arc::new(tern_filter::Filter::new(
            store.clone(),
            resolver.clone(),
            config.filter.clone(),
        ))
    });
    if let Some(f) = &filter {
        f.restore_greylist().await;
        running
            .tasks
            .spawn(f.clone().training_loop(std::time::Duration::from_secs(30)));
        if f.greylisting() {
            running
                .tasks
                .spawn(f.clone().greylist_loop(std::time::Duration::from_secs(2)));
        }
    }
    let smtp = SmtpServer::mx_with_checks(
        config.smtp.clone(),
        hostname.clone(),
        store.clone(),
        tls.clone(),
        tern_smtp::MxChecks {
            inbound: auth,
            enforce_dmarc: config.inbound.enforce_dmarc,
            filter,
            resolver: Some(resolver.clone()),
            forwarding: Some(tern_smtp::Forwarding {
                srs_secret: shared_secret(&store, &config.data_dir, "srs").await?,
                intake: queue.intake(),
                signers: tern_auth::SignerCache::new(std::time::Duration::from_secs(60)),
            }),
            feedback: Some(feedback.clone()),
        },
    );
    for l in smtp_l {
        running.tasks.spawn(smtp.clone().serve(l, false));
    }
    let submission = SmtpServer::submission(
        config.smtp.clone(),
        hostname.clone(),
        store.clone(),
        tls.clone(),
        tern_smtp::submission::Submission::new(
            config.submission.clone(),
            config.auth.clone(),
            guard.clone(),
            queue.intake(),
        ),
    );
    for l in submission_l {
        running.tasks.spawn(submission.clone().serve(l, false));
    }
    for l in submissions_l {
        running.tasks.spawn(submission.clone().serve(l, true));
    }
    running.tasks.spawn(queue.clone().run());
    let pop3 = Pop3Server::new(
        config.pop3.clone(),
        config.auth.clone(),
        hostname.clone(),
        store.clone(),
        tls.clone(),
        guard.clone(),
    );
    for l in pop3_l {
        running.tasks.spawn(pop3.clone().serve(l, false));
    }
    for l in pop3s_l {
        running.tasks.spawn(pop3.clone().serve(l, true));
    }
    let imap = ImapServer::new(
        config.imap.clone(),
        config.auth.clone(),
        hostname.clone(),
        store.clone(),
        tls.clone(),
        guard.clone(),
    );
    for l in imap_l {
        running.tasks.spawn(imap.clone().serve(l, false));
    }
    for l in imaps_l {
        running.tasks.spawn(imap.clone().serve(l, true));
    }
    let mut app = Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/.well-known/mta-sts.txt", {
            let (store, hostname) = (store.clone(), hostname.clone());
            get(move |headers: axum::http::HeaderMap| {
                mta_sts_policy(store.clone(), hostname.clone(), headers)
            })
        });
    if config.api.enabled {
        let verify = tern_verify::jobs::Runner::new(
            store.clone(),
            Arc::new(crate::verify_cmd::verifier_with(resolver.clone(), &config)?),
            config.verify.concurrency,
        );
        running.tasks.spawn(verify.clone().run());
        let api = tern_api::Api::new(
            store.clone(),
            queue.intake(),
            config.api.clone(),
            config.webhooks.clone(),
            hostname.clone(),
            Some(resolver.clone()),
            Some(verify),
        );
        app = app.merge(tern_api::router(api));
    }
    if config.web.enabled {
        let checker = Arc::new(crate::dns_check::Checker {
            config: config.clone(),
            store: store.clone(),
            resolver: resolver.clone(),
        });
        let web = Arc::new(
            tern_web::Web::new(
                store.clone(),
                guard.clone(),
                hostname.clone(),
                Some(checker),
            )
            .with_resolver(resolver.clone())
            .with_sending_ips(config.queue.source_ips.clone()),
        );
        if config.queue.source_ips.is_empty() {
            // The host name's addresses, asked in the background: an
            // unreachable resolver must not hold up serving.
            // (Detached: it ends, and an ending service task stops the server.)
            let (web, resolver, hostname) = (web.clone(), resolver.clone(), hostname.clone());
            tokio::spawn(async move {
                if let Ok(ips) = resolver.ips(&hostname).await {
                    web.set_sending_ips(ips);
                }
            });
        }
        app = app.merge(tern_web::router(web));
    }
    let deliverer = tern_api::webhooks::Deliverer::new(
        store.clone(),
        resolver.clone(),
        config.webhooks.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    running.tasks.spawn(deliverer.run());
    let retention =
        tern_core::config::parse_duration(&config.events.retention).map_err(anyhow::Error::msg)?;
    let job_retention = tern_core::config::parse_duration(&config.verify.job_retention)
        .map_err(anyhow::Error::msg)?;
    running
        .tasks
        .spawn(prune_loop(store.clone(), retention, job_retention));
    let beat = config
        .node
        .heartbeat_secs()
        .map_err(|e| anyhow::anyhow!("[node] heartbeat: {e}"))?;
    running.tasks.spawn(heartbeat_loop(store.clone(), beat));
    if store.blob_store().is_some() {
        running.tasks.spawn(collect_loop(store.clone()));
    }
    for l in http_l {
        let app = app.clone();
        // Answers are small and awaited: no Nagle delay on them.
        use axum::serve::ListenerExt;
        let l = l.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        running.tasks.spawn(async move {
            let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            if let Err(e) = axum::serve(l, app).await {
                tracing::error!(error = %e, "http: server stopped");
            }
        });
    }
    if let Some(acceptor) = &tls {
        for l in https_l {
            // `tap_io` gives the listener axum's ConnectInfo<SocketAddr>.
            use axum::serve::ListenerExt;
            let listener = crate::https::TlsListener::new(l, acceptor.clone())?.tap_io(|_| {});
            // The dashboard's cookies get `Secure` over TLS.
            let app = app.clone().layer(axum::Extension(tern_web::Https));
            running.tasks.spawn(async move {
                let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "https: server stopped");
                }
            });
        }
    }
    for (what, addrs) in [
        ("smtp", &running.smtp),
        ("submission", &running.submission),
        ("submissions", &running.submissions),
        ("pop3", &running.pop3),
        ("pop3s", &running.pop3s),
        ("imap", &running.imap),
        ("imaps", &running.imaps),
        ("http", &running.http),
        ("https", &running.https),
    ] {
        for a in addrs {
            tracing::info!(service = what, address = %a, "listening");
        }
    }
    Ok(running)
}

/// RFC 8461 §3.2: the MTA-STS policy of a local domain, for requests to
/// `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (the CNAME that
/// `tern dns records` prints brings them here).
async fn mta_sts_policy(
    store: SharedStore,
    hostname: String,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name))
        .unwrap_or("")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let local = match host.strip_prefix("mta-sts.") {
        Some(domain) => store
            .list_domains()
            .await
            .is_ok_and(|ds| ds.iter().any(|d| d.name == domain)),
        None => false,
    };
    if !local {
        return (
            axum::http::StatusCode::NOT_FOUND,
            "no MTA-STS policy here\n",
        )
            .into_response();
    }
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain")],
        tern_dns::records::mta_sts_policy_for(&hostname),
    )
        .into_response()
}

/// The certificate authorities `[queue] tls_ca_file` adds to the system's
/// (for verified TLS to MX hosts and MTA-STS policy hosts).
pub fn extra_roots(config: &Config) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    if config.queue.tls_ca_file.as_os_str().is_empty() {
        return Ok(Vec::new());
    }
    let path = config.resolve(&config.queue.tls_ca_file);
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_file_iter(&path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading [queue] tls_ca_file {}", path.display()))
}

/// Forgets events older than `retention` and verification jobs older
/// than `jobs`, hourly (and once at start).
async fn prune_loop(store: SharedStore, retention: std::time::Duration, jobs: std::time::Duration) {
    loop {
        let before = chrono::Utc::now().timestamp_millis() - retention.as_millis() as i64;
        match store.prune_events(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "events: pruned past the retention"),
            Err(e) => tracing::warn!(error = %e, "events: pruning failed"),
        }
        let before = chrono::Utc::now().timestamp() - jobs.as_secs() as i64;
        match store.prune_verify_jobs(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "verify: jobs pruned past the retention"),
            Err(e) => tracing::warn!(error = %e, "verify: pruning jobs failed"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
}

/// `[feedback]` as the queue, the MX and the API use it: the token keys
/// from the shared `feedback` secret, the rule table with the operator's rules first.
fn feedback_settings(
    config: &Config,
    hostname: &str,
    secret: &[u8],
) -> Result<tern_feedback::Settings> {
    let fc = &config.feedback;
    let mut s = tern_feedback::Settings::new(secret);
    s.verp = fc.verp;
    s.bounce_window_days = tern_core::config::parse_duration(&fc.bounce_window)
        .map_err(|e| anyhow::anyhow!("[feedback] bounce_window: {e}"))?
        .as_secs()
        .div_ceil(86_400)
        .clamp(1, 365);
    s.complaint_addresses = fc
        .complaint_addresses
        .iter()
        .map(|a| a.to_ascii_lowercase())
        .collect();
    s.public_url = if fc.public_url.is_empty() {
        format!("https://{hostname}")
    } else {
        fc.public_url.trim_end_matches('/').to_string()
    };
    let rules = fc
        .rules
        .iter()
        .map(|r| {
            Ok(tern_feedback::Rule {
                pattern: r.pattern.clone(),
                category: tern_feedback::Category::parse(&r.category).ok_or_else(|| {
                    anyhow::anyhow!(
                        "[[feedback.rules]] {:?}: unknown category {:?} (one of: {})",
                        r.pattern,
                        r.category,
                        tern_feedback::Category::ALL.map(|c| c.as_str()).join(", ")
                    )
                })?,
                hard: r.hard,
                blocklist: r.blocklist.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    s.classifier = tern_feedback::Classifier::new(&rules)?;
    s.track_domains = fc
        .track_domains
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    for stream in &fc.track_streams {
        if !matches!(stream.as_str(), "transactional" | "broadcast") {
            anyhow::bail!(
                "[feedback] track_streams: unknown stream {stream:?} (transactional or broadcast)"
            );
        }
    }
    s.track_streams = fc.track_streams.clone();
    s.tracking_host = fc.tracking_host.trim_matches('.').to_ascii_lowercase();
    Ok(s)
}

/// A secret every node shares (`srs`, `feedback`), kept in the store and
/// made by the first node that needs it. An installation that kept it in
/// the data folder (`srs.secret`, `feedback.secret`: 32 random bytes, hex)
/// seeds the store with that one, so addresses and links made before stay
/// valid.
async fn shared_secret(
    store: &SharedStore,
    data_dir: &std::path::Path,
    name: &str,
) -> Result<Vec<u8>> {
    let path = data_dir.join(format!("{name}.secret"));
    let seed = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| hex::decode(s.trim()).ok())
        .filter(|b| b.len() >= 16)
        .unwrap_or_else(|| rand::random::<[u8; 32]>().to_vec());
    store
        .shared_secret(name, seed)
        .await
        .with_context(|| format!("reading the shared {name} secret"))
}
