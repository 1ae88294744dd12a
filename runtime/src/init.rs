//! Parameter initialisation from the model's `init` clauses, and the
//! memory the parameters will need, checked before anything is allocated.

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal, Uniform};
use recc_compiler::interp::{EvalError, Params};
use recc_compiler::ir::Graph;
use recc_compiler::model::{Constraint, Init, Optimizer};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The parameters do not fit in memory: what they need and why.
    #[error("{0}")]
    Memory(String),
}

/// Fresh parameters for `g`: each table drawn from its `init`, reproducibly
/// from `seed`. Constrained tables start feasible: non-negative rows are
/// folded to their absolute values and ball rows are scaled inside the ball.
pub fn initialise(g: &Graph, domain_sizes: &[usize], seed: u64) -> Result<Params, InitError> {
    let mut tables = Vec::with_capacity(g.tables.len());
    initialise_each(g, domain_sizes, seed, |_, values| {
        tables.push(values);
        Ok(())
    })?;
    Ok(Params {
        domain_sizes: domain_sizes.to_vec(),
        tables,
    })
}

/// [`initialise`] one table at a time: `each` gets every table, in order,
/// as soon as it is drawn, so a caller that converts tables (to f32) never
/// holds all of them twice.
pub fn initialise_each(
    g: &Graph,
    domain_sizes: &[usize],
    seed: u64,
    mut each: impl FnMut(usize, Array2<f64>) -> Result<(), InitError>,
) -> Result<(), InitError> {
    if domain_sizes.len() != g.domains.len() {
        return Err(EvalError::DomainSizes {
            expected: g.domains.len(),
            found: domain_sizes.len(),
        }
        .into());
    }
    let mut rng = StdRng::seed_from_u64(seed);
    for (k, table) in g.tables.iter().enumerate() {
        let rows = table.domain.map_or(1, |d| domain_sizes[d.index()]);
        let lanes = table.shape.len();
        let mut values = Array2::from_shape_vec(
            (rows, lanes),
            zeroed::<f64>(rows.saturating_mul(lanes), &table.name)?,
        )
        .map_err(|e| EvalError::Internal(e.to_string()))?;
        fill(&mut values, table.init, &mut rng)?;
        match table.constraint {
            Constraint::None => {}
            Constraint::Nonneg => values.mapv_inplace(f64::abs),
            Constraint::Ball => {
                for mut row in values.rows_mut() {
                    let norm = row.dot(&row).sqrt();
                    if norm >= MAX_BALL_NORM {
                        row *= MAX_BALL_NORM / norm;
                    }
                }
            }
        }
        each(k, values)?;
    }
    Ok(())
}

/// `n` zeros, or an error naming `what` when they cannot be allocated
/// (instead of the process aborting).
pub fn zeroed<T: Clone + Default>(n: usize, what: &str) -> Result<Vec<T>, InitError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        InitError::Memory(format!(
            "cannot allocate {} for `{what}`",
            bytes(n as u128 * std::mem::size_of::<T>() as u128)
        ))
    })?;
    v.resize(n, T::default());
    Ok(v)
}

/// Bytes in a human unit: `52.4 GB`.
pub fn bytes(n: u128) -> String {
    let n = n as f64;
    match n {
        _ if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        _ if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        _ if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        _ => format!("{n} bytes"),
    }
}

/// Which trainer will hold the parameters: they keep different copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// The native step: f32 values and optimiser state while training; the
    /// f64 parameters training returns, built table by table at the end.
    Native,
    /// The reference evaluator: f64 values and optimiser state throughout.
    Evaluator,
}

/// What the parameters of `g` will need at the most, in bytes, and a line
/// per table saying why (`p[user]: 300000 rows × 65536 lanes × 12 bytes`).
pub fn parameter_bytes(
    g: &Graph,
    domain_sizes: &[usize],
    optimizer: Optimizer,
    holder: Holder,
) -> (u128, Vec<String>) {
    // Optimiser state per value and per row, in the holder's precision.
    let (state, per_row) = match optimizer {
        Optimizer::Sgd => (0, 0),
        Optimizer::Adagrad => (1, 0),
        Optimizer::Adam { .. } => (2, 4),
    };
    let (per_value, why) = match holder {
        // Training holds f32 values and state; the trained f64 values
        // replace them table by table, so the larger of the two counts.
        Holder::Native => {
            let training = 4 * (1 + state);
            if training >= 8 {
                (training, format!("f32 values + {optimizer} state"))
            } else {
                (8, "f64 values as returned".to_string())
            }
        }
        Holder::Evaluator => (8 * (1 + state), format!("f64 values + {optimizer} state")),
    };
    let mut total: u128 = 0;
    let mut lines = Vec::new();
    for table in &g.tables {
        let rows = table
            .domain
            .map_or(1, |d| domain_sizes.get(d.index()).copied().unwrap_or(0));
        let lanes = table.shape.len();
        // Touched flags, and Adam's step counts.
        let row_bytes = 1 + per_row;
        let need = rows as u128 * (lanes as u128 * per_value as u128 + row_bytes as u128);
        total += need;
        let domain = table
            .domain
            .map(|d| format!("[{}]", g.domains[d.index()].name))
            .unwrap_or_default();
        lines.push(format!(
            "`{}{domain}`: {rows} rows × {lanes} lanes × {per_value} bytes ({why}) = {}",
            table.name,
            bytes(need)
        ));
    }
    (total, lines)
}

/// Refuse parameters that need more memory than the machine has available
/// (`MemAvailable` of `/proc/meminfo`; no check where there is none), with
/// the size and its cause table by table.
pub fn check_memory(
    g: &Graph,
    domain_sizes: &[usize],
    optimizer: Optimizer,
    holder: Holder,
) -> Result<(), InitError> {
    let Some(available) = available_memory() else {
        return Ok(());
    };
    check_memory_within(g, domain_sizes, optimizer, holder, available)
}

/// [`check_memory`] against `available` bytes.
pub fn check_memory_within(
    g: &Graph,
    domain_sizes: &[usize],
    optimizer: Optimizer,
    holder: Holder,
    available: u128,
) -> Result<(), InitError> {
    let (need, mut lines) = parameter_bytes(g, domain_sizes, optimizer, holder);
    if need <= available {
        return Ok(());
    }
    // The largest tables first: they are the cause.
    let sizes = parameter_sizes(g, domain_sizes);
    let mut order: Vec<usize> = (0..lines.len()).collect();
    order.sort_by_key(|&k| std::cmp::Reverse(sizes[k]));
    lines = order
        .into_iter()
        .take(5)
        .map(|k| lines[k].clone())
        .collect();
    Err(InitError::Memory(format!(
        "the parameters of `{}` need {} but only {} of memory is available:\n  {}\n\
         use fewer lanes or a smaller domain (fewer ids), or train where there is more memory",
        g.name,
        bytes(need),
        bytes(available),
        lines.join("\n  ")
    )))
}

/// Values per table (rows × lanes).
fn parameter_sizes(g: &Graph, domain_sizes: &[usize]) -> Vec<u128> {
    g.tables
        .iter()
        .map(|t| {
            let rows = t
                .domain
                .map_or(1, |d| domain_sizes.get(d.index()).copied().unwrap_or(0));
            rows as u128 * t.shape.len() as u128
        })
        .collect()
}

/// `MemAvailable` plus free swap, from `/proc/meminfo`, in bytes.
fn available_memory() -> Option<u128> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u128> {
        let line = info.lines().find(|l| l.starts_with(name))?;
        let kb: u128 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    };
    Some(field("MemAvailable:")? + field("SwapFree:").unwrap_or(0))
}

/// Rows on the Poincaré ball are kept at most this far from the centre.
pub const MAX_BALL_NORM: f64 = 1.0 - 1e-5;

fn fill(values: &mut Array2<f64>, init: Init, rng: &mut StdRng) -> Result<(), InitError> {
    let bad = |e: String| EvalError::Internal(format!("invalid init: {e}"));
    match init {
        Init::Zeros => values.fill(0.0),
        Init::Constant(c) => values.fill(c),
        Init::Normal { mean, std } => {
            let d = Normal::new(mean, std).map_err(|e| bad(e.to_string()))?;
            values.mapv_inplace(|_| d.sample(rng));
        }
        Init::Uniform { low, high } => {
            let d = Uniform::new(low, high).map_err(|e| bad(e.to_string()))?;
            values.mapv_inplace(|_| d.sample(rng));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use recc_compiler::{compile, forward_graph};

    fn graph(src: &str) -> Graph {
        let c = compile("t.rec", src);
        let Some(m) = c.model.as_ref() else {
            panic!("{}", c.render_diagnostics())
        };
        match forward_graph(m) {
            Ok(g) => g,
            Err(e) => panic!("{e}"),
        }
    }

    const SRC: &str = "input u: user\ninput r: real\n\
        param b: real init constant(3.5)\n\
        param p[user]: vec(8) init normal(1, 0.5)\n\
        param a[user]: vec(2) on ball init uniform(-3, 3)\n\
        param n[user]: vec(4) nonneg init normal(0, 1)\n\
        loss sq(b + dot(p[u], p[u]) + sum(a[u]) + sum(n[u]) - r)\n";

    #[test]
    fn tables_follow_their_init_and_constraints() {
        let g = graph(SRC);
        let params = match initialise(&g, &[2000], 1) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let by_name = |n: &str| {
            let i = g
                .tables
                .iter()
                .position(|t| t.name == n)
                .unwrap_or(usize::MAX);
            &params.tables[i]
        };
        assert_eq!(by_name("b")[(0, 0)], 3.5);
        let p = by_name("p");
        let mean = p.mean().unwrap_or(f64::NAN);
        let std = p.std(0.0);
        assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
        assert!((std - 0.5).abs() < 0.02, "std {std}");
        for row in by_name("a").rows() {
            assert!(row.dot(&row).sqrt() < 1.0);
        }
        assert!(by_name("n").iter().all(|x| *x >= 0.0));
    }

    #[test]
    fn a_seed_reproduces_and_another_differs() {
        let g = graph(SRC);
        let a = initialise(&g, &[10], 7).ok();
        let b = initialise(&g, &[10], 7).ok();
        let c = initialise(&g, &[10], 8).ok();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn wrong_domain_count_is_an_error() {
        let g = graph(SRC);
        assert!(initialise(&g, &[], 1).is_err());
    }
}
