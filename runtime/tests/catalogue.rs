//! Catalogue scoring as a matrix product gives exactly what scoring every
//! pair gives: for every model of `models/`, trained briefly, the scores of
//! every item for every user (and an unknown one) are the per-pair
//! evaluator's bit for bit, so the top-k lists and the ranking metrics are
//! the same. Which models split is pinned, so that a model that stops
//! splitting fails here rather than silently ranking pair by pair.

use recc_runtime::experiment::{self, DataRequest, FitOverrides, Fitted, TrainRequest};
use recc_runtime::predict::Predictor;
use recc_runtime::rank::Factored;
use recc_runtime::session::Backend;
use recc_runtime::train::Silent;
use std::path::PathBuf;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// The data each model trains on here.
fn data_for(file: &str) -> &'static str {
    match file {
        "word2vec_mf.rec" => "builtin+item2vec",
        "poincare_tree.rec" => "tree:2x4",
        _ => "builtin",
    }
}

/// `file` trained for one epoch (or sweep) on its data, with the split.
fn trained(file: &str) -> (Fitted, experiment::Prepared) {
    let source = experiment::read_source(&models_dir().join(file)).unwrap();
    let fit = match source.model.fit.solver {
        recc_compiler::model::Solver::Sgd => FitOverrides {
            epochs: Some(1),
            ..FitOverrides::default()
        },
        _ => FitOverrides {
            sweeps: Some(1),
            ..FitOverrides::default()
        },
    };
    trained_with(file, &fit)
}

fn trained_with(file: &str, fit: &FitOverrides) -> (Fitted, experiment::Prepared) {
    let source = experiment::read_source(&models_dir().join(file)).unwrap();
    let (config, _) = experiment::train_config(&source.model, fit).unwrap();
    let request = DataRequest {
        data: data_for(file).to_string(),
        ..DataRequest::default()
    };
    let prepared = experiment::prepare(&request, Some(&source.model), config.seed, false).unwrap();
    let req = TrainRequest {
        source: &source,
        config: &config,
        request: &request,
        k: 10,
        baseline: false,
    };
    let split = &prepared.splits[0].1;
    let outcome = experiment::train_split(&req, &prepared.data, split, &mut Silent)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    (Fitted::from_outcome(&req, &prepared, outcome), prepared)
}

fn model_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(models_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.ends_with(".rec").then_some(name)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn blocked_catalogue_scores_equal_the_per_pair_evaluator_on_every_model() {
    let mut blocked = Vec::new();
    let mut report = String::new();
    for file in model_files() {
        let (mut fitted, prepared) = trained(&file);
        // The reference: the evaluator on every pair, the definition every
        // backend is tested against.
        fitted.session.backend = Backend::Interp;
        let data = &prepared.data;
        let split = &prepared.splits[0].1;
        match Factored::new(&fitted.session.forward, &fitted.session.binding) {
            Ok(f) => {
                report += &format!("{file}: {}\n", f.factors.describe(&fitted.session.forward));
                blocked.push(file.clone());
            }
            Err(e) => {
                let at = e.node.map_or(String::new(), |n| format!(" at {n}"));
                report += &format!("{file}: pair by pair{at}: {}\n", e.reason);
            }
        }
        let fast: Predictor = fitted.predictor().unwrap();
        let slow: Predictor = fitted.predictor().unwrap().per_pair();
        assert_eq!(fast.factored().is_some(), blocked.last() == Some(&file));

        let Some((user_domain, _)) = data.users() else {
            continue;
        };
        if data.items().is_none() {
            continue;
        }
        let mut users: Vec<Option<u32>> = (0..data.domain_size(user_domain) as u32)
            .map(Some)
            .collect();
        users.push(None);
        let catalogue = fast.catalogue(data).unwrap();
        assert_eq!(catalogue.is_blocked(), fast.factored().is_some());
        let rows = catalogue.scores(&users).unwrap();
        for (&u, row) in users.iter().zip(&rows) {
            let reference = slow.user_scores(data, u).unwrap();
            let bits = |s: &[f64]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(row), bits(&reference), "{file}: scores of user {u:?}");
            let exclude: Vec<u32> = u
                .and_then(|u| fitted.session.binding.positives.get(u as usize))
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                fast.recommend(data, u, 10, &exclude).unwrap(),
                slow.recommend(data, u, 10, &exclude).unwrap(),
                "{file}: top 10 of user {u:?}"
            );
        }
        if fitted.session.task == recc_runtime::session::Task::Ranking && !split.test.is_empty() {
            assert_eq!(
                fast.ranking(data, &split.train, &split.test, 10).unwrap(),
                slow.ranking(data, &split.train, &split.test, 10).unwrap(),
                "{file}: ranking metrics"
            );
        }
    }
    insta::assert_snapshot!("score_split", report);
    assert_eq!(
        blocked,
        [
            "biased_mf.rec",
            "bpr_mf.rec",
            "hinge_mf.rec",
            "hybrid_mf.rec",
            "mf.rec",
            "nmf.rec",
            "pointwise_mf.rec",
            "sequence_mf.rec",
            "side_mf.rec",
            "sigmoid_range_mf.rec",
            "svdpp.rec",
            "temporal_mf.rec",
            "variational_mf.rec",
            "wals.rec",
            "word2vec_mf.rec",
        ],
        "the models whose catalogue is scored as a matrix product"
    );
}

#[test]
fn top_k_orders_as_best_first_with_ties_and_nan() {
    let scores = [1.0, f64::NAN, 3.0, 3.0, -0.0, 0.0, 2.0, f64::NAN];
    for k in 0..=scores.len() {
        for exclude in [&[][..], &[2, 5][..]] {
            let mut all: Vec<(u32, f64)> = (0..scores.len() as u32)
                .filter(|i| exclude.binary_search(i).is_err())
                .map(|i| (i, scores[i as usize]))
                .collect();
            all.sort_by(|&a, &b| recc_runtime::predict::best_first(a, b));
            all.truncate(k);
            let bits =
                |v: &[(u32, f64)]| v.iter().map(|(i, s)| (*i, s.to_bits())).collect::<Vec<_>>();
            assert_eq!(
                bits(&recc_runtime::rank::top_k(&scores, exclude, k)),
                bits(&all),
                "k = {k}, exclude {exclude:?}"
            );
        }
    }
}

#[test]
fn a_gibbs_fit_scores_the_catalogue_as_the_mean_of_its_draws_exactly() {
    let fit = FitOverrides {
        solver: Some("gibbs".into()),
        samples: Some(6),
        burn_in: Some(2),
        ..FitOverrides::default()
    };
    let (mut fitted, prepared) = trained_with("biased_mf.rec", &fit);
    fitted.session.backend = Backend::Interp;
    assert!(fitted.samples.as_ref().is_some_and(|s| s.draws.len() == 6));
    let data = &prepared.data;
    let fast = fitted.predictor().unwrap();
    let slow = fitted.predictor().unwrap().per_pair();
    assert!(fast.averages_draws() && fast.factored().is_some());
    let catalogue = fast.catalogue(data).unwrap();
    assert!(catalogue.is_blocked());
    let users: Vec<Option<u32>> = (0..20).map(Some).chain([None]).collect();
    for (&u, row) in users.iter().zip(catalogue.scores(&users).unwrap()) {
        let reference = slow.user_scores(data, u).unwrap();
        let bits = |s: &[f64]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&row), bits(&reference), "scores of user {u:?}");
    }
}
