//! Model-file bytes: small trained models saved with `modelfile::save`,
//! their bytes mutated (bit flips, truncation, splices of two files, edited
//! header fields with the values resized to match), then `load`, and what
//! `recc eval`/`predict`/`recommend`/`similar`/`export` do with a loaded
//! file: compile the embedded source, bind the data, check the domains'
//! ids, build the parameters and a `Predictor`, score and rank. Every step
//! must end in `Ok` or a clean error; a panic or a crash is a finding.

use crate::driver::{Finding, Harness, Stages};
use crate::mutate;
use rand::rngs::StdRng;
use rand::Rng;
use recc_runtime::bind::BindOptions;
use recc_runtime::data::Dataset;
use recc_runtime::export::{export, ExportFormat};
use recc_runtime::modelfile::{self, SavedDomain, SavedModel, MAGIC};
use recc_runtime::predict::{embedding_table, similar, Predictor};
use recc_runtime::synth::{self, SynthConfig};
use recc_runtime::train::{self, Backend, Session, Silent, Task, TrainConfig};
use serde_json::Value;
use std::collections::BTreeMap;

/// The models saved and mutated.
const BASES: &[&str] = &[
    "biased_mf.rec",
    "bpr_mf.rec",
    "svdpp.rec",
    "temporal_mf.rec",
    "mixture_mf.rec",
    "poincare.rec",
];

/// Bytes before the JSON header: magic, version, header length.
const PREAMBLE: usize = MAGIC.len() + 4 + 8;

/// The data every base model trained on; the cases reload it as `recc eval`
/// reloads a model's data.
pub fn data() -> Dataset {
    synth::generate(&SynthConfig {
        users: 50,
        items: 40,
        ratings_per_user: 8,
        seed: 5,
    })
}

fn train_rows(data: &Dataset) -> Vec<usize> {
    (0..data.len()).step_by(2).collect()
}

pub struct ModelFileHarness {
    data: Dataset,
    rows: Vec<usize>,
    /// Each base model's saved bytes.
    bases: Vec<Vec<u8>>,
    /// The mutations of the last generated case, for the finding's note.
    recipe: Vec<String>,
    dir: tempfile::TempDir,
    /// Whether cases edit header fields (resizing the values to match);
    /// without, only raw bytes are mutated.
    pub header_edits: bool,
}

impl Default for ModelFileHarness {
    fn default() -> Self {
        Self::new()
    }
}

/// A file split into header and per-table values.
struct Parts {
    header: Value,
    values: Vec<Vec<u8>>,
}

fn split_file(bytes: &[u8]) -> Option<Parts> {
    let len = u64::from_le_bytes(bytes.get(MAGIC.len() + 4..PREAMBLE)?.try_into().ok()?) as usize;
    let header_end = PREAMBLE.checked_add(len)?;
    let header: Value = serde_json::from_slice(bytes.get(PREAMBLE..header_end)?).ok()?;
    let mut values = Vec::new();
    let mut at = header_end;
    for t in header.get("tables")?.as_array()? {
        let n = t.get("rows")?.as_u64()? as usize * t.get("lanes")?.as_u64()? as usize * 8;
        values.push(bytes.get(at..at + n)?.to_vec());
        at += n;
    }
    Some(Parts { header, values })
}

/// The file back; with `fit`, each table's values cut or zero-padded to the
/// size its header now says, so the length checks pass and the edit reaches
/// the stages after `load`.
fn join_file(p: &Parts, fit: bool) -> Vec<u8> {
    let header = serde_json::to_vec(&p.header).unwrap_or_default();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&modelfile::FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    let tables = p.header.get("tables").and_then(Value::as_array);
    for (k, v) in p.values.iter().enumerate() {
        let mut v = v.clone();
        if fit {
            let want = tables
                .and_then(|ts| ts.get(k))
                .and_then(|t| Some(t.get("rows")?.as_u64()? * t.get("lanes")?.as_u64()? * 8))
                .unwrap_or(v.len() as u64);
            // Sizes beyond a few MB are left for `load` to refuse.
            if want <= 1 << 24 {
                v.resize(want as usize, 0);
            }
        }
        out.extend_from_slice(&v);
    }
    out
}

impl ModelFileHarness {
    /// The saved bytes of base model `k` (of those that trained).
    pub fn base(&self, k: usize) -> &[u8] {
        &self.bases[k]
    }

    pub fn new() -> ModelFileHarness {
        let data = data();
        let rows = train_rows(&data);
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary folder: {e}"));
        let sources = crate::named_model_sources();
        let mut bases = Vec::new();
        for name in BASES {
            let Some((_, text)) = sources.iter().find(|(n, _)| n == name) else {
                continue;
            };
            if let Some(bytes) = saved(name, text, &data, &rows, &dir, false) {
                bases.push(bytes);
            }
        }
        // A Gibbs fit, whose file keeps its draws after the tables.
        if let Some((name, text)) = sources.iter().find(|(n, _)| n == "biased_mf.rec") {
            if let Some(bytes) = saved(name, text, &data, &rows, &dir, true) {
                bases.push(bytes);
            }
        }
        ModelFileHarness {
            data,
            rows,
            bases,
            recipe: Vec::new(),
            dir,
            header_edits: true,
        }
    }
}

/// `name` trained for an epoch (with `gibbs`, a few Gibbs sweeps) and saved
/// as `recc train -o` saves it.
fn saved(
    name: &str,
    text: &str,
    data: &Dataset,
    rows: &[usize],
    dir: &tempfile::TempDir,
    gibbs: bool,
) -> Option<Vec<u8>> {
    let compiled = recc_compiler::compile(name, text);
    let model = compiled.model.as_ref()?;
    let session = Session::new(model, data, rows, &BindOptions::default()).ok()?;
    let mut config = TrainConfig::from_fit(&model.fit);
    config.epochs = 1;
    config.threads = 1;
    config.early_stopping = 0;
    if gibbs {
        config.solver = recc_compiler::model::Solver::Gibbs {
            samples: 3,
            burn_in: 1,
        };
    }
    let trained = train::train(&session, data, rows, &[], &config, &mut Silent).ok()?;
    let mut settings = BTreeMap::new();
    settings.insert("seed".to_string(), model.fit.seed.to_string());
    settings.insert("backend".to_string(), "jit".to_string());
    let saved = SavedModel {
        recc_version: "0.1.0".into(),
        model_name: model.name.clone(),
        source_name: name.to_string(),
        source: text.to_string(),
        data: "builtin".into(),
        settings,
        metrics: BTreeMap::new(),
        history: trained.history.clone(),
        domains: SavedDomain::all(&session.binding.domains),
        tables: modelfile::tables_from_params(&session.forward, &trained.params),
        context: None,
        samples: trained
            .samples
            .as_ref()
            .map(|s| modelfile::SavedSamples::new(&session.forward, s)),
    };
    let path = dir.path().join(format!("{name}.recm"));
    modelfile::save(&path, &saved).ok()?;
    std::fs::read(&path).ok()
}

fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

/// One edit of the header; a description of it.
fn edit_header(p: &mut Parts, rng: &mut StdRng, other: &Parts) -> String {
    let h = &mut p.header;
    let n_tables = h["tables"].as_array().map_or(0, Vec::len);
    let n_domains = h["domains"].as_array().map_or(0, Vec::len);
    let t = rng.random_range(0..n_tables.max(1));
    let d = rng.random_range(0..n_domains.max(1));
    match rng.random_range(0..14) {
        0 | 1 => {
            let field = pick(rng, &["rows", "lanes"]);
            let old = h["tables"][t][field].as_u64().unwrap_or(1);
            let new = match rng.random_range(0..6) {
                0 => 0,
                1 => old + 1,
                2 => old.saturating_sub(1),
                3 => old * 2,
                4 => 1 << 40,
                _ => 1,
            };
            h["tables"][t][field] = new.into();
            format!("tables[{t}].{field} {old} -> {new}")
        }
        2 => {
            let u = rng.random_range(0..n_tables.max(1));
            let a = h["tables"][t]["name"].clone();
            let b = h["tables"][u]["name"].clone();
            h["tables"][t]["name"] = b;
            h["tables"][u]["name"] = a;
            format!("swapped the names of tables {t} and {u}")
        }
        3 => {
            if let Some(ts) = h["tables"].as_array_mut() {
                if t < ts.len() {
                    ts.remove(t);
                    if t < p.values.len() {
                        p.values.remove(t);
                    }
                }
            }
            format!("dropped table {t}")
        }
        4 | 5 => {
            let src = h["source"].as_str().unwrap_or("").to_string();
            let to = pick(
                rng,
                &[
                    "vec(4096)",
                    "vec(8)",
                    "vec(65)",
                    "vec(1)",
                    "vec(63)",
                    "real",
                ],
            );
            let new = src.replacen("vec(64)", to, 1);
            h["source"] = new.into();
            format!("source: vec(64) -> {to}")
        }
        6 => {
            h["source"] = other.header["source"].clone();
            "source of another model".into()
        }
        7 => {
            let src = h["source"].as_str().unwrap_or("").to_string();
            h["source"] = mutate::text(&src, rng, &mutate::TOKENS).into();
            "source mutated".into()
        }
        8 => {
            if let Some(ids) = h["domains"][d]["ids"].as_array_mut() {
                if !ids.is_empty() {
                    ids.pop();
                }
            }
            if let Some(ls) = h["domains"][d]["labels"].as_array_mut() {
                ls.pop();
            }
            format!("domain {d}: last id removed")
        }
        9 => {
            if let Some(ids) = h["domains"][d]["ids"].as_array_mut() {
                if ids.len() > 1 {
                    ids.swap(0, 1);
                }
            }
            format!("domain {d}: first two ids swapped")
        }
        10 => {
            let name = pick(rng, &["item", "user", "week", "nope", ""]);
            h["domains"][d]["name"] = name.into();
            format!("domain {d} renamed {name}")
        }
        11 => {
            let v = pick(rng, &["interp", "jit", "cuda", ""]);
            h["settings"]["backend"] = v.into();
            format!("settings.backend = {v}")
        }
        12 => {
            let dom = pick(rng, &["user", "item", "week", "nope"]);
            h["tables"][t]["domain"] = if rng.random_bool(0.3) {
                Value::Null
            } else {
                dom.into()
            };
            format!("tables[{t}].domain = {dom} or null")
        }
        _ => {
            // A value in the table region set to an edge value.
            if let Some(v) = p.values.get_mut(t) {
                if v.len() >= 8 {
                    let k = rng.random_range(0..v.len() / 8) * 8;
                    let x = [f64::NAN, f64::INFINITY, -1e300, 1e38, 0.0][rng.random_range(0..5)];
                    v[k..k + 8].copy_from_slice(&x.to_le_bytes());
                    return format!("tables[{t}] value {} = {x}", k / 8);
                }
            }
            "no value to edit".into()
        }
    }
}

impl Harness for ModelFileHarness {
    fn name(&self) -> &'static str {
        "modelfile"
    }

    fn extension(&self) -> &'static str {
        "recm"
    }

    fn shrinkable(&self) -> bool {
        false
    }

    fn note(&self) -> String {
        self.recipe.join("; ")
    }

    fn generate(&mut self, rng: &mut StdRng) -> Vec<u8> {
        self.recipe.clear();
        if self.bases.is_empty() {
            return Vec::new();
        }
        let k = rng.random_range(0..self.bases.len());
        let base = &self.bases[k];
        self.recipe.push(format!(
            "base {}",
            BASES.get(k).unwrap_or(&"biased_mf.rec (gibbs)")
        ));
        let classes = if self.header_edits { 20 } else { 11 };
        match rng.random_range(0..classes) {
            0..=5 => {
                let rounds = rng.random_range(1..=4);
                self.recipe.push(format!("{rounds} byte mutations"));
                mutate::bytes(base, rng, rounds)
            }
            6..=8 => {
                // Single-bit flips, where a checksum would catch them.
                let mut b = base.clone();
                let flips = rng.random_range(1..=3);
                for _ in 0..flips {
                    let i = rng.random_range(0..b.len());
                    let bit = rng.random_range(0..8);
                    b[i] ^= 1 << bit;
                    self.recipe.push(format!("bit {bit} of byte {i} flipped"));
                }
                b
            }
            9 | 10 => {
                let other = &self.bases[rng.random_range(0..self.bases.len())];
                let (a, b) = (
                    rng.random_range(0..=base.len()),
                    rng.random_range(0..=other.len()),
                );
                self.recipe
                    .push(format!("first {a} bytes, then another file from byte {b}"));
                let mut out = base[..a].to_vec();
                out.extend_from_slice(&other[b..]);
                out
            }
            _ => {
                let other = &self.bases[rng.random_range(0..self.bases.len())];
                let (Some(mut p), Some(o)) = (split_file(base), split_file(other)) else {
                    return base.clone();
                };
                for _ in 0..rng.random_range(1..=2) {
                    let what = edit_header(&mut p, rng, &o);
                    self.recipe.push(what);
                }
                let fit = rng.random_bool(0.8);
                if !fit {
                    self.recipe.push("values left as they were".into());
                }
                join_file(&p, fit)
            }
        }
    }

    fn run(&mut self, input: &[u8], stages: &mut Stages) -> Result<(), Finding> {
        let mut stage = |s: &'static str| *stages.entry(s).or_default() += 1;
        let path = self.dir.path().join("case.recm");
        std::fs::write(&path, input).map_err(|e| Finding::new("harness: write", e.to_string()))?;
        let saved = match modelfile::load(&path) {
            Ok(s) => s,
            Err(e) => {
                let _ = e.to_string();
                stage("refused by load");
                return Ok(());
            }
        };
        stage("loaded");
        let out = self.dir.path().join("export");
        let _ = export(&saved, &out, ExportFormat::Csv);
        let _ = std::fs::remove_dir_all(&out);
        let compiled = recc_compiler::compile(&saved.source_name, &saved.source);
        let _ = compiled.render_diagnostics();
        let model = match (&compiled.model, compiled.has_errors()) {
            (Some(m), false) => m.clone(),
            _ => {
                stage("source refused by check");
                return Ok(());
            }
        };
        // As `recc eval` reloads a model: bind the data, check its ids are
        // the model's, then build the parameters from the file's tables.
        let Ok(mut session) = Session::new(&model, &self.data, &self.rows, &BindOptions::default())
        else {
            stage("refused by bind");
            return Ok(());
        };
        session.backend = saved
            .settings
            .get("backend")
            .and_then(|b| b.parse().ok())
            .unwrap_or(Backend::Jit);
        for ((name, map), d) in session.binding.domains.iter().zip(&saved.domains) {
            if *name != d.name || map.names() != d.ids.as_slice() {
                stage("refused: the data's ids differ");
                return Ok(());
            }
        }
        let Ok(params) = saved.params(session.binding.domain_sizes()) else {
            stage("refused by params");
            return Ok(());
        };
        stage("parameters built");
        let Ok(samples) = saved.samples() else {
            stage("refused by the kept draws");
            return Ok(());
        };
        let Ok(p) = Predictor::new(&session, &params).with_samples(samples.as_ref()) else {
            stage("refused by the predictor");
            return Ok(());
        };
        stage("predictor built");
        if samples.is_some() {
            let few: Vec<usize> = self.rows.iter().copied().take(20).collect();
            let _ = p.intervals(&self.data, &self.rows, &few, 1);
        }
        let few: Vec<usize> = self.rows.iter().copied().take(20).collect();
        match session.task {
            Task::Rating => {
                let _ = p.rating(&self.data, &few);
            }
            Task::Ranking => {
                let _ = p.ranking(&self.data, &self.rows, &few, 5);
            }
            Task::Loss => {
                let _ = p.mean_loss(&self.data, &few, 1);
            }
        }
        let _ = p.recommend(&self.data, Some(0), 5, &[]);
        let _ = p.recommend(&self.data, None, 5, &[]);
        let _ = p.score_pair(&self.data, Some(1), None);
        if let Some(t) = embedding_table(&session.forward, "item") {
            let _ = similar(&session.forward, &p.params, t, 0, 5);
        }
        stage("predicted");
        Ok(())
    }
}
