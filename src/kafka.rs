//! Kafka clients, configured in one place: the ingest consumer, the dead-letter and
//! sample producers, the benchmark's plain consumer, and topic creation.
//!
//! librdkafka's defaults are tuned for long-lived clusters; against a single local broker
//! a group with the default 45 s session takes ~23 s to form, so the session and heartbeat
//! are settings (`session_timeout_ms`, `heartbeat_interval_ms`).
//!
//! Every client also gets the operator's librdkafka properties ([`properties`]: security,
//! `client.id`, timeouts…), set after ours so the operator wins — except for the keys the
//! service's correctness rests on, which are refused when the properties are read.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use std::time::Duration;

pub mod properties;

pub use properties::KafkaProperties;

/// The dead-letter producer's `message.max.bytes`, set deliberately (it is librdkafka's
/// default, and below the ~1 MiB a stock broker accepts): every letter is bounded well
/// under it ([`crate::ingest::dead_letter::ENVELOPE_BYTES_MAX`]).
pub const DEAD_LETTER_MESSAGE_BYTES_MAX: usize = 1_000_000;

/// How long librdkafka keeps trying to deliver one dead letter before it reports a
/// failure; the sender then retries a bounded number of rounds.
const DEAD_LETTER_TIMEOUT_MS: u32 = 30_000;

/// Connection and group settings shared by every client.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]` of the bootstrap brokers.
    pub brokers: String,
    /// Consumer group of the ingesters; instances with one group share the partitions.
    pub group_id: String,
    /// Consumer session timeout; a dead instance's partitions move after this long.
    pub session_timeout_ms: u64,
    /// Heartbeat interval; must be well below `session_timeout_ms` (a third or less).
    pub heartbeat_interval_ms: u64,
    /// The operator's librdkafka properties (security, timeouts, `client.id`…), set on
    /// every client after the settings here, so they win; empty by default.
    pub properties: KafkaProperties,
}

/// What went wrong with Kafka, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// A client could not be created from the configuration.
    #[error("cannot create the Kafka {client}: {source}")]
    Client {
        client: &'static str,
        source: KafkaError,
    },
    /// The broker did not answer.
    #[error("Kafka broker(s) at {brokers} unreachable: {detail}; start the broker (scripts/services.sh start) or set SUBSIDY_KAFKA_BROKERS")]
    Unreachable { brokers: String, detail: String },
    /// Topic creation failed for a reason other than "already exists".
    #[error("cannot create topic {topic}: {detail}")]
    CreateTopic { topic: String, detail: String },
    /// The heartbeat is not well below the session timeout.
    #[error("heartbeat_interval_ms ({heartbeat_ms}) must be at most a third of session_timeout_ms ({session_ms})")]
    HeartbeatTooSlow { heartbeat_ms: u64, session_ms: u64 },
}

impl KafkaConfig {
    /// Settings for clients outside a consumer group's life: producers, checks, tools.
    pub fn for_tools(brokers: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.to_string(),
            group_id: "subsidy-ingester-tools".into(),
            session_timeout_ms: 6_000,
            heartbeat_interval_ms: 500,
            properties: KafkaProperties::default(),
        }
    }

    /// The same settings with the operator's librdkafka properties.
    pub fn with_properties(self, properties: KafkaProperties) -> KafkaConfig {
        KafkaConfig { properties, ..self }
    }

    fn validate(&self) -> Result<(), KafkaSetupError> {
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms {
            return Err(KafkaSetupError::HeartbeatTooSlow {
                heartbeat_ms: self.heartbeat_interval_ms,
                session_ms: self.session_timeout_ms,
            });
        }
        Ok(())
    }

    /// The ingest consumer: manual offsets only (the outcome rows in ClickHouse are the
    /// checkpoint; Kafka commits are advisory, for lag monitoring), earliest on a new group.
    pub fn ingest_consumer<C: ConsumerContext>(
        &self,
        context: C,
    ) -> Result<BaseConsumer<C>, KafkaSetupError> {
        self.validate()?;
        self.properties
            .apply(
                ClientConfig::new()
                    .set("bootstrap.servers", &self.brokers)
                    .set("group.id", &self.group_id)
                    .set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false")
                    .set("auto.offset.reset", "earliest")
                    .set("session.timeout.ms", self.session_timeout_ms.to_string())
                    .set(
                        "heartbeat.interval.ms",
                        self.heartbeat_interval_ms.to_string(),
                    )
                    // Bounded prefetch: at most 8 MiB of messages buffered by librdkafka (~40k
                    // messages of a few hundred bytes, a quarter second of work at full speed, while
                    // a refill takes milliseconds: the loop never waits). Part of the peak RSS bound.
                    .set("queued.max.messages.kbytes", "8192")
                    .set("fetch.max.bytes", "4194304")
                    // librdkafka waits this long before fetching again once its queue is full (default
                    // 1 s); a busy consumer then starves for most of each second.
                    .set("fetch.queue.backoff.ms", "20")
                    .set("partition.assignment.strategy", "range,roundrobin"),
            )
            .create_with_context(context)
            .map_err(|source| KafkaSetupError::Client {
                client: "consumer",
                source,
            })
    }

    /// A plain consumer in its own group that reads from the start (benchmark baseline).
    pub fn plain_consumer(&self, group_id: &str) -> Result<BaseConsumer, KafkaSetupError> {
        self.validate()?;
        self.properties
            .apply(
                ClientConfig::new()
                    .set("bootstrap.servers", &self.brokers)
                    .set("group.id", group_id)
                    .set("enable.auto.commit", "false")
                    .set("auto.offset.reset", "earliest")
                    .set("session.timeout.ms", self.session_timeout_ms.to_string())
                    .set(
                        "heartbeat.interval.ms",
                        self.heartbeat_interval_ms.to_string(),
                    )
                    // As the raw consumer: 16 MiB are 32+ sets of up to 1,024 unit records.
                    .set("queued.max.messages.kbytes", "16384")
                    .set("fetch.max.bytes", "8388608")
                    .set("fetch.queue.backoff.ms", "20"),
            )
            .create()
            .map_err(|source| KafkaSetupError::Client {
                client: "consumer",
                source,
            })
    }

    /// A consumer for looking, never committing: it reads assigned partitions and reports
    /// each partition's end (`enable.partition.eof`), for `conservation`.
    pub fn probe_consumer(&self) -> Result<BaseConsumer<ProbeContext>, KafkaSetupError> {
        self.properties
            .apply(
                ClientConfig::new()
                    .set("bootstrap.servers", &self.brokers)
                    .set("group.id", "subsidy-ingester-probe")
                    .set("enable.auto.commit", "false")
                    .set("enable.partition.eof", "true")
                    .set("fetch.queue.backoff.ms", "20"),
            )
            .create_with_context(ProbeContext)
            .map_err(|source| KafkaSetupError::Client {
                client: "probe consumer",
                source,
            })
    }

    /// A producer that waits for the broker's acknowledgement of every message
    /// (dead letters must not be lost) and batches for throughput.
    pub fn producer(&self) -> Result<FutureProducer, KafkaSetupError> {
        self.properties
            .apply(
                ClientConfig::new()
                    .set("bootstrap.servers", &self.brokers)
                    .set("acks", "all")
                    .set("compression.type", "lz4")
                    .set("linger.ms", "5")
                    .set("batch.num.messages", "10000")
                    .set("queue.buffering.max.kbytes", "262144")
                    .set("message.timeout.ms", "120000"),
            )
            .create()
            .map_err(|source| KafkaSetupError::Client {
                client: "producer",
                source,
            })
    }

    /// The units producer of the admit stage: acknowledged by all replicas (a unit counts as
    /// routed only then), batched, with room to queue a whole batch of units, and a
    /// delivery timeout after which the flusher resends.
    pub fn units_producer(&self) -> Result<FutureProducer, KafkaSetupError> {
        self.properties
            .apply(
                ClientConfig::new()
                    .set("bootstrap.servers", &self.brokers)
                    .set("acks", "all")
                    .set("linger.ms", "5")
                    .set("batch.num.messages", "10000")
                    .set("queue.buffering.max.messages", "2000000")
                    .set("queue.buffering.max.kbytes", "1048576")
                    .set("message.timeout.ms", "30000"),
            )
            .create()
            .map_err(|source| KafkaSetupError::Client {
                client: "units producer",
                source,
            })
    }

    /// The dead-letter producer: acknowledged by all replicas, with a deliberate message
    /// size limit and a delivery timeout short enough that a failing letter is reported
    /// (and retried or given up) instead of holding its batch for minutes.
    pub fn dead_letter_producer(&self) -> Result<FutureProducer, KafkaSetupError> {
        self.properties
            .apply(
                ClientConfig::new()
                    .set("bootstrap.servers", &self.brokers)
                    .set("acks", "all")
                    .set("compression.type", "lz4")
                    .set("linger.ms", "5")
                    .set(
                        "message.max.bytes",
                        DEAD_LETTER_MESSAGE_BYTES_MAX.to_string(),
                    )
                    .set("message.timeout.ms", DEAD_LETTER_TIMEOUT_MS.to_string())
                    .set("queue.buffering.max.kbytes", "262144"),
            )
            .create()
            .map_err(|source| KafkaSetupError::Client {
                client: "dead-letter producer",
                source,
            })
    }

    /// Checks that a broker answers, within `timeout`.
    pub fn check_reachable(&self, timeout: Duration) -> Result<(), KafkaSetupError> {
        let consumer: BaseConsumer = self
            .properties
            .apply(ClientConfig::new().set("bootstrap.servers", &self.brokers))
            .create()
            .map_err(|source| KafkaSetupError::Client {
                client: "metadata client",
                source,
            })?;
        use rdkafka::consumer::Consumer;
        consumer
            .fetch_metadata(None, timeout)
            .map(|_| ())
            .map_err(|e| KafkaSetupError::Unreachable {
                brokers: self.brokers.clone(),
                detail: e.to_string(),
            })
    }

    /// Creates the topics that do not exist yet, with `partitions` partitions each.
    pub async fn ensure_topics(
        &self,
        topics: &[&str],
        partitions: i32,
    ) -> Result<(), KafkaSetupError> {
        let admin: AdminClient<DefaultClientContext> = self
            .properties
            .apply(ClientConfig::new().set("bootstrap.servers", &self.brokers))
            .create()
            .map_err(|source| KafkaSetupError::Client {
                client: "admin client",
                source,
            })?;
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|e| KafkaSetupError::Unreachable {
                brokers: self.brokers.clone(),
                detail: e.to_string(),
            })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(KafkaSetupError::CreateTopic {
                        topic,
                        detail: code.to_string(),
                    })
                }
            }
        }
        Ok(())
    }
}

/// The probe consumer's context: the end of a partition is what the probe asks for, not an
/// error, so it is not logged as one (librdkafka also reports it as a "global error").
pub struct ProbeContext;

impl rdkafka::ClientContext for ProbeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka reports it as `Global(PartitionEOF)` here.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::debug!(message = "End of partition.", reason);
        } else {
            tracing::warn!(message = "Kafka client error.", %error, reason);
        }
    }
}

impl ConsumerContext for ProbeContext {}

/// The low and high watermarks librdkafka last saw for a partition in fetch responses,
/// without asking the broker; `None` until a fetch response has reported them. (These are
/// right where Tansu's ListOffsets answers are not.)
pub fn cached_watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    use rdkafka::consumer::Consumer;
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; the topic is a valid C
    // string for the call; librdkafka only writes the two out-parameters.
    let error = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    let ok = error == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
    (ok && high >= 0).then_some((low, high))
}

/// Commits `(topic, partition, next offset)` to the group, asynchronously, after a batch is
/// durable. Advisory only — lag tools (kafka_exporter, Burrow) read it; a start seeks from
/// what ClickHouse holds — so a failure is logged at debug and otherwise ignored.
pub fn commit_advisory<'a, C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    next_offsets: impl IntoIterator<Item = (&'a str, i32, i64)>,
) {
    let mut list = rdkafka::TopicPartitionList::new();
    for (topic, partition, next) in next_offsets {
        let _ = list.add_partition_offset(topic, partition, rdkafka::Offset::Offset(next));
    }
    if list.count() == 0 {
        return;
    }
    if let Err(error) = consumer.commit(&list, CommitMode::Async) {
        tracing::debug!(message = "Kafka commit failed (advisory).", %error);
    }
}
