//! The speed page (`docs/SPEED.md`): how fast every model in `models/`
//! compiles and trains on its usual data, the peers beside recc on the same
//! rows in the same run, the hand-written loop that is the ceiling of the
//! native step, and the wall time of everyday work against its target.
//!
//! Like the results page it drives the `recc` binary as a user would
//! (`recc bench --json`, `recc cv --json`, ...), and the peers through the
//! scripts in `bench/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::report::{Report, Section, Table};
use crate::runs::{exists, model_link, num, Result, SectionFn, Zoo, ZooError};

pub const SECTIONS: &[(&str, SectionFn)] = &[
    ("models", models),
    ("peers", peers),
    ("ceiling", ceiling),
    ("work", everyday_work),
];

/// Every model and the data it is usually trained on: (model, data, split).
fn usual_data(zoo: &Zoo) -> Vec<(&'static str, String, &'static str)> {
    let ml = zoo.movielens();
    let lastfm = zoo.lastfm_data();
    let mut runs = Vec::new();
    for model in [
        "mf",
        "biased_mf",
        "svdpp",
        "side_mf",
        "hybrid_mf",
        "fm",
        "temporal_mf",
        "sigmoid_range_mf",
        "nmf",
        "variational_mf",
    ] {
        runs.push((model, ml.clone(), "given:u1"));
    }
    for model in ["pointwise_mf", "bpr_mf", "hinge_mf"] {
        runs.push((model, ml.clone(), "given:ua"));
    }
    for model in ["mixture_mf", "ncf", "wals"] {
        runs.push((model, lastfm.clone(), "user:0.2"));
    }
    runs.push(("sequence_mf", ml.clone(), "last:1"));
    runs.push(("word2vec_mf", format!("{ml}+item2vec"), "none"));
    runs.push(("poincare", ml, "random:0.2"));
    runs.push(("poincare_tree", "tree:3x6".into(), "none"));
    runs.into_iter().filter(|(m, _, _)| exists(m)).collect()
}

/// Whether a model's `fit` block chooses a closed-form solver, whose bench
/// counts sweeps instead of epochs.
fn uses_solver(model: &Path) -> bool {
    std::fs::read_to_string(model).is_ok_and(|t| t.contains("solver:"))
}

impl Zoo {
    /// The speed page's set-up paragraph: recc, the machine, the peers.
    pub fn describe_speed(&self) -> String {
        let version = Command::new(&self.recc)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "recc (version unknown)".into());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or("unknown CPU", str::trim);
        let avx2 = cpuinfo
            .lines()
            .any(|l| l.starts_with("flags") && l.contains(" avx2"));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or_else(
                || "unknown memory".into(),
                |kb| format!("{:.0} GiB", kb / 1048576.0),
            );
        let mut peers = Vec::new();
        for (module, name) in [
            ("surprise", "Surprise"),
            ("vowpalwabbit", "Vowpal Wabbit"),
            ("torch", "PyTorch"),
            ("lightfm", "LightFM"),
            ("implicit", "implicit"),
        ] {
            let v = Command::new(&self.python)
                .args([
                    "-c",
                    &format!(
                        "from importlib.metadata import version; print(version('{}'))",
                        if module == "surprise" {
                            "scikit-surprise"
                        } else {
                            module
                        }
                    ),
                ])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
            peers.push(match v {
                Some(v) => format!("{name} {v}"),
                None => format!("{name} not installed"),
            });
        }
        format!(
            "Set-up: {version}, release build; {cpu} ({}), {cores} cores, {memory}; \
             peers: {} (`{}`); data from `{}`.\n",
            if avx2 { "AVX2" } else { "no AVX2" },
            peers.join(", "),
            self.python,
            self.data.display()
        )
    }

    /// `recc bench MODEL --data DATA --split SPLIT ARGS --json`.
    fn bench(&self, model: &Path, data: &str, split: &str, args: &[&str]) -> Result<Value> {
        let mut a = vec![
            "bench".to_string(),
            model.display().to_string(),
            "--data".into(),
            data.into(),
            "--split".into(),
            split.into(),
            "--json".into(),
        ];
        a.extend(args.iter().map(|s| s.to_string()));
        self.recc(&a)
    }

    /// Runs `recc ARGS` and returns its JSON and the command's wall seconds.
    fn timed(&self, args: &[String]) -> Result<(Value, f64)> {
        let start = Instant::now();
        let v = self.recc(args)?;
        Ok((v, start.elapsed().as_secs_f64()))
    }

    /// `models/NAME.rec` with every `vec(N)` of its parameters made `vec(k)`,
    /// written to the scratch folder: the same model at another width.
    fn at_width(&self, model: &str, k: usize) -> Result<PathBuf> {
        let text = std::fs::read_to_string(format!("models/{model}.rec"))
            .map_err(|e| ZooError::Setup(format!("cannot read models/{model}.rec: {e}")))?;
        let out = with_width(&text, k);
        let path = self.scratch(&format!("{model}_k{k}.rec"));
        std::fs::write(&path, out)
            .map_err(|e| ZooError::Setup(format!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }

    /// A peer script's JSON lines (`python SCRIPT ARGS`); `None` when the
    /// script says the peer is not installed.
    fn peer(&self, script: &str, args: &[String]) -> Result<Vec<Value>> {
        let command = format!("{} {script} {}", self.python, args.join(" "));
        eprintln!("   {command}");
        let out = Command::new(&self.python)
            .arg(script)
            .args(args)
            .output()
            .map_err(|source| ZooError::Spawn {
                program: self.python.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(ZooError::Failed {
                command,
                stderr: String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
                    .to_string(),
            });
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| {
                serde_json::from_str(l).map_err(|e| ZooError::Output {
                    command: command.clone(),
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    fn has_python_module(&self, module: &str) -> bool {
        Command::new(&self.python)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

/// A model's text with every `vec(N)` made `vec(k)`.
fn with_width(text: &str, k: usize) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("vec(") {
        out.push_str(&rest[..at + 4]);
        rest = &rest[at + 4..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(')') {
            out.push_str(&k.to_string());
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn epoch_seconds(v: &Value) -> Option<f64> {
    let e: Vec<f64> = v["epoch_seconds"]
        .as_array()?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    median(&e)
}

/// The seconds of all the epochs of a bench run: the fit, without compiling
/// and loading.
fn fit_seconds(v: &Value) -> Option<f64> {
    let e = v["epoch_seconds"].as_array()?;
    Some(e.iter().filter_map(Value::as_f64).sum::<f64>()).filter(|s| *s > 0.0)
}

fn rate(x: Option<f64>) -> String {
    match x {
        Some(r) if r >= 1e6 => format!("{:.2} M", r / 1e6),
        Some(r) => format!("{:.0} k", r / 1e3),
        None => "–".into(),
    }
}

fn fixed(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "–".into(), |x| format!("{x:.digits$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

// ------------------------------------------------------------ models

/// Compile time, code size, updates/s on one and two threads, epoch time and
/// peak memory of every model on its usual data.
fn models(zoo: &Zoo, report: &mut Report) -> Result<()> {
    let mut s = Section::new("Every model on its usual data");
    s.text(
        "`recc bench models/MODEL.rec --data DATA --split SPLIT --epochs 3 --threads T --json`: \
         the native (Cranelift) step, 3 epochs over the split's training rows after one \
         compile; updates/s is training examples over the median epoch. `wals` fits by ALS \
         (`fit { solver: als }`): 3 sweeps, and an update is one training example's share \
         of a sweep. Peak memory is the process's maximum resident set.",
    );
    let mut t = Table::new(&[
        "model",
        "data",
        "rows",
        "compile ms",
        "code KB",
        "updates/s, 1 thread",
        "updates/s, 2 threads",
        "2 / 1",
        "epoch s (1 thread)",
        "peak MiB",
    ]);
    for (model, data, split) in usual_data(zoo) {
        let path = PathBuf::from(format!("models/{model}.rec"));
        let rounds: &[&str] = if uses_solver(&path) {
            &["--sweeps", "3"]
        } else {
            &["--epochs", "3"]
        };
        let one = zoo.bench(&path, &data, split, &[rounds, &["--threads", "1"]].concat())?;
        let two = zoo.bench(&path, &data, split, &[rounds, &["--threads", "2"]].concat())?;
        let up1 = num(&one, &["updates_per_second"]);
        let up2 = num(&two, &["updates_per_second"]);
        t.row(vec![
            model_link(model),
            short_data(&data, split),
            fixed(num(&one, &["rows"]), 0),
            fixed(num(&one, &["compile_ms"]), 1),
            fixed(num(&one, &["code_bytes"]).map(|b| b / 1024.0), 1),
            rate(up1),
            rate(up2),
            fixed(ratio(up2, up1), 2),
            fixed(epoch_seconds(&one), 3),
            fixed(
                num(&one, &["peak_memory_bytes"]).map(|b| b / (1024.0 * 1024.0)),
                0,
            ),
        ]);
    }
    s.table(t);
    report.push(s);
    Ok(())
}

/// `ml-100k given:u1`, `lastfm user:0.2`: the data in a table cell.
fn short_data(data: &str, split: &str) -> String {
    let name = data.split(':').next().unwrap_or(data);
    let extra = if data.ends_with("+item2vec") {
        "+item2vec"
    } else {
        ""
    };
    format!("{name}{extra} {split}")
}

// ------------------------------------------------------------ peers

/// recc beside the peers on the same rows, in the same run.
fn peers(zoo: &Zoo, report: &mut Report) -> Result<()> {
    let mut s = Section::new("recc beside the peers, same rows, same run");
    s.text(format!(
        "Explicit ratings: MovieLens-100k `u1.base` (80,000 ratings), one thread; each \
         peer fits the same model at the same width and epochs through \
         `bench/peers_speed.py` (Surprise's Cython SGD, Vowpal Wabbit; PyTorch when \
         installed), median of 3 fits, only the fitting timed. recc's figure is the same \
         fit by `recc bench` (after its compile, which the first table shows). Ranking: \
         MovieLens-100k `ua.base` as written by `recc train --write-split`, LightFM \
         (`bench/lightfm_ranking.py`) and implicit (`bench/implicit_ranking.py`) on those \
         rows, one thread. Peers from `{}`.",
        zoo.python
    ));
    let mut t = Table::new(&[
        "model",
        "k",
        "epochs",
        "recc s",
        "recc updates/s",
        "peer",
        "peer s",
        "peer updates/s",
        "recc speed-up",
    ]);
    let explicit: &[(&str, usize, usize, &str, &str)] = &[
        ("biased_mf", 32, 20, "surprise", "Surprise SVD"),
        ("biased_mf", 32, 20, "vw", "Vowpal Wabbit --rank"),
        ("biased_mf", 32, 20, "torch", "PyTorch biased MF"),
        ("svdpp", 20, 20, "svdpp", "Surprise SVD++"),
        ("nmf", 16, 40, "nmf", "Surprise NMF"),
    ];
    let ml_dir = zoo.data.join("ml-100k").display().to_string();
    for &(model, k, epochs, peer, label) in explicit {
        if !exists(model) {
            continue;
        }
        let path = zoo.at_width(model, k)?;
        let epochs_s = epochs.to_string();
        let v = zoo.bench(
            &path,
            &zoo.movielens(),
            "given:u1",
            &["--epochs", &epochs_s, "--threads", "1"],
        )?;
        let recc_s = fit_seconds(&v);
        let recc_up = num(&v, &["updates_per_second"]);
        let rows = zoo.peer(
            "bench/peers_speed.py",
            &[
                "--data".into(),
                ml_dir.clone(),
                "--factors".into(),
                k.to_string(),
                "--epochs".into(),
                epochs_s.clone(),
                "--peers".into(),
                peer.into(),
                "--json".into(),
            ],
        );
        let (peer_s, peer_up, note) = match rows.as_deref() {
            Ok([row, ..]) if row.get("error").is_none() => (
                num(row, &["seconds"]),
                num(row, &["updates_per_s"]),
                format!("{label} {}", row["version"].as_str().unwrap_or("")),
            ),
            Ok([row, ..]) => (
                None,
                None,
                format!("{label}: {}", row["error"].as_str().unwrap_or("not run")),
            ),
            Ok([]) => (None, None, format!("{label}: no output")),
            Err(e) => (None, None, format!("{label}: {e}")),
        };
        let speedup = ratio(peer_s, recc_s);
        t.row(vec![
            model_link(model),
            k.to_string(),
            epochs_s,
            fixed(recc_s, 2),
            rate(recc_up),
            note,
            fixed(peer_s, 2),
            rate(peer_up),
            speedup.map_or_else(|| "–".into(), |x| format!("{x:.1}×")),
        ]);
        if model == "svdpp" {
            report.check(
                "SVD++ against Surprise SVD++, same k and epochs, same run",
                "≥ 5×",
                speedup.map_or_else(|| "not measured".into(), |x| format!("{x:.1}×")),
                speedup.is_some_and(|x| x >= 5.0),
            );
        }
    }
    ranking_peers(zoo, &mut t)?;
    s.table(t);
    report.push(s);
    Ok(())
}

/// BPR and WARP-style ranking against LightFM and implicit on `ua.base`.
fn ranking_peers(zoo: &Zoo, t: &mut Table) -> Result<()> {
    let dir = zoo.scratch("ua-speed");
    let dir_s = dir.display().to_string();
    zoo.train(
        "bpr_mf",
        &zoo.movielens(),
        &[
            "--split",
            "given:ua",
            "--epochs",
            "1",
            "--write-split",
            &dir_s,
        ],
    )?;
    let epochs = 10;
    let epochs_s = epochs.to_string();
    for (model, peers) in [
        (
            "bpr_mf",
            vec![
                ("lightfm", "bench/lightfm_ranking.py", "bpr", "LightFM BPR"),
                ("implicit", "bench/implicit_ranking.py", "", "implicit BPR"),
            ],
        ),
        (
            "hinge_mf",
            vec![(
                "lightfm",
                "bench/lightfm_ranking.py",
                "warp",
                "LightFM WARP",
            )],
        ),
    ] {
        if !exists(model) {
            continue;
        }
        let path = PathBuf::from(format!("models/{model}.rec"));
        let v = zoo.bench(
            &path,
            &zoo.movielens(),
            "given:ua",
            &["--epochs", &epochs_s, "--threads", "1"],
        )?;
        let recc_s = fit_seconds(&v);
        let recc_up = num(&v, &["updates_per_second"]);
        for (module, script, loss, label) in peers {
            let (peer_s, peer_up, note) = if !zoo.has_python_module(module) {
                (None, None, format!("{label}: not installed"))
            } else {
                let mut args = vec![dir_s.clone(), "--epochs".into(), epochs_s.clone()];
                if module == "lightfm" {
                    args.extend(["--loss".into(), loss.into(), "--threads".into(), "1".into()]);
                }
                args.push("--json".into());
                match zoo.peer(script, &args) {
                    Ok(rows) if !rows.is_empty() => {
                        let row = &rows[0];
                        let s = num(row, &["seconds"]);
                        let pairs = num(row, &["train_pairs"]);
                        let up = match (pairs, s) {
                            (Some(p), Some(s)) if s > 0.0 => Some(p * epochs as f64 / s),
                            _ => None,
                        };
                        let version = row[module].as_str().unwrap_or("");
                        (s, up, format!("{label} {version}"))
                    }
                    Ok(_) => (None, None, format!("{label}: no output")),
                    Err(e) => (None, None, format!("{label}: {e}")),
                }
            };
            t.row(vec![
                model_link(model),
                "32".into(),
                epochs_s.clone(),
                fixed(recc_s, 2),
                rate(recc_up),
                note,
                fixed(peer_s, 2),
                rate(peer_up),
                ratio(peer_s, recc_s).map_or_else(|| "–".into(), |x| format!("{x:.1}×")),
            ]);
        }
    }
    Ok(())
}

// ------------------------------------------------------------ ceiling

/// Biased MF against the hand-written SIMD loop, one thread.
fn ceiling(zoo: &Zoo, report: &mut Report) -> Result<()> {
    let mut s = Section::new("The step against the hand-written loop");
    s.text(
        "`recc bench models/biased_mf.rec --handwritten --threads 1` at k = 32 and 64: the \
         hand-written loop is biased MF's SGD step written by hand with AVX2 where the CPU \
         has it, on the same rows and learning rate; the ratio is its updates/s over \
         recc's (1.0: recc is as fast). MovieLens-100k u1 (80,000 ratings, 20 epochs) and \
         `--data zipf` (20M generated ratings, 200k users × 50k items, 3 epochs).",
    );
    let mut t = Table::new(&[
        "k",
        "data",
        "recc updates/s",
        "hand-written updates/s",
        "hand-written / recc",
    ]);
    for k in [32, 64] {
        let path = zoo.at_width("biased_mf", k)?;
        for (data, split, epochs) in [
            (zoo.movielens(), "given:u1", "20"),
            ("zipf".to_string(), "random:0.2", "3"),
        ] {
            let v = zoo.bench(
                &path,
                &data,
                split,
                &["--epochs", epochs, "--threads", "1", "--handwritten"],
            )?;
            let r = num(&v, &["ratio_to_handwritten"]);
            let name = if data == "zipf" {
                "zipf-20M"
            } else {
                "ML-100k u1"
            };
            t.row(vec![
                k.to_string(),
                name.into(),
                rate(num(&v, &["updates_per_second"])),
                rate(num(&v, &["handwritten_updates_per_second"])),
                fixed(r, 2),
            ]);
            report.check(
                &format!("biased MF k={k} on {name}: hand-written / recc, 1 thread"),
                "≤ 1.2",
                fixed(r, 2),
                r.is_some_and(|r| r <= 1.2),
            );
        }
    }
    s.table(t);
    report.push(s);
    Ok(())
}

// ------------------------------------------------------------ everyday work

/// The wall time of the commands users run, against targets.
fn everyday_work(zoo: &Zoo, report: &mut Report) -> Result<()> {
    let mut s = Section::new("Everyday work: wall time of the command");
    s.text(
        "Each command as a user types it (with `--json -q`), timed from start to exit: \
         loading, compiling, training and measuring included.",
    );
    let mut t = Table::new(&["work", "command", "wall s", "result", "target"]);
    let ml = zoo.movielens();
    let cv = |model: &str| -> Vec<String> {
        [
            "cv",
            &format!("models/{model}.rec"),
            "--data",
            &ml,
            "--split",
            "given",
            "--json",
            "-q",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let rmse = |v: &Value| num(v, &["mean", "rmse"]);
    for (model, target, rmse_target) in [
        ("svdpp", 30.0, Some(0.907)),
        ("hybrid_mf", 35.0, None),
        ("fm", 15.0, None),
        ("variational_mf", 20.0, None),
    ] {
        if !exists(model) {
            continue;
        }
        let (v, wall) = zoo.timed(&cv(model))?;
        let r = rmse(&v);
        t.row(vec![
            format!("{model} 5-fold"),
            format!("`recc cv models/{model}.rec --data ml-100k:DIR --split given`"),
            format!("{wall:.1}"),
            format!("mean RMSE {}", fixed(r, 4)),
            match rmse_target {
                Some(rt) => format!("≤ {target:.0} s, RMSE ≤ {rt}"),
                None => format!("≤ {target:.0} s"),
            },
        ]);
        report.check(
            &format!("{model} 5-fold wall time"),
            &format!("≤ {target:.0} s"),
            format!("{wall:.1} s"),
            wall <= target,
        );
        if let Some(rt) = rmse_target {
            report.check(
                &format!("{model} 5-fold mean RMSE"),
                &format!("≤ {rt}"),
                fixed(r, 4),
                r.is_some_and(|r| r <= rt),
            );
        }
    }
    let train = |model: &str, data: &str, split: &str, out: &str| -> Vec<String> {
        [
            "train",
            &format!("models/{model}.rec"),
            "--data",
            data,
            "--split",
            split,
            "--json",
            "-q",
            "-o",
            out,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let amazon = format!("{}+text", zoo.amazon());
    let lastfm = zoo.lastfm_data();
    let bpr_out = zoo.scratch("bpr-lastfm.recm").display().to_string();
    let scratch = zoo.scratch("work.recm").display().to_string();
    let work: Vec<(&str, &str, Vec<String>, f64)> = vec![
        (
            "word2vec on Amazon reviews (+text)",
            "`recc train models/word2vec_mf.rec --data amazon:FILE+text --split none`",
            train("word2vec_mf", &amazon, "none", &scratch),
            30.0,
        ),
        (
            "ncf on Last.fm",
            "`recc train models/ncf.rec --data lastfm:DIR --split user:0.2`",
            train("ncf", &lastfm, "user:0.2", &scratch),
            25.0,
        ),
        (
            "sequence_mf leave-last-out",
            "`recc train models/sequence_mf.rec --data ml-100k:DIR --split last:1`",
            train("sequence_mf", &ml, "last:1", &scratch),
            10.0,
        ),
        (
            "bpr_mf on Last.fm (training and ranking eval)",
            "`recc train models/bpr_mf.rec --data lastfm:DIR --split user:0.2`",
            train("bpr_mf", &lastfm, "user:0.2", &bpr_out),
            f64::INFINITY,
        ),
    ];
    for (name, command, args, target) in work {
        if !exists(
            args[1]
                .trim_start_matches("models/")
                .trim_end_matches(".rec"),
        ) {
            continue;
        }
        let (v, wall) = zoo.timed(&args)?;
        let result = match num(&v, &["metrics", "precision@10"]) {
            Some(p) => format!("p@10 {p:.4}"),
            None => format!("training {} s", fixed(num(&v, &["seconds"]), 1)),
        };
        t.row(vec![
            name.into(),
            command.into(),
            format!("{wall:.1}"),
            result,
            if target.is_finite() {
                format!("≤ {target:.0} s")
            } else {
                "–".into()
            },
        ]);
        if target.is_finite() {
            report.check(
                &format!("{name} wall time"),
                &format!("≤ {target:.0} s"),
                format!("{wall:.1} s"),
                wall <= target,
            );
        }
    }
    if exists("ncf") {
        let v = zoo.bench(
            Path::new("models/ncf.rec"),
            "builtin",
            "random:0.2",
            &["--epochs", "3"],
        )?;
        let up = num(&v, &["updates_per_second"]);
        t.row(vec![
            "ncf on the built-in data".into(),
            "`recc bench models/ncf.rec`".into(),
            fixed(num(&v, &["wall_seconds"]), 2),
            format!(
                "{} updates/s, {} KB of code, compiled in {} ms",
                rate(up),
                fixed(num(&v, &["code_bytes"]).map(|b| b / 1024.0), 0),
                fixed(num(&v, &["compile_ms"]), 0)
            ),
            "≥ 1 M updates/s".into(),
        ]);
        report.check(
            "ncf updates/s on the built-in data",
            "≥ 1 M",
            rate(up),
            up.is_some_and(|u| u >= 1e6),
        );
    }
    // The catalogue ranking of the model trained above: every Last.fm user
    // against all 17,632 artists.
    if Path::new(&bpr_out).is_file() {
        let args: Vec<String> = ["eval", &bpr_out, "--json", "-q"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (v, wall) = zoo.timed(&args)?;
        t.row(vec![
            "full-catalogue ranking eval, Last.fm (1,883 × 17,632)".into(),
            "`recc eval bpr-lastfm.recm`".into(),
            format!("{wall:.2}"),
            format!(
                "p@10 {}, AUC {}",
                fixed(num(&v, &["metrics", "precision@10"]), 4),
                fixed(num(&v, &["metrics", "auc"]), 4)
            ),
            "≤ 1 s".into(),
        ]);
        report.check(
            "full-catalogue ranking eval on Last.fm, wall",
            "≤ 1 s",
            format!("{wall:.2} s"),
            wall <= 1.0,
        );
    }
    s.table(t);
    report.push(s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_width_changes_every_vector_parameter_and_nothing_else() {
        let text = "param p[user]: vec(64) init normal(0, 0.05)\n\
                    param q[item]: vec(64)\n\
                    let s = dot(p[u], q[i]) # vec(n) in a comment stays\n";
        let out = with_width(text, 20);
        assert_eq!(
            out,
            "param p[user]: vec(20) init normal(0, 0.05)\n\
             param q[item]: vec(20)\n\
             let s = dot(p[u], q[i]) # vec(n) in a comment stays\n"
        );
    }

    #[test]
    fn median_skips_non_finite_values() {
        assert_eq!(median(&[3.0, f64::NAN, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }
}
