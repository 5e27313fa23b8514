//! The `run` service: wiring, the two stages' poll loops, signals and shutdown.
//!
//! Both stages run in one process (more processes in the group divide the work):
//! - **admit**: one thread polls the source topics, decodes and applies the rules, and
//!   routes valid units to the units topic; a tokio task flushes its batches.
//! - **ledger**: one thread polls the owned partitions of the units topic and decides each
//!   unit once ([`crate::ledger`]); another task flushes its batches.
//!
//! Bounded channels of `batches_in_flight_max` batches between each loop and its flusher
//! bound memory: when ClickHouse is slow or down, the loops wait instead of buffering.

use super::batch::{Batch, BatchLimits};
use super::context::IngestContext;
use super::flusher::{FlushError, Flusher};
use super::process::{Consumed, Processor};
use super::stats::{RunSummary, Stats};
use crate::kafka::{KafkaConfig, KafkaSetupError};
use crate::ledger::batch::DecisionBatch;
use crate::ledger::stage::{restore, LedgerFlusher, LedgerProcessor, DECISIONS_TABLE};
use crate::ledger::state::{LedgerState, StateError};
use crate::recycle::{Pool, Recycle};
use crate::store::outcomes::resume_offset;
use crate::store::sink::Sink;
use crate::store::{migrate, refdata_store, Store, StoreConfig, StoreError};
use crate::telemetry::health::{probe_clickhouse, HEALTH};
use crate::telemetry::metrics::{self as names, TopicCounts};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// How long one `poll` waits for a message before the loop checks timers and signals.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often an idle loop asks the broker whether it has caught up (`until_caught_up`).
const CAUGHT_UP_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How often progress is logged.
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// How often the poll loops publish their counts and lag (and say they are alive).
const METRICS_TICK: Duration = Duration::from_secs(1);
/// Messages a busy loop handles between two looks at the clock for [`METRICS_TICK`].
const MESSAGES_PER_TICK_CHECK: u32 = 1024;
/// How often `/readyz`'s ClickHouse probe runs (and its timeout).
const CLICKHOUSE_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How often `run` looks again for reference data while it has none.
const REFDATA_WAIT_INTERVAL: Duration = Duration::from_secs(5);
/// How often the state store's size is published.
const STATE_SIZE_INTERVAL: Duration = Duration::from_secs(10);

/// Settings of `run`.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The policy editions the rules judge by.
    pub editions: crate::edition::Editions,
    pub kafka: KafkaConfig,
    pub store: StoreConfig,
    /// Topics to consume; any topic may carry any event type.
    pub topics: Vec<String>,
    /// Where rejected messages are also sent.
    pub dlq_topic: String,
    pub limits: BatchLimits,
    /// Finished batches waiting for the flusher, at most.
    pub batches_in_flight_max: usize,
    /// Cap of the exponential backoff between retries.
    pub retry_backoff_max: Duration,
    /// Retrying ClickHouse or the units topic gives up after this long.
    pub retry_give_up_after: Duration,
    /// The internal topic that routes units to their owners.
    pub units_topic: String,
    /// Its partition count (fixed for a deployment).
    pub units_partitions: u32,
    /// The ledger stage's on-disk state for this database.
    pub state_dir: PathBuf,
    /// Exit once every assigned partition is consumed up to its high watermark
    /// (for demos, tests and benchmarks); otherwise run until SIGTERM/SIGINT.
    pub until_caught_up: bool,
    /// Where `/metrics`, `/livez` and `/readyz` are served; nowhere when `None`.
    pub metrics_addr: Option<String>,
}

/// Why `run` failed. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    #[error("no reference data in database `{0}`: run `subsidy-ingester refdata load --firms F --outlets O --zones Z` first")]
    NoRefData(String),
    #[error("cannot subscribe to {topics:?}: {detail}")]
    Subscribe { topics: Vec<String>, detail: String },
    #[error(transparent)]
    Flush(#[from] FlushError),
    #[error(transparent)]
    LedgerFlush(#[from] crate::ledger::stage::LedgerFlushError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    CrashSetup(#[from] crate::crash::CrashSetupError),
    #[error("the flusher stopped unexpectedly: {0}")]
    FlusherGone(String),
    #[error(transparent)]
    Listen(#[from] crate::telemetry::http::ListenError),
    #[error(transparent)]
    Metrics(#[from] crate::telemetry::metrics::InstallError),
}

/// Runs until a shutdown is requested (or, with `until_caught_up`, until caught up), then
/// flushes what was consumed and returns the summary. `shutdown` is set by signal handlers.
pub async fn run(settings: RunSettings, shutdown: Arc<AtomicBool>) -> Result<RunSummary, RunError> {
    let process_started = Instant::now();
    crate::crash::arm_from_env()?;
    HEALTH.set_running(false);
    if let Some(addr) = &settings.metrics_addr {
        serve_operations(addr, &settings.editions).await?;
    }
    let store = Store::connect(&settings.store).await?;
    let probe = tokio::spawn(probe_clickhouse(
        store.client().clone(),
        settings.store.url.clone(),
        CLICKHOUSE_PROBE_INTERVAL,
    ));
    let _probe = AbortOnDrop(probe);
    migrate::ensure_migrated(&store, &settings.editions).await?;
    let Some(refdata) = wait_for_refdata(&store, &settings, &shutdown).await? else {
        // A signal while waiting: nothing was consumed.
        return Ok(Stats::default().summary(0, process_started));
    };
    settings.kafka.check_reachable(Duration::from_secs(10))?;
    settings
        .kafka
        .ensure_topics(&[settings.dlq_topic.as_str()], 1)
        .await?;

    settings
        .kafka
        .ensure_topics(
            &[settings.units_topic.as_str()],
            settings.units_partitions as i32,
        )
        .await?;
    let opened = Instant::now();
    let state = Arc::new(Mutex::new(LedgerState::open_or_rebuild(
        &settings.state_dir,
    )?));
    tracing::info!(message = "Ledger state opened.", dir = %settings.state_dir.display(), elapsed_ms = opened.elapsed().as_millis() as u64);
    crate::crash::reached("after_index_rebuild");
    tracing::info!(message = "Starting.", firms = refdata.firms.len(), outlets = refdata.outlets.len(), zones = refdata.zones.len(), topics = ?settings.topics, units_topic = %settings.units_topic);
    let processor = Processor::new(
        refdata,
        settings.editions.clone(),
        settings.units_partitions,
    );
    let stats = Arc::new(Stats::default());
    let handle = tokio::runtime::Handle::current();

    // The ledger stage first, so units routed by the admit stage find their owner.
    let ledger_store = store.clone();
    let ledger_state = state.clone();
    let ledger_handle = handle.clone();
    let ledger_batches = Arc::new(InFlight::new(settings.batches_in_flight_max));
    let drain_counter = ledger_batches.clone();
    let ledger_context = IngestContext::new(
        Box::new(move |_topic, partition| {
            HEALTH.restoring(true);
            let restored = ledger_handle.block_on(restore(&ledger_store, &ledger_state, partition));
            HEALTH.restoring(false);
            restored.map_err(|error| match error {
                crate::ledger::stage::RestoreError::Store(error) => error,
                crate::ledger::stage::RestoreError::State(error) => StoreError::Query {
                    statement: "restore ledger state".into(),
                    detail: error.to_string(),
                },
            })
        }),
        shutdown.clone(),
        settings.retry_backoff_max,
    )
    .with_drain(Box::new(move || drain_counter.wait_all_flushed()));
    let mut ledger_kafka = settings.kafka.clone();
    ledger_kafka.group_id = format!("{}.ledger", settings.kafka.group_id);
    let ledger_consumer = Arc::new(ledger_kafka.ingest_consumer(ledger_context)?);
    ledger_consumer
        .subscribe(&[settings.units_topic.as_str()])
        .map_err(|e| RunError::Subscribe {
            topics: vec![settings.units_topic.clone()],
            detail: e.to_string(),
        })?;
    let (ledger_tx, ledger_rx) =
        mpsc::channel::<DecisionBatch>(settings.batches_in_flight_max.max(1));
    let ledger_flusher = LedgerFlusher {
        sink: Sink {
            store: store.clone(),
            table: DECISIONS_TABLE,
            retry_backoff_max: settings.retry_backoff_max,
            give_up_after: settings.retry_give_up_after,
        },
        state: state.clone(),
        producer: settings.kafka.dead_letter_producer()?,
        dlq_topic: settings.dlq_topic.clone(),
        consumer: ledger_consumer.clone(),
        stats: stats.clone(),
        retry_backoff_max: settings.retry_backoff_max,
    };
    let ledger_flusher_shutdown = shutdown.clone();
    let flushed_counter = ledger_batches.clone();
    let ledger_flusher_task = tokio::spawn(async move {
        let result =
            crate::ledger::stage::flush_all(Arc::new(ledger_flusher), ledger_rx, flushed_counter)
                .await;
        if result.is_err() {
            ledger_flusher_shutdown.store(true, Ordering::Relaxed);
        }
        result
    });
    let admit_done = Arc::new(AtomicBool::new(false));
    let routed_high: Arc<Mutex<HashMap<i32, i64>>> = Arc::default();
    let ledger_processor = LedgerProcessor {
        state: state.clone(),
        units_partitions: settings.units_partitions,
        stats: stats.clone(),
    };
    let ledger_loop_consumer = ledger_consumer.clone();
    let ledger_loop_settings = settings.clone();
    let ledger_loop_shutdown = shutdown.clone();
    let ledger_admit_done = admit_done.clone();
    let ledger_loop_state = state.clone();
    let ledger_routed_high = routed_high.clone();
    let loop_batches = ledger_batches.clone();
    let ledger_thread = tokio::task::spawn_blocking(move || {
        ledger_poll_loop(
            &ledger_loop_consumer,
            ledger_processor,
            &ledger_tx,
            &ledger_loop_settings,
            &ledger_loop_shutdown,
            &LedgerShared {
                admit_done: &ledger_admit_done,
                state: &ledger_loop_state,
                routed_high: &ledger_routed_high,
                in_flight: &loop_batches,
            },
        )
    });

    let lookup_store = store.clone();
    let lookup_handle = handle.clone();
    let admit_batches = Arc::new(InFlight::new(settings.batches_in_flight_max));
    let admit_drain = admit_batches.clone();
    let context = IngestContext::new(
        Box::new(move |topic, partition| {
            lookup_handle.block_on(resume_offset(&lookup_store, topic, partition as u32))
        }),
        shutdown.clone(),
        settings.retry_backoff_max,
    )
    .with_drain(Box::new(move || admit_drain.wait_all_flushed()));
    let consumer = Arc::new(settings.kafka.ingest_consumer(context)?);
    let topic_refs: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topic_refs)
        .map_err(|e| RunError::Subscribe {
            topics: settings.topics.clone(),
            detail: e.to_string(),
        })?;

    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(settings.batches_in_flight_max.max(1));
    let flusher = Flusher {
        sink: Sink {
            store: store.clone(),
            table: super::flusher::OUTCOMES_TABLE,
            retry_backoff_max: settings.retry_backoff_max,
            give_up_after: settings.retry_give_up_after,
        },
        producer: settings.kafka.dead_letter_producer()?,
        dlq_topic: settings.dlq_topic.clone(),
        units_producer: settings.kafka.units_producer()?,
        units_topic: settings.units_topic.clone(),
        consumer: consumer.clone(),
        stats: stats.clone(),
        retry_backoff_max: settings.retry_backoff_max,
        give_up_after: settings.retry_give_up_after,
        routed_high: routed_high.clone(),
    };
    let flusher_shutdown = shutdown.clone();
    let admit_flushed = admit_batches.clone();
    let flusher_task = tokio::spawn(async move {
        while let Some(mut batch) = batch_rx.recv().await {
            if let Err(error) = flusher.flush(&mut batch).await {
                admit_flushed.batch_flushed();
                // Stop the poll loop; what was not flushed is re-read on the next start.
                flusher_shutdown.store(true, Ordering::Relaxed);
                return Err(error);
            }
            // Back in the pool before it counts as finished: a ship waiting for room then
            // finds it, instead of allocating another batch.
            admit_flushed.recycle(batch);
            admit_flushed.batch_flushed();
        }
        Ok(())
    });
    let progress_task = tokio::spawn(log_progress(stats.clone()));
    let state_size_task = AbortOnDrop(tokio::spawn(watch_state_size(state.clone())));
    HEALTH.set_running(true);

    let loop_consumer = consumer.clone();
    let loop_stats = stats.clone();
    let loop_shutdown = shutdown.clone();
    let loop_settings = settings.clone();
    let loop_admit_batches = admit_batches.clone();
    let poll_thread = tokio::task::spawn_blocking(move || {
        poll_loop(
            &loop_consumer,
            processor,
            &batch_tx,
            &loop_settings,
            &loop_stats,
            &loop_shutdown,
            &loop_admit_batches,
        )
    });
    let poll_result = poll_thread
        .await
        .map_err(|e| RunError::FlusherGone(format!("poll loop panicked: {e}")))?;
    // The loop dropped its sender: the flusher drains what is queued, then ends.
    let flush_result = flusher_task
        .await
        .map_err(|e| RunError::FlusherGone(e.to_string()))?;
    consumer.unsubscribe();
    // Every admitted unit is routed and acknowledged: the ledger may finish once it has
    // read its partitions to their end.
    admit_done.store(true, Ordering::Release);
    let ledger_result = ledger_thread
        .await
        .map_err(|e| RunError::FlusherGone(format!("ledger loop panicked: {e}")))?;
    let ledger_flush_result = ledger_flusher_task
        .await
        .map_err(|e| RunError::FlusherGone(e.to_string()))?;
    progress_task.abort();
    drop(state_size_task);
    HEALTH.set_running(false);
    ledger_consumer.unsubscribe();
    flush_result?;
    ledger_flush_result?;
    poll_result?;
    ledger_result?;
    let units_held = state
        .lock()
        .expect("ledger state poisoned")
        .approximate_units_owned();
    Ok(stats.summary(units_held as u64, process_started))
}

/// Installs the metrics recorder and serves `/metrics`, `/livez` and `/readyz` on `addr`.
async fn serve_operations(addr: &str, editions: &crate::edition::Editions) -> Result<(), RunError> {
    let listener = crate::telemetry::http::bind(addr).await?;
    let handle = crate::telemetry::metrics::install(&editions.names_joined())?;
    let bound = crate::telemetry::http::local_addr(&listener)
        .map_or_else(|| addr.to_string(), |a| a.to_string());
    tracing::info!(message = "Serving /metrics, /livez and /readyz.", addr = %bound);
    tokio::spawn(crate::telemetry::http::serve(listener, handle));
    Ok(())
}

/// The current reference data. Without any, a service waits (not ready, saying what to
/// load) until an operator loads it or a signal comes (`None`); a batch job
/// (`--until-caught-up`) fails at once, as there is nothing to catch up with.
async fn wait_for_refdata(
    store: &Store,
    settings: &RunSettings,
    shutdown: &AtomicBool,
) -> Result<Option<crate::refdata::RefData>, RunError> {
    let mut warned = false;
    loop {
        let refdata = refdata_store::load_current(store).await?;
        if !(refdata.firms.is_empty() && refdata.outlets.is_empty() && refdata.zones.is_empty()) {
            HEALTH.set_waiting(None);
            return Ok(Some(refdata));
        }
        let error = RunError::NoRefData(store.database().to_string());
        if settings.until_caught_up {
            return Err(error);
        }
        HEALTH.set_waiting(Some(error.to_string()));
        if !warned {
            tracing::warn!(message = "Waiting for reference data; /readyz says not ready until it is loaded.", detail = %error);
            warned = true;
        }
        let waited = Instant::now();
        while waited.elapsed() < REFDATA_WAIT_INTERVAL {
            if shutdown.load(Ordering::Relaxed) {
                return Ok(None);
            }
            HEALTH.beat();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Aborts a background task when dropped (the probe, the size watcher), so no early
/// return leaves one running.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Publishes the ledger state's size on disk every [`STATE_SIZE_INTERVAL`].
async fn watch_state_size(state: Arc<Mutex<LedgerState>>) {
    let mut ticker = tokio::time::interval(STATE_SIZE_INTERVAL);
    loop {
        ticker.tick().await;
        let bytes = state.lock().expect("ledger state poisoned").disk_bytes();
        metrics::gauge!(names::STATE_STORE_BYTES).set(bytes as f64);
    }
}

/// What a poll loop publishes once per [`METRICS_TICK`]: its message counts, its
/// partitions' lag, and a liveness beat. Looks at the clock only every
/// [`MESSAGES_PER_TICK_CHECK`] messages (or when idle), not per message.
struct MetricsTicker {
    counts: TopicCounts,
    clocks: PartitionClocks,
    last_tick: Instant,
    since_check: u32,
}

impl Default for MetricsTicker {
    fn default() -> Self {
        MetricsTicker {
            counts: TopicCounts::default(),
            clocks: PartitionClocks::default(),
            last_tick: Instant::now(),
            since_check: 0,
        }
    }
}

impl MetricsTicker {
    /// Called once per loop turn: ticks if it is time.
    fn maybe_tick(&mut self, consumer: &BaseConsumer<IngestContext>, positions: &Positions) {
        self.since_check += 1;
        if self.since_check < MESSAGES_PER_TICK_CHECK {
            return;
        }
        self.since_check = 0;
        if self.last_tick.elapsed() >= METRICS_TICK {
            self.tick(consumer, positions);
        }
    }

    /// An idle poll: the next turn looks at the clock.
    fn idle(&mut self) {
        self.since_check = MESSAGES_PER_TICK_CHECK;
    }

    fn tick(&mut self, consumer: &BaseConsumer<IngestContext>, positions: &Positions) {
        HEALTH.beat();
        self.counts.flush();
        publish_lag(consumer, positions, &self.clocks);
        self.last_tick = Instant::now();
    }
}

/// Last consumed message per partition, for the lag in seconds: a short vector with the
/// last-used entry first in line, as a loop reads a few partitions in runs.
#[derive(Default)]
struct PartitionClocks {
    entries: Vec<PartitionClock>,
    last: usize,
}

struct PartitionClock {
    topic: String,
    partition: i32,
    /// The message's Kafka timestamp, ms since the epoch (`None`: the broker gave none).
    broker_ms: Option<i64>,
    /// Its `occurred_at`, s since the epoch (0: not decoded, or the units topic).
    event_s: u32,
}

impl PartitionClocks {
    fn note(&mut self, topic: &str, partition: i32, broker_ms: Option<i64>, event_s: u32) {
        let hit = self
            .entries
            .get(self.last)
            .is_some_and(|e| e.partition == partition && e.topic == topic);
        if !hit {
            self.last = match self
                .entries
                .iter()
                .position(|e| e.partition == partition && e.topic == topic)
            {
                Some(index) => index,
                None => {
                    self.entries.push(PartitionClock {
                        topic: topic.to_string(),
                        partition,
                        broker_ms: None,
                        event_s: 0,
                    });
                    self.entries.len() - 1
                }
            };
        }
        let entry = &mut self.entries[self.last];
        entry.broker_ms = broker_ms;
        entry.event_s = event_s;
    }

    fn get(&self, topic: &str, partition: i32) -> Option<&PartitionClock> {
        self.entries
            .iter()
            .find(|e| e.partition == partition && e.topic == topic)
    }
}

/// Publishes each assigned partition's lag: messages to the (cached) high watermark, and
/// while behind, how old the last consumed message is by the broker's and the event's
/// clock (0 when caught up).
fn publish_lag(
    consumer: &BaseConsumer<IngestContext>,
    positions: &Positions,
    clocks: &PartitionClocks,
) {
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for element in assignment.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let Some((low, high)) = crate::kafka::cached_watermarks(consumer, topic, partition) else {
            continue;
        };
        let next = positions
            .get(topic)
            .and_then(|p| p.get(&partition))
            .copied()
            .unwrap_or(low);
        let behind = (high - next).max(0);
        let partition_label = partition.to_string();
        metrics::gauge!(names::CONSUMER_LAG_MESSAGES, "topic" => topic.to_string(), "partition" => partition_label.clone())
            .set(behind as f64);
        let clock = clocks.get(topic, partition);
        let broker_s = match clock.and_then(|c| c.broker_ms) {
            Some(ms) if behind > 0 => ((now_ms - ms).max(0) as f64) / 1000.0,
            _ => 0.0,
        };
        metrics::gauge!(names::CONSUMER_LAG_SECONDS, "topic" => topic.to_string(), "partition" => partition_label.clone(), "clock" => "broker")
            .set(broker_s);
        if let Some(event_s) = clock.map(|c| c.event_s).filter(|&s| s > 0) {
            let seconds = if behind > 0 {
                ((now_ms / 1000 - i64::from(event_s)).max(0)) as f64
            } else {
                0.0
            };
            metrics::gauge!(names::CONSUMER_LAG_SECONDS, "topic" => topic.to_string(), "partition" => partition_label, "clock" => "event")
                .set(seconds);
        }
    }
}

/// Next offset to process per assigned partition: topic → partition → offset.
type Positions = HashMap<String, HashMap<i32, i64>>;

fn poll_loop(
    consumer: &BaseConsumer<IngestContext>,
    mut processor: Processor,
    batch_tx: &mpsc::Sender<Batch>,
    settings: &RunSettings,
    stats: &Stats,
    shutdown: &AtomicBool,
    in_flight: &InFlight<Batch>,
) -> Result<(), RunError> {
    let batch_capacity = settings.limits.bytes_max.min(64 << 20);
    let mut batch = Batch::with_capacity(batch_capacity);
    let mut positions: Positions = HashMap::new();
    let mut last_caught_up_check = Instant::now();
    let mut ship_wait = Duration::ZERO;
    let mut caught_up_wait = Duration::ZERO;
    let mut ticker = MetricsTicker::default();
    loop {
        if shutdown.load(Ordering::Relaxed) {
            crate::crash::reached("during_shutdown");
            break;
        }
        ticker.maybe_tick(consumer, &positions);
        let polled = consumer.poll(POLL_TIMEOUT);
        // After the poll, which runs the rebalance callbacks: a revocation drained the
        // shipped batches; the unshipped one is dropped, as nothing of it is durable or
        // routed yet, and its messages are read again from where ClickHouse says.
        if let Some(changes) = consumer.context().take_changes() {
            if !changes.revoked.is_empty() && !batch.is_empty() {
                tracing::info!(
                    message = "Dropping an unshipped batch of revoked partitions.",
                    rows = batch.len()
                );
                batch.clear();
            }
            HEALTH.source_partitions_changed(
                changes.assigned.len() as i64 - changes.revoked.len() as i64,
            );
            for (topic, partition) in changes.revoked {
                if let Some(partitions) = positions.get_mut(&topic) {
                    partitions.remove(&partition);
                }
            }
            for (topic, partition, next) in changes.assigned {
                let partitions = positions.entry(topic).or_default();
                match next {
                    Some(next) => partitions.insert(partition, next),
                    None => partitions.remove(&partition),
                };
            }
        }
        match polled {
            None => {
                ticker.idle();
                if settings.until_caught_up
                    && last_caught_up_check.elapsed() >= CAUGHT_UP_CHECK_INTERVAL
                {
                    last_caught_up_check = Instant::now();
                    let caught_up = is_caught_up(consumer, &positions);
                    caught_up_wait += last_caught_up_check.elapsed();
                    if caught_up {
                        tracing::info!(message = "Caught up with every assigned partition.");
                        break;
                    }
                }
            }
            Some(Err(error)) => {
                tracing::warn!(message = "Kafka consumer error.", %error);
            }
            Some(Ok(message)) => {
                stats.message_consumed();
                let topic = message.topic();
                let partition = message.partition();
                let offset = message.offset();
                let partitions = match positions.get_mut(topic) {
                    Some(partitions) => partitions,
                    None => positions.entry(topic.to_string()).or_default(),
                };
                match partitions.get(&partition) {
                    // Already durable (a redelivery): it has its place already.
                    Some(&next) if offset < next => {
                        stats
                            .skipped_already_durable
                            .fetch_add(1, Ordering::Relaxed);
                        ticker.counts.add(topic, true);
                        continue;
                    }
                    _ => {}
                }
                partitions.insert(partition, offset + 1);
                ticker.counts.add(topic, false);
                let consumed = Consumed {
                    topic,
                    partition,
                    offset,
                    payload: message.payload(),
                    received_at_unix_s: now_unix_s(),
                };
                processor.process(consumed, &mut batch);
                ticker.clocks.note(
                    topic,
                    partition,
                    message.timestamp().to_millis(),
                    processor.last_occurred_at_unix_s(),
                );
                crate::crash::reached("mid_batch");
                if batch.is_full(&settings.limits) {
                    let ship_started = Instant::now();
                    ship(&mut batch, batch_tx, batch_capacity, in_flight)?;
                    ship_wait += ship_started.elapsed();
                }
            }
        }
        if batch.is_due(&settings.limits) {
            ship(&mut batch, batch_tx, batch_capacity, in_flight)?;
        }
    }
    if !batch.is_empty() {
        ship(&mut batch, batch_tx, batch_capacity, in_flight)?;
    }
    ticker.tick(consumer, &positions);
    tracing::debug!(
        message = "Poll loop done.",
        ship_wait_ms = ship_wait.as_millis() as u64,
        caught_up_check_ms = caught_up_wait.as_millis() as u64
    );
    Ok(())
}

/// Hands the batch to the flusher (waiting while `batches_in_flight_max` are queued).
fn ship(
    batch: &mut Batch,
    batch_tx: &mpsc::Sender<Batch>,
    capacity: usize,
    in_flight: &InFlight<Batch>,
) -> Result<(), RunError> {
    if batch.is_empty() {
        return Ok(());
    }
    if !in_flight.wait_for_room(|| batch_tx.is_closed()) {
        return Err(RunError::FlusherGone(
            "flusher stopped; see the error above".into(),
        ));
    }
    let next = in_flight
        .reuse()
        .unwrap_or_else(|| Batch::with_capacity(capacity));
    let full = std::mem::replace(batch, next);
    in_flight.shipped.fetch_add(1, Ordering::AcqRel);
    batch_tx
        .blocking_send(full)
        .map_err(|_| RunError::FlusherGone("flusher stopped; see the error above".into()))
}

/// Returns true if and only if partitions are assigned and each one's next offset has
/// reached its high watermark, as librdkafka last saw it in a fetch response (an idle
/// consumer keeps long-polling, so that is at most a fetch wait old). Asking the broker
/// instead costs a round trip per partition, which some brokers answer slowly.
fn is_caught_up(consumer: &BaseConsumer<IngestContext>, positions: &Positions) -> bool {
    let Ok(assignment) = consumer.assignment() else {
        return false;
    };
    if assignment.count() == 0 {
        return false;
    }
    let next_of = |topic: &str, partition: i32, low: i64| {
        positions
            .get(topic)
            .and_then(|p| p.get(&partition))
            .copied()
            .unwrap_or(low)
    };
    assignment.elements().iter().all(|element| {
        let (topic, partition) = (element.topic(), element.partition());
        match crate::kafka::cached_watermarks(consumer, topic, partition) {
            Some((low, high)) => next_of(topic, partition, low) >= high,
            None => false,
        }
    })
}

fn now_unix_s() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().min(u64::from(u32::MAX)) as u32)
}

async fn log_progress(stats: Arc<Stats>) {
    let mut ticker = tokio::time::interval(PROGRESS_LOG_INTERVAL);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let consumed = stats.consumed.load(Ordering::Relaxed);
        let accepted = stats.durable_accepted.load(Ordering::Relaxed);
        let rejected = stats.durable_rejected.load(Ordering::Relaxed);
        tracing::info!(
            message = "Progress.",
            consumed,
            accepted,
            rejected,
            batches = stats.batches.load(Ordering::Relaxed)
        );
    }
}

/// What the ledger loop shares with the rest of `run`.
#[derive(Clone, Copy)]
struct LedgerShared<'a> {
    /// Set once the admit stage routed and made durable everything it will.
    admit_done: &'a AtomicBool,
    state: &'a Mutex<LedgerState>,
    /// Per units partition, the largest offset this process routed a record to.
    routed_high: &'a Mutex<HashMap<i32, i64>>,
    in_flight: &'a InFlight<DecisionBatch>,
}

/// The ledger stage's poll loop: decides the records of the owned units-topic partitions
/// into bounded batches. With `until_caught_up` it ends once the admit stage is done and
/// every owned partition is read to its end.
fn ledger_poll_loop(
    consumer: &BaseConsumer<IngestContext>,
    mut processor: LedgerProcessor,
    batch_tx: &mpsc::Sender<DecisionBatch>,
    settings: &RunSettings,
    shutdown: &AtomicBool,
    shared: &LedgerShared<'_>,
) -> Result<(), RunError> {
    let LedgerShared {
        admit_done,
        state,
        routed_high,
        in_flight,
    } = *shared;
    let mut batch = DecisionBatch::default();
    let mut positions: Positions = HashMap::new();
    let mut last_caught_up_check = Instant::now();
    let mut ticker = MetricsTicker::default();
    loop {
        if shutdown.load(Ordering::Relaxed) {
            break;
        }
        ticker.maybe_tick(consumer, &positions);
        let polled = consumer.poll(POLL_TIMEOUT);
        if let Some(changes) = consumer.context().take_changes() {
            if !changes.revoked.is_empty() && !batch.is_empty() {
                // Not shipped, so not durable: its records are read again by whoever owns
                // them next (the new owner resumes after what ClickHouse holds).
                tracing::info!(
                    message = "Dropping an unshipped ledger batch of revoked partitions.",
                    rows = batch.len()
                );
                batch.clear();
            }
            for (topic, partition) in changes.revoked {
                if let Some(partitions) = positions.get_mut(&topic) {
                    partitions.remove(&partition);
                }
                state
                    .lock()
                    .expect("ledger state poisoned")
                    .release(partition);
            }
            for (topic, partition, next) in changes.assigned {
                let units = state
                    .lock()
                    .expect("ledger state poisoned")
                    .approximate_units(partition)
                    .unwrap_or(0);
                tracing::info!(
                    message = "Ledger partition owned.",
                    partition,
                    units_held = units
                );
                let partitions = positions.entry(topic).or_default();
                match next {
                    Some(next) => partitions.insert(partition, next),
                    None => partitions.remove(&partition),
                };
            }
        }
        match polled {
            None => {
                ticker.idle();
                if settings.until_caught_up
                    && admit_done.load(Ordering::Acquire)
                    && last_caught_up_check.elapsed() >= CAUGHT_UP_CHECK_INTERVAL
                {
                    last_caught_up_check = Instant::now();
                    // Caught up: every record this process routed to a partition it owns is
                    // read, and so is every partition to its (cached) high watermark.
                    let routed_read = {
                        let high = routed_high.lock().expect("routed offsets poisoned");
                        let owned = positions.values().next();
                        high.iter().all(|(partition, offset)| match owned {
                            Some(owned) if consumer_owns(consumer, *partition) => {
                                owned.get(partition).is_some_and(|next| next > offset)
                            }
                            _ => true,
                        })
                    };
                    if batch.is_empty() && routed_read && is_caught_up(consumer, &positions) {
                        tracing::info!(message = "Ledger caught up with every owned partition.");
                        break;
                    }
                }
            }
            Some(Err(error)) => {
                tracing::warn!(message = "Kafka consumer error (units topic).", %error)
            }
            Some(Ok(message)) => {
                let partition = message.partition();
                let offset = message.offset();
                let partitions = match positions.get_mut(message.topic()) {
                    Some(partitions) => partitions,
                    None => positions.entry(message.topic().to_string()).or_default(),
                };
                if let Some(&next) = partitions.get(&partition) {
                    if offset < next {
                        continue;
                    }
                }
                partitions.insert(partition, offset + 1);
                ticker.clocks.note(
                    message.topic(),
                    partition,
                    message.timestamp().to_millis(),
                    0,
                );
                processor.process(partition, offset, message.payload(), &mut batch);
                crate::crash::reached("ledger_mid_batch");
                if batch.len() >= settings.limits.rows_max
                    || batch.bytes() >= settings.limits.bytes_max
                {
                    ship_decisions(&mut batch, batch_tx, in_flight)?;
                }
            }
        }
        if batch
            .first_row_at()
            .is_some_and(|t| t.elapsed() >= settings.limits.flush_interval)
        {
            ship_decisions(&mut batch, batch_tx, in_flight)?;
        }
    }
    ship_decisions(&mut batch, batch_tx, in_flight)?;
    ticker.tick(consumer, &positions);
    Ok(())
}

/// Batches handed to a flusher and batches it finished: a revocation waits for the two to
/// meet, so a partition moves only once what was decided of it is durable. Finished
/// batches come back emptied ([`crate::recycle`]) for the poll loop to fill again.
pub struct InFlight<B> {
    shipped: std::sync::atomic::AtomicU64,
    flushed: std::sync::atomic::AtomicU64,
    /// Shipped batches not yet finished that a ship may find, at most (0: the next batch
    /// waits until the one being flushed is done).
    queued_max: u64,
    /// Signalled when a batch finishes, for a ship waiting for room.
    finished_signal: (Mutex<()>, std::sync::Condvar),
    finished: Pool<B>,
}

/// Longest a revocation waits for in-flight batches (then it logs and lets go).
const DRAIN_WAIT_MAX: Duration = Duration::from_secs(60);

impl<B: Recycle> InFlight<B> {
    /// Counters for a stage that queues at most `batches_in_flight_max` batches.
    pub fn new(batches_in_flight_max: usize) -> InFlight<B> {
        InFlight {
            shipped: Default::default(),
            flushed: Default::default(),
            queued_max: batches_in_flight_max as u64,
            finished_signal: Default::default(),
            // Queued, one being flushed, one settling (the ledger's): all may come back.
            finished: Pool::new(batches_in_flight_max + 2),
        }
    }

    /// Counts one shipped batch as finished (durable, or failed for good).
    pub fn batch_flushed(&self) {
        let _guard = self
            .finished_signal
            .0
            .lock()
            .expect("in-flight signal poisoned");
        self.flushed.fetch_add(1, Ordering::AcqRel);
        self.finished_signal.1.notify_all();
    }

    /// Waits until at most `batches_in_flight_max` shipped batches are unfinished, so one
    /// more may be shipped; false if `flusher_gone` says the flusher stopped meanwhile.
    /// This, not the channel, bounds the batches alive: filling, queued, being flushed.
    fn wait_for_room(&self, flusher_gone: impl Fn() -> bool) -> bool {
        let mut guard = self
            .finished_signal
            .0
            .lock()
            .expect("in-flight signal poisoned");
        loop {
            let unfinished =
                self.shipped.load(Ordering::Acquire) - self.flushed.load(Ordering::Acquire);
            if unfinished <= self.queued_max {
                return true;
            }
            if flusher_gone() {
                return false;
            }
            // Waiting for ClickHouse to take a batch is alive, not wedged.
            HEALTH.beat();
            guard = self
                .finished_signal
                .1
                .wait_timeout(guard, Duration::from_millis(100))
                .expect("in-flight signal poisoned")
                .0;
        }
    }

    /// Takes back a batch the flusher is done with, to be filled again.
    pub fn recycle(&self, batch: B) {
        self.finished.give(batch);
    }

    /// An emptied batch to fill, if one came back.
    pub fn reuse(&self) -> Option<B> {
        self.finished.take()
    }

    /// Waits until every shipped batch is flushed, at most [`DRAIN_WAIT_MAX`].
    pub fn wait_all_flushed(&self) {
        let started = Instant::now();
        let target = self.shipped.load(Ordering::Acquire);
        while self.flushed.load(Ordering::Acquire) < target {
            if started.elapsed() > DRAIN_WAIT_MAX {
                tracing::error!(message = "In-flight batches not durable after the drain wait; letting the partitions go. The next owner may decide some records again.");
                return;
            }
            HEALTH.beat();
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Hands a ledger batch to its flusher (waiting while `batches_in_flight_max` are queued).
fn ship_decisions(
    batch: &mut DecisionBatch,
    batch_tx: &mpsc::Sender<DecisionBatch>,
    in_flight: &InFlight<DecisionBatch>,
) -> Result<(), RunError> {
    if batch.is_empty() {
        return Ok(());
    }
    if !in_flight.wait_for_room(|| batch_tx.is_closed()) {
        return Err(RunError::FlusherGone(
            "ledger flusher stopped; see the error above".into(),
        ));
    }
    let next = in_flight.reuse().unwrap_or_default();
    let full = std::mem::replace(batch, next);
    in_flight.shipped.fetch_add(1, Ordering::AcqRel);
    batch_tx
        .blocking_send(full)
        .map_err(|_| RunError::FlusherGone("ledger flusher stopped; see the error above".into()))
}

/// Returns true if and only if `partition` of the units topic is assigned to `consumer`.
fn consumer_owns(consumer: &BaseConsumer<IngestContext>, partition: i32) -> bool {
    consumer
        .assignment()
        .is_ok_and(|a| a.elements().iter().any(|e| e.partition() == partition))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_none_queued_a_ship_waits_for_the_batch_being_written_and_reuses_it() {
        // Proves: `batches_in_flight_max` 0 lets one batch be written while the next fills,
        // no more; the finished batch is back in the pool when the waiting ship wakes.
        let in_flight = Arc::new(InFlight::<Vec<u8>>::new(0));
        assert!(in_flight.wait_for_room(|| false), "nothing shipped yet");
        in_flight.shipped.fetch_add(1, Ordering::AcqRel);
        let flusher = {
            let in_flight = in_flight.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                in_flight.recycle(Vec::with_capacity(4096));
                in_flight.batch_flushed();
            })
        };
        let started = Instant::now();
        assert!(in_flight.wait_for_room(|| false));
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "it waited for the flush"
        );
        let reused = in_flight
            .reuse()
            .expect("the flushed batch came back first");
        assert!(reused.capacity() >= 4096 && reused.is_empty());
        flusher.join().unwrap();
    }

    #[test]
    fn a_ship_waiting_for_room_gives_up_when_the_flusher_is_gone() {
        let in_flight = InFlight::<Vec<u8>>::new(1);
        in_flight.shipped.fetch_add(2, Ordering::AcqRel);
        assert!(!in_flight.wait_for_room(|| true));
    }
}
