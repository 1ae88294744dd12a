//! Timing training: whole epochs of the chosen backend, its compile time,
//! updates per second and peak memory, against the project's hand-written
//! SIMD biased-MF loop on the same rows (the practical ceiling).

use super::{failed, prepare, usage, DataRequest, Result, Source};
use crate::bench::{
    default_cache_dir, load_or_generate_zipf, peak_memory_bytes, HandwrittenBiasedMf,
    RatingTriples, ZipfConfig,
};
use crate::bind::BindOptions;
use crate::data::Dataset;
use crate::session::{Backend, Session};
use crate::train::{self, Silent, TrainConfig};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Instant;

/// What a benchmark times besides the model.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchOptions {
    /// Also time the hand-written biased-MF loop on the same rows.
    pub handwritten: bool,
    /// L2 weight of the hand-written loop.
    pub reg: f32,
    /// Lanes of the hand-written loop's factors.
    pub factors: usize,
}

/// `zipf` (200k users × 50k items × 20M ratings) or
/// `zipf:USERSxITEMSxRATINGS`: the generated data a benchmark can run on,
/// cached after it is first made; `None` for any other data.
pub fn zipf_request(data: &str) -> Option<Result<ZipfConfig>> {
    let rest = data.strip_prefix("zipf")?;
    if rest.is_empty() {
        return Some(Ok(ZipfConfig::large()));
    }
    let parse = || -> Option<ZipfConfig> {
        let dims: Vec<usize> = rest
            .strip_prefix(':')?
            .split('x')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        let [users, items, ratings] = dims[..] else {
            return None;
        };
        Some(ZipfConfig {
            users,
            items,
            ratings,
            ..ZipfConfig::large()
        })
    };
    Some(parse().ok_or_else(|| {
        usage(format!(
            "--data {data}: expected zipf or zipf:USERSxITEMSxRATINGS, e.g. zipf:2000x500x50000"
        ))
    }))
}

/// Where generated benchmark data is cached.
pub fn bench_cache_dir() -> PathBuf {
    default_cache_dir()
}

/// The rows a benchmark trains on: every row of generated `zipf` data, or
/// the training rows of the request's split.
pub struct BenchData {
    pub data: Dataset,
    pub rows: Vec<usize>,
    /// How long loading (or generating) took.
    pub load_seconds: f64,
    /// What the caller should be told (bad lines skipped).
    pub notes: Vec<String>,
}

/// Load the data of a benchmark.
pub fn bench_data(req: &DataRequest, source: &Source, seed: u64) -> Result<BenchData> {
    let loaded = Instant::now();
    let (data, rows, notes) = match zipf_request(&req.data) {
        Some(zipf) => {
            let data = load_or_generate_zipf(&zipf?, &default_cache_dir())
                .map_err(|e| failed(e.to_string()))?;
            let rows = (0..data.len()).collect();
            (data, rows, Vec::new())
        }
        None => {
            let prepared = prepare(req, Some(&source.model), seed, false)?;
            let (_, split) = prepared
                .splits
                .first()
                .ok_or_else(|| usage("the split produced nothing to train on"))?;
            let rows = split.train.clone();
            (prepared.data, rows, prepared.notes)
        }
    };
    Ok(BenchData {
        data,
        rows,
        load_seconds: loaded.elapsed().as_secs_f64(),
        notes,
    })
}

/// What a benchmark measured.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchReport {
    pub model: String,
    pub data: String,
    pub rows: usize,
    /// The backend that ran (mini-batches run on the evaluator).
    pub backend: Backend,
    pub threads: usize,
    pub prefetch: usize,
    /// The native step's compile time and machine-code size (JIT only).
    pub compile_ms: Option<f64>,
    pub code_bytes: Option<usize>,
    pub load_seconds: f64,
    pub epoch_seconds: Vec<f64>,
    /// Over the median epoch.
    pub updates_per_second: f64,
    pub wall_seconds: f64,
    /// The hand-written loop's median updates per second, when timed.
    pub handwritten_updates_per_second: Option<f64>,
    pub peak_memory_bytes: Option<u64>,
}

/// Time `config.epochs` epochs of `source` on the benchmark's rows.
pub fn bench(
    source: &Source,
    config: &TrainConfig,
    bind: &BindOptions,
    data: &BenchData,
    options: &BenchOptions,
) -> Result<BenchReport> {
    let BenchData {
        data,
        rows,
        load_seconds,
        ..
    } = data;
    let mut session = Session::new(&source.model, data, rows, bind)
        .map_err(|e| failed(format!("{}: {e}", source.name)))?;
    session.backend = config.backend;
    let backend = config.effective_backend();
    let (compile_ms, code_bytes) = if backend == Backend::Jit {
        let kernel = train::compile_step(&session.gradient, config.optimizer, config.prefetch)
            .map_err(|e| failed(e.to_string()))?;
        (
            Some(kernel.compile_time.as_secs_f64() * 1e3),
            Some(kernel.code_size),
        )
    } else {
        (None, None)
    };
    let started = Instant::now();
    let trained = train::train(&session, data, rows, &[], config, &mut Silent)
        .map_err(|e| failed(e.to_string()))?;
    let wall_seconds = started.elapsed().as_secs_f64();
    let epoch_seconds: Vec<f64> = trained.history.iter().map(|r| r.seconds).collect();
    let updates_per_second = rows.len() as f64 / median(epoch_seconds.clone());
    let handwritten_updates_per_second = if options.handwritten {
        Some(time_handwritten(data, rows, config, options)?)
    } else {
        None
    };
    Ok(BenchReport {
        model: source.model.name.clone(),
        data: data.name.clone(),
        rows: rows.len(),
        backend,
        threads: config.threads,
        prefetch: config.prefetch,
        compile_ms,
        code_bytes,
        load_seconds: *load_seconds,
        epoch_seconds,
        updates_per_second,
        wall_seconds,
        handwritten_updates_per_second,
        peak_memory_bytes: peak_memory_bytes(),
    })
}

/// The median of some timings.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Median updates/s of the hand-written loop over the same epochs, on the
/// same rows in freshly shuffled orders.
fn time_handwritten(
    data: &Dataset,
    rows: &[usize],
    config: &TrainConfig,
    options: &BenchOptions,
) -> Result<f64> {
    let triples = RatingTriples::of(data).map_err(|e| failed(e.to_string()))?;
    let users = data.users().map_or(0, |(d, _)| data.domain_size(d));
    let items = data.items().map_or(0, |(d, _)| data.domain_size(d));
    let mut model = HandwrittenBiasedMf::new(users, items, options.factors, config.seed);
    let mut order: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut times = Vec::new();
    for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        let t = Instant::now();
        model.epoch(
            triples.users,
            triples.items,
            &triples.ratings,
            &order,
            config.lr as f32,
            options.reg,
            config.prefetch,
        );
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(rows.len() as f64 / median(times))
}
