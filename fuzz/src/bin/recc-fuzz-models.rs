//! `recc-fuzz-models --seconds N --seed S`: see `docs/fuzzing.md`.

fn main() {
    recc_fuzz::driver::main(recc_fuzz::models::ModelHarness::new())
}
