//! The solver flags through the experiment API: what lands in
//! `TrainConfig::solver`, and what is refused and how.

use recc_compiler::model::Solver;
use recc_runtime::experiment::{self, ErrorKind, FitOverrides, Source};

fn source(name: &str, fit: Option<&str>) -> Source {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let text = match fit {
        Some(fit) => {
            let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("fit ")).collect();
            format!("{}\n{fit}\n", kept.join("\n"))
        }
        None => text,
    };
    experiment::compile_source(name, text).unwrap_or_else(|e| panic!("{e}"))
}

fn solver_of(source: &Source, fit: FitOverrides) -> Solver {
    match experiment::train_config(&source.model, &fit) {
        Ok((config, _)) => config.solver,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn the_flags_choose_the_solver_and_its_counts() {
    let sgd = source("biased_mf.rec", None);
    assert_eq!(solver_of(&sgd, FitOverrides::default()), Solver::Sgd);
    let als = FitOverrides {
        solver: Some("als".into()),
        sweeps: Some(4),
        seed: Some(3),
        ..FitOverrides::default()
    };
    assert_eq!(solver_of(&sgd, als), Solver::Als { sweeps: 4 });
    let gibbs = FitOverrides {
        solver: Some("gibbs".into()),
        ..FitOverrides::default()
    };
    assert_eq!(
        solver_of(&sgd, gibbs),
        Solver::Gibbs {
            samples: 150,
            burn_in: 50
        }
    );
}

#[test]
fn a_count_flag_keeps_the_fit_blocks_other_counts() {
    let block = source(
        "biased_mf.rec",
        Some("fit { solver: gibbs, samples: 40, burn_in: 10 }"),
    );
    let more = FitOverrides {
        samples: Some(80),
        ..FitOverrides::default()
    };
    assert_eq!(
        solver_of(&block, more),
        Solver::Gibbs {
            samples: 80,
            burn_in: 10
        }
    );
    // Naming the block's own solver keeps its counts; another starts afresh.
    let same = FitOverrides {
        solver: Some("gibbs".into()),
        ..FitOverrides::default()
    };
    assert_eq!(
        solver_of(&block, same),
        Solver::Gibbs {
            samples: 40,
            burn_in: 10
        }
    );
    let back = FitOverrides {
        solver: Some("sgd".into()),
        epochs: Some(2),
        ..FitOverrides::default()
    };
    assert_eq!(solver_of(&block, back), Solver::Sgd);
}

#[test]
fn a_solver_the_model_cannot_use_is_a_model_error_located_in_its_file() {
    let bpr = source("bpr_mf.rec", None);
    let als = FitOverrides {
        solver: Some("als".into()),
        ..FitOverrides::default()
    };
    let (config, _) = match experiment::train_config(&bpr.model, &als) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let Err(error) = experiment::check_solver(&bpr, &config) else {
        panic!("ALS was not refused on BPR")
    };
    assert_eq!(error.kind, ErrorKind::Model);
    assert!(
        error.message.contains("recc::no-affine-block")
            && error.message.contains("bpr_mf.rec:20:6"),
        "{}",
        error.message
    );
    // A model made of blocks passes, as does SGD on any model.
    let mf = source("biased_mf.rec", None);
    let (config, _) = match experiment::train_config(&mf.model, &als) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert!(experiment::check_solver(&mf, &config).is_ok());
    let (config, _) = match experiment::train_config(&bpr.model, &FitOverrides::default()) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert!(experiment::check_solver(&bpr, &config).is_ok());
}
