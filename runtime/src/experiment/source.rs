//! Model sources: text compiled and checked into a [`Model`].

use super::{failed, usage, Result};
use recc_compiler::model::Model;
use std::path::Path;

/// A checked model and the source it came from.
#[derive(Clone, Debug)]
pub struct Source {
    /// The file it was read from, or the name it was given.
    pub name: String,
    pub text: String,
    pub model: Model,
    /// The compiler's warnings, rendered (empty when there are none).
    pub warnings: String,
}

/// Compile and check `text`; a model with errors fails with the compiler's
/// rendered report as the message.
pub fn compile_source(name: &str, text: String) -> Result<Source> {
    let compiled = recc_compiler::compile(name, &text);
    let report = compiled.render_diagnostics();
    match compiled.model {
        Some(model) if !compiled.has_errors() => Ok(Source {
            name: name.to_string(),
            text,
            model,
            warnings: report,
        }),
        _ => Err(failed(report)),
    }
}

/// Read and compile a `.rec` file.
pub fn read_source(path: &Path) -> Result<Source> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    compile_source(&path.display().to_string(), text)
}
