//! `recc bench`: how fast one model trains, against a hand-written loop.
//!
//! Times whole epochs of the chosen backend (examples encoded, kernel run,
//! nothing else), reports the kernel's compile time, updates per second,
//! wall time and peak memory, and runs the project's hand-written SIMD
//! biased-MF loop on the same rows as the practical ceiling. The timing is
//! [`recc_runtime::experiment::bench`]'s; this prints it.

use crate::run::{self, DataArgs, FitArgs, OutputArgs, Result};
use recc_compiler::model::Solver;
use recc_runtime::experiment::{self, BenchOptions};
use std::path::Path;

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
    #[arg(long, default_value_t = 32, value_parser = run::at_least_one, allow_negative_numbers = true)]
    pub factors: usize,
}

pub fn bench_command(
    file: &Path,
    data_args: &DataArgs,
    fit: &FitArgs,
    bench: &BenchArgs,
    out: &OutputArgs,
) -> Result<()> {
    crate::cuda::refuse(fit.backend.as_deref())?;
    let source = run::compile_file(file)?;
    let mut config = run::train_config(&source, fit)?;
    if bench.handwritten && config.solver != Solver::Sgd {
        return Err(run::usage(format!(
            "--handwritten times the hand-written SGD loop beside recc's SGD step, and this run \
             is fitted with {}; drop --handwritten, or bench with --solver sgd",
            config.solver.name().to_uppercase()
        )));
    }
    // A few SGD epochs time the step well enough; a solver's sweeps are its own.
    if fit.epochs.is_none() && config.solver == Solver::Sgd {
        config.epochs = 3;
    }
    config.prefetch = bench.prefetch;
    let request = data_args.request();
    if let Some(zipf) = experiment::zipf_request(&request.data) {
        let zipf = zipf?;
        if !out.quiet && !out.json {
            eprintln!(
                "loading {} (generated once, cached in {})",
                zipf.name(),
                experiment::bench_cache_dir().display()
            );
        }
    }
    let data = experiment::bench_data(&request, &source, config.seed)?;
    data.notes.iter().for_each(|n| eprintln!("note: {n}"));
    let bind = experiment::bind_options(&request)?;
    let options = BenchOptions {
        handwritten: bench.handwritten,
        reg: bench.reg,
        factors: bench.factors,
    };
    let r = experiment::bench(&source, &config, &bind, &data, &options)?;
    let rate = r.updates_per_second;
    if out.json {
        return crate::report::print(&crate::report::bench(&r));
    }
    let epochs = r.epoch_seconds.len();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let epoch_times: Vec<String> = r.epoch_seconds.iter().map(|s| format!("{s:.3}")).collect();
    // A closed-form solver runs no compiled step: its unit is a sweep over
    // every table, and its rate the examples each sweep reads.
    let sgd = config.solver == Solver::Sgd;
    let (unit, how, rate_of) = if sgd {
        let how = format!(
            "{} · {} thread{} · prefetch {}",
            r.backend,
            r.threads,
            plural(r.threads),
            r.prefetch
        );
        ("epoch", how, "updates/s")
    } else {
        let how = format!(
            "{} · {} thread{}",
            config.solver.name(),
            r.threads,
            plural(r.threads)
        );
        ("sweep", how, "examples/s per sweep")
    };
    println!(
        "{} on {}: {} rows, {epochs} {unit}{} · {how}",
        r.model,
        r.data,
        r.rows,
        plural(epochs)
    );
    if let (true, Some(ms), Some(bytes)) = (sgd, r.compile_ms, r.code_bytes) {
        println!("  compile       {ms:.1} ms, {bytes} bytes of machine code");
    }
    println!("  load          {:.2} s", r.load_seconds);
    println!("  {:<14}{} s", format!("{unit}s"), epoch_times.join(" "));
    println!(
        "  recc          {:.2} M {rate_of} (median {unit}), {:.2} s wall",
        rate / 1e6,
        r.wall_seconds
    );
    if let Some(h) = r.handwritten_updates_per_second {
        println!(
            "  hand-written  {:.2} M updates/s  (hand-written / recc = {:.2}×)",
            h / 1e6,
            h / rate
        );
    }
    if let Some(p) = r.peak_memory_bytes {
        println!("  peak memory   {:.0} MiB", p as f64 / (1 << 20) as f64);
    }
    Ok(())
}
