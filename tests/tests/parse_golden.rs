//! Golden parse trees: every model and stdlib module as an S-expression.

use recc_compiler::ast::to_sexpr;
use recc_compiler::parse::parse;
use recc_compiler::source::FileId;
use recc_tests::{display_name, rec_files};

#[test]
fn every_model_and_stdlib_module_has_a_golden_parse_tree() {
    for folder in ["models", "stdlib"] {
        for path in rec_files(folder) {
            let name = display_name(&path);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            let file = parse(FileId(0), &text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("file")
                .to_string();
            let mut settings = insta::Settings::clone_current();
            settings.set_snapshot_suffix(format!("{folder}-{stem}"));
            settings.set_prepend_module_to_snapshot(false);
            settings.set_input_file(&path);
            settings.bind(|| insta::assert_snapshot!("parse", to_sexpr(&file)));
        }
    }
}
