//! Producing a sample feed into Kafka (used by `sample --produce`, the demo, tests and
//! the benchmark): creates the topics, then sends every message with its key, waiting for
//! the broker's acknowledgements in bounded windows. Also writing its values as NDJSON,
//! one message a line, for `subsidy-ingester validate` (`sample --events-out`).

use crate::sample::SampleMessage;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use std::collections::BTreeSet;
use std::collections::VecDeque;
use subsidy_ingester::kafka::{KafkaConfig, KafkaSetupError};

/// Deliveries awaited at most at once: bounds the producer's memory.
const DELIVERIES_IN_FLIGHT_MAX: usize = 50_000;

/// Why producing failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("producing to {topic} failed: {source}")]
    Produce { topic: String, source: KafkaError },
}

/// Returns true if and only if the message value can be one NDJSON line: it holds no `\n`
/// (a few of the generator's malformed payloads do).
pub fn fits_one_line(message: &SampleMessage) -> bool {
    !message.payload.contains(&b'\n')
}

/// Writes each message value that [`fits_one_line`] as one line (its bytes, then `\n`),
/// in order; returns (lines written, messages left out).
///
/// # Errors
///
/// Writing fails.
pub fn write_ndjson(
    messages: &[SampleMessage],
    out: &mut impl std::io::Write,
) -> std::io::Result<(usize, usize)> {
    let mut written = 0;
    for message in messages.iter().filter(|m| fits_one_line(m)) {
        out.write_all(&message.payload)?;
        out.write_all(b"\n")?;
        written += 1;
    }
    Ok((written, messages.len() - written))
}

/// Creates the messages' topics (with `partitions` partitions each, if missing) and
/// produces every message; returns once all are acknowledged.
pub async fn produce(
    kafka: &KafkaConfig,
    messages: &[SampleMessage],
    partitions: i32,
) -> Result<usize, FeedError> {
    let topics: BTreeSet<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
    let topics: Vec<&str> = topics.into_iter().collect();
    kafka.ensure_topics(&topics, partitions).await?;
    let producer = kafka.producer()?;
    let mut in_flight: VecDeque<(usize, DeliveryFuture)> = VecDeque::new();
    let mut progress = subsidy_ingester::telemetry::progress::Progress::new(
        "producing: messages",
        Some(messages.len() as u64),
    );
    for (index, message) in messages.iter().enumerate() {
        if index.is_multiple_of(4096) {
            progress.set(index as u64);
        }
        loop {
            let mut record = FutureRecord::to(&message.topic).payload(&message.payload);
            if !message.key.is_empty() {
                record = record.key(&message.key);
            }
            match producer.send_result(record) {
                Ok(delivery) => {
                    in_flight.push_back((index, delivery));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    let half = in_flight.len() / 2 + 1;
                    await_oldest(&mut in_flight, messages, half).await?;
                }
                Err((source, _)) => {
                    return Err(FeedError::Produce {
                        topic: message.topic.clone(),
                        source,
                    })
                }
            }
        }
        if in_flight.len() >= DELIVERIES_IN_FLIGHT_MAX {
            await_oldest(&mut in_flight, messages, DELIVERIES_IN_FLIGHT_MAX / 2).await?;
        }
    }
    let remaining = in_flight.len();
    await_oldest(&mut in_flight, messages, remaining).await?;
    progress.set(messages.len() as u64);
    progress.finish();
    Ok(messages.len())
}

async fn await_oldest(
    in_flight: &mut VecDeque<(usize, DeliveryFuture)>,
    messages: &[SampleMessage],
    count: usize,
) -> Result<(), FeedError> {
    for _ in 0..count {
        let Some((index, delivery)) = in_flight.pop_front() else {
            return Ok(());
        };
        let topic = || messages[index].topic.clone();
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((source, _))) => {
                return Err(FeedError::Produce {
                    topic: topic(),
                    source,
                })
            }
            Err(_) => {
                return Err(FeedError::Produce {
                    topic: topic(),
                    source: KafkaError::Canceled,
                })
            }
        }
    }
    Ok(())
}
