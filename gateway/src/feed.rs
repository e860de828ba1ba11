//! Live feeds: ONE subscription to `EVENTS` per gateway, fanned out in-process to every
//! Server-Sent Events client (`GET /v1/jobs/{id}/events` and `GET /v1/events`).
//!
//! nats-server caps the consumers of a stream, so a consumer per HTTP connection caps
//! the number of watchers. Instead a single ordered consumer (the **fan-out**) follows
//! `jobs.events.>` from the stream's end and appends each event, in stream order, to
//! shared in-memory logs. It starts with the gateway's first follower, so a gateway
//! nobody watches through costs no delivery per event:
//!
//! - one `Hub` per job that has followers right now (a registry keyed by job id,
//!   removed when its last follower leaves), holding every event of the job: its history
//!   is read once, by the first follower, with a short-lived consumer deleted at once;
//! - `recent`, a ring of the last [`RECENT_CAP`] events of all jobs, which the
//!   tenant-filtered `/v1/events` followers read.
//!
//! A follower is a cursor (the last stream sequence it handled) into such a log, not a
//! queue: it takes the entries after its cursor at its own pace, so a slow client slows
//! no one and holds no buffer of its own. Entries are deduplicated by stream sequence,
//! which is also the SSE `id`. A follower whose cursor falls behind what a log still
//! holds (a very long job, a very slow client, an old `Last-Event-ID`) reads the gap from
//! the stream in batches with short-lived consumers, at most [`STORED_READERS`] at once.

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::Stream as JsStream;
use axum::response::sse::Event;
use futures::StreamExt;
use jetmill_natsx::stall::StallCheck;
use jetmill_natsx::NatsxError;
use jetmill_proto::{names, EventType, JobEvent};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{watch, OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

/// Most events a job's hub keeps in memory (a job publishes a few per attempt plus at
/// most one per 0.1 % of progress, so in practice every event of every job).
pub const JOB_LOG_CAP: usize = 8192;
/// Events of all jobs kept for `/v1/events` followers that lag or resume.
pub const RECENT_CAP: usize = 8192;
/// Short-lived consumers reading stored events at once, per gateway.
pub const STORED_READERS: usize = 8;
/// Entries a follower takes from a log at a time.
const BATCH: usize = 64;
/// Events a follower reads from the stream per short-lived consumer when it is behind.
const CATCH_UP_BATCH: usize = 512;
/// How long a request waits for the fan-out to have started.
const READY_WAIT: Duration = Duration::from_secs(10);
/// How long the fan-out may go without a delivery before it compares its position with
/// the stream's head; behind at two checks in a row, it rejoins (see `Shared::follow`).
const STALL_CHECK: Duration = Duration::from_secs(2);

/// Why a feed could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The fan-out has not (yet) joined the `EVENTS` stream.
    #[error("the gateway is not following the EVENTS stream yet")]
    NotFollowing,
    /// The fan-out's consumer stopped delivering although the stream holds later events.
    #[error("the live feed stalled at sequence {at} while the stream is at {head}")]
    Stalled { at: u64, head: u64 },
}

/// The gateway's live feeds; cheap to clone. Start the fan-out with [`Feed::run`].
#[derive(Clone)]
pub struct Feed {
    shared: Arc<Shared>,
}

struct Shared {
    /// The `EVENTS` stream.
    events: JsStream,
    state: Mutex<State>,
    /// The last stream sequence the fan-out handled (`None` before it started).
    position: watch::Sender<Option<u64>>,
    /// Bounds the short-lived consumers reading stored events.
    readers: Semaphore,
    /// Ends every follower (gateway shutdown), so a graceful stop is not held by SSE.
    stop: CancellationToken,
    /// Set by the first follower: the fan-out starts then, not at gateway start, so a
    /// gateway nobody watches through costs the broker no delivery per event.
    wanted: watch::Sender<bool>,
}

struct State {
    /// Same as `Shared::position`, changed under this lock with the logs.
    position: u64,
    /// Hubs of the jobs that have followers now.
    jobs: HashMap<String, Joined>,
    /// The last events of every job.
    recent: Log,
}

struct Joined {
    hub: Arc<Hub>,
    followers: usize,
}

/// One event, rendered once for every client.
struct Item {
    seq: u64,
    job_id: String,
    tenant: String,
    terminal: bool,
    /// The `started` this event stands for (`JobEvent::implied_start`), sent just
    /// before it, without an `id`: a client resuming from it gets both again.
    implied: Option<Event>,
    sse: Event,
}

impl Item {
    /// The event at `seq`, or `None` if the payload is not a job event (e.g. a poison
    /// message report on `jobs.events.poison.*`).
    fn parse(seq: u64, payload: &[u8]) -> Option<Arc<Item>> {
        let event: JobEvent = serde_json::from_slice(payload).ok()?;
        Some(Arc::new(Item {
            seq,
            job_id: event.job_id.to_string(),
            tenant: event.tenant.clone(),
            terminal: event.event.status().is_some_and(|s| s.is_terminal()),
            implied: event.implied_start().map(|e| to_sse(None, &e)),
            sse: to_sse(Some(seq), &event),
        }))
    }
}

impl Item {
    /// What to send now: its implied `started` first, if any, with the event itself
    /// put in `queued` for the next call.
    fn send(&self, queued: &mut Option<Event>) -> Event {
        match &self.implied {
            Some(started) => {
                *queued = Some(self.sse.clone());
                started.clone()
            }
            None => self.sse.clone(),
        }
    }
}

/// One lifecycle event as an SSE event: `id` = stream sequence (none for an implied
/// `started`), `event` = type, `data` = the event JSON plus `status` for state changes
/// and `result_url` on `done`.
fn to_sse(seq: Option<u64>, event: &JobEvent) -> Event {
    let mut data = serde_json::to_value(event).unwrap_or_default();
    if let Some(obj) = data.as_object_mut() {
        if let Some(status) = event.event.status() {
            obj.insert("status".into(), status.as_str().into());
        }
        if event.event == EventType::Done {
            obj.insert(
                "result_url".into(),
                format!("/v1/jobs/{}/result", event.job_id).into(),
            );
        }
    }
    let sse = Event::default()
        .event(event.event.as_str())
        .data(data.to_string());
    match seq {
        Some(seq) => sse.id(seq.to_string()),
        None => sse,
    }
}

/// Events in stream order, complete after `complete_after`: it holds every event with a
/// larger sequence (up to the newest it was given), at most `cap` of them.
struct Log {
    items: VecDeque<Arc<Item>>,
    complete_after: u64,
    cap: usize,
}

/// The follower's cursor is older than what the log still holds.
struct Behind;

impl Log {
    fn new(cap: usize, complete_after: u64) -> Log {
        Log {
            items: VecDeque::new(),
            complete_after,
            cap,
        }
    }

    /// Append a newer event (an older or equal sequence is a duplicate and ignored),
    /// dropping the oldest beyond the cap.
    fn push(&mut self, item: Arc<Item>) {
        let newest = self.items.back().map_or(self.complete_after, |i| i.seq);
        if item.seq <= newest {
            return;
        }
        self.items.push_back(item);
        while self.items.len() > self.cap {
            if let Some(old) = self.items.pop_front() {
                self.complete_after = old.seq;
            }
        }
    }

    /// Up to [`BATCH`] events after `cursor` into `out`.
    fn after(&self, cursor: u64, out: &mut VecDeque<Arc<Item>>) -> Result<(), Behind> {
        if cursor < self.complete_after {
            return Err(Behind);
        }
        let start = self.items.partition_point(|i| i.seq <= cursor);
        out.extend(self.items.range(start..).take(BATCH).cloned());
        Ok(())
    }
}

/// The followers' shared view of one job.
struct Hub {
    job_id: String,
    log: Mutex<JobLog>,
    /// Bumped (to the newest sequence) on every append.
    changed: watch::Sender<u64>,
    /// Set once the job's history has been merged into the log.
    loaded: OnceCell<()>,
}

struct JobLog {
    log: Log,
    /// Sequence of the job's final event, once seen (and no event after it: a retried
    /// dead letter goes on after its `failed`).
    terminal: Option<u64>,
}

impl JobLog {
    fn push(&mut self, item: Arc<Item>) {
        if item.terminal {
            self.terminal = Some(item.seq);
        } else if self.terminal.is_some_and(|t| item.seq > t) {
            self.terminal = None;
        }
        self.log.push(item);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn job_filter(job_id: &str) -> String {
    format!("jobs.events.{job_id}.*")
}

impl Feed {
    /// Feeds over the `EVENTS` stream; nothing is followed until [`Feed::run`].
    pub fn new(events: JsStream) -> Feed {
        Feed {
            shared: Arc::new(Shared {
                events,
                state: Mutex::new(State {
                    position: 0,
                    jobs: HashMap::new(),
                    recent: Log::new(RECENT_CAP, 0),
                }),
                position: watch::channel(None).0,
                readers: Semaphore::new(STORED_READERS),
                stop: CancellationToken::new(),
                wanted: watch::channel(false).0,
            }),
        }
    }

    /// Run the fan-out from the first follower on, until `shutdown`; then end every
    /// follower.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut wanted = self.shared.wanted.subscribe();
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = async {
                if wanted.wait_for(|w| *w).await.is_ok() {
                    self.shared.fan_out().await;
                }
            } => {}
        }
        self.shared.stop.cancel();
    }

    /// Follow one job from the event after `resume_after` (0: its first event).
    ///
    /// `finished_head`: when the job had already ended at the request, the stream's last
    /// sequence read after that; the feed then also ends once the fan-out has passed it,
    /// even if the job's final event is not in the stream.
    pub async fn follow_job(
        &self,
        job_id: String,
        resume_after: u64,
        finished_head: Option<u64>,
    ) -> Result<JobFollower, NatsxError> {
        self.ready().await?;
        let membership = self.shared.join(job_id);
        self.shared.load_history(&membership.hub).await?;
        let changed = membership.hub.changed.subscribe();
        Ok(JobFollower {
            shared: self.shared.clone(),
            position: self.shared.position.subscribe(),
            membership,
            changed,
            cursor: resume_after,
            finished_head,
            batch: VecDeque::new(),
            queued: None,
            jump: None,
            done: false,
        })
    }

    /// Follow every job `visible` lets through, after `resume_after` or (`None`) from
    /// the stream's current end.
    pub async fn follow_all(
        &self,
        resume_after: Option<u64>,
        visible: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Result<AllFollower, NatsxError> {
        self.ready().await?;
        let cursor = match resume_after {
            Some(seq) => seq,
            None => self.shared.stream_head().await?,
        };
        Ok(AllFollower {
            shared: self.shared.clone(),
            position: self.shared.position.subscribe(),
            visible: Box::new(visible),
            cursor,
            batch: VecDeque::new(),
            queued: None,
            jump: None,
        })
    }

    /// The stream's last sequence now.
    pub async fn stream_head(&self) -> Result<u64, NatsxError> {
        self.shared.stream_head().await
    }

    /// Start the fan-out if it has not started, and wait (briefly) for it to have joined
    /// the stream.
    async fn ready(&self) -> Result<(), NatsxError> {
        self.shared
            .wanted
            .send_if_modified(|w| !std::mem::replace(w, true));
        let mut position = self.shared.position.subscribe();
        let started = tokio::time::timeout(READY_WAIT, async {
            position.wait_for(|p| p.is_some()).await.is_ok()
        })
        .await;
        match started {
            Ok(true) => Ok(()),
            _ => Err(NatsxError::JetStream {
                op: "follow events",
                source: Box::new(FeedError::NotFollowing),
            }),
        }
    }
}

impl Shared {
    async fn stream_head(&self) -> Result<u64, NatsxError> {
        let info = self
            .events
            .get_info()
            .await
            .map_err(NatsxError::js("read events stream info"))?;
        Ok(info.state.last_sequence)
    }

    /// Follow the stream forever, rejoining after failures from the last handled event.
    async fn fan_out(&self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.follow(&mut backoff).await {
                Ok(()) => tracing::warn!("live feed subscription ended; rejoining"),
                Err(e) => tracing::warn!(error = %e, ?backoff, "live feed subscription failed"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// One ordered consumer on every job's events, from after the last handled one.
    async fn follow(&self, backoff: &mut Duration) -> Result<(), NatsxError> {
        let known = *self.position.borrow();
        let start = match known {
            Some(p) => p,
            None => self.stream_head().await?,
        };
        let consumer = self
            .events
            .create_consumer(pull::OrderedConfig {
                description: Some("jetmill gateway: live feeds (one per gateway)".into()),
                filter_subject: names::EVENTS_SUBJECTS.into(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(NatsxError::js("follow events"))?;
        let messages = consumer
            .messages()
            .await
            .map_err(NatsxError::js("follow events"))?;
        if known.is_none() {
            let mut state = lock(&self.state);
            state.position = start;
            state.recent = Log::new(RECENT_CAP, start);
            drop(state);
            self.position.send_replace(Some(start));
            tracing::info!(from = start, "following EVENTS for live feeds");
        }
        *backoff = Duration::from_millis(100);
        let mut chunks = messages.ready_chunks(256);
        let mut stall = StallCheck::default();
        loop {
            let chunk = match tokio::time::timeout(STALL_CHECK, chunks.next()).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(_) => {
                    // Quiet for a while: fine if nothing was stored since. But an ordered
                    // pull consumer whose server died in a leader election can stall
                    // without an error (async-nats 0.51 parks it after a missed heartbeat
                    // with no timer armed); events stored before the last quiet check and
                    // still not delivered mean that, so rejoin from the last handled one.
                    let head = self.stream_head().await?;
                    let at = lock(&self.state).position;
                    if stall.quiet(head, at) {
                        return Err(NatsxError::JetStream {
                            op: "follow events",
                            source: Box::new(FeedError::Stalled { at, head }),
                        });
                    }
                    continue;
                }
            };
            stall.delivered();
            let mut batch = Vec::with_capacity(chunk.len());
            let mut failed = None;
            for m in chunk {
                match m {
                    Ok(m) => {
                        let Ok(info) = m.info() else { continue };
                        let seq = info.stream_sequence;
                        batch.push((seq, Item::parse(seq, &m.payload)));
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            self.dispatch(batch);
            if let Some(e) = failed {
                return Err(NatsxError::js("follow events")(e));
            }
        }
        Ok(())
    }

    /// Append events to the logs and wake their followers.
    fn dispatch(&self, batch: Vec<(u64, Option<Arc<Item>>)>) {
        let mut woken: Vec<Arc<Hub>> = Vec::new();
        let position = {
            let mut state = lock(&self.state);
            for (seq, item) in batch {
                if seq <= state.position {
                    continue;
                }
                state.position = seq;
                let Some(item) = item else { continue };
                if let Some(joined) = state.jobs.get(&item.job_id) {
                    lock(&joined.hub.log).push(item.clone());
                    if !woken.iter().any(|h| Arc::ptr_eq(h, &joined.hub)) {
                        woken.push(joined.hub.clone());
                    }
                }
                state.recent.push(item);
            }
            state.position
        };
        for hub in woken {
            hub.changed.send_replace(position);
        }
        self.position.send_if_modified(|p| {
            let moved = *p != Some(position);
            *p = Some(position);
            moved
        });
    }

    /// Become a follower of a job: its hub, created (from the current position) if new.
    fn join(self: &Arc<Self>, job_id: String) -> Membership {
        let mut state = lock(&self.state);
        let position = state.position;
        let joined = state.jobs.entry(job_id.clone()).or_insert_with(|| Joined {
            hub: Arc::new(Hub {
                job_id: job_id.clone(),
                // Every event after `position` reaches this log from the fan-out.
                log: Mutex::new(JobLog {
                    log: Log::new(JOB_LOG_CAP, position),
                    terminal: None,
                }),
                changed: watch::channel(position).0,
                loaded: OnceCell::new(),
            }),
            followers: 0,
        });
        joined.followers += 1;
        Membership {
            shared: self.clone(),
            hub: joined.hub.clone(),
        }
    }

    /// Merge the job's stored events into its hub, once per hub (concurrent first
    /// followers wait for one read). The read goes to the stream's end, past the hub's
    /// start position, so history and the live appends together miss nothing.
    async fn load_history(&self, hub: &Hub) -> Result<(), NatsxError> {
        hub.loaded
            .get_or_try_init(|| async {
                let mut history = JobLog {
                    log: Log::new(JOB_LOG_CAP, 0),
                    terminal: None,
                };
                self.read_stored(job_filter(&hub.job_id), 0, |item| {
                    history.push(item);
                    ControlFlow::Continue(())
                })
                .await?;
                let mut log = lock(&hub.log);
                for item in log.log.items.drain(..) {
                    history.push(item);
                }
                *log = history;
                let newest = log.log.items.back().map_or(0, |i| i.seq);
                drop(log);
                hub.changed.send_replace(newest);
                Ok::<(), NatsxError>(())
            })
            .await
            .map(|_| ())
    }

    /// Read stored events on `filter` after `after` with a short-lived consumer that is
    /// deleted at once, handing each to `each` until it breaks. `Ok(true)`: the read
    /// reached the end of the stream.
    async fn read_stored(
        &self,
        filter: String,
        after: u64,
        mut each: impl FnMut(Arc<Item>) -> ControlFlow<()>,
    ) -> Result<bool, NatsxError> {
        let op = "read stored events";
        let _permit = self.readers.acquire().await.map_err(NatsxError::js(op))?;
        let consumer = self
            .events
            .create_consumer(pull::Config {
                description: Some("jetmill gateway: one feed's catch-up (deleted after)".into()),
                filter_subject: filter,
                deliver_policy: match after {
                    0 => DeliverPolicy::All,
                    seq => DeliverPolicy::ByStartSequence {
                        start_sequence: seq + 1,
                    },
                },
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(10),
                memory_storage: true,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(NatsxError::js(op))?;
        let name = consumer.cached_info().name.clone();
        let mut pending = consumer.cached_info().num_pending;
        let read = async {
            while pending > 0 {
                let mut batch = consumer
                    .fetch()
                    .max_messages(256)
                    .messages()
                    .await
                    .map_err(NatsxError::js(op))?;
                let mut got = 0;
                // async-nats gives a no-wait fetch no deadline: a request the server never
                // answers (sent as it restarts) must fail, not hold a reader slot for good.
                while let Some(m) = tokio::time::timeout(Duration::from_secs(5), batch.next())
                    .await
                    .map_err(NatsxError::js(op))?
                {
                    let m = m.map_err(|source| NatsxError::JetStream { op, source })?;
                    let Ok(info) = m.info() else { continue };
                    let seq = info.stream_sequence;
                    pending = info.pending;
                    got += 1;
                    if let Some(item) = Item::parse(seq, &m.payload) {
                        if each(item).is_break() {
                            return Ok(pending == 0);
                        }
                    }
                }
                if got == 0 {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        .await;
        if let Err(e) = self.events.delete_consumer(&name).await {
            // It expires after `inactive_threshold` anyway.
            tracing::debug!(consumer = name, error = %e, "deleting a catch-up consumer");
        }
        read
    }

    /// Read the gap a follower at `cursor` cannot take from a log: up to
    /// [`CATCH_UP_BATCH`] events on `filter`. `jump`: when the read reached the stream's
    /// end, a sequence the follower may move its cursor to once these are sent (every
    /// event up to the fan-out's position before the read was stored before it).
    async fn catch_up(
        &self,
        filter: String,
        cursor: u64,
    ) -> Result<(VecDeque<Arc<Item>>, Option<u64>), NatsxError> {
        let before = lock(&self.state).position;
        let mut got = VecDeque::new();
        let reached_end = self
            .read_stored(filter, cursor, |item| {
                got.push_back(item);
                if got.len() >= CATCH_UP_BATCH {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await?;
        Ok((got, reached_end.then_some(before)))
    }
}

/// A follower's place in a job's hub; leaving removes the hub with its last follower.
struct Membership {
    shared: Arc<Shared>,
    hub: Arc<Hub>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        if let Some(joined) = state.jobs.get_mut(&self.hub.job_id) {
            if Arc::ptr_eq(&joined.hub, &self.hub) {
                joined.followers -= 1;
                if joined.followers == 0 {
                    state.jobs.remove(&self.hub.job_id);
                }
            }
        }
    }
}

/// One client of `GET /v1/jobs/{id}/events`.
pub struct JobFollower {
    shared: Arc<Shared>,
    membership: Membership,
    changed: watch::Receiver<u64>,
    position: watch::Receiver<Option<u64>>,
    /// The last stream sequence handled (sent, or before `Last-Event-ID`).
    cursor: u64,
    finished_head: Option<u64>,
    batch: VecDeque<Arc<Item>>,
    /// An event to send next: the one whose implied `started` was just sent.
    queued: Option<Event>,
    jump: Option<u64>,
    done: bool,
}

enum Step {
    Ready,
    Wait,
    End,
    Behind,
}

impl JobFollower {
    /// The next event to send, or `None` at the end of the feed.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queued.take() {
                return Some(event);
            }
            if let Some(item) = self.batch.pop_front() {
                if item.seq <= self.cursor {
                    continue;
                }
                self.cursor = item.seq;
                self.done = item.terminal;
                return Some(item.send(&mut self.queued));
            }
            if self.shared.stop.is_cancelled() {
                return None;
            }
            if self.done {
                // The end, unless the job went on after this final event (a retried
                // dead letter, read from history): then its next chapter follows.
                let more = {
                    let log = lock(&self.membership.hub.log);
                    log.log.after(self.cursor, &mut self.batch).is_ok() && !self.batch.is_empty()
                };
                if !more {
                    return None;
                }
                self.done = false;
                continue;
            }
            if let Some(jump) = self.jump.take() {
                self.cursor = self.cursor.max(jump);
            }
            self.changed.borrow_and_update();
            // Before the log: the fan-out appends to the hub before it moves the position.
            let passed = *self.position.borrow_and_update();
            let step = {
                let log = lock(&self.membership.hub.log);
                match log.log.after(self.cursor, &mut self.batch) {
                    Err(Behind) => Step::Behind,
                    Ok(()) if !self.batch.is_empty() => Step::Ready,
                    // Past the final event (e.g. resumed after it).
                    Ok(()) if log.terminal.is_some_and(|t| t <= self.cursor) => Step::End,
                    Ok(()) => Step::Wait,
                }
            };
            match step {
                Step::Ready => {}
                Step::End => return None,
                Step::Behind => {
                    let filter = job_filter(&self.membership.hub.job_id);
                    match self.shared.catch_up(filter, self.cursor).await {
                        Ok((items, jump)) if !items.is_empty() || jump.is_some() => {
                            self.batch = items;
                            self.jump = jump;
                        }
                        Ok(_) => return None,
                        Err(e) => {
                            tracing::warn!(error = %e, "job feed catch-up failed");
                            return None;
                        }
                    }
                }
                Step::Wait => {
                    let head = self.finished_head;
                    if let Some(head) = head {
                        if passed.is_some_and(|p| p >= head) {
                            // Everything stored when the ended job was asked for is sent.
                            return None;
                        }
                    }
                    tokio::select! {
                        _ = self.shared.stop.cancelled() => return None,
                        r = self.changed.changed() => if r.is_err() { return None },
                        _ = self.position.changed(), if head.is_some() => {}
                    }
                }
            }
        }
    }

    /// As the body of an SSE response.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Event, Infallible>> + Send {
        futures::stream::unfold(
            self,
            |mut f| async move { f.next().await.map(|e| (Ok(e), f)) },
        )
    }
}

/// One client of `GET /v1/events`.
pub struct AllFollower {
    shared: Arc<Shared>,
    position: watch::Receiver<Option<u64>>,
    visible: Box<dyn Fn(&str) -> bool + Send + Sync>,
    cursor: u64,
    batch: VecDeque<Arc<Item>>,
    /// An event to send next: the one whose implied `started` was just sent.
    queued: Option<Event>,
    jump: Option<u64>,
}

impl AllFollower {
    /// The next event this client may see, or `None` when the gateway stops.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queued.take() {
                return Some(event);
            }
            if let Some(item) = self.batch.pop_front() {
                if item.seq <= self.cursor {
                    continue;
                }
                self.cursor = item.seq;
                if (self.visible)(&item.tenant) {
                    return Some(item.send(&mut self.queued));
                }
                continue;
            }
            if self.shared.stop.is_cancelled() {
                return None;
            }
            if let Some(jump) = self.jump.take() {
                self.cursor = self.cursor.max(jump);
            }
            self.position.borrow_and_update();
            let read = lock(&self.shared.state)
                .recent
                .after(self.cursor, &mut self.batch);
            match read {
                Ok(()) if !self.batch.is_empty() => {}
                Ok(()) => {
                    tokio::select! {
                        _ = self.shared.stop.cancelled() => return None,
                        r = self.position.changed() => if r.is_err() { return None },
                    }
                }
                Err(Behind) => {
                    let filter = names::EVENTS_SUBJECTS.to_string();
                    match self.shared.catch_up(filter, self.cursor).await {
                        Ok((items, jump)) if !items.is_empty() || jump.is_some() => {
                            self.batch = items;
                            self.jump = jump;
                        }
                        Ok(_) => return None,
                        Err(e) => {
                            tracing::warn!(error = %e, "events feed catch-up failed");
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// As the body of an SSE response.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Event, Infallible>> + Send {
        futures::stream::unfold(
            self,
            |mut f| async move { f.next().await.map(|e| (Ok(e), f)) },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{Behind, Item, Log, BATCH};
    use std::collections::VecDeque;
    use std::sync::Arc;

    fn item(seq: u64) -> Arc<Item> {
        let event = serde_json::json!({
            "job_id": "01a207e4-e83b-72f9-ab26-1de816ec8030",
            "tenant": "public",
            "type": "progress",
            "at_ms": 1,
            "attempt": 1,
            "progress": 0.5,
        });
        Item::parse(seq, event.to_string().as_bytes()).expect("a job event")
    }

    fn seqs(log: &Log, cursor: u64) -> Result<Vec<u64>, ()> {
        let mut out = VecDeque::new();
        log.after(cursor, &mut out).map_err(|Behind| ())?;
        Ok(out.iter().map(|i| i.seq).collect())
    }

    #[test]
    fn a_log_dedupes_by_sequence_and_says_when_a_cursor_is_older_than_it_holds() {
        let mut log = Log::new(3, 10);
        for seq in [9, 10, 11, 12, 12, 11, 13] {
            log.push(item(seq));
        }
        assert_eq!(seqs(&log, 10), Ok(vec![11, 12, 13]));
        assert_eq!(seqs(&log, 12), Ok(vec![13]));
        assert_eq!(seqs(&log, 50), Ok(vec![]));
        assert_eq!(seqs(&log, 9), Err(()), "event 10 may exist and is not held");
        // Over the cap the oldest go, and the log is complete only after them.
        log.push(item(20));
        assert_eq!(seqs(&log, 11), Ok(vec![12, 13, 20]));
        assert_eq!(seqs(&log, 10), Err(()));
    }

    #[test]
    fn a_follower_takes_at_most_a_batch_at_a_time() {
        let mut log = Log::new(1000, 0);
        for seq in 1..=200 {
            log.push(item(seq));
        }
        assert_eq!(seqs(&log, 0).map(|s| s.len()), Ok(BATCH));
        assert_eq!(seqs(&log, 150).map(|s| s.first().copied()), Ok(Some(151)));
        let parsed = Item::parse(1, b"{\"subject\":\"jobs.run.x\",\"error\":\"poison\"}");
        assert!(parsed.is_none(), "a poison report is not a job event");
    }
}
