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

/// The most text a model file (or a REPL transcript) may hold. Real models
/// are a few kilobytes; the bound keeps `/dev/zero` or a mistaken multi-GB
/// file from being read into memory for ever.
pub const MAX_SOURCE_BYTES: u64 = 16 << 20;

/// Read and compile a `.rec` file.
pub fn read_source(path: &Path) -> Result<Source> {
    let text = read_text(path).map_err(usage)?;
    compile_source(&path.display().to_string(), text)
}

/// Read a text file of at most [`MAX_SOURCE_BYTES`]: a model's source or a
/// recorded session. The message names the file and says what is wrong.
pub fn read_text(path: &Path) -> std::result::Result<String, String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        return Err(format!(
            "{} is larger than {} MiB: not a model or session file",
            path.display(),
            MAX_SOURCE_BYTES >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "cannot read {}: not UTF-8 text (a bad byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}
