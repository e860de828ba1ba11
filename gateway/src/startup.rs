//! [`Application`]: build (connect, provision, bind) then serve until stopped.

use crate::auth::Auth;
use crate::{app, AppState, GatewayArgs};
use anyhow::Context;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A gateway that is connected and bound, ready to serve.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    addr: SocketAddr,
    state: AppState,
}

impl Application {
    /// Connect to NATS, provision streams and buckets, and bind the listener.
    pub async fn build(args: &GatewayArgs) -> anyhow::Result<Self> {
        let auth = Auth::from_args(&args.auth)?;
        check_open(&auth, args)?;
        let client = jetmill_natsx::connect(&args.nats, "jetmill-gateway").await?;
        // Under a NATS user that may not create streams, wait for `jetmill provision`.
        let settings = args.queue.settings();
        let jet = jetmill_natsx::until_provisioned(|| {
            jetmill_natsx::provision(client.clone(), settings.clone())
        })
        .await?;
        let config = crate::control::follow(jet.config.clone()).await;
        // One index per gateway process, following the bucket from now on: usage and
        // quotas read its counts; listings read it too unless `--list-index false`.
        let index = jetmill_natsx::JobIndex::start(jet.records.clone(), args.index_options());
        crate::usage::drop_legacy_consumer(&jet.events).await;
        let state = AppState::new(
            jet,
            args.limits(),
            auth,
            config,
            args.options(),
            index,
            args.list_index,
        );
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let router = app(
            state.clone(),
            args.body_limit,
            Duration::from_secs(args.request_timeout_secs),
        );
        Ok(Application {
            listener,
            router,
            addr,
            state,
        })
    }

    /// The bound address (useful when listening on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve until `shutdown` is cancelled, then finish in-flight requests and return.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        tracing::info!(addr = %self.addr, "gateway listening");
        tokio::spawn(self.state.feed().clone().run(shutdown.clone()));
        tokio::spawn(
            self.state
                .activity()
                .clone()
                .run(self.state.clone(), shutdown.clone()),
        );
        if let Some(every) = self.state.options().sweep_interval {
            tokio::spawn(crate::sweep::run(
                self.state.clone(),
                every,
                shutdown.clone(),
            ));
        }
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }
}

/// Without auth, serve only on loopback unless the operator forced it with `--allow-open`.
fn check_open(auth: &Auth, args: &GatewayArgs) -> anyhow::Result<()> {
    if auth.is_enabled() {
        return Ok(());
    }
    if !args.listen.ip().is_loopback() {
        if !args.auth.allow_open {
            anyhow::bail!(
                "refusing to listen on {} without authentication: configure --jwt-secret, \
                 --jwt-public-key or --api-keys, listen on 127.0.0.1, or pass --allow-open \
                 (JETMILL_ALLOW_OPEN=true) to serve everyone as tenant `public`",
                args.listen
            );
        }
        tracing::warn!(
            addr = %args.listen,
            "!!! AUTHENTICATION IS OFF on a non-loopback address (--allow-open): anyone who can \
             reach it can submit and read jobs !!!"
        );
    } else {
        tracing::warn!(
            addr = %args.listen,
            "authentication is off: every caller is tenant `public` (loopback only)"
        );
    }
    Ok(())
}
