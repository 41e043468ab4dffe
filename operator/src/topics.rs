//! A shop's Kafka topics through the admin API: created with the requested
//! partitions, replication and config; partitions grown when the spec
//! grows; a smaller number reported, never applied; deleted only when the
//! Storefront's deletion policy says so.
//!
//! Before any admin client is made the bootstrap servers are resolved and
//! one is connected to, so an unreachable broker is a quick, typed answer
//! (and no client threads pile up retrying it).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewPartitions, NewTopic, TopicReplication, TopicResult};
use rdkafka::types::RDKafkaErrorCode;
use storefront_runtime::kafka;

const TIMEOUT: Duration = Duration::from_secs(5);

/// One topic as the spec wants it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WantedTopic {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    pub config: BTreeMap<String, String>,
}

/// What the broker holds after [`ensure`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopicsReport {
    /// Each topic's partitions on the broker.
    pub partitions: BTreeMap<String, i32>,
    /// Topics whose spec asks for fewer partitions than they have: (name,
    /// wanted, actual). Kafka cannot shrink a topic.
    pub decreases: Vec<(String, i32, i32)>,
    /// Topics made or grown by this call.
    pub changed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    #[error("Kafka at {bootstrap} is unreachable: {detail}")]
    Unreachable { bootstrap: String, detail: String },
    #[error("Kafka refused {what}: {detail}")]
    Refused { what: String, detail: String },
}

impl TopicsError {
    fn unreachable(bootstrap: &str, detail: impl std::fmt::Display) -> Self {
        TopicsError::Unreachable {
            bootstrap: bootstrap.to_owned(),
            detail: detail.to_string(),
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            TopicsError::Unreachable { .. } => "KafkaUnreachable",
            TopicsError::Refused { .. } => "KafkaError",
        }
    }
}

/// Resolves the bootstrap servers and connects to one of them.
pub async fn reachable(bootstrap: &str) -> Result<(), TopicsError> {
    let mut last = String::from("no bootstrap server given");
    for server in bootstrap
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let addrs = match tokio::time::timeout(TIMEOUT, tokio::net::lookup_host(server)).await {
            Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
            Ok(Err(error)) => {
                last = format!("{server}: {error}");
                continue;
            }
            Err(_) => {
                last = format!("{server}: name lookup timed out");
                continue;
            }
        };
        for addr in addrs {
            match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(error)) => last = format!("{server} ({addr}): {error}"),
                Err(_) => last = format!("{server} ({addr}): connect timed out"),
            }
        }
    }
    Err(TopicsError::unreachable(bootstrap, last))
}

fn admin(
    bootstrap: &str,
) -> Result<rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>, TopicsError> {
    kafka::admin(bootstrap).map_err(|e| TopicsError::unreachable(bootstrap, e))
}

fn options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(TIMEOUT))
        .request_timeout(Some(TIMEOUT))
}

/// The partitions of each of `names` on the broker (absent when the topic
/// does not exist).
async fn describe(
    bootstrap: &str,
    names: Vec<String>,
) -> Result<BTreeMap<String, i32>, TopicsError> {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || {
        let client = admin(&bootstrap)?;
        let metadata = client
            .inner()
            .fetch_metadata(None, TIMEOUT)
            .map_err(|e| TopicsError::unreachable(&bootstrap, e))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && names.iter().any(|n| n == t.name()))
            .map(|t| {
                (
                    t.name().to_owned(),
                    i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
                )
            })
            .collect())
    })
    .await
    .map_err(|e| TopicsError::Refused {
        what: "describing topics".into(),
        detail: e.to_string(),
    })?
}

/// The topics an admin call changed; a per-topic failure other than
/// `already_so` (the state asked for holds already) is the error.
fn succeeded(
    results: Vec<TopicResult>,
    doing: &str,
    already_so: Option<RDKafkaErrorCode>,
) -> Result<Vec<String>, TopicsError> {
    let mut changed = vec![];
    for result in results {
        match result {
            Ok(name) => changed.push(name),
            Err((_, code)) if Some(code) == already_so => {}
            Err((name, code)) => {
                return Err(TopicsError::Refused {
                    what: format!("{doing} topic {name}"),
                    detail: code.to_string(),
                });
            }
        }
    }
    Ok(changed)
}

/// Makes the wanted topics exist, grows the ones with too few partitions,
/// and reports the ones with too many.
pub async fn ensure(bootstrap: &str, wanted: &[WantedTopic]) -> Result<TopicsReport, TopicsError> {
    reachable(bootstrap).await?;
    let names: Vec<String> = wanted.iter().map(|t| t.name.clone()).collect();
    let existing = describe(bootstrap, names.clone()).await?;
    let client = admin(bootstrap)?;
    let mut report = TopicsReport::default();

    let missing: Vec<&WantedTopic> = wanted
        .iter()
        .filter(|t| !existing.contains_key(&t.name))
        .collect();
    if !missing.is_empty() {
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| {
                t.config.iter().fold(
                    NewTopic::new(
                        &t.name,
                        t.partitions,
                        TopicReplication::Fixed(t.replication),
                    ),
                    |topic, (k, v)| topic.set(k, v),
                )
            })
            .collect();
        let results = client
            .create_topics(new.iter(), &options())
            .await
            .map_err(|e| TopicsError::unreachable(bootstrap, e))?;
        report.changed.extend(succeeded(
            results,
            "creating",
            Some(RDKafkaErrorCode::TopicAlreadyExists),
        )?);
    }

    let grow: Vec<(&WantedTopic, i32)> = wanted
        .iter()
        .filter_map(|t| existing.get(&t.name).map(|&have| (t, have)))
        .filter(|(t, have)| t.partitions > *have)
        .collect();
    if !grow.is_empty() {
        let new: Vec<NewPartitions<'_>> = grow
            .iter()
            .map(|(t, _)| NewPartitions::new(&t.name, usize::try_from(t.partitions).unwrap_or(1)))
            .collect();
        let results = client
            .create_partitions(new.iter(), &options())
            .await
            .map_err(|e| TopicsError::unreachable(bootstrap, e))?;
        report.changed.extend(succeeded(results, "growing", None)?);
    }
    for t in wanted {
        if let Some(&have) = existing.get(&t.name)
            && t.partitions < have
        {
            report.decreases.push((t.name.clone(), t.partitions, have));
        }
    }
    // What the broker says now (new topics may take a moment to show all
    // partitions in metadata; the spec's number is what was asked for).
    let now = describe(bootstrap, names).await?;
    for t in wanted {
        let have = now.get(&t.name).copied().unwrap_or(t.partitions);
        report.partitions.insert(t.name.clone(), have);
    }
    Ok(report)
}

/// Deletes the topics (those already gone are fine).
pub async fn delete(bootstrap: &str, names: &[String]) -> Result<(), TopicsError> {
    reachable(bootstrap).await?;
    let client = admin(bootstrap)?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let results = client
        .delete_topics(&refs, &options())
        .await
        .map_err(|e| TopicsError::unreachable(bootstrap, e))?;
    succeeded(
        results,
        "deleting",
        Some(RDKafkaErrorCode::UnknownTopicOrPartition),
    )?;
    Ok(())
}
