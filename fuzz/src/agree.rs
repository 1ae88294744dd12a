//! The JIT against the reference evaluator, as `runtime/tests/native.rs`
//! compares them: the random model generator, parameters compared to a
//! relative 1e-4 after training, and every step compared from the same
//! parameters (`lockstep`) where trajectories drift. Copied from there so
//! the harness tests exactly what that file tests, on many more models.

#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recc_compiler::interp::{evaluate, Example, Params};
use recc_compiler::ir::TableId;
use recc_compiler::model::{Model, Optimizer};
use recc_runtime::data::Dataset;
use recc_runtime::init::initialise;
use recc_runtime::native::{Hyper, NativeParams, Runner, TableWords};
use recc_runtime::optim::OptimiserState;
use recc_runtime::train::{self, Session, TrainError, Trained};

/// Parameters may differ by 1e-4 of their size (or absolutely, below 1).
pub const PARAM_TOLERANCE: f64 = 1e-4;

/// The largest elementwise `|jit − interp| / max(|interp|, 1)` over every
/// table, and where it is. A NaN on either side counts as infinite.
pub fn max_rel_diff(session: &Session, interp: &Params, jit: &Params) -> (f64, String) {
    let (d, t, row, lane) = worst_lane(interp, jit, 0.0, |_, _, _| 0.0, |_, _, _| false);
    (d, describe_lane(session, interp, jit, t, row, lane))
}

/// [`max_rel_diff`] as (difference, table, row, lane), less an absolute
/// `slack`, relative to the larger of the evaluator's value and the lane's
/// `operands` (a value computed as a difference carries the rounding of
/// what it was computed from), leaving out the lanes `skip` names.
fn worst_lane(
    interp: &Params,
    jit: &Params,
    slack: f64,
    operands: impl Fn(usize, usize, usize) -> f64,
    skip: impl Fn(usize, usize, usize) -> bool,
) -> (f64, usize, usize, usize) {
    let mut worst = (0.0, 0, 0, 0);
    assert_eq!(interp.tables.len(), jit.tables.len());
    for (k, (a, b)) in interp.tables.iter().zip(&jit.tables).enumerate() {
        assert_eq!(a.dim(), b.dim(), "table {k}");
        for (((row, lane), x), y) in a.indexed_iter().zip(b.iter()) {
            let d = ((y - x).abs() - slack).max(0.0) / x.abs().max(operands(k, row, lane)).max(1.0);
            let d = if (y - x).is_nan() { f64::INFINITY } else { d };
            if d > worst.0 && !skip(k, row, lane) {
                worst = (d, k, row, lane);
            }
        }
    }
    worst
}

fn describe_lane(
    session: &Session,
    interp: &Params,
    jit: &Params,
    t: usize,
    row: usize,
    lane: usize,
) -> String {
    let name = &session.gradient.tables[t].name;
    let lanes = interp.tables[t].ncols();
    format!(
        "{name}[{row}][{lane}] (of {lanes} lanes): interp {}, jit {}",
        interp.tables[t][[row, lane]],
        jit.tables[t][[row, lane]]
    )
}

/// `params` rounded to f32, so the evaluator starts where the kernel does.
pub fn rounded(params: &Params) -> Params {
    let mut p = params.clone();
    for t in &mut p.tables {
        t.mapv_inplace(|v| v as f32 as f64);
    }
    p
}

/// A parameter row's shape.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shp {
    S,
    V(usize),
    M(usize, usize),
}

impl std::fmt::Display for Shp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shp::S => write!(f, "real"),
            Shp::V(k) => write!(f, "vec({k})"),
            Shp::M(a, b) => write!(f, "mat({a}, {b})"),
        }
    }
}

struct RandomParam {
    name: String,
    /// `None` for a global.
    domain: Option<&'static str>,
    shape: Shp,
    attrs: String,
    variational: bool,
}

/// Vector sizes the generator draws from.
const SIZES: [usize; 6] = [1, 3, 4, 5, 8, 13];

/// Writes one random, valid model as `.rec` text.
pub struct ModelGen {
    rng: StdRng,
    params: Vec<RandomParam>,
    occupation: bool,
    week: bool,
    genre: bool,
    history: bool,
    /// Plain row lookups made, for a penalty.
    lookups: Vec<String>,
    /// Start every row at random values: see [`ModelGen::param_for`].
    random_init: bool,
}

impl ModelGen {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.random_range(0..xs.len())]
    }

    fn size(&mut self) -> usize {
        self.pick(&SIZES)
    }

    fn constant(&mut self) -> &'static str {
        self.pick(&["0.5", "2", "0.25", "1.5", "3"])
    }

    /// A parameter over `domain` of `shape`: an existing one or a new one.
    fn param(&mut self, domain: Option<&'static str>, shape: Shp) -> String {
        self.param_for(domain, shape, false)
    }

    /// [`ModelGen::param`]; one a bag looks up cannot be variational.
    fn param_for(&mut self, domain: Option<&'static str>, shape: Shp, bag: bool) -> String {
        let existing: Vec<usize> = (0..self.params.len())
            .filter(|&k| {
                let p = &self.params[k];
                p.domain == domain && p.shape == shape && !(bag && p.variational)
            })
            .collect();
        if !existing.is_empty() && self.chance(0.5) {
            let k = self.pick(&existing);
            return self.params[k].name.clone();
        }
        let name = format!("p{}", self.params.len());
        let roll = self.rng.random_range(0..100);
        let (attrs, variational) = match (domain, shape) {
            (Some(_), _) if roll < 8 => ("nonneg init uniform(0, 0.1)".to_string(), false),
            (Some(_), Shp::V(k)) if roll < 14 && k > 1 => {
                ("on ball init uniform(-0.01, 0.01)".to_string(), false)
            }
            (Some(_), Shp::S | Shp::V(_)) if roll < 20 && !bag => {
                ("variational init normal(0, 0.1)".to_string(), true)
            }
            // Adagrad's and Adam's first step on a lane is ±lr whatever the
            // gradient's size, so where rows start equal (zeros, a
            // constant) sums of them cancel to rounding noise, and the
            // sign of that noise, which f32 and f64 need not share, moves
            // a row by a whole step. Those start at random values only.
            _ if roll < 40 && !self.random_init => (String::new(), false),
            // A vector of equal lanes makes `softmax(x) * v` sum to the
            // same number for every x, up to rounding: a max over
            // negatives then picks among exact ties by their last bits.
            (_, Shp::S) if roll < 48 && !self.random_init => {
                ("init constant(0.1)".to_string(), false)
            }
            _ if roll < 60 => ("init uniform(-0.1, 0.1)".to_string(), false),
            _ => ("init normal(0, 0.1)".to_string(), false),
        };
        self.params.push(RandomParam {
            name: name.clone(),
            domain,
            shape,
            attrs,
            variational,
        });
        name
    }

    /// A parameter looked up with the example's index (or a global).
    fn leaf(&mut self, shape: Shp) -> String {
        let mut domains = vec![None, Some("user"), Some("item"), Some("user"), Some("item")];
        if self.occupation {
            domains.push(Some("occupation"));
        }
        if self.week {
            domains.push(Some("week"));
        }
        let domain = self.pick(&domains);
        let name = self.param(domain, shape);
        let index = match domain {
            None => return name,
            Some("user") => "u",
            Some("item") => "i",
            Some("occupation") => "o",
            _ => self.pick(&["t", "t", "t - 1", "t + 1"]),
        };
        let lookup = format!("{name}[{index}]");
        if !index.contains(' ') {
            self.lookups.push(lookup.clone());
        }
        lookup
    }

    /// A bag of rows reduced to `shape` (scalar or vector), if the model
    /// has a bag input.
    fn bag(&mut self, shape: Shp, depth: usize) -> Option<String> {
        let mut bags = Vec::new();
        if self.genre {
            bags.push(("genre", "g"));
        }
        if self.history {
            bags.push(("item", "h"));
        }
        if bags.is_empty() {
            return None;
        }
        let (domain, input) = self.pick(&bags);
        let reduce = self.pick(&["sum", "mean"]);
        if shape == Shp::S && self.chance(0.5) {
            let k = self.size();
            let y = self.param_for(Some(domain), Shp::V(k), true);
            return Some(if self.chance(0.5) {
                format!("{reduce}(sq({y}[{input}]))")
            } else {
                let v = self.vector(k, depth.saturating_sub(1));
                format!("{reduce}(dot({y}[{input}], {v}))")
            });
        }
        let y = self.param_for(Some(domain), shape, true);
        let lookup = format!("{y}[{input}]");
        Some(match self.rng.random_range(0..4) {
            0 => format!("{reduce}({lookup})"),
            1 => {
                let f = self.pick(&["tanh", "sigmoid", "relu"]);
                format!("{reduce}({f}({lookup}))")
            }
            2 => format!("{reduce}({lookup} * {})", self.constant()),
            _ => format!("{reduce}(exp(0.5 * tanh({lookup})))"),
        })
    }

    /// An elementwise function of `x`, kept in a tame range.
    ///
    /// The log is of `0.5 + sq(x)`, not `1 + sq(x)`: f32 keeps only the
    /// bits of a small `sq(x)` that fit beside the 1 (the language has no
    /// `log1p`), so `log(1 + sq(x))` with `|x| ≪ 1` is a few percent off in
    /// any f32 backend, and a product with it passes that on to other
    /// gradients. (`stdlib/geometry.rec` writes `arcosh1p` for the same
    /// reason.)
    fn unary(&mut self, x: String, scalar: bool) -> String {
        match self.rng.random_range(0..if scalar { 7 } else { 5 }) {
            0 => format!("sigmoid({x})"),
            1 => format!("tanh({x})"),
            2 => format!("relu({x})"),
            3 => format!("exp(0.5 * tanh({x}))"),
            4 => format!("-({x})"),
            5 => format!("log(0.5 + sq({x}))"),
            _ => format!("softplus({x})"),
        }
    }

    fn scalar(&mut self, depth: usize) -> String {
        if depth == 0 {
            return self.leaf(Shp::S);
        }
        let d = depth - 1;
        match self.rng.random_range(0..14) {
            0 | 1 => {
                let k = self.size();
                let (a, b) = (self.vector(k, d), self.vector(k, d));
                format!("dot({a}, {b})")
            }
            2 => {
                let k = self.size();
                let f = self.pick(&["sum", "mean"]);
                format!("{f}({})", self.vector(k, d))
            }
            3 => {
                let k = self.size();
                format!("0.1 * sq({})", self.vector(k, d))
            }
            4 => {
                let k = self.size();
                format!("log(0.5 + sq({}))", self.vector(k, d))
            }
            5 | 6 => {
                let op = self.pick(&["+", "-", "*"]);
                let (a, b) = (self.scalar(d), self.scalar(d));
                format!("({a} {op} {b})")
            }
            7 => {
                let c = self.constant();
                let op = self.pick(&["*", "/"]);
                format!("{} {op} {c}", self.scalar(d))
            }
            8 => {
                let (a, b) = (self.scalar(d), self.scalar(d));
                format!("{a} / (1 + sq({b}))")
            }
            9 | 10 => {
                let x = self.scalar(d);
                self.unary(x, true)
            }
            11 => {
                let f = self.pick(&["max", "min"]);
                let (a, b) = (self.scalar(d), self.scalar(d));
                format!("{f}({a}, {b})")
            }
            12 => self.bag(Shp::S, d).unwrap_or_else(|| self.leaf(Shp::S)),
            _ => self.leaf(Shp::S),
        }
    }

    fn vector(&mut self, k: usize, depth: usize) -> String {
        if depth == 0 {
            return self.leaf(Shp::V(k));
        }
        let d = depth - 1;
        match self.rng.random_range(0..13) {
            0 | 1 => {
                let op = self.pick(&["+", "-", "*"]);
                let (a, b) = (self.vector(k, d), self.vector(k, d));
                format!("({a} {op} {b})")
            }
            2 => {
                let (a, s) = (self.vector(k, d), self.scalar(d));
                let op = self.pick(&["+", "*"]);
                format!("({a} {op} {s})")
            }
            3 => {
                let c = self.constant();
                let op = self.pick(&["*", "/"]);
                format!("{} {op} {c}", self.vector(k, d))
            }
            4 | 5 => {
                let x = self.vector(k, d);
                self.unary(x, false)
            }
            // Attention, as in mixture_mf: a bare softmax sums to 1, and
            // the gradient through a constant is rounding noise that
            // Adagrad and Adam would scale up to whole steps.
            //
            // Its argument is never `v + s` with a scalar `s` either: softmax
            // ignores a shift, so `s` would get a gradient of pure noise.
            6 => {
                let x = match self.rng.random_range(0..3) {
                    0 => self.leaf(Shp::V(k)),
                    1 => format!("tanh({})", self.vector(k, d)),
                    _ => {
                        let cols = self.size();
                        let m = self.leaf(Shp::M(k, cols));
                        format!("({m} @ {})", self.vector(cols, d))
                    }
                };
                let v = self.leaf(Shp::V(k));
                format!("(softmax({x}) * {v})")
            }
            7 | 8 => {
                let cols = self.size();
                let m = self.leaf(Shp::M(k, cols));
                format!("({m} @ {})", self.vector(cols, d))
            }
            9 if k > 1 => {
                let k1 = self.rng.random_range(1..k);
                let (a, b) = (self.vector(k1, d), self.vector(k - k1, d));
                format!("concat({a}, {b})")
            }
            10 => {
                let f = self.pick(&["max", "min"]);
                let (a, b) = (self.vector(k, d), self.vector(k, d));
                format!("{f}({a}, {b})")
            }
            11 => self
                .bag(Shp::V(k), d)
                .unwrap_or_else(|| self.leaf(Shp::V(k))),
            _ => self.leaf(Shp::V(k)),
        }
    }

    /// The source of model number `n`.
    pub fn model(seed: u64, n: usize) -> String {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(n as u64));
        let occupation = rng.random_bool(0.3);
        let week = rng.random_bool(0.35);
        let genre = rng.random_bool(0.3);
        let history = rng.random_bool(0.25);
        // Losses against negatives take the positive's and the negative's
        // gradients of every row they share (the user's), and where the
        // score's user side does not depend on the item the two cancel,
        // exactly (BPR, hinge) or nearly (logistic around a score of 0),
        // down to rounding noise. Adagrad and Adam scale any gradient to a
        // step of about lr, noise included, and the noise of f32 is not
        // that of f64; so models with negatives train with SGD.
        let logistic = format!(
            "loss logistic(R(u, i), 1) + logistic(R(u, j), 0) where j ~ negative(item{})",
            if rng.random_bool(0.5) {
                ", popularity"
            } else {
                ""
            }
        );
        let hinge_max = "loss hinge(R(u, i), max(R(u, j) for j ~ negative(item, 3)))";
        // (loss, has a rating target, takes the largest of several negatives)
        let (loss, rating, argmax) = match rng.random_range(0..6) {
            0 | 1 => ("loss mse(R(u, i), r)".to_string(), true, false),
            2 => ("r ~ normal(R(u, i), 1)".to_string(), true, false),
            3 => {
                let bpr = "loss bpr(R(u, i), R(u, j)) where j ~ negative(item)";
                (bpr.to_string(), false, false)
            }
            4 if rng.random_bool(0.5) => {
                let hinge = "loss hinge(R(u, i), R(u, j)) where j ~ negative(item)";
                (hinge.to_string(), false, false)
            }
            4 => (hinge_max.to_string(), false, true),
            _ => (logistic, false, false),
        };
        let optimizer = if rating {
            ["sgd(lr: 0.01)", "adagrad(lr: 0.05)", "adam(lr: 0.005)"][rng.random_range(0..3)]
        } else {
            "sgd(lr: 0.01)"
        };
        let mut gen = ModelGen {
            rng,
            params: Vec::new(),
            occupation,
            week,
            genre,
            history,
            lookups: Vec::new(),
            // The largest of several negatives: where item rows start equal
            // (zeros), the negatives tie, and f32 and f64 break ties of a
            // few ulps differently (sigmoid(1e-14) is 0.5 in f32). Rows
            // start at random values, as for Adagrad and Adam.
            random_init: argmax || !optimizer.starts_with("sgd"),
        };
        let depth = gen.rng.random_range(2..=5);
        let mut score = gen.scalar(depth);
        // The score ranks items for users: make it depend on both, and on
        // every optional input the model declares.
        if !score.contains("[u]") || !score.contains("[i]") {
            let k = gen.size();
            let p = gen.param(Some("user"), Shp::V(k));
            let q = gen.param(Some("item"), Shp::V(k));
            score = format!("{score} + dot({p}[u], {q}[i])");
        }
        if gen.occupation && !score.contains("[o]") {
            let k = gen.size();
            let d = gen.param(Some("occupation"), Shp::V(k));
            let q = gen.leaf(Shp::V(k));
            score = format!("{score} + dot({d}[o], {q})");
        }
        if gen.week && !score.contains("[t") {
            let k = gen.size();
            let n = gen.param(Some("week"), Shp::V(k));
            let shift = gen.pick(&["t", "t - 1", "t + 1", "t - 2"]);
            let a = gen.leaf(Shp::V(k));
            score = format!("{score} + dot({a}, {n}[{shift}])");
        }
        for (on, input) in [(gen.genre, "[g]"), (gen.history, "[h]")] {
            if on && !score.contains(input) {
                let (genre, history) = (gen.genre, gen.history);
                // Only this bag, for this term.
                gen.genre = input == "[g]";
                gen.history = input == "[h]";
                let term = gen.bag(Shp::S, 2).unwrap_or_default();
                gen.genre = genre;
                gen.history = history;
                score = format!("{score} + {term}");
            }
        }
        let mut extra = Vec::new();
        if !gen.lookups.is_empty() && gen.chance(0.5) {
            let mut terms = Vec::new();
            for _ in 0..gen.rng.random_range(1..=3) {
                let k = gen.rng.random_range(0..gen.lookups.len());
                let l = gen.lookups[k].clone();
                terms.push(format!("sq({l})"));
            }
            extra.push(format!("penalty 0.01 * ({})", terms.join(" + ")));
        }
        let week_tables: Vec<String> = gen
            .params
            .iter()
            .filter(|p| p.domain == Some("week") && !p.variational)
            .map(|p| p.name.clone())
            .collect();
        if let Some(n) = week_tables.first() {
            if gen.chance(0.7) {
                extra.push(format!("prior {n}[t] ~ normal({n}[t - 1], 0.3)"));
            }
        }
        let variational: Vec<(String, &'static str)> = gen
            .params
            .iter()
            .filter(|p| p.variational)
            .map(|p| (p.name.clone(), p.domain.unwrap_or("user")))
            .collect();
        for (name, domain) in variational {
            let index = match domain {
                "user" => "u",
                "item" => "i",
                "occupation" => "o",
                "week" => "t",
                _ => continue,
            };
            if gen.chance(0.7) {
                extra.push(format!("prior {name}[{index}] ~ normal(0, 1)"));
            }
        }

        let mut text = format!("model random_{n}\n\nuse stdlib.losses\n\n");
        text += "input u: user\ninput i: item\n";
        if rating {
            text += "input r: real\n";
        }
        if gen.occupation {
            text += "input o: occupation\n";
        }
        if gen.week {
            text += "input t: week\n";
        }
        if gen.genre {
            text += "input g: bag(genre)\n";
        }
        if gen.history {
            text += "input h: history(item)\n";
        }
        text += "\n";
        for p in &gen.params {
            let index = p.domain.map(|d| format!("[{d}]")).unwrap_or_default();
            text += &format!("param {}{index}: {} {}\n", p.name, p.shape, p.attrs);
        }
        text += &format!("\nlet R(u, i) = {score}\n\n{loss}\n");
        for e in extra {
            text += &format!("{e}\n");
        }
        text += &format!(
            "\nfit {{ optimizer: {optimizer}, epochs: 1, seed: {} }}\n",
            100 + n
        );
        text
    }
}

/// The largest difference of one step: the step kernel and the evaluator
/// (with the optimiser's step) each take example after example of `rows`
/// from the same parameters, the evaluator's, rounded to f32. Each keeps
/// its own optimiser state. `Err` names the first step that differs by
/// more than `tol`.
pub fn lockstep(
    session: &Session,
    model: &Model,
    data: &Dataset,
    rows: &[usize],
    tol: f64,
) -> Result<f64, String> {
    let g = &session.gradient;
    let b = &session.binding;
    let sizes = b.domain_sizes();
    let (optimizer, lr) = (model.fit.optimizer, model.fit.lr);
    let mut params = rounded(&initialise(g, &sizes, model.fit.seed).unwrap());
    let mut state = OptimiserState::new(optimizer, g, &params);
    let mut native = NativeParams::new(&params, optimizer);
    let tables = TableWords::new(&mut native);
    let kernel = train::compile_step(g, optimizer, recc_jit::DEFAULT_PREFETCH).unwrap();
    let mut runner = Runner::new();
    // `example` and `encode` draw negatives and noise in the same order.
    let seed = model.fit.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let (mut rng_eval, mut rng_jit) = (StdRng::seed_from_u64(seed), StdRng::seed_from_u64(seed));
    let mut ex = Example { slots: Vec::new() };
    let mut columns = b.columns();
    let mut worst = 0.0f64;
    for (k, &r) in rows.iter().enumerate() {
        b.example(data, &b.row(data, r), &mut rng_eval, true, &mut ex);
        columns.clear();
        b.encode_rows(data, &[r], &mut rng_jit, true, &mut columns);
        let ev = evaluate(g, &params, &ex).map_err(|e| e.to_string())?;
        if !ev.loss.is_finite() {
            break;
        }
        let mut next = params.clone();
        for ((t, row), grad) in &ev.gradients.rows {
            state.step(&mut next, *t, *row, grad, lr);
        }
        // Optimiser state beyond f32's range is a divergence in both
        // trainers (the kernel's state would be infinite, its step zero).
        if state.first_beyond_f32().is_some() {
            break;
        }
        // The kernel starts from the evaluator's parameters, in place.
        for (mine, theirs) in native.tables.iter_mut().zip(&params.tables) {
            for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                *m = *t as f32;
            }
        }
        let (done, _) = runner
            .run(
                &kernel,
                g,
                &columns,
                &tables,
                &sizes,
                Hyper::new(optimizer, lr),
            )
            .map_err(|e| format!("step {k}: the kernel's inputs were refused: {e}"))?;
        // A loss f32 cannot hold is one the kernel stops at as diverged.
        if done != 1 && ev.loss.abs() > f64::from(f32::MAX) {
            break;
        }
        if done != 1 {
            return Err(format!(
                "step {k}: the kernel's loss was not finite; evaluator {}",
                ev.loss
            ));
        }
        // Adagrad and Adam take a step of about lr in the direction of a
        // row's first gradients, however small. f32 carries a gradient with
        // an absolute error of about 1e-7 times the terms it is made of
        // (1 − tanh² of a saturated tanh, a near cancellation), so a lane
        // whose gradient is that small may step the other way, or (around
        // epsilon, 1e-8) by another amount. Those lanes are not compared;
        // the next step starts from the evaluator's parameters anyway. A
        // larger gradient still passes its relative error on to the step
        // whole: a hundredth of lr is allowed for it.
        let adaptive = optimizer != Optimizer::Sgd;
        let slack = if adaptive { 0.01 * lr } else { 0.0 };
        let gradient = |t: usize, row: usize, lane: usize| {
            ev.gradients
                .rows
                .get(&(TableId(t as u32), row))
                .map_or(0.0, |g| g[lane])
        };
        let jit = native.to_params();
        // A step is a difference: f32 rounds the lane's old value and
        // its update (lr times the gradient for SGD) before they cancel,
        // so a huge step landing near zero is compared to its operands.
        let operands = |t: usize, row: usize, lane: usize| {
            let step = if adaptive {
                lr
            } else {
                lr * gradient(t, row, lane).abs()
            };
            params.tables[t][[row, lane]].abs().max(step)
        };
        let (d, t, row, lane) = worst_lane(&next, &jit, slack, operands, |t, row, lane| {
            adaptive && gradient(t, row, lane).abs() < ILL_CONDITIONED_GRADIENT
        });
        if d > tol {
            return Err(format!(
                "step {k}: {d:.3e} at {} (the evaluator's gradient there: {:e})",
                describe_lane(session, &next, &jit, t, row, lane),
                gradient(t, row, lane)
            ));
        }
        worst = worst.max(d);
        params = rounded(&next);
    }
    Ok(worst)
}

/// How two trainings of the same random model compare.
pub enum Comparison {
    /// Within [`PARAM_TOLERANCE`], or diverged in both.
    Agree(String),
    /// Both trained, to parameters further apart than that.
    Drift(String),
    /// One trained and the other did not, or another error.
    Disagree(String),
}

/// A divergence error of either trainer: the loss, a parameter or the
/// optimiser's state left the range the backends can carry.
fn diverged(e: &TrainError) -> bool {
    matches!(
        e,
        TrainError::Diverged { .. }
            | TrainError::DivergedParameter { .. }
            | TrainError::DivergedState { .. }
    )
}

pub fn compare_random(
    session: &Session,
    interp: Result<Trained, TrainError>,
    jit: Result<Trained, TrainError>,
) -> Comparison {
    let magnitude = |p: &Params| {
        p.tables
            .iter()
            .flat_map(|t| t.iter())
            .fold(0.0f64, |m, v| m.max(v.abs()))
    };
    match (interp, jit) {
        (Ok(a), Ok(b)) => {
            let (diff, at) = max_rel_diff(session, &a.params, &b.params);
            if diff <= PARAM_TOLERANCE {
                Comparison::Agree(format!("max rel diff {diff:.2e}"))
            } else {
                Comparison::Drift(format!("max rel diff {diff:.3e} at {at}"))
            }
        }
        (Err(a), Err(b)) if diverged(&a) && diverged(&b) => {
            Comparison::Agree("diverged in both".into())
        }
        (Err(e), Ok(t)) | (Ok(t), Err(e)) if diverged(&e) && magnitude(&t.params) > 1e6 => {
            Comparison::Agree("diverged in one; the other's parameters exceed 1e6".into())
        }
        (a, b) => {
            let outcome = |r: Result<Trained, TrainError>| match r {
                Ok(_) => "trained".to_string(),
                Err(e) => e.to_string(),
            };
            Comparison::Disagree(format!("interp: {}; jit: {}", outcome(a), outcome(b)))
        }
    }
}

/// One step from the same parameters: f32 rounding of one evaluation.
pub const LOCKSTEP_TOLERANCE: f64 = 1e-5;

/// Adagrad's and Adam's steps from gradients this small are left out of
/// the lockstep comparison: see [`lockstep`].
const ILL_CONDITIONED_GRADIENT: f64 = 1e-5;
