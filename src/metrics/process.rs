//! The `process_*` metrics every Prometheus client library exports (CPU,
//! memory, file descriptors, start time), so the dashboards and alerts users
//! already have for any exporter work on sluice too. Read from `/proc` on each
//! scrape: a scrape is rare, and a sample that cannot be read is left out
//! rather than reported as zero.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug)]
pub(super) struct Process;

/// One reading of the process's own accounting.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
    virtual_memory_bytes: Option<f64>,
    resident_memory_bytes: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = Sample::read();
        if let Some(v) = s.cpu_seconds {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                c.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                s.start_time_seconds,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                s.virtual_memory_bytes,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                s.resident_memory_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                s.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

impl Sample {
    #[cfg(target_os = "linux")]
    fn read() -> Self {
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        let mut sample = parse_stat(&stat, ticks, page, boot);
        sample.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            sample.max_fds = Some(limit.rlim_cur as f64);
        }
        sample
    }

    #[cfg(not(target_os = "linux"))]
    fn read() -> Self {
        Self::default()
    }
}

/// `btime` of `/proc/stat`: the boot time, in seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// `/proc/self/stat`: the command name is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str, ticks: f64, page: f64, boot: Option<f64>) -> Sample {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Sample::default();
    };
    // `rest` starts at field 3 (state); field n is at index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let valid_ticks = ticks > 0.0;
    Sample {
        cpu_seconds: match (field(14), field(15)) {
            (Some(u), Some(s)) if valid_ticks => Some((u + s) / ticks),
            _ => None,
        },
        start_time_seconds: match (field(22), boot) {
            (Some(start), Some(boot)) if valid_ticks => Some(boot + start / ticks),
            _ => None,
        },
        virtual_memory_bytes: field(23),
        resident_memory_bytes: field(24).filter(|_| page > 0.0).map(|p| p * page),
        open_fds: None,
        max_fds: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with spaces and a `)` in it must not shift fields.
        let stat = "4242 (we ird) (cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 150 0 0 20 0 9 0 1000 123456789 300 18446744073709551615";
        let s = parse_stat(stat, 100.0, 4096.0, Some(1_700_000_000.0));
        assert_eq!(s.cpu_seconds, Some(4.0));
        assert_eq!(s.start_time_seconds, Some(1_700_000_010.0));
        assert_eq!(s.virtual_memory_bytes, Some(123_456_789.0));
        assert_eq!(s.resident_memory_bytes, Some(300.0 * 4096.0));
    }

    #[test]
    fn unreadable_stat_reports_nothing_rather_than_zero() {
        assert_eq!(parse_stat("", 100.0, 4096.0, None), Sample::default());
        assert_eq!(
            parse_stat("1 (x) S 1", 100.0, 4096.0, None),
            Sample::default()
        );
        assert_eq!(boot_time("cpu 1 2 3\nbtime 1700000000\n"), Some(1.7e9));
    }
}
