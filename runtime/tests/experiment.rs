//! The experiment API end to end on the built-in data: train a split and
//! get its metrics, save and reopen the model and measure it again,
//! recommend, find neighbours, cross-validate, and fail with the right kind
//! of error and a message that says what was wrong.

use recc_runtime::experiment::{
    self, DataRequest, ErrorKind, ExperimentError, FitOverrides, FoldObserver, FoldResult,
    Measured, Prepared, Source, TrainRequest,
};
use recc_runtime::split::Split;
use recc_runtime::train::{Observer, Silent, TrainConfig};
use std::path::PathBuf;

fn model(name: &str) -> Source {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name);
    experiment::read_source(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn quick() -> FitOverrides {
    FitOverrides {
        epochs: Some(2),
        ..FitOverrides::default()
    }
}

/// A model, its fit settings (with their notes) and the data prepared for
/// it: what a run of the model needs.
struct Setup {
    source: Source,
    config: TrainConfig,
    notes: Vec<String>,
    request: DataRequest,
    prepared: Prepared,
}

impl Setup {
    fn new(name: &str, fit: &FitOverrides, request: DataRequest, all_folds: bool) -> Setup {
        let source = model(name);
        let (config, notes) = experiment::train_config(&source.model, fit).unwrap();
        let prepared =
            experiment::prepare(&request, Some(&source.model), config.seed, all_folds).unwrap();
        Setup {
            source,
            config,
            notes,
            request,
            prepared,
        }
    }

    /// Two epochs on the built-in data, split as the model's default.
    fn quick(name: &str) -> Setup {
        Setup::new(name, &quick(), DataRequest::default(), false)
    }

    fn train_request(&self, k: usize, baseline: bool) -> TrainRequest<'_> {
        TrainRequest {
            source: &self.source,
            config: &self.config,
            request: &self.request,
            k,
            baseline,
        }
    }

    /// The first split's training and test rows.
    fn split(&self) -> &Split {
        &self.prepared.splits[0].1
    }
}

fn usage_error<T>(r: experiment::Result<T>) -> String {
    match r {
        Err(ExperimentError {
            kind: ErrorKind::Usage,
            message,
        }) => message,
        Err(e) => panic!("expected a usage error, got a model error: {e}"),
        Ok(_) => panic!("expected a usage error, it succeeded"),
    }
}

/// An observer that remembers the notes it was told and the epochs it saw.
#[derive(Default)]
struct Recorder {
    notes: Vec<String>,
    epochs: usize,
    started: bool,
    finished: bool,
}

impl Observer for Recorder {
    fn epoch(&mut self, _: &recc_runtime::modelfile::EpochRecord, _: &str, _: usize) {
        self.epochs += 1;
    }
    fn note(&mut self, text: &str) {
        self.notes.push(text.to_string());
    }
    fn started(&mut self) {
        assert!(!self.finished, "started after finishing");
        self.started = true;
    }
    fn finished(&mut self) {
        assert!(self.started, "finished before starting");
        self.finished = true;
    }
}

#[test]
fn train_split_on_the_builtin_data_returns_test_metrics_and_reopening_reproduces_them() {
    let setup = Setup::quick("biased_mf.rec");
    assert!(setup.notes.is_empty(), "{:?}", setup.notes);
    assert_eq!(setup.config.epochs, 2);
    let prepared = &setup.prepared;
    assert_eq!(prepared.split_text, "random:0.2");
    let described = experiment::describe_data(&prepared.data);
    let rows = format!("{} ({} rows, ", prepared.data.name, prepared.data.len());
    assert!(described.starts_with(&rows), "{described}");
    assert!(described.contains(" users, ") && described.ends_with(" items)"));
    let split = setup.split();
    let req = setup.train_request(10, false);
    let mut recorder = Recorder::default();
    let outcome = experiment::train_split(&req, &prepared.data, split, &mut recorder).unwrap();
    assert!(recorder.started && recorder.finished);
    assert_eq!(recorder.epochs, 2);
    assert_eq!(recorder.notes, outcome.notes);
    assert_eq!(outcome.trained.history.len(), 2);
    let rmse = outcome.metrics["rmse"];
    assert!(rmse.is_finite() && rmse > 0.0 && rmse < 1.5, "rmse {rmse}");
    assert!(outcome.metrics.contains_key("mae"));

    // Saved, reopened and measured again: the same figures, exactly.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("biased_mf.recm");
    let metrics = outcome.metrics.clone();
    let fitted = experiment::Fitted::from_outcome(&req, prepared, outcome);
    fitted.save(&path).unwrap();
    let reopened = experiment::reopen(&path, None).unwrap();
    assert_eq!(reopened.split, *split);
    assert_eq!(reopened.saved.metrics, metrics);
    let evaluation = experiment::evaluate(
        &reopened.fitted,
        &reopened.prepared.data,
        &reopened.split,
        10,
    )
    .unwrap();
    assert_eq!(evaluation.measured, Measured::Metrics(metrics.clone()));
    assert_eq!(evaluation.rows, split.test.len());
    // The model in memory measures the same as the one reopened.
    let again = experiment::evaluate(&fitted, &prepared.data, split, 10).unwrap();
    assert_eq!(again.metrics(), metrics);

    // Neighbours from the bound model and from the file alone agree.
    let item = reopened.saved.domains[1].ids[0].clone();
    let bound = experiment::similar(&reopened.fitted, &item, None, None, 5).unwrap();
    let (saved, source) = experiment::open_model(&path).unwrap();
    let from_file = experiment::similar_saved(&saved, &source, &item, None, None, 5).unwrap();
    assert_eq!(bound, from_file);
    assert_eq!(bound.neighbours.len(), 5);

    // Every table exported, one file each.
    let out = dir.path().join("tables");
    let written =
        experiment::export(&fitted.saved_model(), &out, experiment::ExportFormat::Csv).unwrap();
    assert_eq!(written.len(), saved.tables.len());
    assert!(written.iter().all(|p| p.is_file()));
}

/// A Gibbs fit measures by its kept draws: its test RMSE is that of their
/// mean prediction, it has predictive intervals, and its file keeps the
/// draws, so the reopened model measures and predicts exactly as the run.
#[test]
fn a_gibbs_fit_is_measured_by_its_kept_draws_and_its_file_keeps_them() {
    let fit = FitOverrides {
        solver: Some("gibbs".into()),
        samples: Some(40),
        burn_in: Some(5),
        ..FitOverrides::default()
    };
    let setup = Setup::new("biased_mf.rec", &fit, DataRequest::default(), false);
    let split = setup.split();
    let req = setup.train_request(10, false);
    let data = &setup.prepared.data;
    let outcome = experiment::train_split(&req, data, split, &mut Silent).unwrap();
    let metrics = outcome.metrics.clone();
    for m in ["rmse", "mae", "interval50", "interval90", "spread_corr"] {
        assert!(metrics.contains_key(m), "{m} missing from {metrics:?}");
    }
    let samples = outcome.trained.samples.clone().expect("kept draws");
    // Fewer kept sweeps than draws kept: every one.
    const { assert!(40 < recc_runtime::solve::KEPT_DRAWS) };
    assert_eq!(samples.draws.len(), 40);
    // The RMSE reported is the draws' mean prediction's, not the posterior
    // mean parameters'.
    let of_draws = recc_runtime::predict::Predictor::new(&outcome.session, &outcome.trained.params)
        .with_samples(Some(&samples))
        .unwrap()
        .rating(data, &split.test)
        .unwrap();
    assert_eq!(of_draws.rmse, metrics["rmse"]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("biased_mf.recm");
    let fitted = experiment::Fitted::from_outcome(&req, &setup.prepared, outcome);
    fitted.save(&path).unwrap();
    let reopened = experiment::reopen(&path, None).unwrap();
    assert_eq!(reopened.fitted.samples.as_ref(), Some(&samples));
    let evaluation = experiment::evaluate(
        &reopened.fitted,
        &reopened.prepared.data,
        &reopened.split,
        10,
    )
    .unwrap();
    assert_eq!(evaluation.measured, Measured::Metrics(metrics.clone()));
    let users = vec![reopened.saved.domains[0].ids[0].clone()];
    let items = vec![reopened.saved.domains[1].ids[0].clone()];
    let in_memory = experiment::predict_pairs(&fitted, data, &users, &items, false).unwrap();
    let from_file = experiment::predict_pairs(
        &reopened.fitted,
        &reopened.prepared.data,
        &users,
        &items,
        false,
    )
    .unwrap();
    assert_eq!(in_memory, from_file);
}

#[test]
fn recommend_leaves_out_what_the_user_trained_on_and_similar_finds_neighbours() {
    let setup = Setup::quick("biased_mf.rec");
    let (prepared, split) = (&setup.prepared, setup.split());
    let req = setup.train_request(10, false);
    let outcome = experiment::train_split(&req, &prepared.data, split, &mut Silent).unwrap();
    let fitted = experiment::Fitted::from_outcome(&req, prepared, outcome);
    let data = &prepared.data;
    let (user_domain, users) = data.users().unwrap();
    let (item_domain, items) = data.items().unwrap();
    let user_ids = &data.domains[user_domain];
    let item_ids = &data.domains[item_domain];
    let user = users[split.train[0]];
    let raw_user = user_ids.name(user).to_string();
    let seen: Vec<String> = split
        .train
        .iter()
        .filter(|&&r| users[r] == user)
        .map(|&r| item_ids.name(items[r]).to_string())
        .collect();
    assert!(!seen.is_empty());
    let recs =
        experiment::recommend(&fitted, data, &raw_user, 20, false, Default::default()).unwrap();
    assert!(recs.notes.is_empty(), "{:?}", recs.notes);
    assert_eq!(recs.items.len(), 20);
    for r in &recs.items {
        assert!(
            !seen.contains(&r.item),
            "recommended {} the user has",
            r.item
        );
    }
    assert!(recs.items.windows(2).all(|w| w[0].score >= w[1].score));

    // An unknown user is refused, or when asked for scored as the average
    // one, and told so.
    let refused =
        experiment::recommend(&fitted, data, "nobody", 5, false, Default::default()).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Model);
    assert!(refused
        .message
        .contains("user `nobody` is not in the model"));
    let cold = experiment::recommend(&fitted, data, "nobody", 5, true, Default::default()).unwrap();
    assert_eq!(cold.items.len(), 5);
    assert!(cold.unknown);
    assert_eq!(cold.notes.len(), 1);
    assert!(cold.notes[0].contains("user `nobody` is not in the model"));
    let pairs = experiment::predict_pairs(
        &fitted,
        data,
        std::slice::from_ref(&raw_user),
        &[seen[0].clone(), "no-such-item".into()],
        true,
    )
    .unwrap();
    assert_eq!(pairs.len(), 2);
    assert!(pairs[0].notes.is_empty());
    assert!(!pairs[0].unknown && pairs[1].unknown);
    assert!(pairs[1].notes[0].contains("item `no-such-item`"));
    assert!(pairs.iter().all(|p| p.score.is_finite()));

    let item = item_ids.name(items[split.train[0]]).to_string();
    let near = experiment::similar(&fitted, &item, None, None, 5).unwrap();
    assert_eq!(near.neighbours.len(), 5);
    assert!(near.neighbours.iter().all(|n| n.id != item));
    let e = experiment::similar(&fitted, "no-such-item", None, None, 5).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Model);
    assert!(
        e.message.contains("`no-such-item` is not in the model"),
        "{}",
        e.message
    );
}

#[test]
fn a_ranking_model_is_measured_over_the_catalogue_beside_popularity() {
    let setup = Setup::quick("bpr_mf.rec");
    let (prepared, split) = (&setup.prepared, setup.split());
    // A ranking model's default split holds out a share of each user's rows.
    assert_eq!(prepared.split_text, "user:0.2");
    let req = setup.train_request(5, true);
    let outcome = experiment::train_split(&req, &prepared.data, split, &mut Silent).unwrap();
    for name in ["auc", "precision@5", "ndcg@5"] {
        assert!(outcome.metrics.contains_key(name), "{:?}", outcome.metrics);
    }
    let baseline = outcome.baseline.clone().expect("the popularity baseline");
    assert_eq!(
        baseline.keys().collect::<Vec<_>>(),
        outcome.metrics.keys().collect::<Vec<_>>()
    );
    let metrics = outcome.metrics.clone();
    let fitted = experiment::Fitted::from_outcome(&req, prepared, outcome);
    let evaluation = experiment::evaluate(&fitted, &prepared.data, split, 5).unwrap();
    assert!(matches!(evaluation.measured, Measured::Ranking(_)));
    assert_eq!(evaluation.metrics(), metrics);
}

struct Folds(Vec<String>);

impl FoldObserver for Folds {
    fn fold_started(&mut self, _: &str, _: usize, _: usize) -> Box<dyn Observer + '_> {
        Box::new(Silent)
    }
    fn fold_finished(&mut self, result: &FoldResult) {
        self.0.push(result.name.clone());
    }
}

#[test]
fn cross_validation_reports_every_fold_and_their_mean() {
    let fit = FitOverrides {
        epochs: Some(1),
        ..FitOverrides::default()
    };
    let request = DataRequest {
        split: Some("kfold:2".into()),
        ..DataRequest::default()
    }
    .for_cross_validation();
    let setup = Setup::new("biased_mf.rec", &fit, request, true);
    let mut folds = Folds(Vec::new());
    let report =
        experiment::cross_validate(&setup.train_request(10, false), &setup.prepared, &mut folds)
            .unwrap();
    assert_eq!(folds.0, ["fold 1", "fold 2"]);
    assert_eq!(report.folds.len(), 2);
    assert!(report.interrupted.is_none());
    let a = report.folds[0].metrics["rmse"];
    let b = report.folds[1].metrics["rmse"];
    assert!((report.mean["rmse"] - (a + b) / 2.0).abs() < 1e-12);
    assert!((report.std["rmse"] - (a - b).abs() / 2f64.sqrt()).abs() < 1e-12);
    // Without a split named, five folds.
    let default = DataRequest::default().for_cross_validation();
    assert_eq!(default.split.as_deref(), Some("kfold:5"));
}

#[test]
fn loaded_data_splits_again_without_reloading() {
    let prepared = experiment::prepare(&DataRequest::default(), None, 7, false).unwrap();
    let half = experiment::resplit(&prepared, Some("random:0.5"), None, 7, false).unwrap();
    assert_eq!(half.split_text, "random:0.5");
    assert_eq!(half.request.split.as_deref(), Some("random:0.5"));
    assert_eq!(half.data, prepared.data);
    let (name, split) = &half.splits[0];
    assert_eq!(name, "random:0.5");
    assert_eq!(split.train.len() + split.test.len(), prepared.data.len());
    assert!(split.test.len().abs_diff(prepared.data.len() / 2) <= 1);
    // The same as loading it split that way.
    let loaded = experiment::prepare(&half.request, None, 7, false).unwrap();
    assert_eq!(loaded.splits, half.splits);
    let folds = experiment::resplit(&prepared, Some("kfold:3"), None, 7, true).unwrap();
    let names: Vec<&str> = folds.splits.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["fold 1", "fold 2", "fold 3"]);
    // Back to the default.
    let again = experiment::resplit(&half, None, None, 7, false).unwrap();
    assert_eq!(again.splits, prepared.splits);
    let message = usage_error(experiment::resplit(
        &prepared,
        Some("random:2"),
        None,
        7,
        false,
    ));
    assert!(message.starts_with("bad split `random:2`"), "{message}");
}

#[test]
fn bad_requests_are_usage_errors_that_say_what_was_wrong() {
    let source = model("biased_mf.rec");
    let bad_lr = FitOverrides {
        lr: Some(-1.0),
        ..FitOverrides::default()
    };
    assert_eq!(
        usage_error(experiment::train_config(&source.model, &bad_lr)),
        "--lr -1: the learning rate must be a positive number"
    );
    let bad_split = DataRequest {
        split: Some("sideways".into()),
        ..DataRequest::default()
    };
    let message = usage_error(experiment::prepare(&bad_split, None, 1, false));
    assert!(message.contains("sideways"), "{message}");
    let missing = DataRequest {
        data: "csv:/no/such/file.csv".into(),
        ..DataRequest::default()
    };
    let message = usage_error(experiment::prepare(&missing, None, 1, false));
    assert!(message.contains("/no/such/file.csv"), "{message}");
    let bad_bind = DataRequest {
        bind: vec!["r".into()],
        ..DataRequest::default()
    };
    assert_eq!(
        usage_error(experiment::bind_options(&bad_bind)),
        "--bind r: expected INPUT=COLUMN, e.g. --bind r=stars"
    );
    // Binding an input the model lacks is the request's fault, and named.
    let unknown_input = DataRequest {
        bind: vec!["nosuch=rating".into()],
        ..DataRequest::default()
    };
    let setup = Setup::new("biased_mf.rec", &quick(), unknown_input, false);
    let message = usage_error(experiment::train_split(
        &setup.train_request(10, false),
        &setup.prepared.data,
        setup.split(),
        &mut Silent,
    ));
    assert!(message.contains("nosuch"), "{message}");
    let message = usage_error(experiment::reopen(
        std::path::Path::new("/no/such/model.recm"),
        None,
    ));
    assert!(message.contains("/no/such/model.recm"), "{message}");
}

#[test]
fn a_model_with_errors_is_a_model_error_with_the_rendered_report() {
    match experiment::compile_source("broken.rec", "model broken\nparam p[user: vec(4)\n".into()) {
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Model);
            assert!(e.message.contains("broken.rec"), "{}", e.message);
        }
        Ok(_) => panic!("a model with a syntax error compiled"),
    }
    let e = experiment::read_source(std::path::Path::new("/no/such/model.rec"));
    assert!(usage_error(e).starts_with("cannot read /no/such/model.rec"));
}

/// Records what a cross-validation's observers were told, fold by fold.
#[derive(Default)]
struct Told(Vec<String>);

struct ToldFold<'a> {
    told: &'a mut Vec<String>,
    fold: String,
}

impl Observer for ToldFold<'_> {
    fn progress(&mut self, epoch: usize, done: usize, total: usize, _: f64) {
        self.told
            .push(format!("{} epoch {epoch}: {done}/{total}", self.fold));
    }
    fn epoch(&mut self, record: &recc_runtime::modelfile::EpochRecord, _: &str, _: usize) {
        self.told
            .push(format!("{} ended epoch {}", self.fold, record.epoch));
    }
    fn started(&mut self) {
        self.told.push(format!("{} started", self.fold));
    }
    fn finished(&mut self) {
        self.told.push(format!("{} finished", self.fold));
    }
}

impl FoldObserver for Told {
    fn fold_started(&mut self, name: &str, _: usize, _: usize) -> Box<dyn Observer + '_> {
        Box::new(ToldFold {
            told: &mut self.0,
            fold: name.to_string(),
        })
    }
    fn fold_finished(&mut self, result: &FoldResult) {
        self.0
            .push(format!("{}: {:?}", result.name, result.metrics));
    }
}

#[test]
fn folds_trained_at_once_report_as_folds_trained_in_turn() {
    let fit = FitOverrides {
        epochs: Some(3),
        ..FitOverrides::default()
    };
    let request = DataRequest {
        split: Some("kfold:3".into()),
        ..DataRequest::default()
    }
    .for_cross_validation();
    let setup = Setup::new("svdpp.rec", &fit, request, true);
    let req = setup.train_request(10, false);
    let mut in_turn = Told::default();
    let one = experiment::cross_validate_with_jobs(&req, &setup.prepared, 1, &mut in_turn).unwrap();
    let mut at_once = Told::default();
    let three =
        experiment::cross_validate_with_jobs(&req, &setup.prepared, 3, &mut at_once).unwrap();
    let metrics = |r: &experiment::CvReport| -> Vec<_> {
        r.folds
            .iter()
            .map(|f| (f.name.clone(), f.metrics.clone()))
            .collect()
    };
    assert_eq!(metrics(&one), metrics(&three));
    assert_eq!(one.mean, three.mean);
    // The observers heard the same things in the same order: each fold's
    // training, then its result, fold after fold.
    assert_eq!(in_turn.0, at_once.0);
    assert!(in_turn.0.iter().any(|t| t == "fold 3 ended epoch 3"));
    assert!(in_turn.0.iter().any(|t| t.starts_with("fold 2 epoch 1:")));
}
