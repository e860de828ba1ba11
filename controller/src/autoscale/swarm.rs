//! The Docker Swarm backend, through the Docker Engine API (bollard, unix socket).
//!
//! Scales the replicated services labelled `jetmill.autoscale=true`, between their
//! `jetmill.autoscale.min` and `jetmill.autoscale.max` labels (else `--min`/`--max`).
//! A service with a bad label is logged (naming the service and the label) and
//! skipped. Replicas are changed by updating `Mode.Replicated.Replicas` in the
//! service spec at the version just read, retried when the update loses a race.
//!
//! Listing goes through bollard's typed models; the spec's read-modify-write does not.
//! bollard's `TaskSpecContainerSpec` names the healthcheck `HealthCheck` (as Docker's
//! swagger does) while the engine writes `Healthcheck`, so a typed round trip drops it:
//! every scale would strip the service's healthcheck and, since the task template
//! changed, roll every task (and, with `failure_action: rollback`, undo the scale). The
//! spec is therefore read and written back as raw JSON, keeping every field the engine
//! sent, whatever this crate's models know.

use super::{Backend, Target};
use anyhow::Context;
use bollard::query_parameters::{ListServicesOptions, ListTasksOptions};
use bollard::Docker;
use serde_json::Value;
use std::collections::HashMap;

/// The label that opts a service in; `<LABEL>.min` and `<LABEL>.max` bound it.
pub const LABEL: &str = "jetmill.autoscale";

/// How many times an update that lost a race with another writer is retried.
const UPDATE_ATTEMPTS: u32 = 5;

/// A service label the autoscaler cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Not a whole number of workers.
    #[error("label {label}={value:?} is not a whole number of workers")]
    NotANumber { label: String, value: String },
    /// min above max, or max 0.
    #[error("labels give min {min} and max {max}: need min <= max and max >= 1")]
    Bounds { min: u32, max: u32 },
    /// Neither a max label nor `--max`.
    #[error("no {LABEL}.max label and no --max flag")]
    NoMax,
}

/// The `[min, max]` of a service from its labels, falling back to the flags.
pub fn bounds(
    labels: &HashMap<String, String>,
    default_min: u32,
    default_max: Option<u32>,
) -> Result<(u32, u32), LabelError> {
    let read = |suffix: &str| -> Result<Option<u32>, LabelError> {
        let label = format!("{LABEL}.{suffix}");
        labels
            .get(&label)
            .map(|v| {
                v.trim().parse::<u32>().map_err(|_| LabelError::NotANumber {
                    label: label.clone(),
                    value: v.clone(),
                })
            })
            .transpose()
    };
    let min = read("min")?.unwrap_or(default_min);
    let max = read("max")?.or(default_max).ok_or(LabelError::NoMax)?;
    if max == 0 || min > max {
        return Err(LabelError::Bounds { min, max });
    }
    Ok((min, max))
}

/// Why one spec update did not go through.
#[derive(Debug, thiserror::Error)]
enum UpdateError {
    /// The service changed since it was read (the daemon's `update out of sequence`).
    #[error("the service changed since it was read: {0}")]
    LostRace(String),
    #[error("{0}")]
    Other(String),
}

/// The Engine API spoken as raw JSON over the same socket, for the spec's round trip.
struct RawEngine {
    http: reqwest::Client,
    /// `http://docker/v1.41`: the host part is ignored on a unix socket.
    base: String,
}

impl RawEngine {
    /// A client for `host` (`unix:///path`, `tcp://host:port`, `http://host:port`;
    /// default DOCKER_HOST, else /var/run/docker.sock) at API `version` (`1.41`).
    fn new(host: Option<&str>, version: &str) -> anyhow::Result<Self> {
        let env = std::env::var("DOCKER_HOST").ok();
        let host = host
            .map(str::to_string)
            .or(env)
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        let (http, origin) = if let Some(path) = host.strip_prefix("unix://") {
            (builder.unix_socket(path), "http://docker".to_string())
        } else if let Some(addr) = host.strip_prefix("tcp://") {
            (builder, format!("http://{addr}"))
        } else if host.starts_with("http://") {
            (builder, host.trim_end_matches('/').to_string())
        } else {
            anyhow::bail!(
                "the swarm backend speaks to unix:// and tcp:// Docker hosts, not {host:?} \
                 (set --docker-host or DOCKER_HOST)"
            );
        };
        Ok(RawEngine {
            http: http.build().context("building the Docker API client")?,
            base: format!("{origin}/v{version}"),
        })
    }

    /// The daemon's error message in an answer that is not a success.
    async fn refusal(r: reqwest::Response) -> String {
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(body);
        format!("{status}: {message}")
    }

    /// Set `Mode.Replicated.Replicas` of `service` to `replicas` in its spec as read,
    /// written back at the version read.
    async fn set_replicas(&self, service: &str, replicas: u32) -> Result<(), UpdateError> {
        let other = |e: reqwest::Error| UpdateError::Other(format!("{e:#}"));
        let r = self
            .http
            .get(format!("{}/services/{service}", self.base))
            .send()
            .await
            .map_err(other)?;
        if !r.status().is_success() {
            return Err(UpdateError::Other(Self::refusal(r).await));
        }
        let mut current: Value = r.json().await.map_err(other)?;
        let version = current["Version"]["Index"].as_u64().ok_or_else(|| {
            UpdateError::Other("the service as read has no Version.Index".to_string())
        })?;
        let spec = current["Spec"].take();
        let mut spec = match spec {
            Value::Object(_) => spec,
            _ => {
                return Err(UpdateError::Other(
                    "the service as read has no Spec".to_string(),
                ))
            }
        };
        match spec.pointer_mut("/Mode/Replicated") {
            Some(Value::Object(replicated)) => {
                replicated.insert("Replicas".to_string(), Value::from(replicas));
            }
            _ => {
                return Err(UpdateError::Other(
                    "the service is not in replicated mode".to_string(),
                ))
            }
        }
        let r = self
            .http
            .post(format!(
                "{}/services/{service}/update?version={version}",
                self.base
            ))
            .json(&spec)
            .send()
            .await
            .map_err(other)?;
        if r.status().is_success() {
            return Ok(());
        }
        let conflict = r.status() == reqwest::StatusCode::CONFLICT;
        let why = Self::refusal(r).await;
        if conflict || why.contains("out of sequence") {
            Err(UpdateError::LostRace(why))
        } else {
            Err(UpdateError::Other(why))
        }
    }
}

/// The swarm's labelled services.
pub struct SwarmBackend {
    docker: Docker,
    raw: RawEngine,
    default_min: u32,
    default_max: Option<u32>,
    /// Services skipped for bad settings, and why: each is logged as an error once
    /// (again when the reason changes), not at every tick.
    skipped: std::sync::Mutex<HashMap<String, String>>,
}

impl SwarmBackend {
    /// Connect to the daemon at `host` (`unix://...`; default DOCKER_HOST, else
    /// /var/run/docker.sock) and negotiate the API version, so an older daemon
    /// (Debian's docker.io 20.10 speaks API 1.41) is spoken to in its own version.
    pub async fn connect(
        host: Option<&str>,
        default_min: u32,
        default_max: Option<u32>,
    ) -> anyhow::Result<Self> {
        let docker = match host {
            Some(h) => Docker::connect_with_host(h),
            None => Docker::connect_with_local_defaults(),
        }
        .context("connecting to the Docker daemon (set --docker-host or DOCKER_HOST)")?;
        let docker = docker
            .negotiate_version()
            .await
            .context("asking the Docker daemon for its API version (is dockerd running?)")?;
        let v = docker.client_version();
        let api = format!("{}.{}", v.major_version, v.minor_version);
        tracing::info!(api = %api, "autoscale: connected to the Docker daemon");
        let raw = RawEngine::new(host, &api)?;
        Ok(SwarmBackend {
            docker,
            raw,
            default_min,
            default_max,
            skipped: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Log that `service` is skipped, as an error the first time for this reason.
    fn skip(&self, service: &str, why: String) {
        let mut skipped = self.skipped.lock().unwrap_or_else(|e| e.into_inner());
        if skipped.get(service) == Some(&why) {
            tracing::debug!(service, error = %why, "autoscale: still skipping the service");
        } else {
            tracing::error!(service, error = %why, "autoscale: skipping the service");
            skipped.insert(service.to_string(), why);
        }
    }

    /// Running tasks of `service_id`, for daemons that leave `ServiceStatus` out.
    async fn running_tasks(&self, service_id: &str) -> anyhow::Result<u32> {
        let filters = HashMap::from([
            ("service".to_string(), vec![service_id.to_string()]),
            ("desired-state".to_string(), vec!["running".to_string()]),
        ]);
        let tasks = self
            .docker
            .list_tasks(Some(ListTasksOptions {
                filters: Some(filters),
            }))
            .await
            .context("listing tasks")?;
        let running = tasks
            .iter()
            .filter(|t| {
                t.status.as_ref().and_then(|s| s.state.as_ref())
                    == Some(&bollard::models::TaskState::RUNNING)
            })
            .count();
        Ok(u32::try_from(running).unwrap_or(u32::MAX))
    }
}

impl Backend for SwarmBackend {
    async fn targets(&self) -> anyhow::Result<Vec<Target>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL}=true")])]);
        let services = self
            .docker
            .list_services(Some(ListServicesOptions {
                filters: Some(filters),
                status: Some(true),
            }))
            .await
            .context("listing swarm services (is this node a swarm manager?)")?;
        let mut targets = Vec::with_capacity(services.len());
        for s in services {
            let id = s.id.clone().unwrap_or_default();
            let spec = s.spec.unwrap_or_default();
            let name = spec.name.clone().unwrap_or_else(|| id.clone());
            let labels = spec.labels.unwrap_or_default();
            let (min, max) = match bounds(&labels, self.default_min, self.default_max) {
                Ok(b) => b,
                Err(e) => {
                    self.skip(&name, format!("bad autoscale labels: {e}"));
                    continue;
                }
            };
            let Some(replicas) = spec
                .mode
                .as_ref()
                .and_then(|m| m.replicated.as_ref())
                .and_then(|r| r.replicas)
            else {
                self.skip(
                    &name,
                    format!("labelled {LABEL}=true but not in replicated mode"),
                );
                continue;
            };
            let running = match s.service_status.and_then(|st| st.running_tasks) {
                Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
                None => self.running_tasks(&id).await?,
            };
            if self
                .skipped
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name)
                .is_some()
            {
                tracing::info!(service = %name, "autoscale: the service's labels are good again");
            }
            targets.push(Target {
                name,
                min,
                max,
                replicas: u32::try_from(replicas.max(0)).unwrap_or(u32::MAX),
                running,
            });
        }
        Ok(targets)
    }

    async fn scale(&self, target: &Target, replicas: u32) -> anyhow::Result<()> {
        let mut attempt = 1;
        loop {
            match self.raw.set_replicas(&target.name, replicas).await {
                Ok(()) => return Ok(()),
                Err(UpdateError::LostRace(_)) if attempt < UPDATE_ATTEMPTS => {
                    tracing::info!(service = %target.name, attempt, "autoscale: service changed while updating; retrying");
                    attempt += 1;
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("updating service {} to {replicas} replicas", target.name)
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_give_the_bounds_and_flags_fill_the_gaps() {
        let l = labels(&[
            ("jetmill.autoscale.min", "2"),
            ("jetmill.autoscale.max", "6"),
        ]);
        assert_eq!(bounds(&l, 1, None), Ok((2, 6)));
        assert_eq!(bounds(&labels(&[]), 1, Some(4)), Ok((1, 4)));
        assert_eq!(bounds(&labels(&[]), 1, None), Err(LabelError::NoMax));
    }

    #[test]
    fn bad_labels_name_the_label() {
        let e = bounds(&labels(&[("jetmill.autoscale.max", "lots")]), 1, None)
            .expect_err("not a number");
        assert!(e.to_string().contains("jetmill.autoscale.max"), "{e}");
        let e = bounds(
            &labels(&[
                ("jetmill.autoscale.min", "5"),
                ("jetmill.autoscale.max", "2"),
            ]),
            1,
            None,
        )
        .expect_err("min above max");
        assert_eq!(e, LabelError::Bounds { min: 5, max: 2 });
        assert!(bounds(&labels(&[("jetmill.autoscale.max", "0")]), 0, None).is_err());
    }
}
