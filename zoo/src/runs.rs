//! The experiments: each section runs `recc` (and LightFM where a peer is
//! named), fills a section of the page and records its figures.

use std::path::{Path, PathBuf};
use std::process::Command;

use recc_compiler::model::Constraint;
use recc_runtime::experiment;
use serde_json::Value;

use crate::report::{Report, Section, Table};

#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("`{command}` printed something that is not the JSON expected: {detail}")]
    Output { command: String, detail: String },
    #[error("{0}")]
    Setup(String),
}

pub(crate) type Result<T> = std::result::Result<T, ZooError>;

/// A section of the page: fills it and records its figures.
pub(crate) type SectionFn = fn(&Zoo, &mut Report) -> Result<()>;

pub const SECTIONS: &[(&str, SectionFn)] = &[
    ("explicit", explicit),
    ("temporal", temporal),
    ("implicit", implicit_movielens),
    ("lastfm", lastfm),
    ("sequence", sequence),
    ("item2vec", item2vec),
    ("text", text),
    ("poincare", poincare),
];

/// Where things are and how to run them.
pub struct Zoo {
    pub(crate) recc: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) python: String,
    work: tempfile::TempDir,
}

impl Zoo {
    pub fn new(recc: Option<PathBuf>, data: PathBuf, python: Option<String>) -> Result<Zoo> {
        let recc = match recc {
            Some(r) => r,
            None => std::env::current_exe()
                .map_err(|e| ZooError::Setup(format!("cannot locate this program: {e}")))?
                .with_file_name("recc"),
        };
        if !recc.is_file() {
            return Err(ZooError::Setup(format!(
                "no recc binary at {} (build it: cargo build --release --bin recc)",
                recc.display()
            )));
        }
        if !data.join("ml-100k").is_dir() {
            return Err(ZooError::Setup(format!(
                "{} has no ml-100k/ folder (give the shared data folder with --data)",
                data.display()
            )));
        }
        let python = python
            .or_else(|| std::env::var("PYTHON").ok())
            .unwrap_or_else(|| "python3".into());
        let work = tempfile::tempdir()
            .map_err(|e| ZooError::Setup(format!("cannot make a scratch folder: {e}")))?;
        Ok(Zoo {
            recc,
            data,
            python,
            work,
        })
    }

    pub(crate) fn movielens(&self) -> String {
        format!("ml-100k:{}", self.data.join("ml-100k").display())
    }

    pub(crate) fn lastfm_data(&self) -> String {
        format!("lastfm:{}", self.data.join("lastfm-2k").display())
    }

    pub(crate) fn amazon(&self) -> String {
        format!(
            "amazon:{}",
            self.data
                .join("amazon-musical-instruments/reviews_5core.json")
                .display()
        )
    }

    pub(crate) fn scratch(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Runs `recc ARGS` and parses its JSON output.
    pub(crate) fn recc(&self, args: &[String]) -> Result<Value> {
        run_json(
            Command::new(&self.recc).args(args),
            format!("recc {}", args.join(" ")),
        )
    }

    /// `recc train MODEL --data DATA ARGS --json -q -o SCRATCH`.
    pub(crate) fn train(&self, model: &str, data: &str, args: &[&str]) -> Result<Value> {
        let mut a = vec![
            "train".to_string(),
            format!("models/{model}.rec"),
            "--data".into(),
            data.into(),
            "--json".into(),
            "-q".into(),
            "-o".into(),
            self.scratch(&format!("{model}.recm")).display().to_string(),
        ];
        a.extend(args.iter().map(|s| s.to_string()));
        self.recc(&a)
    }

    pub(crate) fn cv(&self, model: &str, args: &[&str]) -> Result<Value> {
        let mut a = vec![
            "cv".to_string(),
            format!("models/{model}.rec"),
            "--data".into(),
            self.movielens(),
            "--split".into(),
            "given".into(),
            "--json".into(),
            "-q".into(),
        ];
        a.extend(args.iter().map(|s| s.to_string()));
        self.recc(&a)
    }

    fn similar(&self, model: &str, item: &str, k: usize) -> Result<Vec<String>> {
        let v = self.recc(&[
            "similar".into(),
            self.scratch(&format!("{model}.recm")).display().to_string(),
            "--item".into(),
            item.into(),
            "-k".into(),
            k.to_string(),
            "--json".into(),
        ])?;
        let list = v["neighbours"].as_array().ok_or_else(|| ZooError::Output {
            command: format!("recc similar --item {item}"),
            detail: "no `neighbours` list".into(),
        })?;
        Ok(list
            .iter()
            .map(|n| {
                n["label"]
                    .as_str()
                    .or(n["id"].as_str())
                    .unwrap_or("?")
                    .to_string()
            })
            .collect())
    }

    /// LightFM on the rows recc wrote with `--write-split DIR`; `None` when
    /// the Python has no LightFM.
    fn lightfm(&self, dir: &Path, loss: &str) -> Result<Option<Value>> {
        let probe = Command::new(&self.python)
            .args(["-c", "import lightfm"])
            .output();
        if !matches!(probe, Ok(o) if o.status.success()) {
            return Ok(None);
        }
        let script = "bench/lightfm_ranking.py";
        let command = format!(
            "{} {script} {} --loss {loss} --json",
            self.python,
            dir.display()
        );
        run_json(
            Command::new(&self.python).args([
                script,
                &dir.display().to_string(),
                "--loss",
                loss,
                "--json",
            ]),
            command,
        )
        .map(Some)
    }

    /// The setup paragraph: versions, machine, data.
    pub fn describe(&self) -> String {
        let version = Command::new(&self.recc)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "recc (version unknown)".into());
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let lightfm = Command::new(&self.python)
            .args(["-c", "import lightfm; print(lightfm.__version__)"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| format!("LightFM {}", String::from_utf8_lossy(&o.stdout).trim()))
            .unwrap_or_else(|| "LightFM not installed (peer columns left empty)".into());
        format!(
            "Set-up: {version}, release build; {cpu}, {cores} cores; {lightfm} \
             (`{}`); data from `{}`.\n",
            self.python,
            self.data.display()
        )
    }
}

/// Runs `cmd` (shown as `command`) and parses the JSON it prints.
pub(crate) fn run_json(cmd: &mut Command, command: String) -> Result<Value> {
    eprintln!("   {command}");
    let out = cmd.output().map_err(|source| ZooError::Spawn {
        program: cmd.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    if !out.status.success() {
        return Err(ZooError::Failed {
            command,
            stderr: tail(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|e| ZooError::Output {
        command,
        detail: e.to_string(),
    })
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(6)..].join(" / ")
}

pub(crate) fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut v = v;
    for p in path {
        v = v.get(p)?;
    }
    v.as_f64()
}

pub(crate) fn f4(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |x| format!("{x:.4}"))
}

fn secs(v: &Value) -> String {
    num(v, &["seconds"]).map_or_else(|| "–".into(), |s| format!("{s:.1}"))
}

pub(crate) fn model_link(model: &str) -> String {
    format!("[`{model}.rec`](../models/{model}.rec)")
}

pub(crate) fn exists(model: &str) -> bool {
    Path::new(&format!("models/{model}.rec")).is_file()
}

// ------------------------------------------------------------ explicit

/// MovieLens-100k u1–u5: mean test RMSE of every rating model.
fn explicit(zoo: &Zoo, report: &mut Report) -> Result<()> {
    let models: &[(&str, &str)] = &[
        ("mf", "MF"),
        ("biased_mf", "biased MF"),
        ("svdpp", "SVD++ (history pooling)"),
        ("side_mf", "side features (occupation)"),
        ("hybrid_mf", "side features + history"),
        ("fm", "factorization machine (all side features)"),
        ("temporal_mf", "temporal MF"),
        ("sigmoid_range_mf", "sigmoid range MF"),
        ("nmf", "non-negative MF"),
        ("variational_mf", "variational MF (mean)"),
    ];
    let mut s = Section::new("Explicit ratings: MovieLens-100k, folds u1–u5");
    s.text(format!(
        "`recc cv models/MODEL.rec --data {} --split given`: trained on each `uN.base`, \
         tested on `uN.test`, mean ± sample standard deviation over the five folds. \
         Scores are not clipped to 1–5.",
        "ml-100k:DIR"
    ));
    let mut t = Table::new(&["model", "file", "RMSE", "MAE", "s"]);
    let mut side_best: Option<(f64, &str)> = None;
    let mut variational = None;
    for &(model, name) in models {
        if !exists(model) {
            continue;
        }
        let v = zoo.cv(model, &[])?;
        let rmse = num(&v, &["mean", "rmse"]);
        let sd = num(&v, &["std", "rmse"]);
        t.row(vec![
            name.into(),
            model_link(model),
            format!("{} ± {}", f4(rmse), f4(sd)),
            f4(num(&v, &["mean", "mae"])),
            secs(&v),
        ]);
        let rmse = rmse.unwrap_or(f64::NAN);
        match model {
            "biased_mf" => report.check(
                "biased MF, mean RMSE u1–u5",
                "≤ 0.915",
                format!("{rmse:.4}"),
                rmse <= 0.915,
            ),
            "svdpp" => report.check(
                "SVD++, mean RMSE u1–u5",
                "≤ 0.905",
                format!("{rmse:.4}"),
                rmse <= 0.905,
            ),
            "side_mf" | "hybrid_mf" | "fm" if side_best.is_none_or(|(b, _)| rmse < b) => {
                side_best = Some((rmse, model));
            }
            "variational_mf" => variational = Some(v.clone()),
            _ => {}
        }
    }
    s.table(t);
    if let Some((rmse, model)) = side_best {
        report.check(
            "best side-feature model, mean RMSE u1–u5",
            "≤ 0.895",
            format!("{rmse:.4} (`{model}`)"),
            rmse <= 0.895,
        );
    }
    if let Some(v) = variational {
        variational_figures(&v, &mut s, report);
    }
    nonneg_figure(zoo, &mut s, report)?;
    report.push(s);
    Ok(())
}

fn variational_figures(v: &Value, s: &mut Section, report: &mut Report) {
    let rmse = num(v, &["mean", "rmse"]).unwrap_or(f64::NAN);
    report.check(
        "variational MF, mean RMSE u1–u5 (posterior mean)",
        "≤ 0.920",
        format!("{rmse:.4}"),
        rmse <= 0.920,
    );
    let i50 = num(v, &["mean", "interval50"]);
    let i90 = num(v, &["mean", "interval90"]);
    let corr = num(v, &["mean", "spread_corr"]);
    let mut t = Table::new(&["figure", "mean over u1–u5", "std"]);
    for (name, key) in [
        (
            "test ratings inside the 50% predictive interval",
            "interval50",
        ),
        (
            "test ratings inside the 90% predictive interval",
            "interval90",
        ),
        (
            "Spearman correlation of predictive sd with the user's training ratings",
            "spread_corr",
        ),
    ] {
        t.row(vec![
            name.into(),
            f4(num(v, &["mean", key])),
            f4(num(v, &["std", key])),
        ]);
    }
    s.text(
        "Variational MF's predictive distribution (64 posterior draws per test rating, \
         plus the learned noise of its likelihood):",
    );
    s.table(t);
    let pct = |x: Option<f64>| x.map_or_else(|| "–".into(), |x| format!("{:.1}%", 100.0 * x));
    report.check(
        "variational MF, 50% interval coverage",
        "45–55%",
        pct(i50),
        i50.is_some_and(|x| (0.45..=0.55).contains(&x)),
    );
    report.check(
        "variational MF, 90% interval coverage",
        "85–95%",
        pct(i90),
        i90.is_some_and(|x| (0.85..=0.95).contains(&x)),
    );
    report.check(
        "variational MF, spread vs. user's ratings (Spearman)",
        "< 0 (fewer ratings, wider)",
        f4(corr),
        corr.is_some_and(|c| c < 0.0),
    );
}

/// NMF trained on u1: the smallest value in its `nonneg` tables.
fn nonneg_figure(zoo: &Zoo, s: &mut Section, report: &mut Report) -> Result<()> {
    if !exists("nmf") {
        return Ok(());
    }
    zoo.train("nmf", &zoo.movielens(), &["--split", "given:u1"])?;
    let path = zoo.scratch("nmf.recm");
    let reading = |e: experiment::ExperimentError| ZooError::Output {
        command: format!("reading {}", path.display()),
        detail: e.to_string(),
    };
    // Which tables are non-negative is the compiled model's to say.
    let saved = experiment::read_model(&path).map_err(reading)?;
    let source =
        experiment::compile_source(&saved.source_name, saved.source.clone()).map_err(reading)?;
    let mut lowest = f64::INFINITY;
    let mut names = Vec::new();
    for t in &saved.tables {
        let nonneg = source
            .model
            .params
            .iter()
            .any(|p| p.name == t.name && p.constraint == Constraint::Nonneg);
        if nonneg {
            names.push(format!("`{}`", t.name));
            lowest = t.values.iter().copied().fold(lowest, f64::min);
        }
    }
    s.text(format!(
        "NMF after training on u1: the smallest entry of its non-negative tables ({}) is \
         {lowest:.3e}; the projection runs after every step, so no entry was ever negative \
         after an update.",
        names.join(", ")
    ));
    report.check(
        "NMF non-negative throughout",
        "min ≥ 0",
        format!("{lowest:.3e}"),
        lowest >= 0.0 && !names.is_empty(),
    );
    Ok(())
}

// ------------------------------------------------------------ temporal

fn temporal(zoo: &Zoo, report: &mut Report) -> Result<()> {
    let mut s = Section::new("Temporal MF: per-user leave-last-20%-out by time");
    s.text(
        "`--split last:20%`: each user's last 20% of ratings by timestamp are the test \
         rows, so the models predict each user's future from their past.",
    );
    let mut t = Table::new(&["model", "file", "RMSE", "MAE", "s"]);
    let mut rmse = Vec::new();
    for model in ["biased_mf", "temporal_mf"] {
        let v = zoo.train(model, &zoo.movielens(), &["--split", "last:20%"])?;
        let r = num(&v, &["metrics", "rmse"]);
        rmse.push(r.unwrap_or(f64::NAN));
        t.row(vec![
            model.into(),
            model_link(model),
            f4(r),
            f4(num(&v, &["metrics", "mae"])),
            secs(&v),
        ]);
    }
    s.table(t);
    report.check(
        "temporal MF vs biased MF, leave-last-20%-by-time RMSE",
        "temporal < biased",
        format!("{:.4} vs {:.4}", rmse[1], rmse[0]),
        rmse[1] < rmse[0],
    );
    report.push(s);
    Ok(())
}

// ------------------------------------------------------------ ranking

fn ranking_row(name: String, file: String, v: &Value, k: &str) -> Vec<String> {
    vec![
        name,
        file,
        f4(num(v, &["metrics", &format!("precision@{k}")]).or(num(v, &["precision"]))),
        f4(num(v, &["metrics", &format!("ndcg@{k}")])),
        f4(num(v, &["metrics", "auc"]).or(num(v, &["auc"]))),
        f4(num(v, &["metrics", "mrr"])),
        secs(v),
    ]
}

const RANKING_HEADER: &[&str] = &[
    "model",
    "file",
    "precision@10",
    "NDCG@10",
    "AUC",
    "MRR",
    "s",
];

fn implicit_movielens(zoo: &Zoo, report: &mut Report) -> Result<()> {
    let mut s = Section::new("Implicit feedback: MovieLens-100k ua.base / ua.test");
    s.text(
        "Every rating is a positive (LightFM's example protocol). recc trains on \
         `ua.base` and ranks the whole catalogue for each test user, leaving out their \
         training items; LightFM (32 components, 30 epochs, seed 42) is trained and \
         measured on exactly the same rows (`recc train --write-split`, then \
         `bench/lightfm_ranking.py`), with its own `precision_at_k` and `auc_score`.",
    );
    let dir = zoo.scratch("ua");
    let dir_s = dir.display().to_string();
    let mut t = Table::new(RANKING_HEADER);
    let mut p = std::collections::BTreeMap::new();
    let mut auc = std::collections::BTreeMap::new();
    for model in ["pointwise_mf", "bpr_mf", "hinge_mf"] {
        let v = zoo.train(
            model,
            &zoo.movielens(),
            &["--split", "given:ua", "--write-split", &dir_s],
        )?;
        p.insert(
            model,
            num(&v, &["metrics", "precision@10"]).unwrap_or(f64::NAN),
        );
        auc.insert(model, num(&v, &["metrics", "auc"]).unwrap_or(f64::NAN));
        t.row(ranking_row(model.into(), model_link(model), &v, "10"));
    }
    let mut peers = std::collections::BTreeMap::new();
    for loss in ["warp", "bpr"] {
        match zoo.lightfm(&dir, loss)? {
            Some(v) => {
                t.row(vec![
                    format!("LightFM {loss}"),
                    "`bench/lightfm_ranking.py`".into(),
                    f4(num(&v, &["precision"])),
                    "–".into(),
                    f4(num(&v, &["auc"])),
                    "–".into(),
                    secs(&v),
                ]);
                peers.insert(loss, v);
            }
            None => s.text(format!(
                "LightFM {loss}: not run (LightFM is not installed)."
            )),
        }
    }
    s.table(t);
    for (model, loss, label) in [
        ("hinge_mf", "warp", "adaptive hinge vs LightFM WARP"),
        ("bpr_mf", "bpr", "BPR vs LightFM BPR"),
    ] {
        if let Some(v) = peers.get(loss) {
            let (pp, pa) = (
                num(v, &["precision"]).unwrap_or(f64::NAN),
                num(v, &["auc"]).unwrap_or(f64::NAN),
            );
            report.check(
                &format!("ML-100k ua, {label}: precision@10 and AUC"),
                "≥ LightFM's",
                format!(
                    "p@10 {:.4} vs {pp:.4}, AUC {:.4} vs {pa:.4}",
                    p[model], auc[model]
                ),
                p[model] >= pp && auc[model] >= pa,
            );
        }
    }
    report.check(
        "ML-100k ua, precision@10: pointwise < BPR < adaptive hinge",
        "ordered",
        format!(
            "{:.4} < {:.4} < {:.4}",
            p["pointwise_mf"], p["bpr_mf"], p["hinge_mf"]
        ),
        p["pointwise_mf"] < p["bpr_mf"] && p["bpr_mf"] < p["hinge_mf"],
    );
    report.push(s);
    Ok(())
}

fn lastfm(zoo: &Zoo, report: &mut Report) -> Result<()> {
    if !zoo.data.join("lastfm-2k").is_dir() {
        return Err(ZooError::Setup("no lastfm-2k/ in the data folder".into()));
    }
    let mut s = Section::new("Implicit feedback: Last.fm-2k");
    s.text(
        "Each (user, artist) pair with plays is a positive; `--split user:0.2 --seed 42` \
         holds out a fifth of each user's artists. The popularity baseline ranks artists \
         by their number of training listeners (`recc train --baseline`).",
    );
    let mut t = Table::new(RANKING_HEADER);
    let mut baseline: Option<Value> = None;
    let mut results = Vec::new();
    for model in ["bpr_mf", "hinge_mf", "mixture_mf", "ncf"] {
        if !exists(model) {
            continue;
        }
        let v = zoo.train(
            model,
            &zoo.lastfm_data(),
            &["--split", "user:0.2", "--seed", "42", "--baseline"],
        )?;
        if baseline.is_none() {
            baseline = v.get("baseline").cloned();
        }
        t.row(ranking_row(model.into(), model_link(model), &v, "10"));
        results.push((model, v));
    }
    if let Some(b) = &baseline {
        let b = serde_json::json!({ "metrics": b });
        t.row(ranking_row("popularity".into(), "–".into(), &b, "10"));
        for (model, v) in &results {
            let beats = ["precision@10", "ndcg@10", "auc"].iter().all(|m| {
                num(v, &["metrics", m]).unwrap_or(f64::NAN)
                    > num(&b, &["metrics", m]).unwrap_or(f64::INFINITY)
            });
            report.check(
                &format!("Last.fm, {model} beats popularity (p@10, NDCG@10, AUC)"),
                "all three higher",
                format!(
                    "p@10 {} vs {}, NDCG {} vs {}, AUC {} vs {}",
                    f4(num(v, &["metrics", "precision@10"])),
                    f4(num(&b, &["metrics", "precision@10"])),
                    f4(num(v, &["metrics", "ndcg@10"])),
                    f4(num(&b, &["metrics", "ndcg@10"])),
                    f4(num(v, &["metrics", "auc"])),
                    f4(num(&b, &["metrics", "auc"])),
                ),
                beats,
            );
        }
    }
    s.table(t);
    report.push(s);
    Ok(())
}

fn sequence(zoo: &Zoo, report: &mut Report) -> Result<()> {
    let mut s = Section::new("Sequences: next item on MovieLens-100k, leave-last-out");
    s.text(
        "`--split last:1`: each user's last rated film (by time) is the test item; the \
         model ranks the whole catalogue, leaving out the user's earlier films. MRR is \
         the mean reciprocal rank of that film.",
    );
    let mut t = Table::new(RANKING_HEADER);
    let mut mrr = std::collections::BTreeMap::new();
    let mut baseline = None;
    for model in ["sequence_mf", "bpr_mf"] {
        let v = zoo.train(
            model,
            &zoo.movielens(),
            &["--split", "last:1", "--baseline"],
        )?;
        mrr.insert(model, num(&v, &["metrics", "mrr"]).unwrap_or(f64::NAN));
        if baseline.is_none() {
            baseline = v.get("baseline").cloned();
        }
        t.row(ranking_row(model.into(), model_link(model), &v, "10"));
    }
    let pop = baseline
        .as_ref()
        .and_then(|b| b.get("mrr"))
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN);
    if let Some(b) = baseline {
        t.row(ranking_row(
            "popularity".into(),
            "–".into(),
            &serde_json::json!({ "metrics": b }),
            "10",
        ));
    }
    s.table(t);
    report.check(
        "next-item MRR: sequence model vs popularity and BPR-MF",
        "higher than both",
        format!(
            "{:.4} vs {pop:.4} and {:.4}",
            mrr["sequence_mf"], mrr["bpr_mf"]
        ),
        mrr["sequence_mf"] > pop && mrr["sequence_mf"] > mrr["bpr_mf"],
    );
    report.push(s);
    Ok(())
}

// ------------------------------------------------------------ embeddings

fn item2vec(zoo: &Zoo, report: &mut Report) -> Result<()> {
    let mut s = Section::new("item2vec: word2vec-as-MF over users' film sequences");
    s.text(
        "`recc train models/word2vec_mf.rec --data ml-100k:DIR+item2vec --split none`: \
         each user's films in time order are a sentence; the model factorizes their \
         windowed co-occurrence counts. Neighbours by cosine similarity of `p` \
         (`recc similar`).",
    );
    let data = format!("{}+item2vec", zoo.movielens());
    let v = zoo.train("word2vec_mf", &data, &["--split", "none"])?;
    let mut t = Table::new(&["film", "five nearest films"]);
    let mut star_wars = Vec::new();
    for film in [
        "Star Wars (1977)",
        "Toy Story (1995)",
        "Pulp Fiction (1994)",
        "Silence of the Lambs, The (1991)",
        "Godfather, The (1972)",
        "Fargo (1996)",
    ] {
        let n = zoo.similar("word2vec_mf", film, 5)?;
        if film.starts_with("Star Wars") {
            star_wars = n.clone();
        }
        t.row(vec![film.into(), n.join("; ")]);
    }
    s.table(t);
    s.text(format!("Training took {} s.", secs(&v)));
    let has = |t: &str| star_wars.iter().any(|n| n == t);
    report.check(
        "item2vec: Star Wars' 5 nearest include Return of the Jedi and Empire Strikes Back",
        "both",
        format!(
            "Return of the Jedi: {}, Empire Strikes Back: {}",
            if has("Return of the Jedi (1983)") {
                "yes"
            } else {
                "no"
            },
            if has("Empire Strikes Back, The (1980)") {
                "yes"
            } else {
                "no"
            }
        ),
        has("Return of the Jedi (1983)") && has("Empire Strikes Back, The (1980)"),
    );
    report.push(s);
    Ok(())
}

fn text(zoo: &Zoo, report: &mut Report) -> Result<()> {
    let path = zoo
        .data
        .join("amazon-musical-instruments/reviews_5core.json");
    if !path.is_file() {
        return Err(ZooError::Setup(format!("no {}", path.display())));
    }
    let mut s = Section::new("word2vec-as-MF on Amazon musical-instrument reviews");
    s.text(
        "`recc train models/word2vec_mf.rec --data amazon:FILE+text --split none`: each \
         review's words are a sentence anchored to its product, whose token \
         (`ITEM_<asin>`) shares the sentence's windows, so words and products live in \
         one embedding.",
    );
    let data = format!("{}+text", zoo.amazon());
    let v = zoo.train("word2vec_mf", &data, &["--split", "none"])?;
    let mut t = Table::new(&["word", "nearest words", "nearest products"]);
    let mut products = Vec::new();
    for word in ["strings", "tuner", "pedal", "cable", "capo", "picks"] {
        let n = match zoo.similar("word2vec_mf", word, 40) {
            Ok(n) => n,
            Err(_) => continue,
        };
        let (items, words): (Vec<String>, Vec<String>) = n
            .into_iter()
            .partition(|w| w.starts_with("ITEM_") || w.contains('['));
        if let Some(first) = items.first() {
            products.push(first.clone());
        }
        t.row(vec![
            word.into(),
            words.iter().take(6).cloned().collect::<Vec<_>>().join(", "),
            items.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
        ]);
    }
    s.table(t);
    let mut t = Table::new(&["product", "nearest words"]);
    for p in products.iter().take(3) {
        let n = zoo.similar("word2vec_mf", p, 40)?;
        let words: Vec<String> = n
            .into_iter()
            .filter(|w| !w.starts_with("ITEM_"))
            .take(8)
            .collect();
        t.row(vec![p.clone(), words.join(", ")]);
    }
    s.table(t);
    s.text(format!("Training took {} s.", secs(&v)));
    report.push(s);
    Ok(())
}

fn poincare(zoo: &Zoo, report: &mut Report) -> Result<()> {
    let mut s = Section::new("Poincaré embeddings of a tree (branching 3, depth 6)");
    s.text(
        "`recc train models/poincare_tree.rec --data tree:3x6`: the transitive closure \
         of a complete ternary tree of depth 6 (1,093 nodes), embedded in the \
         2-dimensional Poincaré ball. Parent rank: the rank of each node's parent among \
         all other nodes by Poincaré distance (1 = nearest, ties count half), \
         averaged over non-root nodes.",
    );
    let mut t = Table::new(&["seed", "parent rank", "mean norm by depth 0–6", "s"]);
    let mut ranks = Vec::new();
    let mut increasing = true;
    for seed in ["42", "1", "2"] {
        let v = zoo.train("poincare_tree", "tree:3x6", &["--seed", seed])?;
        let rank = num(&v, &["hierarchy", "parent_rank"]);
        let norms: Vec<f64> = v["hierarchy"]["norm_by_depth"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        increasing &= norms.len() == 7 && norms.windows(2).all(|w| w[0] < w[1]);
        ranks.push(rank.unwrap_or(f64::NAN));
        t.row(vec![
            seed.into(),
            f4(rank),
            norms
                .iter()
                .map(|n| format!("{n:.4}"))
                .collect::<Vec<_>>()
                .join(", "),
            secs(&v),
        ]);
    }
    s.table(t);
    let mean = ranks.iter().sum::<f64>() / ranks.len() as f64;
    report.check(
        "Poincaré tree: mean parent rank (mean of 3 seeds)",
        "≤ 2",
        format!("{mean:.3}"),
        mean <= 2.0,
    );
    report.check(
        "Poincaré tree: mean norm increases with depth",
        "every seed",
        if increasing { "yes" } else { "no" }.into(),
        increasing,
    );
    report.push(s);
    Ok(())
}
