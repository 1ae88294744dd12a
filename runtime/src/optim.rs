//! Optimisers: SGD, Adagrad and Adam, applied row by row.
//!
//! Input: one example's gradients by table row. Output: the rows updated in
//! place. State is lazy and per row: a row's accumulators change only when
//! the row is touched, and Adam corrects its bias with the row's own step
//! count, so an item seen once a epoch is not treated as seen every step.
//! Constraints are kept after every step: `nonneg` rows are clipped at zero;
//! `on ball` rows take a Riemannian step (the gradient rescaled by the
//! Poincaré metric) and are projected back inside the ball.

use crate::init::MAX_BALL_NORM;
use ndarray::Array2;
use recc_compiler::interp::Params;
use recc_compiler::ir::{Graph, TableId};
use recc_compiler::model::{Constraint, Optimizer};

/// Added to Adagrad's and Adam's denominators so a zero gradient is a zero step.
const EPSILON: f64 = 1e-8;

/// A lane of optimiser state beyond f32's range: the native step keeps its
/// state in f32, where a gradient whose square overflows makes Adagrad's
/// or Adam's step silently zero. Both backends stop there as diverged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StateOverflow {
    pub table: usize,
    pub row: usize,
    /// Which accumulator: "squared-gradient sum", "first moment" or "second moment".
    pub state: &'static str,
    pub value: f64,
}

/// The optimiser and its per-row state.
#[derive(Clone, Debug)]
pub struct OptimiserState {
    kind: Optimizer,
    constraints: Vec<Constraint>,
    /// Adagrad's squared-gradient sum, or Adam's first moment.
    first: Vec<Array2<f64>>,
    /// Adam's second moment.
    second: Vec<Array2<f64>>,
    /// Adam: updates each row has had.
    steps: Vec<Vec<u32>>,
}

impl OptimiserState {
    pub fn new(kind: Optimizer, g: &Graph, params: &Params) -> OptimiserState {
        let shaped = |on: bool| {
            params
                .tables
                .iter()
                .map(|t| {
                    if on {
                        Array2::zeros(t.dim())
                    } else {
                        Array2::zeros((0, 0))
                    }
                })
                .collect::<Vec<_>>()
        };
        let (first, second) = match kind {
            Optimizer::Sgd => (shaped(false), shaped(false)),
            Optimizer::Adagrad => (shaped(true), shaped(false)),
            Optimizer::Adam { .. } => (shaped(true), shaped(true)),
        };
        let steps = match kind {
            Optimizer::Adam { .. } => params.tables.iter().map(|t| vec![0; t.nrows()]).collect(),
            _ => Vec::new(),
        };
        OptimiserState {
            kind,
            constraints: g.tables.iter().map(|t| t.constraint).collect(),
            first,
            second,
            steps,
        }
    }

    /// The first lane of Adagrad's or Adam's state that f32 cannot hold.
    pub fn first_beyond_f32(&self) -> Option<StateOverflow> {
        let names: [&'static str; 2] = match self.kind {
            Optimizer::Adagrad => ["squared-gradient sum", ""],
            Optimizer::Adam { .. } => ["first moment", "second moment"],
            Optimizer::Sgd => return None,
        };
        for (state, tables) in names.into_iter().zip([&self.first, &self.second]) {
            for (table, values) in tables.iter().enumerate() {
                let beyond = |v: &f64| v.is_nan() || v.abs() > f64::from(f32::MAX);
                if let Some(((row, _), &value)) = values.indexed_iter().find(|(_, v)| beyond(v)) {
                    return Some(StateOverflow {
                        table,
                        row,
                        state,
                        value,
                    });
                }
            }
        }
        None
    }

    /// Apply `gradient` to row `row` of `table` with learning rate `lr`.
    pub fn step(
        &mut self,
        params: &mut Params,
        table: TableId,
        row: usize,
        gradient: &[f64],
        lr: f64,
    ) {
        let t = table.index();
        let Some(mut values) = params.tables.get_mut(t).map(|v| v.row_mut(row)) else {
            return;
        };
        let constraint = self.constraints[t];
        // The Poincaré ball's metric shrinks steps near the boundary.
        let scale = if constraint == Constraint::Ball {
            let norm2: f64 = values.iter().map(|v| v * v).sum();
            let s = 1.0 - norm2;
            s * s / 4.0
        } else {
            1.0
        };
        match self.kind {
            Optimizer::Sgd => {
                for (v, g) in values.iter_mut().zip(gradient) {
                    *v -= lr * scale * g;
                }
            }
            Optimizer::Adagrad => {
                let mut acc = self.first[t].row_mut(row);
                for ((v, a), g) in values.iter_mut().zip(acc.iter_mut()).zip(gradient) {
                    let g = scale * g;
                    *a += g * g;
                    *v -= lr * g / (a.sqrt() + EPSILON);
                }
            }
            Optimizer::Adam { beta1, beta2 } => {
                let n = &mut self.steps[t][row];
                *n = n.saturating_add(1);
                let k = *n as i32;
                let c1 = 1.0 - beta1.powi(k);
                let c2 = 1.0 - beta2.powi(k);
                let mut m = self.first[t].row_mut(row);
                let mut s = self.second[t].row_mut(row);
                for (((v, m), s), g) in values
                    .iter_mut()
                    .zip(m.iter_mut())
                    .zip(s.iter_mut())
                    .zip(gradient)
                {
                    let g = scale * g;
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *s = beta2 * *s + (1.0 - beta2) * g * g;
                    *v -= lr * (*m / c1) / ((*s / c2).sqrt() + EPSILON);
                }
            }
        }
        match constraint {
            Constraint::None => {}
            Constraint::Nonneg => values.mapv_inplace(|v| v.max(0.0)),
            Constraint::Ball => {
                let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
                if norm >= MAX_BALL_NORM {
                    values.mapv_inplace(|v| v * MAX_BALL_NORM / norm);
                }
            }
        }
    }
}

/// How the learning rate changes over training.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Schedule {
    /// The same rate throughout.
    #[default]
    Constant,
    /// Falling linearly to a tenth of the rate by the last epoch.
    Linear,
    /// Half a cosine from the rate down to a tenth of it.
    Cosine,
    /// Multiplied by `factor` every `every` epochs.
    Step { factor: f64, every: usize },
}

impl Schedule {
    /// The rate for `epoch` (0-based) of `epochs`.
    pub fn rate(self, lr: f64, epoch: usize, epochs: usize) -> f64 {
        let progress = if epochs > 1 {
            epoch as f64 / (epochs - 1) as f64
        } else {
            0.0
        };
        match self {
            Schedule::Constant => lr,
            Schedule::Linear => lr * (1.0 - 0.9 * progress),
            Schedule::Cosine => lr * (0.1 + 0.45 * (1.0 + (std::f64::consts::PI * progress).cos())),
            Schedule::Step { factor, every } => lr * factor.powi((epoch / every.max(1)) as i32),
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Schedule, String> {
        let bad = || {
            format!(
                "unknown schedule `{s}`; expected constant, linear, cosine or step:FACTOR:EPOCHS (e.g. step:0.5:10)"
            )
        };
        match s {
            "constant" => Ok(Schedule::Constant),
            "linear" => Ok(Schedule::Linear),
            "cosine" => Ok(Schedule::Cosine),
            _ => {
                let mut parts = s.split(':');
                if parts.next() != Some("step") {
                    return Err(bad());
                }
                let factor: f64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
                let every: usize = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
                if parts.next().is_some() {
                    return Err(bad());
                }
                // The factor multiplies the rate every EPOCHS epochs: above
                // 1 the rate would grow without end.
                if !(factor > 0.0 && factor <= 1.0) {
                    return Err(format!(
                        "schedule `{s}`: the factor {factor} must be between 0 and 1 \
                         (above 0, at most 1), e.g. step:0.5:{every}"
                    ));
                }
                if every == 0 {
                    return Err(format!(
                        "schedule `{s}`: EPOCHS must be at least 1, e.g. step:{factor}:10"
                    ));
                }
                Ok(Schedule::Step { factor, every })
            }
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Constant => write!(f, "constant"),
            Schedule::Linear => write!(f, "linear"),
            Schedule::Cosine => write!(f, "cosine"),
            Schedule::Step { factor, every } => write!(f, "step:{factor}:{every}"),
        }
    }
}
