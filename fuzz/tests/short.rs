//! A short run of each harness, from a fixed seed: every stage is reached
//! and nothing is found. The long runs are the binaries (`docs/fuzzing.md`).

use recc_fuzz::data::{self, DataHarness};
use recc_fuzz::driver::{run_case, run_in_process, Harness, Options, Report, Stages};
use recc_fuzz::modelfile::ModelFileHarness;
use recc_fuzz::models::ModelHarness;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

/// Cases per harness: a fixed count, so a run is the same on any machine;
/// `RECC_FUZZ_CASES` runs more.
fn cases(default: u64) -> u64 {
    std::env::var("RECC_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn findings_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-findings-{name}"))
}

/// The driver's panic capture and watchdog are per process: one harness
/// at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn short_run<H: Harness>(h: &mut H, seed: u64, n: u64) -> Report {
    let mut opts = Options::new(600.0, seed, findings_dir(h.name()));
    opts.max_cases = Some(cases(n));
    opts.shrink_seconds = 2.0;
    let report = run_in_process(h, &opts, &BTreeSet::new(), false);
    report.print(h.name());
    report
}

fn assert_clean(report: &Report) {
    let found: Vec<String> = report
        .findings
        .iter()
        .map(|k| {
            format!(
                "{} ({})\n{}",
                k.finding.signature,
                k.path.display(),
                k.finding.detail
            )
        })
        .collect();
    assert!(found.is_empty(), "findings:\n{}", found.join("\n\n"));
}

/// Each stage in `wanted` was reached by at least one case.
fn assert_reached(stages: &Stages, wanted: &[&str]) {
    for s in wanted {
        assert!(
            stages.get(s).copied().unwrap_or(0) > 0,
            "stage `{s}` never reached: {stages:?}"
        );
    }
}

#[test]
fn models_short_run() {
    let _serial = serial();
    let mut h = ModelHarness::new();
    let mut report = short_run(&mut h, 1, 40);
    assert_clean(&report);
    assert!(report.executions > 0);
    // One known-good model, so the later stages are reached however few
    // cases the time allowed.
    let text = std::fs::read_to_string(recc_fuzz::models_dir().join("biased_mf.rec")).unwrap();
    run_case(&mut h, text.as_bytes(), &mut report.stages).unwrap();
    assert_reached(
        &report.stages,
        &[
            "refused by check",
            "checked",
            "lowered and differentiated",
            "jit compiled",
            "trained on both backends",
            "agreed",
            "predict agreed",
        ],
    );
}

#[test]
fn data_short_run() {
    let _serial = serial();
    let mut h = DataHarness::new();
    let mut report = short_run(&mut h, 1, 40);
    assert_clean(&report);
    // One case per reader that loads, and one that trains, so every reader
    // and the training stage are reached.
    let ml: Vec<(&str, String)> = ["u.data", "u.item", "u.user", "u.genre", "u.occupation"]
        .iter()
        .map(|f| {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../runtime/tests/fixtures/ml-mini")
                .join(f);
            (
                *f,
                String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned(),
            )
        })
        .collect();
    let ml: Vec<(&str, &str)> = ml.iter().map(|(n, c)| (*n, c.as_str())).collect();
    let cases = [
        data::case(
            "csv",
            &[("columns", "user,item,rating:real,ts:time"), ("train", "")],
            &[(
                "r.csv",
                "u1,i1,4,881250949\nu2,i1,3,881250950\nu1,i2,5,881260949\n",
            )],
        ),
        data::case("ml-100k", &[("view", "item2vec")], &ml),
        data::case(
            "lastfm",
            &[],
            &[(
                "user_artists.dat",
                "userID\tartistID\tweight\n2\t51\t13\n3\t52\t4\n",
            )],
        ),
        data::case(
            "amazon",
            &[("view", "text")],
            &[(
                "reviews.json",
                r#"{"reviewerID": "U1", "asin": "B1", "overall": 5.0, "reviewText": "fine strings", "unixReviewTime": 1300000000}"#,
            )],
        ),
        data::case("spec", &[("spec", "tree:2x3")], &[]),
    ];
    for case in &cases {
        run_case(&mut h, case, &mut report.stages)
            .unwrap_or_else(|f| panic!("{}: {}", String::from_utf8_lossy(case), f.signature));
    }
    assert_reached(
        &report.stages,
        &[
            "refused by a reader",
            "loaded: delimited",
            "loaded: movielens",
            "loaded: lastfm",
            "loaded: amazon",
            "loaded: tree",
            "loaded: a co-occurrence view",
            "split",
            "trained",
            "predicted",
        ],
    );
}

#[test]
fn modelfile_short_run() {
    let _serial = serial();
    // Bytes and header fields (a table's lanes, the embedded source, a
    // dropped table) are both mutated: `load` checks them all.
    let mut h = ModelFileHarness::new();
    let mut report = short_run(&mut h, 1, 60);
    assert_clean(&report);
    // An unmutated file goes all the way.
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-base.recm");
    let base = h.base(0).to_vec();
    std::fs::write(&path, &base).unwrap();
    run_case(&mut h, &base, &mut report.stages).unwrap();
    assert_reached(
        &report.stages,
        &["refused by load", "loaded", "parameters built", "predicted"],
    );
}
