//! A model file answers on its own: for every model of `models/`, the
//! scores, recommendations and neighbours it gives from the rows its file
//! keeps are exactly those it gives bound to all the data it was trained
//! on; evaluation leaves out test rows the model was trained on; and
//! recommendations leave out everything a user has.

use recc_runtime::context::{self, SavedContext};
use recc_runtime::experiment::{
    self, DataRequest, ErrorKind, FitOverrides, Fitted, SeenItems, TrainRequest,
};
use recc_runtime::modelfile;
use recc_runtime::split::Split;
use recc_runtime::train::Silent;
use std::path::{Path, PathBuf};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// The data each model trains on by default in these tests.
fn data_for(file: &str) -> &'static str {
    match file {
        "word2vec_mf.rec" => "builtin+item2vec",
        "poincare_tree.rec" => "tree:2x4",
        _ => "builtin",
    }
}

/// Train `file` for one epoch on `data` and save it to `path`; the model
/// as trained, and the data request.
fn train_and_save(file: &str, data: &str, split: Option<&str>, path: &Path) -> DataRequest {
    let source = experiment::read_source(&models_dir().join(file)).unwrap();
    // One pass of whichever solver the model's `fit` block names.
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
    let (config, _) = experiment::train_config(&source.model, &fit).unwrap();
    let request = DataRequest {
        data: data.to_string(),
        split: split.map(String::from),
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
    Fitted::from_outcome(&req, &prepared, outcome)
        .save(path)
        .unwrap();
    request
}

fn answering(path: &Path, data: Option<&DataRequest>) -> experiment::Answering {
    let (saved, source) = experiment::open_model(path).unwrap();
    experiment::open_for_answers(path, saved, source, data)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What a model says about some users and items, as text: scores of pairs,
/// the top ten of each user, neighbours of each item.
fn answers(a: &experiment::Answering) -> Vec<String> {
    let data = &a.data;
    let (Some((ud, _)), Some((id, _))) = (data.users(), data.items()) else {
        return vec!["no users and items".into()];
    };
    let users: Vec<String> = data.domains[ud].names().iter().take(4).cloned().collect();
    let items: Vec<String> = data.domains[id].names().iter().take(5).cloned().collect();
    let mut out = Vec::new();
    for u in users.iter().chain([&"no-such-user".to_string()]) {
        out.push(format!(
            "{:?}",
            experiment::predict_pairs(&a.fitted, data, std::slice::from_ref(u), &items, false)
        ));
        for seen in [SeenItems::Exclude, SeenItems::Include] {
            out.push(format!(
                "{:?}",
                experiment::recommend(&a.fitted, data, u, 10, false, seen)
            ));
        }
    }
    for i in &items {
        out.push(format!(
            "{:?}",
            experiment::similar(&a.fitted, i, None, None, 5)
        ));
    }
    out
}

#[test]
fn every_model_answers_from_its_file_as_it_does_from_all_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<String> = std::fs::read_dir(models_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rec"))
        .collect();
    files.sort();
    assert!(files.len() >= 19, "{files:?}");
    for file in &files {
        let path = dir.path().join(format!("{file}m"));
        let request = train_and_save(file, data_for(file), None, &path);
        let saved = modelfile::load(&path).unwrap();
        let context = saved.context.as_ref().expect("a context");
        let kept = context.data.to_dataset().unwrap();
        let from_file = answering(&path, None);
        assert_eq!(from_file.data.len(), kept.len(), "{file}");
        let from_data = answering(&path, Some(&request));
        assert!(
            from_file.data.len() < from_data.data.len(),
            "{file}: keeps {} of {} rows",
            from_file.data.len(),
            from_data.data.len()
        );
        let (a, b) = (answers(&from_file), answers(&from_data));
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y, "{file}: the file alone answers differently");
        }
        assert_eq!(a.len(), b.len());
    }
}

#[test]
fn recommend_leaves_out_every_item_of_the_user_in_any_row_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.recm");
    train_and_save("biased_mf.rec", "builtin", None, &path);
    let a = answering(&path, None);
    let (ud, users) = a.data.users().unwrap();
    let user = a.data.domains[ud].name(users[0]).to_string();
    let u = users[0] as usize;
    let seen = &a.fitted.seen[u];
    // The user's test rows count too: more than their training items.
    let trained = &a.fitted.session.binding.positives[u];
    assert!(
        seen.len() > trained.len(),
        "{} vs {}",
        seen.len(),
        trained.len()
    );
    let (id, _) = a.data.items().unwrap();
    let n_items = a.data.domain_size(id);
    let all = experiment::recommend(
        &a.fitted,
        &a.data,
        &user,
        n_items,
        false,
        SeenItems::Exclude,
    )
    .unwrap();
    assert_eq!(all.items.len(), n_items - seen.len());
    let map = &a.data.domains[id];
    for r in &all.items {
        let i = map.get(&r.item).unwrap();
        assert!(seen.binary_search(&i).is_err(), "{} is the user's", r.item);
    }
    let kept = experiment::recommend(
        &a.fitted,
        &a.data,
        &user,
        n_items,
        false,
        SeenItems::Include,
    )
    .unwrap();
    assert_eq!(kept.items.len(), n_items);
}

#[test]
fn a_tree_model_never_recommends_a_node_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tree.recm");
    train_and_save("poincare_tree.rec", "tree:2x3", None, &path);
    let a = answering(&path, None);
    let (ud, _) = a.data.users().unwrap();
    for node in a.data.domains[ud].names() {
        for seen in [SeenItems::Exclude, SeenItems::Include] {
            let recs = experiment::recommend(&a.fitted, &a.data, node, 100, false, seen).unwrap();
            assert!(
                recs.items.iter().all(|r| &r.item != node),
                "{node} recommended to itself: {recs:?}"
            );
        }
        let near = experiment::similar(&a.fitted, node, None, None, 100).unwrap();
        assert!(near.neighbours.iter().all(|n| &n.id != node));
    }
}

/// The rows of `data` whose fingerprints are in `context`.
fn trained_rows(context: &SavedContext, data: &recc_runtime::data::Dataset) -> usize {
    (0..data.len())
        .filter(|&r| context.trained_on(context::fingerprint(data, r)))
        .count()
}

#[test]
fn evaluate_leaves_out_test_rows_the_model_was_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.recm");
    train_and_save("biased_mf.rec", "builtin", Some("random:0.2"), &path);
    let saved = modelfile::load(&path).unwrap();
    let context = saved.context.clone().unwrap();
    // Trained on 80% of the rows: the fingerprints find exactly them.
    let other = DataRequest {
        split: Some("random:0.5".into()),
        ..DataRequest::default()
    };
    let r = experiment::reopen(&path, Some(&other)).unwrap();
    let data = &r.prepared.data;
    assert_eq!(trained_rows(&context, data), context.train_len);
    let split = &r.split;
    let overlap = split
        .test
        .iter()
        .filter(|&&t| context.trained_on(context::fingerprint(data, t)))
        .count();
    assert!(overlap > 0 && overlap < split.test.len());
    let e = experiment::evaluate(&r.fitted, data, split, 10).unwrap();
    assert_eq!(e.excluded, overlap);
    assert_eq!(e.rows, split.test.len() - overlap);

    // Every test row a training row: refused, as a usage error.
    let all_trained = Split {
        train: Vec::new(),
        test: (0..data.len())
            .filter(|&t| context.trained_on(context::fingerprint(data, t)))
            .collect(),
    };
    let err = experiment::evaluate(&r.fitted, data, &all_trained, 10).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Usage);
    assert!(
        err.message.contains("rows the model was trained on"),
        "{}",
        err.message
    );
}
