//! How expression values print at the prompt: numbers to 4 significant
//! digits, long vectors cut short with their length.

use recc_compiler::interp::Params;
use recc_runtime::probe::{evaluate_in, ProbeErrorKind, Value};
use recc_runtime::session::Session;

impl super::Repl {
    /// Evaluate an expression typed at the prompt and print its value: on
    /// the trained parameters after `:train` (or `:open`), on the initial
    /// ones while data is loaded but nothing trained, on none without data.
    pub(super) fn evaluate(&mut self, text: &str) -> Result<(), String> {
        let source = self.buffer.text();
        let trained = self
            .current
            .as_ref()
            .map(|c| (&c.fitted.session, &c.fitted.params));
        let value = match trained {
            Some(bound) => match evaluate_in(&self.buffer.name, &source, text, Some(bound)) {
                // The model has changed shape since: its own fresh parameters.
                Err(e) if e.kind == ProbeErrorKind::OtherModel => {
                    self.evaluate_initial(&source, text)
                }
                other => other.map_err(|e| e.message),
            },
            None => self.evaluate_initial(&source, text),
        }?;
        self.out.print(&format_value(&value));
        Ok(())
    }

    /// With data loaded and a complete model: on its initial parameters.
    fn evaluate_initial(&self, source: &str, text: &str) -> Result<Value, String> {
        let initial = match (&self.loaded, self.buffer.model()) {
            (Some(loaded), Some(model)) => {
                Some(initial_parameters(model, &loaded.prepared, &self.request)?)
            }
            _ => None,
        };
        let bound = initial.as_ref().map(|(s, p)| (s, p));
        evaluate_in(&self.buffer.name, source, text, bound).map_err(|e| {
            // With data loaded, what parameters wait for is a complete model.
            if e.kind == ProbeErrorKind::NeedsData && self.loaded.is_some() {
                format!(
                    "{} (parameters exist once the model is complete)",
                    super::incomplete(&self.buffer)
                )
            } else {
                e.message
            }
        })
    }
}

/// `model` bound to the training rows of the data's first split, with the
/// parameters training would start from.
fn initial_parameters(
    model: &recc_compiler::model::Model,
    prepared: &recc_runtime::experiment::Prepared,
    request: &recc_runtime::experiment::DataRequest,
) -> Result<(Session, Params), String> {
    let rows: Vec<usize> = match prepared.splits.first() {
        Some((_, split)) => split.train.clone(),
        None => (0..prepared.data.len()).collect(),
    };
    let options = recc_runtime::experiment::bind_options(request).map_err(|e| e.message)?;
    let session =
        Session::new(model, &prepared.data, &rows, &options).map_err(|e| e.to_string())?;
    let sizes = session.binding.domain_sizes();
    let params = recc_runtime::init::initialise(&session.forward, &sizes, model.fit.seed)
        .map_err(|e| e.to_string())?;
    Ok((session, params))
}

/// What `:help NAME` shows of a built-in or stdlib function, if `name` is one.
pub fn function_help(name: &str) -> Option<String> {
    let doc = recc_compiler::stdlib::builtins()
        .into_iter()
        .chain(recc_compiler::stdlib::catalogue())
        .find(|d| d.name == name)?;
    let mut text = if doc.module == "builtin" {
        format!("{}  (built-in)", doc.signature)
    } else {
        format!(
            "{} = {}  (stdlib.{}; in a model: use stdlib.{})",
            doc.signature, doc.body, doc.module, doc.module
        )
    };
    for line in doc.doc.lines() {
        text.push_str("\n  ");
        text.push_str(line);
    }
    Some(text)
}

/// Lanes of a vector shown before the rest is summarised.
const SHOWN_LANES: usize = 8;
/// Rows of a matrix shown before the rest is summarised.
const SHOWN_ROWS: usize = 4;

/// One value as the prompt prints it: `3.512`, `[0.1, -0.02, 0.3]`,
/// `[0.1, …, 0.4, … (64 lanes)]`.
pub fn format_value(value: &Value) -> String {
    match value {
        Value::Scalar(x) => format_number(*x),
        Value::Vector(v) => format_lanes(v),
        Value::Matrix { rows, cols, values } => {
            let mut shown: Vec<String> = values
                .chunks(*cols.max(&1))
                .take(SHOWN_ROWS)
                .map(format_lanes)
                .collect();
            if *rows > SHOWN_ROWS {
                shown.push(format!("… ({rows}×{cols})"));
            }
            format!("[{}]", shown.join(", "))
        }
    }
}

fn format_lanes(v: &[f64]) -> String {
    let mut shown: Vec<String> = v
        .iter()
        .take(SHOWN_LANES)
        .map(|x| format_number(*x))
        .collect();
    if v.len() > SHOWN_LANES {
        shown.push(format!("… ({} lanes)", v.len()));
    }
    format!("[{}]", shown.join(", "))
}

/// `x` to 4 significant digits, without trailing zeros; very large and very
/// small magnitudes in scientific notation.
pub fn format_number(x: f64) -> String {
    if x == 0.0 {
        return "0".to_string();
    }
    if !x.is_finite() {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor();
    if !(-4.0..6.0).contains(&magnitude) {
        let text = format!("{x:.3e}");
        // 1.500e-7 → 1.5e-7
        return match text.split_once('e') {
            Some((mantissa, exponent)) => format!("{}e{exponent}", trim_zeros(mantissa)),
            None => text,
        };
    }
    let decimals = (3.0 - magnitude).max(0.0) as usize;
    let text = format!("{x:.decimals$}");
    // Rounding may carry into a new digit (9.9996 → 10.000): still fine.
    trim_zeros(&text).to_string()
}

fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_have_help() {
        let Some(mse) = function_help("mse") else {
            panic!("no help for mse")
        };
        assert!(
            mse.starts_with("mse(pred, target) = sq(pred - target)  (stdlib.losses"),
            "{mse}"
        );
        assert!(mse.contains("\n  Squared error"), "{mse}");
        let Some(sigmoid) = function_help("sigmoid") else {
            panic!("no help for sigmoid")
        };
        assert!(sigmoid.starts_with("sigmoid(x)  (built-in)"), "{sigmoid}");
        assert_eq!(function_help("nope"), None);
    }

    #[test]
    fn numbers_have_four_significant_digits() {
        assert_eq!(format_number(3.51234), "3.512");
        assert_eq!(format_number(-0.000123456), "-0.0001235");
        assert_eq!(format_number(4.0), "4");
        assert_eq!(format_number(0.5), "0.5");
        assert_eq!(format_number(12345.6), "12346");
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(1.5e-7), "1.5e-7");
        assert_eq!(format_number(2.0e9), "2e9");
        assert_eq!(format_number(f64::NAN), "NaN");
        assert_eq!(format_number(0.9525741268224334), "0.9526");
    }

    #[test]
    fn short_vectors_print_whole_and_long_ones_with_their_length() {
        assert_eq!(
            format_value(&Value::Vector(vec![0.1, -0.25, 3.0])),
            "[0.1, -0.25, 3]"
        );
        let long: Vec<f64> = (0..64).map(|k| k as f64 / 10.0).collect();
        assert_eq!(
            format_value(&Value::Vector(long)),
            "[0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, … (64 lanes)]"
        );
        assert_eq!(format_value(&Value::Scalar(-1.25)), "-1.25");
        assert_eq!(
            format_value(&Value::Matrix {
                rows: 2,
                cols: 2,
                values: vec![1.0, 2.0, 3.0, 4.0]
            }),
            "[[1, 2], [3, 4]]"
        );
    }
}
