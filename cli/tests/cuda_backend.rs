//! `--backend cuda`: accepted by every command that trains or measures,
//! answered before any work, and refused with exit status 2. Without a
//! driver or a GPU the message is the device probe's (every place looked
//! and why each failed); with one it names the GPU and says the training
//! runtime is not built yet. The test asks the probe itself which case
//! this machine is, so it checks the right message either way.

use recc_cuda::device::{self, Missing};

mod common;
use common::{recc, Run};

/// The refusal this machine should give.
fn assert_refused(run: &Run, what: &str) {
    assert_eq!(run.code, 2, "{what}: {}", run.stderr);
    assert!(run.stdout.is_empty(), "{what}: {}", run.stdout);
    assert!(
        run.stderr.starts_with("error: --backend cuda: "),
        "{what}: {}",
        run.stderr
    );
    match device::probe() {
        Err(missing) => {
            for line in missing.to_string().lines() {
                assert!(
                    run.stderr.contains(line.trim()),
                    "{what}: `{line}` missing from\n{}",
                    run.stderr
                );
            }
            if let Missing::Driver { tried } = missing {
                for name in device::DRIVER_NAMES {
                    assert!(tried.iter().any(|a| a.library == name));
                    assert!(run.stderr.contains(name), "{}", run.stderr);
                }
            }
        }
        Ok(info) => {
            for d in &info.devices {
                assert!(run.stderr.contains(&d.name), "{what}: {}", run.stderr);
            }
            assert!(
                run.stderr
                    .contains("the CUDA training runtime is not built yet"),
                "{what}: {}",
                run.stderr
            );
        }
    }
}

#[test]
fn train_with_cuda_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = dir.path().join("mf.recm");
    let out = output.to_string_lossy().into_owned();
    let run = recc(&[
        "train",
        "models/mf.rec",
        "--backend",
        "cuda",
        "--epochs",
        "1",
        "-o",
        &out,
    ]);
    assert_refused(&run, "train");
    assert!(!output.exists(), "no model file is written");
    // Not a word of training: no data line, no progress.
    assert!(!run.stderr.contains("training mf"), "{}", run.stderr);
}

#[test]
fn cv_bench_and_eval_with_cuda_are_refused_too() {
    assert_refused(&recc(&["cv", "models/mf.rec", "--backend", "cuda"]), "cv");
    assert_refused(
        &recc(&["bench", "models/mf.rec", "--backend", "cuda"]),
        "bench",
    );
    // The refusal comes before the model file is even read.
    assert_refused(
        &recc(&["eval", "no_such_model.recm", "--backend", "cuda"]),
        "eval",
    );
}

#[test]
fn other_backends_still_say_what_they_accept() {
    let run = recc(&["train", "models/mf.rec", "--backend", "tpu"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown backend `tpu`"),
        "{}",
        run.stderr
    );
}
