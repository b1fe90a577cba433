//! Scenario output in the series: additive output aggregated over iterations (or hook runs)
//! into a fixed number of buckets by [`OutputAggregator`], and complete output of a few
//! sampled iterations kept by [`CompleteSampler`], with the caps that bound both.
//!
//! Apart from the rest of the series because it reads Rally's free-form output JSON rather
//! than the records' fixed fields; the HTML report also uses the aggregator for hook output.

use serde::Serialize;
use serde_json::Value;

use super::NamedSeries;
use super::buckets::{CoarseMetric, MeanBuckets};
use crate::chunk::IterationRecord;
use crate::stats::StatsRow;

/// Distinct additive output charts aggregated (by title).
pub const MAX_ADDITIVE_CHARTS: usize = 16;
/// Distinct names per additive chart.
pub const MAX_ADDITIVE_SERIES: usize = 16;
/// StatsTable rows over all additive charts (each holds a coarse histogram).
pub const MAX_TABLE_ROWS: usize = 64;
/// Iterations whose complete output is kept.
pub const MAX_COMPLETE_SAMPLES: usize = 6;
/// Largest complete output kept for one iteration, as JSON bytes.
pub const MAX_COMPLETE_BYTES: usize = 256 * 1024;
/// The first iterations with complete output that are always kept.
const FIRST_COMPLETE: u64 = 3;

/// An additive output chart aggregated over iterations (or hook runs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdditiveChart {
    pub title: String,
    pub description: String,
    /// Y axis label.
    pub label: String,
    /// X axis label.
    pub axis_label: String,
    pub plugin: String,
    pub data: AdditiveData,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AdditiveData {
    /// `StatsTable`: statistics of each name's values (success is always `None`).
    Table { rows: Vec<StatsRow> },
    /// `StackedArea`, `Lines`: mean value per bucket; bucket `i` is centred at
    /// `origin + (i + 0.5) * step` on the X axis.
    Series {
        origin: f64,
        step: f64,
        series: Vec<NamedSeries>,
    },
    /// `Pie`: each name's sum over all iterations.
    Pie { slices: Vec<(String, f64)> },
}

/// The complete output of one iteration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompleteSample {
    pub iteration: u64,
    pub timestamp: f64,
    pub charts: Vec<Value>,
}

/// The complete output of a few iterations (see [`super::WorkloadSeries::complete`]).
#[derive(Debug, Clone, Default)]
pub(super) struct CompleteSampler {
    samples: Vec<CompleteSample>,
    /// Iterations with complete output seen so far.
    seen: u64,
}

impl CompleteSampler {
    /// Keeps the first [`FIRST_COMPLETE`] outputs and then those at power-of-two positions,
    /// dropping the oldest of the latter beyond [`MAX_COMPLETE_SAMPLES`]: at most log2(N)
    /// copies over the whole run, and samples from its start, middle and end.
    pub(super) fn add(&mut self, record: &IterationRecord, charts: &[Value]) {
        self.seen += 1;
        let n = self.seen;
        if n > FIRST_COMPLETE && !n.is_power_of_two() {
            return;
        }
        if self.samples.len() >= MAX_COMPLETE_SAMPLES {
            self.samples.remove(FIRST_COMPLETE as usize);
        }
        let size = serde_json::to_string(charts).map_or(usize::MAX, |s| s.len());
        let charts = if size <= MAX_COMPLETE_BYTES {
            charts.to_vec()
        } else {
            vec![serde_json::json!({
                "title": "Output too large",
                "chart_plugin": "TextArea",
                "data": [format!("{size} bytes of complete output are not included in the report.")],
            })]
        };
        self.samples.push(CompleteSample {
            iteration: record.iteration,
            timestamp: record.timestamp,
            charts,
        });
    }

    pub(super) fn finish(self) -> Vec<CompleteSample> {
        self.samples
    }
}

/// Aggregates additive output items (Rally's `{title, chart_plugin, data: [[name, number],
/// …]}`) over iterations or hook runs, into a fixed number of buckets.
#[derive(Debug, Clone)]
pub(crate) struct OutputAggregator {
    buckets: usize,
    origin: f64,
    step: f64,
    charts: Vec<AdditiveAcc>,
    table_rows: usize,
    truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AdditiveKind {
    Table,
    Series,
    Pie,
}

#[derive(Debug, Clone)]
struct AdditiveAcc {
    title: String,
    description: String,
    label: String,
    axis_label: String,
    plugin: String,
    kind: AdditiveKind,
    names: Vec<NameAcc>,
}

#[derive(Debug, Clone)]
struct NameAcc {
    name: String,
    table: Option<Box<CoarseMetric>>,
    means: Option<MeanBuckets>,
    total: f64,
}

impl OutputAggregator {
    /// `buckets` X positions; bucket `i` is drawn at `origin + (i + 0.5) * step`.
    pub(crate) fn new(buckets: usize, origin: f64, step: f64) -> OutputAggregator {
        OutputAggregator {
            buckets: buckets.max(1),
            origin,
            step,
            charts: Vec::new(),
            table_rows: 0,
            truncated: false,
        }
    }

    pub(crate) fn add(&mut self, bucket: usize, items: &[Value]) {
        let bucket = bucket.min(self.buckets - 1);
        for item in items {
            let Some(i) = self.chart_index(item) else {
                continue;
            };
            let Some(data) = item.get("data").and_then(Value::as_array) else {
                continue;
            };
            for pair in data {
                let name = pair.get(0).and_then(Value::as_str);
                let value = pair.get(1).and_then(Value::as_f64);
                if let (Some(name), Some(value)) = (name, value) {
                    let added =
                        self.charts[i].add(name, value, bucket, self.buckets, &mut self.table_rows);
                    self.truncated |= !added;
                }
            }
        }
    }

    /// The chart an item adds to, created on first sight; `None` beyond the cap or for an
    /// item without a title.
    fn chart_index(&mut self, item: &Value) -> Option<usize> {
        let text = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or("");
        let title = item.get("title").and_then(Value::as_str)?;
        if let Some(i) = self.charts.iter().position(|c| c.title == title) {
            return Some(i);
        }
        if self.charts.len() >= MAX_ADDITIVE_CHARTS {
            self.truncated = true;
            return None;
        }
        let plugin = text("chart_plugin");
        self.charts.push(AdditiveAcc {
            title: title.to_string(),
            description: text("description").to_string(),
            label: text("label").to_string(),
            axis_label: text("axis_label").to_string(),
            plugin: plugin.to_string(),
            kind: match plugin {
                "StatsTable" => AdditiveKind::Table,
                "Pie" => AdditiveKind::Pie,
                _ => AdditiveKind::Series,
            },
            names: Vec::new(),
        });
        Some(self.charts.len() - 1)
    }

    pub(crate) fn is_truncated(&self) -> bool {
        self.truncated
    }

    pub(crate) fn finish(self) -> Vec<AdditiveChart> {
        let (origin, step) = (self.origin, self.step);
        self.charts
            .into_iter()
            .map(|c| c.finish(origin, step))
            .collect()
    }
}

impl AdditiveAcc {
    /// Adds one value; false when it was dropped by a cap.
    fn add(
        &mut self,
        name: &str,
        value: f64,
        bucket: usize,
        buckets: usize,
        table_rows: &mut usize,
    ) -> bool {
        if !value.is_finite() {
            return true;
        }
        let i = match self.names.iter().position(|n| n.name == name) {
            Some(i) => i,
            None => {
                if self.names.len() >= MAX_ADDITIVE_SERIES
                    || (self.kind == AdditiveKind::Table && *table_rows >= MAX_TABLE_ROWS)
                {
                    return false;
                }
                *table_rows += usize::from(self.kind == AdditiveKind::Table);
                self.names.push(NameAcc {
                    name: name.to_string(),
                    table: (self.kind == AdditiveKind::Table)
                        .then(|| Box::new(CoarseMetric::values())),
                    means: (self.kind == AdditiveKind::Series).then(|| MeanBuckets::new(buckets)),
                    total: 0.0,
                });
                self.names.len() - 1
            }
        };
        let acc = &mut self.names[i];
        acc.total += value;
        if let Some(t) = &mut acc.table {
            t.add(value);
        }
        if let Some(m) = &mut acc.means {
            m.add(bucket, value);
        }
        true
    }

    fn finish(self, origin: f64, step: f64) -> AdditiveChart {
        let data = match self.kind {
            AdditiveKind::Table => AdditiveData::Table {
                rows: self
                    .names
                    .iter()
                    .filter_map(|n| n.table.as_ref().map(|t| t.row(n.name.clone())))
                    .collect(),
            },
            AdditiveKind::Pie => AdditiveData::Pie {
                slices: self
                    .names
                    .iter()
                    .map(|n| (n.name.clone(), n.total))
                    .collect(),
            },
            AdditiveKind::Series => AdditiveData::Series {
                origin,
                step,
                series: self
                    .names
                    .iter()
                    .filter_map(|n| {
                        n.means.as_ref().map(|m| NamedSeries {
                            name: n.name.clone(),
                            values: m.means(),
                        })
                    })
                    .collect(),
            },
        };
        AdditiveChart {
            title: self.title,
            description: self.description,
            label: self.label,
            axis_label: self.axis_label,
            plugin: self.plugin,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::SeriesBuilder;
    use super::super::tests::{names, record};
    use super::*;
    use crate::chunk::Output;
    use serde_json::json;

    fn dummy_output(v: i64) -> Output {
        Output {
            additive: vec![
                json!({"title": "T", "chart_plugin": "StatsTable", "data": [["foo stat", v]]}),
                json!({"title": "A", "chart_plugin": "StackedArea", "data": [["x", v], ["y", 1]]}),
                json!({"title": "P", "chart_plugin": "Pie", "data": [["spam", v]]}),
            ],
            complete: vec![
                json!({"title": "C", "chart_plugin": "TextArea", "data": [v.to_string()]}),
            ],
        }
    }

    #[test]
    fn outputs_are_aggregated_and_sampled() {
        let mut b = SeriesBuilder::new(0.0, 1.0, names());
        for i in 1..=100i64 {
            let mut r = record(i as u64, 0.0, 0.1, false);
            r.output = Some(Box::new(dummy_output(i)));
            b.add(&r, &[], "local");
        }
        let s = b.finish();
        assert_eq!(s.additive.len(), 3);
        match &s.additive[0].data {
            AdditiveData::Table { rows } => {
                assert_eq!(rows[0].name, "foo stat");
                assert_eq!(rows[0].count, 100);
                assert_eq!((rows[0].min, rows[0].max), (Some(1.0), Some(100.0)));
                assert_eq!(rows[0].avg, Some(50.5));
            }
            other => panic!("{other:?}"),
        }
        match &s.additive[1].data {
            AdditiveData::Series { series, .. } => {
                assert_eq!(series.len(), 2);
                assert_eq!(series[0].values[0], Some(50.5));
                assert_eq!(series[1].values[0], Some(1.0));
            }
            other => panic!("{other:?}"),
        }
        match &s.additive[2].data {
            AdditiveData::Pie { slices } => assert_eq!(slices, &[("spam".to_string(), 5050.0)]),
            other => panic!("{other:?}"),
        }
        let sampled: Vec<u64> = s.complete.iter().map(|c| c.iteration).collect();
        assert_eq!(sampled, [1, 2, 3, 16, 32, 64]);
    }
}
