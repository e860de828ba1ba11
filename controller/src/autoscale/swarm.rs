//! The Docker Swarm backend, through the Docker Engine API (bollard, unix socket).
//!
//! Scales the replicated services labelled `jetmill.autoscale=true`, between their
//! `jetmill.autoscale.min` and `jetmill.autoscale.max` labels (else `--min`/`--max`).
//! A service with a bad label is logged (naming the service and the label) and
//! skipped. Replicas are changed by updating `Mode.Replicated.Replicas` in the
//! service spec at the version just read, retried when the update loses a race.

use super::{Backend, Target};
use anyhow::Context;
use bollard::query_parameters::{
    InspectServiceOptions, ListServicesOptions, ListTasksOptions, UpdateServiceOptions,
};
use bollard::Docker;
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

/// The swarm's labelled services.
pub struct SwarmBackend {
    docker: Docker,
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
        tracing::info!(
            api = %format!("{}.{}", v.major_version, v.minor_version),
            "autoscale: connected to the Docker daemon"
        );
        Ok(SwarmBackend {
            docker,
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

    /// Set the replicas of `service` once: read its spec and version, write it back.
    async fn update_once(
        &self,
        service: &str,
        replicas: u32,
    ) -> Result<(), bollard::errors::Error> {
        let current = self
            .docker
            .inspect_service(service, None::<InspectServiceOptions>)
            .await?;
        let version = current.version.and_then(|v| v.index).unwrap_or(0);
        let mut spec = current.spec.unwrap_or_default();
        let mode = spec.mode.get_or_insert_with(Default::default);
        mode.replicated
            .get_or_insert_with(Default::default)
            .replicas = Some(i64::from(replicas));
        self.docker
            .update_service(
                service,
                spec,
                UpdateServiceOptions {
                    version: i32::try_from(version).unwrap_or(i32::MAX),
                    ..Default::default()
                },
                None,
            )
            .await?;
        Ok(())
    }
}

/// Whether an update failed only because the service changed since it was read.
fn lost_race(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code, message }
        if *status_code == 409 || message.contains("out of sequence"))
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
            match self.update_once(&target.name, replicas).await {
                Ok(()) => return Ok(()),
                Err(e) if lost_race(&e) && attempt < UPDATE_ATTEMPTS => {
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
