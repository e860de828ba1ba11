//! Job identity, kinds, priorities and the validated specification.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A job's id: a UUIDv7, so ids sort by submission time.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid, example = "01a207e4-e83b-72f9-ab26-1de816ec8030")]
pub struct JobId(pub uuid::Uuid);

impl JobId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        JobId(uuid::Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::try_parse(s).map(JobId)
    }
}

/// What a job computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Factorial,
    Fibonacci,
    Sum,
}

impl JobKind {
    /// Every kind, for help texts and error messages.
    pub const ALL: [JobKind; 3] = [JobKind::Factorial, JobKind::Fibonacci, JobKind::Sum];

    /// The lowercase name used in JSON, subjects and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Factorial => "factorial",
            JobKind::Fibonacci => "fibonacci",
            JobKind::Sum => "sum",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

/// Queue priority; part of the subject so operators can see and filter it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    /// Every level, highest first: the order workers take jobs in.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The lowercase name used in JSON and subjects.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// A validated computation: what the worker will run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobSpec {
    /// n!
    Factorial { n: u64 },
    /// F(n), exact or modulo `modulus`.
    Fibonacci { n: u64, modulus: Option<u64> },
    /// The sum of signed decimal integers, kept as normalized decimal text.
    Sum { terms: Vec<String> },
    /// Part `part` (0-based) of `of` of n! (a split factorial's step): the product of
    /// its range of the balanced plan (`compute::factorial::split_ranges(n, of)`), kept
    /// in binary for the combine.
    FactorialPart { n: u64, part: u32, of: u32 },
    /// n! from the binary partial products the jobs `parts` stored (a split
    /// factorial's last step): a normal factorial result.
    FactorialCombine { n: u64, parts: Vec<JobId> },
}

impl JobSpec {
    /// The kind of this spec.
    pub fn kind(&self) -> JobKind {
        match self {
            JobSpec::Factorial { .. }
            | JobSpec::FactorialPart { .. }
            | JobSpec::FactorialCombine { .. } => JobKind::Factorial,
            JobSpec::Fibonacci { .. } => JobKind::Fibonacci,
            JobSpec::Sum { .. } => JobKind::Sum,
        }
    }

    /// The `input` field as a client wrote it (numbers stay numbers when they fit).
    pub fn input_json(&self) -> serde_json::Value {
        match self {
            JobSpec::Factorial { n }
            | JobSpec::Fibonacci { n, .. }
            | JobSpec::FactorialPart { n, .. }
            | JobSpec::FactorialCombine { n, .. } => (*n).into(),
            JobSpec::Sum { terms } => terms
                .iter()
                .map(|t| match t.parse::<i64>() {
                    Ok(v) => serde_json::Value::from(v),
                    Err(_) => serde_json::Value::from(t.as_str()),
                })
                .collect(),
        }
    }

    /// The `params` field, if the spec has any.
    pub fn params_json(&self) -> Option<serde_json::Value> {
        match self {
            JobSpec::Fibonacci {
                modulus: Some(m), ..
            } => Some(serde_json::json!({ "modulus": m })),
            JobSpec::FactorialPart { part, of, .. } => {
                Some(serde_json::json!({ "part": part + 1, "of": of }))
            }
            JobSpec::FactorialCombine { parts, .. } => {
                Some(serde_json::json!({ "split": parts.len() }))
            }
            _ => None,
        }
    }
}
