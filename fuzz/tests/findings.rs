//! Inputs the long runs found, kept in `fuzz/findings/HARNESS/` (the
//! symptom each had and how it was resolved are in that folder's
//! README.md). Each test replays one harness's inputs and passes when none
//! of them is a finding, so a fixed defect stays fixed. Inputs still open
//! live in `fuzz/findings/open/`, which these tests do not replay.

use recc_fuzz::data::DataHarness;
use recc_fuzz::driver::{run_case, Harness, Stages};
use recc_fuzz::modelfile::ModelFileHarness;
use recc_fuzz::models::ModelHarness;
use std::path::PathBuf;

fn replay<H: Harness>(h: &mut H) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("findings")
        .join(h.name());
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == h.extension()))
                .collect()
        })
        .unwrap_or_default();
    inputs.sort();
    let mut failures = Vec::new();
    for path in &inputs {
        let input = std::fs::read(path).unwrap();
        println!("{}", path.display());
        if let Err(f) = run_case(h, &input, &mut Stages::new()) {
            failures.push(format!("{}: {}", path.display(), f.signature));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn modelfile_findings_are_clean_errors() {
    replay(&mut ModelFileHarness::new());
}

#[test]
fn data_findings_are_clean_errors() {
    replay(&mut DataHarness::new());
}

#[test]
fn models_findings_agree() {
    replay(&mut ModelHarness::new());
}
