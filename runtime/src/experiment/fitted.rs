//! Trained models: a run's result or a reopened model file, bound to its
//! data, and measured on a split.

use super::data::has_negatives;
use super::fit::{rating_metrics, recorded_settings};
use super::{
    bind_options, compile_source, failed, prepare, usage, DataRequest, Outcome, Prepared, Result,
    Source, TrainRequest,
};
use crate::context::{self, SavedContext};
use crate::data::spec::DataSpec;
use crate::data::Dataset;
use crate::hierarchy::{self, HierarchyReport};
use crate::metrics::RankingMetrics;
use crate::modelfile::{self, EpochRecord, SavedDomain, SavedModel};
use crate::predict::{self, Predictor, Samples};
use crate::progress::{StepObserver, Unobserved};
use crate::session::{Session, Task};
use crate::split::Split;
use ndarray::Array2;
use recc_compiler::interp::Params;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A model bound to data with trained parameters: made from a run's
/// [`Outcome`], or by reopening a model file.
#[derive(Clone, Debug)]
pub struct Fitted {
    pub source: Source,
    pub session: Session,
    /// The trained parameters, ready to score.
    pub params: Params,
    /// A Gibbs fit's kept draws, which its predictions average.
    pub samples: Option<Samples>,
    /// The seed it was trained with: measuring draws negatives and noise
    /// with it.
    pub seed: u64,
    /// A ranking model's threshold for positive rows.
    pub min_target: Option<f64>,
    /// The data it is bound to.
    pub spec: DataSpec,
    /// What a model file records of how it was trained (fit settings,
    /// split, task, data options).
    pub settings: BTreeMap<String, String>,
    /// The test metrics it was trained to, and its epochs.
    pub metrics: BTreeMap<String, f64>,
    pub history: Vec<EpochRecord>,
    /// What it keeps of the data it was trained on, saved with it; `None`
    /// for a model reopened from a file older than format 3.
    pub context: Option<SavedContext>,
    /// Per user of the data it is bound to: the items the user has in any
    /// row of that data, sorted ([`context::seen_items`]), which
    /// [`super::recommend`] leaves out.
    pub seen: Vec<Vec<u32>>,
}

impl Fitted {
    /// The trained model of a run on `prepared`; the outcome's parameters
    /// move into it.
    pub fn from_outcome(req: &TrainRequest, prepared: &Prepared, outcome: Outcome) -> Fitted {
        let settings = recorded_settings(
            req.config,
            &prepared.split_text,
            outcome.session.task,
            req.request,
        );
        let context = training_context(
            req.source,
            &outcome.session,
            prepared,
            req.request.min_target,
        );
        Fitted {
            source: req.source.clone(),
            session: outcome.session,
            params: outcome.trained.params,
            samples: outcome.trained.samples,
            seed: req.config.seed,
            min_target: req.request.min_target,
            spec: prepared.spec.clone(),
            settings,
            metrics: outcome.metrics,
            history: outcome.trained.history,
            context,
            seen: context::seen_items(&prepared.data),
        }
    }

    /// The model file of this model (its parameters copied).
    pub fn saved_model(&self) -> SavedModel {
        SavedModel {
            recc_version: env!("CARGO_PKG_VERSION").to_string(),
            model_name: self.source.model.name.clone(),
            source_name: self.source.name.clone(),
            source: self.source.text.clone(),
            data: self.spec.to_string(),
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            history: self.history.clone(),
            domains: SavedDomain::all(&self.session.binding.domains),
            tables: modelfile::into_saved_tables(&self.session.forward, self.params.clone()),
            context: self.context.clone(),
            samples: self
                .samples
                .as_ref()
                .map(|s| modelfile::SavedSamples::new(&self.session.forward, s)),
        }
    }

    /// Write the model file (refusing to replace a directory, device or FIFO).
    pub fn save(&self, path: &Path) -> Result<()> {
        modelfile::save(path, &self.saved_model()).map_err(|e| usage(e.to_string()))
    }

    /// A predictor of this model: for a Gibbs fit, one that averages the
    /// kept draws.
    pub fn predictor(&self) -> Result<Predictor<'_>> {
        Predictor::new(&self.session, &self.params)
            .with_samples(self.samples.as_ref())
            .map_err(|e| failed(e.to_string()))
    }

    /// The rows of `rows` the model is measured on: a ranking model's
    /// positives only.
    fn model_rows(&self, data: &Dataset, rows: &[usize]) -> Vec<usize> {
        if has_negatives(&self.source.model) {
            predict::positive_rows(data, rows, self.min_target)
        } else {
            rows.to_vec()
        }
    }
}

/// A model file reopened: the model bound to the data it was trained on
/// (or to the data asked for), and the split it was measured on.
#[derive(Clone, Debug)]
pub struct Reopened {
    pub saved: SavedModel,
    pub fitted: Fitted,
    pub prepared: Prepared,
    /// The split the model was trained on (its first, for several).
    pub split: Split,
    /// The data request the model was bound with: what it was trained
    /// with, overridden by what the caller asked differently.
    pub request: DataRequest,
}

/// Read a model file and compile its source. The source's warnings are in
/// the [`Source`]; show them before binding it ([`bind_saved`]).
pub fn open_model(path: &Path) -> Result<(SavedModel, Source)> {
    let saved = modelfile::load(path).map_err(|e| usage(e.to_string()))?;
    let source = compile_source(&saved.source_name, saved.source.clone())?;
    Ok((saved, source))
}

/// What a model was trained with, overridden only by what `asked` says
/// differently (its `data` when not the default, its split and options
/// when given).
fn merged_request(saved: &SavedModel, asked: Option<&DataRequest>) -> DataRequest {
    let setting = |k: &str| saved.settings.get(k).cloned();
    let recorded = DataRequest {
        data: saved.data.clone(),
        split: setting("split"),
        columns: setting("columns"),
        sep: setting("sep"),
        header: setting("header").is_some(),
        skip_bad_lines: asked.is_some_and(|a| a.skip_bad_lines),
        bind: setting("bind")
            .map(|b| b.split(' ').map(String::from).collect())
            .unwrap_or_default(),
        features: setting("features")
            .map(|f| f.split(',').map(String::from).collect())
            .unwrap_or_default(),
        min_target: setting("min_target").and_then(|m| m.parse().ok()),
        window: setting("window").and_then(|w| w.parse().ok()).unwrap_or(5),
        min_count: setting("min_count")
            .and_then(|w| w.parse().ok())
            .unwrap_or(5),
        write_split: None,
    };
    match asked {
        Some(a) => DataRequest {
            data: if a.data == "builtin" {
                recorded.data.clone()
            } else {
                a.data.clone()
            },
            split: a.split.clone().or(recorded.split.clone()),
            columns: a.columns.clone().or(recorded.columns.clone()),
            sep: a.sep.clone().or(recorded.sep.clone()),
            header: a.header || recorded.header,
            bind: if a.bind.is_empty() {
                recorded.bind.clone()
            } else {
                a.bind.clone()
            },
            features: if a.features.is_empty() {
                recorded.features.clone()
            } else {
                a.features.clone()
            },
            min_target: a.min_target.or(recorded.min_target),
            ..recorded
        },
        None => recorded,
    }
}

/// Bind an opened model file to the data it was trained on (or `asked`):
/// load it, split it as it was split, and check that its domains hold the
/// ids the model was trained on. `name` names the file in messages.
pub fn bind_saved(
    name: &Path,
    saved: SavedModel,
    source: Source,
    asked: Option<&DataRequest>,
) -> Result<Reopened> {
    let request = merged_request(&saved, asked);
    let setting = |k: &str| saved.settings.get(k).cloned();
    let seed = setting("seed").and_then(|s| s.parse().ok()).unwrap_or(42);
    let prepared = prepare(&request, Some(&source.model), seed, false)
        .map_err(|f| f.context(&format!("reloading the data of {}", name.display())))?;
    let split = prepared
        .splits
        .first()
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    let train_rows = if has_negatives(&source.model) {
        predict::positive_rows(&prepared.data, &split.train, request.min_target)
    } else {
        split.train.clone()
    };
    let bind = bind_options(&request)?;
    let mut session = Session::new(&source.model, &prepared.data, &train_rows, &bind)?;
    // Score as training scored, unless the model file predates the choice.
    session.backend = setting("backend")
        .and_then(|b| b.parse().ok())
        .unwrap_or_default();
    let (params, samples, reindex_notes) = reindexed_params(name, &saved, &session)?;
    let mut prepared = prepared;
    prepared.notes.extend(reindex_notes);
    if saved.context.is_none() {
        prepared.notes.push(format!(
            "{} is in an older format ({}), which keeps none of its training data: the data \
             was read again ({}), and which test rows it was trained on cannot be told; train \
             it again to write format {}",
            name.display(),
            modelfile::CONTEXTLESS_FORMAT_VERSION,
            prepared.spec,
            modelfile::FORMAT_VERSION
        ));
    }
    let fitted = Fitted {
        source,
        session,
        params,
        samples,
        seed,
        min_target: request.min_target,
        spec: prepared.spec.clone(),
        settings: saved.settings.clone(),
        metrics: saved.metrics.clone(),
        history: saved.history.clone(),
        context: saved.context.clone(),
        seen: context::seen_items(&prepared.data),
    };
    Ok(Reopened {
        saved,
        fitted,
        prepared,
        split,
        request,
    })
}

/// [`open_model`] and [`bind_saved`] at once (the source's warnings are
/// in `fitted.source.warnings`).
pub fn reopen(path: &Path, data: Option<&DataRequest>) -> Result<Reopened> {
    let (saved, source) = open_model(path)?;
    bind_saved(path, saved, source, data)
}

/// The context of a model trained on the first split of `prepared` and
/// bound by `session`; `None` when `prepared` has no split.
pub(super) fn training_context(
    source: &Source,
    session: &Session,
    prepared: &Prepared,
    min_target: Option<f64>,
) -> Option<SavedContext> {
    let (_, split) = prepared.splits.first()?;
    let bound = if has_negatives(&source.model) {
        predict::positive_rows(&prepared.data, &split.train, min_target)
    } else {
        split.train.clone()
    };
    Some(SavedContext::new(
        &prepared.data,
        &session.binding,
        &bound,
        &split.train,
    ))
}

/// A model file ready to answer questions: bound to the rows it keeps, or
/// to data read again (a file older than format 3, or data asked for).
#[derive(Clone, Debug)]
pub struct Answering {
    pub saved: SavedModel,
    pub fitted: Fitted,
    /// The data it is bound to: the rows the file keeps, or the data read.
    pub data: Dataset,
    /// What to tell the user: notes of the data read, ids the model lacks,
    /// an older file.
    pub notes: Vec<String>,
}

/// Open a model file to answer questions (predict, recommend): from the
/// file alone when it keeps its data (format 3) and `asked` is `None`;
/// otherwise bound to data read again, `asked` or the data it was trained on.
pub fn open_for_answers(
    path: &Path,
    saved: SavedModel,
    source: Source,
    asked: Option<&DataRequest>,
) -> Result<Answering> {
    let context = match (&saved.context, asked) {
        (Some(context), None) => context.clone(),
        _ => {
            let r = bind_saved(path, saved, source, asked)?;
            return Ok(Answering {
                saved: r.saved,
                fitted: r.fitted,
                data: r.prepared.data,
                notes: r.prepared.notes,
            });
        }
    };
    let corrupt = |e: String| usage(format!("{}: corrupt model file: {e}", path.display()));
    let (data, train) = context.dataset().map_err(corrupt)?;
    let request = merged_request(&saved, None);
    let setting = |k: &str| saved.settings.get(k).cloned();
    let seed = setting("seed").and_then(|s| s.parse().ok()).unwrap_or(42);
    let spec: DataSpec = saved.data.parse().map_err(corrupt)?;
    let bind = bind_options(&request)?;
    let mut session = Session::new(&source.model, &data, &train, &bind)
        .map_err(|e| super::ExperimentError::from(e).context(&path.display().to_string()))?;
    session.backend = setting("backend")
        .and_then(|b| b.parse().ok())
        .unwrap_or_default();
    let (params, samples, notes) = reindexed_params(path, &saved, &session)?;
    let fitted = Fitted {
        source,
        session,
        params,
        samples,
        seed,
        min_target: request.min_target,
        spec,
        settings: saved.settings.clone(),
        metrics: saved.metrics.clone(),
        history: saved.history.clone(),
        seen: context.seen(),
        context: Some(context),
    };
    Ok(Answering {
        saved,
        fitted,
        data,
        notes,
    })
}

/// The model's tables with their rows in the order of the ids of the
/// domains `session` is bound to: an id's row wherever the model has it,
/// and for an id the model does not know the mean of its table's rows (as
/// an unknown id scores), with a note per domain that has such ids. Data
/// read in another order, or with ids added, binds as well as the data the
/// model was trained on; data that shares no id of a domain with the model
/// is refused.
fn reindexed_params(
    name: &Path,
    saved: &SavedModel,
    session: &Session,
) -> Result<(Params, Option<Samples>, Vec<String>)> {
    // `load` has checked the file's domains against its source, which the
    // session was built from, so the lists correspond one to one.
    let bound = &session.binding.domains;
    if bound.len() != saved.domains.len() {
        return Err(usage(format!(
            "{}: the model has {} domains but its source binds {} to the data",
            name.display(),
            saved.domains.len(),
            bound.len()
        )));
    }
    let own_sizes: Vec<usize> = saved.domains.iter().map(|d| d.ids.len()).collect();
    let params = saved.params(own_sizes).map_err(|e| usage(e.to_string()))?;
    let samples = saved.samples().map_err(|e| usage(e.to_string()))?;
    if bound
        .iter()
        .zip(&saved.domains)
        .all(|((_, map), d)| map.names() == d.ids.as_slice())
    {
        return Ok((params, samples, Vec::new()));
    }
    let mut notes = Vec::new();
    // Per domain: for each bound id, the model's row of it.
    let mut rows_of: Vec<Vec<Option<usize>>> = Vec::with_capacity(bound.len());
    for ((domain, map), d) in bound.iter().zip(&saved.domains) {
        let own: HashMap<&str, usize> = d
            .ids
            .iter()
            .enumerate()
            .map(|(k, id)| (id.as_str(), k))
            .collect();
        let rows: Vec<Option<usize>> = map
            .names()
            .iter()
            .map(|id| own.get(id.as_str()).copied())
            .collect();
        let unknown = rows.iter().filter(|r| r.is_none()).count();
        if unknown == rows.len() && !rows.is_empty() {
            return Err(usage(format!(
                "{}: none of the data's {} `{domain}` ids is one the model was trained on; \
                 use the data it was trained on",
                name.display(),
                rows.len()
            )));
        }
        if unknown > 0 {
            notes.push(format!(
                "{unknown} of the data's {} `{domain}` ids are not in the model; they score \
                 as unknown ones (the mean of those it learned)",
                rows.len()
            ));
        }
        rows_of.push(rows);
    }
    let g = &session.forward;
    let reindex = |k: usize, values: Array2<f64>| match g.tables.get(k).and_then(|t| t.domain) {
        Some(d) => reindexed_table(&values, &rows_of[d.index()]),
        None => values,
    };
    let tables = params
        .tables
        .into_iter()
        .enumerate()
        .map(|(k, values)| reindex(k, values))
        .collect();
    // A kept draw's rows move as the trained rows do, an unknown id taking
    // the draw's own mean.
    let samples = samples.map(|mut s| {
        for draw in &mut s.draws {
            for (&k, values) in s.tables.iter().zip(&mut draw.tables) {
                *values = reindex(k, std::mem::take(values));
            }
        }
        s
    });
    Ok((
        Params {
            domain_sizes: session.binding.domain_sizes(),
            tables,
        },
        samples,
        notes,
    ))
}

/// `values` with a row per entry of `rows`: the model's row `Some(k)`, or
/// for `None` (an id the model lacks) the mean of its rows.
fn reindexed_table(values: &Array2<f64>, rows: &[Option<usize>]) -> Array2<f64> {
    let lanes = values.ncols();
    let mean = values
        .mean_axis(ndarray::Axis(0))
        .unwrap_or_else(|| ndarray::Array1::zeros(lanes));
    let mut out = Array2::zeros((rows.len(), lanes));
    for (mut row, from) in out.rows_mut().into_iter().zip(rows) {
        match from {
            Some(k) => row.assign(&values.row(*k)),
            None => row.assign(&mean),
        }
    }
    out
}

/// The hierarchy figures of a model trained on a generated tree, when one
/// of its tables embeds the tree's nodes in the Poincaré ball.
pub fn hierarchy(spec: &DataSpec, session: &Session, params: &Params) -> Option<HierarchyReport> {
    let tree = spec.tree()?;
    hierarchy::tree_report(&tree, &session.forward, &session.binding.domains, params)
}

/// What a measurement found.
#[derive(Clone, Debug, PartialEq)]
pub enum Measured {
    /// Named figures: a rating model's RMSE and MAE (and interval
    /// coverage), or a loss model's mean loss.
    Metrics(BTreeMap<String, f64>),
    /// A ranking model's metrics over the catalogue.
    Ranking(RankingMetrics),
    /// No test rows: a tree embedded whole is measured by its hierarchy
    /// figures alone.
    Nothing,
}

/// A model measured on the test rows of a split.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The model's name.
    pub model: String,
    /// Test rows measured on.
    pub rows: usize,
    /// Test rows of the split left out because the model was trained on
    /// them (known from its training fingerprints).
    pub excluded: usize,
    pub measured: Measured,
    pub hierarchy: Option<HierarchyReport>,
}

impl Evaluation {
    /// The figures by name, whatever the task.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        match &self.measured {
            Measured::Metrics(m) => m.clone(),
            Measured::Ranking(r) => r.named().into_iter().collect(),
            Measured::Nothing => BTreeMap::new(),
        }
    }
}

/// Measure `fitted` on the test rows of `split` of `data` (ranking metrics
/// at `k`), as training measured it.
/// Test rows the model was trained on (the same values, ids compared by
/// name, wherever they sit in the data) are left out and counted; when
/// every test row was a training row there is nothing honest to measure,
/// which is an error.
pub fn evaluate(fitted: &Fitted, data: &Dataset, split: &Split, k: usize) -> Result<Evaluation> {
    evaluate_observed(fitted, data, split, k, &Unobserved)
}

/// [`evaluate`], telling `progress` how far ranking the catalogue has got.
pub fn evaluate_observed(
    fitted: &Fitted,
    data: &Dataset,
    split: &Split,
    k: usize,
    progress: &dyn StepObserver,
) -> Result<Evaluation> {
    let (unseen, excluded) = match &fitted.context {
        Some(c) => {
            let unseen: Vec<usize> = split
                .test
                .iter()
                .copied()
                .filter(|&r| !c.trained_on(context::fingerprint(data, r)))
                .collect();
            let excluded = split.test.len() - unseen.len();
            (unseen, excluded)
        }
        None => (split.test.clone(), 0),
    };
    if excluded > 0 && unseen.is_empty() {
        return Err(usage(format!(
            "all {excluded} test rows of this split are rows the model was trained on: \
             measuring on them would only show how well it remembers; evaluate on the split \
             it was trained on ({}), or on data it has not seen",
            fitted
                .settings
                .get("split")
                .map_or("the default", String::as_str)
        )));
    }
    let predictor = fitted.predictor()?;
    let train_rows = fitted.model_rows(data, &split.train);
    let test_rows = fitted.model_rows(data, &unseen);
    let hierarchy = hierarchy(&fitted.spec, &fitted.session, &fitted.params);
    let model = fitted.source.model.name.clone();
    if test_rows.is_empty() {
        if hierarchy.is_none() {
            return Err(usage("the split has no test rows to evaluate on"));
        }
        return Ok(Evaluation {
            model,
            rows: 0,
            excluded,
            measured: Measured::Nothing,
            hierarchy,
        });
    }
    let measured = match fitted.session.task {
        Task::Rating => Measured::Metrics(rating_metrics(
            &predictor,
            data,
            &train_rows,
            &test_rows,
            fitted.seed,
        )?),
        Task::Ranking => Measured::Ranking(
            predictor
                .ranking_observed(data, &train_rows, &test_rows, k, progress)
                .map_err(|e| failed(e.to_string()))?,
        ),
        Task::Loss => {
            let l = predictor
                .mean_loss(data, &test_rows, fitted.seed)
                .map_err(|e| failed(e.to_string()))?;
            Measured::Metrics(BTreeMap::from([("loss".to_string(), l)]))
        }
    };
    Ok(Evaluation {
        model,
        rows: test_rows.len(),
        excluded,
        measured,
        hierarchy,
    })
}
