//! Results of runs: one JSON record per run, summaries per pairing and implementation mix,
//! the table `--report` prints.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::NatlabError;

/// What one run measured; `result.json` in the run's log directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    /// `consistent-random`: client (A) NAT first.
    pub pairing: String,
    /// `rs-js`: client implementation first.
    pub mix: String,
    pub run: u32,
    /// Implementation of the three bootstrap nodes.
    pub dht: String,
    /// Implementation of the blind relay of a `+relay` pairing.
    #[serde(default)]
    pub relay: Option<String>,
    pub extra_hops: u32,
    /// The 64 KiB came back through the echo, byte for byte.
    pub connected: bool,
    /// dht.connect() to the first echoed byte (the client's `first_byte_ms`).
    pub connect_ms: Option<f64>,
    /// dht.connect() to the open encrypted stream.
    pub open_ms: Option<f64>,
    /// The client's error (hyperdht code for JS, message for Rust), or the harness's.
    pub error: Option<String>,
    /// How the peers saw their own NAT (JS peers only: dht-rpc's view).
    pub client_nat: Option<serde_json::Value>,
    pub server_nat: Option<serde_json::Value>,
    /// hyperdht punch counters of both peers (JS only).
    pub client_punches: Option<serde_json::Value>,
    pub server_punches: Option<serde_json::Value>,
    /// The client's path: `direct` (never relayed), `relayed` (through the relay to the
    /// end) or `upgraded` (opened through the relay, then moved to a direct path).
    #[serde(default)]
    pub path: Option<String>,
    /// When the client's stream moved off the relay, ms after it opened.
    #[serde(default)]
    pub upgraded_ms: Option<f64>,
    /// Bytes that came back through the echo (more than 64 KiB when the client streamed
    /// until its path was direct).
    #[serde(default)]
    pub echoed_bytes: Option<u64>,
    /// When the server's stream moved off the relay, ms after it accepted it.
    #[serde(default)]
    pub server_upgraded_ms: Option<f64>,
    /// Pairings the blind relay made.
    #[serde(default)]
    pub relay_pairings: Option<u64>,
    pub log_dir: String,
    pub took_s: f64,
}

/// The pairing, plus whatever differs from the default setup (so `--report-from` never
/// pools runs that measured different things).
fn label(r: &RunResult) -> String {
    let mut l = r.pairing.clone();
    if r.extra_hops > 0 {
        l.push_str(&format!(" +{} hops", r.extra_hops));
    }
    if r.dht != "js" {
        l.push_str(&format!(" ({} DHT)", r.dht));
    }
    if r.relay.as_deref() == Some("js") {
        l.push_str(" (JS relay)");
    }
    l
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// One line of the report.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub pairing: String,
    pub mix: String,
    pub runs: usize,
    pub connected: usize,
    pub median_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Connected runs by the client's path.
    pub direct: usize,
    pub relayed: usize,
    pub upgraded: usize,
    /// Median of the upgraded runs' `upgraded_ms`.
    pub upgrade_median_ms: Option<f64>,
    /// Distinct errors with how often each occurred.
    pub errors: BTreeMap<String, usize>,
}

/// Groups by pairing and mix, in the order they first appear.
pub fn summarize(results: &[RunResult]) -> Vec<Summary> {
    let mut order: Vec<(String, String)> = Vec::new();
    for r in results {
        let key = (label(r), r.mix.clone());
        if !order.contains(&key) {
            order.push(key);
        }
    }
    order
        .into_iter()
        .map(|(pairing, mix)| {
            let runs: Vec<&RunResult> = results
                .iter()
                .filter(|r| label(r) == pairing && r.mix == mix)
                .collect();
            let mut ms: Vec<f64> = runs
                .iter()
                .filter(|r| r.connected)
                .filter_map(|r| r.connect_ms)
                .collect();
            ms.sort_by(f64::total_cmp);
            let path = |p: &str| {
                runs.iter()
                    .filter(|r| r.connected && r.path.as_deref() == Some(p))
                    .count()
            };
            let mut upgrades: Vec<f64> = runs
                .iter()
                .filter(|r| r.connected && r.path.as_deref() == Some("upgraded"))
                .filter_map(|r| r.upgraded_ms)
                .collect();
            upgrades.sort_by(f64::total_cmp);
            let mut errors = BTreeMap::new();
            for e in runs.iter().filter_map(|r| r.error.as_ref()) {
                *errors.entry(short_error(e)).or_insert(0) += 1;
            }
            Summary {
                connected: runs.iter().filter(|r| r.connected).count(),
                runs: runs.len(),
                median_ms: quantile(&ms, 0.5),
                p90_ms: quantile(&ms, 0.9),
                max_ms: ms.last().copied(),
                direct: path("direct"),
                relayed: path("relayed"),
                upgraded: path("upgraded"),
                upgrade_median_ms: quantile(&upgrades, 0.5),
                errors,
                pairing,
                mix,
            }
        })
        .collect()
}

/// Errors are grouped in the table, so keep them short and free of run-specific detail.
fn short_error(e: &str) -> String {
    let first = e.lines().next().unwrap_or_default();
    match first.char_indices().nth(90) {
        Some((cut, _)) => format!("{}…", &first[..cut]),
        None => first.to_string(),
    }
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 10_000.0 => format!("{:.1} s", v / 1000.0),
        Some(v) => format!("{v:.0}"),
        None => "–".into(),
    }
}

/// How the connected runs' streams ran: `3 direct`, `2 upgraded (median 4.1 s), 1 relayed`.
fn path_cell(s: &Summary) -> String {
    let mut parts = Vec::new();
    if s.direct > 0 {
        parts.push(format!("{} direct", s.direct));
    }
    if s.upgraded > 0 {
        let median = match s.upgrade_median_ms {
            Some(m) if m >= 10_000.0 => format!(" (median {:.1} s)", m / 1000.0),
            Some(m) => format!(" (median {m:.0} ms)"),
            None => String::new(),
        };
        parts.push(format!("{} upgraded{median}", s.upgraded));
    }
    if s.relayed > 0 {
        parts.push(format!("{} relayed", s.relayed));
    }
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join(", ")
    }
}

/// The markdown table `--report` prints (and docs/benchmarks.md quotes).
pub fn table(summaries: &[Summary]) -> String {
    let mut out = String::from(
        "| pairing (client NAT - server NAT) | client → server | connected | connect ms median | p90 | max | path | errors |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for s in summaries {
        let mix = s.mix.replace('-', " → ");
        let errors = if s.errors.is_empty() {
            "–".to_string()
        } else {
            s.errors
                .iter()
                .map(|(e, n)| format!("{e} ×{n}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        out.push_str(&format!(
            "| {} | {} | {}/{} | {} | {} | {} | {} | {} |\n",
            s.pairing,
            mix,
            s.connected,
            s.runs,
            ms(s.median_ms),
            ms(s.p90_ms),
            ms(s.max_ms),
            path_cell(s),
            errors
        ));
    }
    out
}

/// Writes every run and the summaries as one JSON document.
pub fn write_json(file: &Path, results: &[RunResult]) -> Result<(), NatlabError> {
    let doc = serde_json::json!({
        "runs": results,
        "summary": summarize(results),
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| NatlabError::Io(e.to_string()))?;
    std::fs::write(file, text + "\n")
        .map_err(|e| NatlabError::Io(format!("{}: {e}", file.display())))
}

/// Reads the runs back from files [`write_json`] wrote.
pub fn read_json(file: &Path) -> Result<Vec<RunResult>, NatlabError> {
    #[derive(Deserialize)]
    struct Doc {
        runs: Vec<RunResult>,
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| NatlabError::Io(format!("{}: {e}", file.display())))?;
    let doc: Doc = serde_json::from_str(&text)
        .map_err(|e| NatlabError::Io(format!("{}: {e}", file.display())))?;
    Ok(doc.runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: Option<&str>, connected: bool, upgraded_ms: Option<f64>) -> RunResult {
        RunResult {
            pairing: "consistent-random+relay".into(),
            mix: "rs-rs".into(),
            run: 1,
            dht: "js".into(),
            relay: Some("rs".into()),
            extra_hops: 0,
            connected,
            connect_ms: connected.then_some(10.0),
            open_ms: None,
            error: (!connected).then(|| "TIMEOUT".into()),
            client_nat: None,
            server_nat: None,
            client_punches: None,
            server_punches: None,
            path: path.map(String::from),
            upgraded_ms,
            echoed_bytes: None,
            server_upgraded_ms: None,
            relay_pairings: None,
            log_dir: String::new(),
            took_s: 0.0,
        }
    }

    #[test]
    fn path_column_counts_connected_runs_by_path() {
        let runs = [
            run(Some("upgraded"), true, Some(4000.0)),
            run(Some("upgraded"), true, Some(12_000.0)),
            run(Some("upgraded"), true, Some(1000.0)),
            run(Some("relayed"), true, None),
            run(Some("direct"), true, None),
            // A failed run counts in neither.
            run(Some("relayed"), false, None),
        ];
        let s = summarize(&runs);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].direct, s[0].relayed, s[0].upgraded), (1, 1, 3));
        assert_eq!(
            path_cell(&s[0]),
            "1 direct, 3 upgraded (median 4000 ms), 1 relayed"
        );
        assert!(table(&s).contains("| 5/6 |"));
    }

    #[test]
    fn old_results_without_path_still_read() {
        let old = r#"{"pairing":"consistent-random","mix":"js-js","run":1,"dht":"js",
            "extra_hops":0,"connected":true,"connect_ms":5.0,"open_ms":4.0,"error":null,
            "client_nat":null,"server_nat":null,"client_punches":null,"server_punches":null,
            "log_dir":"x","took_s":1.0}"#;
        let r: RunResult = serde_json::from_str(old).expect("old record");
        assert_eq!((r.path.as_deref(), r.relay.as_deref()), (None, None));
        assert_eq!(path_cell(&summarize(&[r])[0]), "–");
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(5.0));
        assert_eq!(quantile(&v, 0.9), Some(9.0));
        assert_eq!(quantile(&[7.0], 0.9), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
