//! Golden parse trees: every model and stdlib module as an S-expression.

use recc_compiler::ast::to_sexpr;
use recc_compiler::parse::parse;
use recc_compiler::source::FileId;
use recc_tests::{display_name, rec_files, snapshot_settings, stem};

#[test]
fn every_model_and_stdlib_module_has_a_golden_parse_tree() {
    for folder in ["models", "stdlib"] {
        for path in rec_files(folder) {
            let name = display_name(&path);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            let file = parse(FileId(0), &text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let settings = snapshot_settings(&path, format!("{folder}-{}", stem(&path)));
            settings.bind(|| insta::assert_snapshot!("parse", to_sexpr(&file)));
        }
    }
}
