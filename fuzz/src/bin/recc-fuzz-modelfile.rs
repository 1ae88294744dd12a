//! `recc-fuzz-modelfile --seconds N --seed S`: see `docs/fuzzing.md`.

fn main() {
    recc_fuzz::driver::main(recc_fuzz::modelfile::ModelFileHarness::new())
}
