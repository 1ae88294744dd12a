//! `recc bench`: how fast one model trains, against a hand-written loop.
//!
//! Times whole epochs of the chosen backend (examples encoded, kernel run,
//! nothing else), reports the kernel's compile time, updates per second,
//! wall time and peak memory, and runs the project's hand-written SIMD
//! biased-MF loop on the same rows as the practical ceiling.

use crate::run::{self, failed, usage, DataArgs, FitArgs, OutputArgs, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use recc_runtime::bench::{
    default_cache_dir, load_or_generate_zipf, peak_memory_bytes, HandwrittenBiasedMf,
    RatingTriples, ZipfConfig,
};
use recc_runtime::data::Dataset;
use recc_runtime::experiment;
use recc_runtime::train::{self, Backend, Session, Silent};
use std::path::Path;
use std::time::Instant;

#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Examples ahead whose rows the native step touches early (0: off)
    #[arg(long, default_value_t = recc_jit::DEFAULT_PREFETCH)]
    pub prefetch: usize,
    /// Also time the hand-written biased-MF loop (k lanes, the model's
    /// learning rate) on the same rows: the practical ceiling
    #[arg(long)]
    pub handwritten: bool,
    /// L2 weight of the hand-written loop, as in models/biased_mf.rec
    #[arg(long, default_value_t = 0.08)]
    pub reg: f32,
    /// Lanes of the hand-written loop's factors
    #[arg(long, default_value_t = 32)]
    pub factors: usize,
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

/// `zipf` (200k users × 50k items × 20M ratings, cached) or
/// `zipf:USERSxITEMSxRATINGS`.
fn zipf_config(spec: &str) -> Option<Result<ZipfConfig>> {
    let rest = spec.strip_prefix("zipf")?;
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
            "--data {spec}: expected zipf or zipf:USERSxITEMSxRATINGS, e.g. zipf:2000x500x50000"
        ))
    }))
}

pub fn bench_command(
    file: &Path,
    data_args: &DataArgs,
    fit: &FitArgs,
    bench: &BenchArgs,
    out: &OutputArgs,
) -> Result<()> {
    let source = run::compile_file(file)?;
    let mut fit = fit.clone();
    fit.epochs = fit.epochs.or(Some(3));
    let mut config = run::train_config(&source, &fit)?;
    config.prefetch = bench.prefetch;
    let loaded = Instant::now();
    let (data, rows): (Dataset, Vec<usize>) = match zipf_config(&data_args.data) {
        Some(zipf) => {
            let zipf = zipf?;
            if !out.quiet && !out.json {
                eprintln!(
                    "loading {} (generated once, cached in {})",
                    zipf.name(),
                    default_cache_dir().display()
                );
            }
            let data = load_or_generate_zipf(&zipf, &default_cache_dir())
                .map_err(|e| failed(e.to_string()))?;
            let rows = (0..data.len()).collect();
            (data, rows)
        }
        None => {
            let prepared = run::prepare(&data_args.request(), &source, config.seed, false)?;
            let (_, split) = prepared
                .splits
                .first()
                .ok_or_else(|| usage("the split produced nothing to train on"))?;
            let rows = split.train.clone();
            (prepared.data, rows)
        }
    };
    let load_seconds = loaded.elapsed().as_secs_f64();
    let bind = experiment::bind_options(&data_args.request())?;
    let mut session = Session::new(&source.model, &data, &rows, &bind)
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
    let trained = train::train(&session, &data, &rows, &[], &config, &mut Silent)
        .map_err(|e| failed(e.to_string()))?;
    let wall = started.elapsed().as_secs_f64();
    let epoch_seconds: Vec<f64> = trained.history.iter().map(|r| r.seconds).collect();
    let rate = rows.len() as f64 / median(epoch_seconds.clone());

    let handwritten = if bench.handwritten {
        Some(time_handwritten(&data, &rows, &config, bench)?)
    } else {
        None
    };
    let peak = peak_memory_bytes();

    if out.json {
        let v = serde_json::json!({
            "model": source.model.name,
            "data": data.name,
            "rows": rows.len(),
            "backend": backend.to_string(),
            "threads": config.threads,
            "prefetch": config.prefetch,
            "epochs": epoch_seconds.len(),
            "compile_ms": compile_ms,
            "code_bytes": code_bytes,
            "load_seconds": load_seconds,
            "epoch_seconds": epoch_seconds,
            "updates_per_second": rate,
            "wall_seconds": wall,
            "handwritten_updates_per_second": handwritten,
            "ratio_to_handwritten": handwritten.map(|h| h / rate),
            "peak_memory_bytes": peak,
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} on {}: {} rows, {} epoch{} · {backend} · {} thread{} · prefetch {}",
        source.model.name,
        data.name,
        rows.len(),
        epoch_seconds.len(),
        if epoch_seconds.len() == 1 { "" } else { "s" },
        config.threads,
        if config.threads == 1 { "" } else { "s" },
        config.prefetch
    );
    if let (Some(ms), Some(bytes)) = (compile_ms, code_bytes) {
        println!("  compile       {ms:.1} ms, {bytes} bytes of machine code");
    }
    println!("  load          {load_seconds:.2} s");
    let epochs: Vec<String> = epoch_seconds.iter().map(|s| format!("{s:.3}")).collect();
    println!("  epochs        {} s", epochs.join(" "));
    println!(
        "  recc          {:.2} M updates/s (median epoch), {wall:.2} s wall",
        rate / 1e6
    );
    if let Some(h) = handwritten {
        println!(
            "  hand-written  {:.2} M updates/s  (hand-written / recc = {:.2}×)",
            h / 1e6,
            h / rate
        );
    }
    if let Some(p) = peak {
        println!("  peak memory   {:.0} MiB", p as f64 / (1 << 20) as f64);
    }
    Ok(())
}

/// Median updates/s of the hand-written loop over the same epochs, on the
/// same rows in freshly shuffled orders.
fn time_handwritten(
    data: &Dataset,
    rows: &[usize],
    config: &train::TrainConfig,
    bench: &BenchArgs,
) -> Result<f64> {
    let triples = RatingTriples::of(data).map_err(|e| failed(e.to_string()))?;
    let users = data.users().map_or(0, |(d, _)| data.domain_size(d));
    let items = data.items().map_or(0, |(d, _)| data.domain_size(d));
    let mut model = HandwrittenBiasedMf::new(users, items, bench.factors, config.seed);
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
            bench.reg,
            config.prefetch,
        );
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(rows.len() as f64 / median(times))
}
