//! Flags shared by the operator commands, and small parsing and output helpers.

use jetmill_natsx::NatsArgs;
use jetmill_proto::JobKind;
use std::time::Duration;

/// Flags of every command that changes the runtime config.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    /// Change only this worker (an override on top of the global config).
    #[arg(long, value_name = "WORKER_ID")]
    pub worker: Option<String>,
    /// How long to wait for every live worker to apply the change (e.g. 500ms, 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// Flags of the read-only NATS commands (`workers`, `stats`, `config show`).
#[derive(Debug, Clone, clap::Args)]
pub struct ReadArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// A duration flag (`250ms`, `10s`, `2m`, `1h30m` or a bare number of seconds): the
/// grammar the API's `?wait=` takes too (`jetmill_proto::duration`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    jetmill_proto::parse_duration(s).map_err(|e| e.to_string())
}

/// Parse a job kind, listing the valid ones when it is not one.
pub fn parse_kind(s: &str) -> Result<JobKind, String> {
    s.parse().map_err(|()| {
        let all: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown kind {s:?}; kinds are: {}", all.join(", "))
    })
}

/// Render rows as a left-aligned text table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `3h05m`, `4m12s`, `9s`: a compact age.
pub fn human_age(ms: i64) -> String {
    let s = (ms.max(0) / 1000) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Print a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_reject_nonsense() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn kinds_parse_and_errors_list_the_valid_ones() {
        assert_eq!(parse_kind("sum"), Ok(JobKind::Sum));
        let e = parse_kind("prime").expect_err("not a kind");
        assert!(
            e.contains("factorial") && e.contains("fibonacci") && e.contains("sum"),
            "{e}"
        );
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "LONG"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    LONG\nxyz  1\nq    22");
    }
}
