//! Training progress as burn-train reports it, shown as one readable line
//! every few seconds and a summary per epoch.

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};

/// Training progress as one readable line every few seconds and a summary
/// per epoch (burn-train's plain renderer prints a debug dump per batch).
pub(super) struct LineRenderer {
    names: std::collections::HashMap<MetricId, String>,
    /// Latest formatted value of each metric, by name, for the running split.
    values: std::collections::BTreeMap<String, String>,
    split: String,
    epoch: usize,
    epochs: usize,
    total: usize,
    started: std::time::Instant,
    last_line: std::time::Instant,
}

impl LineRenderer {
    pub(super) fn new() -> Self {
        let now = std::time::Instant::now();
        Self {
            names: Default::default(),
            values: Default::default(),
            split: String::new(),
            epoch: 0,
            epochs: 0,
            total: 0,
            started: now,
            last_line: now,
        }
    }

    fn record(&mut self, state: MetricState) {
        let entry = match state {
            MetricState::Generic(e) | MetricState::Numeric(e, _) => e,
        };
        let name = self
            .names
            .get(&entry.metric_id)
            .cloned()
            .unwrap_or_default();
        self.values.insert(name, entry.serialized_entry.formatted);
    }

    fn metrics(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

impl MetricsRendererTraining for LineRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.record(state);
    }
    fn update_valid(&mut self, state: MetricState) {
        self.record(state);
    }
}

impl MetricsRendererEvaluation for LineRenderer {
    fn update_test(&mut self, _name: EvaluationName, state: MetricState) {
        self.record(state);
    }
}

impl TrainingProgressLogger for LineRenderer {
    fn start(&mut self, epochs: usize, starting_epoch: usize, _: Option<usize>, _: Option<&str>) {
        self.epochs = epochs;
        self.epoch = starting_epoch.max(1);
        eprintln!("training for {epochs} epochs, from epoch {}", self.epoch);
    }
    fn update_epoch(&mut self, epoch: usize) {
        self.epoch = epoch + 1;
    }
    fn start_split(&mut self, split: &str, total_items: usize) {
        self.split = split.to_string();
        self.total = total_items;
        self.values.clear();
        self.started = std::time::Instant::now();
    }
    fn update_split(&mut self, items: usize) {
        if self.last_line.elapsed().as_secs() >= 10 {
            self.last_line = std::time::Instant::now();
            let rate = items as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "epoch {}/{} {} {items}/{} ({rate:.0} img/s) {}",
                self.epoch,
                self.epochs,
                self.split,
                self.total,
                self.metrics()
            );
        }
    }
    fn end_split(&mut self) {
        eprintln!(
            "epoch {}/{} {} done in {:.0} s: {}",
            self.epoch,
            self.epochs,
            self.split,
            self.started.elapsed().as_secs_f64(),
            self.metrics()
        );
    }
    fn end(&mut self) {
        eprintln!("training ended");
    }
    fn log_event_training(&mut self, event: String) {
        // burn-train reports every step as an "Iteration" event: the lines above cover those.
        if event != "Iteration" {
            eprintln!("{event}");
        }
    }
}

impl EvaluationProgressLogger for LineRenderer {
    fn start_global_progress(&mut self, _: usize) {}
    fn start_test(&mut self, name: &str, total_items: usize) {
        self.start_split(name, total_items);
    }
    fn update_test_progress(&mut self, items: usize) {
        self.update_split(items);
    }
    fn end_test(&mut self) {
        self.end_split();
    }
    fn end_global_progress(&mut self) {}
    fn log_event_evaluation(&mut self, event: String) {
        eprintln!("{event}");
    }
}

impl MetricsRenderer for LineRenderer {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id, definition.name.to_string());
    }
}
