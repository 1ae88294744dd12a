//! Parameter initialisation from the model's `init` clauses.

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal, Uniform};
use recc_compiler::interp::{EvalError, Params};
use recc_compiler::ir::Graph;
use recc_compiler::model::{Constraint, Init};

/// Fresh parameters for `g`: each table drawn from its `init`, reproducibly
/// from `seed`. Constrained tables start feasible: non-negative rows are
/// folded to their absolute values and ball rows are scaled inside the ball.
pub fn initialise(g: &Graph, domain_sizes: &[usize], seed: u64) -> Result<Params, EvalError> {
    let mut params = Params::zeros(g, domain_sizes)?;
    let mut rng = StdRng::seed_from_u64(seed);
    for (table, values) in g.tables.iter().zip(params.tables.iter_mut()) {
        fill(values, table.init, &mut rng)?;
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
    }
    Ok(params)
}

/// Rows on the Poincaré ball are kept at most this far from the centre.
pub const MAX_BALL_NORM: f64 = 1.0 - 1e-5;

fn fill(values: &mut Array2<f64>, init: Init, rng: &mut StdRng) -> Result<(), EvalError> {
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
