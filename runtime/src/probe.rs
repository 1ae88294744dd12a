//! Evaluating an expression typed at a prompt on a model's parameters.
//!
//! The compiler turns the expression into a graph whose score is its value
//! ([`recc_compiler::probe`]); this module fills the graph's id slots from the
//! session's id maps and runs the reference evaluator on it.

use crate::train::Session;
use recc_compiler::diagnostic::Diagnostic;
use recc_compiler::interp::{evaluate_node, Example, Params, SlotValue};
use recc_compiler::ir::SlotKind;
use recc_compiler::probe::{self, Probe};
use recc_compiler::types::Shape;

/// The value of an expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<f64>),
    /// Row after row.
    Matrix {
        rows: usize,
        cols: usize,
        values: Vec<f64>,
    },
}

/// Why an expression has no value: a rendered report, located in the
/// expression where it can be.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProbeError {
    pub kind: ProbeErrorKind,
    pub message: String,
}

/// What went wrong, for a caller that can do something about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeErrorKind {
    /// The expression does not check, names an unknown id, or the evaluator
    /// refused it.
    Expression,
    /// It reads parameters and none were given.
    NeedsData,
    /// The parameters given are of a model with other tables.
    OtherModel,
}

impl ProbeError {
    fn new(message: impl Into<String>) -> ProbeError {
        ProbeError {
            kind: ProbeErrorKind::Expression,
            message: message.into(),
        }
    }

    fn of(kind: ProbeErrorKind, message: impl Into<String>) -> ProbeError {
        ProbeError {
            kind,
            message: message.into(),
        }
    }
}

/// How many close ids or labels an unknown one is answered with.
const SUGGESTIONS: usize = 3;

/// Evaluate `expr` against the model whose source is `model_text`, on the
/// session's parameters when `bound` is given. Numbers and quoted strings
/// where an index goes name members of that index's domain (raw ids, or
/// labels where the data has them). Without a session only expressions that
/// read no parameter have a value.
pub fn evaluate_expression(
    model_text: &str,
    expr: &str,
    bound: Option<(&Session, &Params)>,
) -> Result<Value, ProbeError> {
    let name = match bound {
        Some((session, _)) => format!("{}.rec", session.model.name),
        None => "model.rec".to_string(),
    };
    evaluate_in(&name, model_text, expr, bound)
}

/// [`evaluate_expression`] with the model's source shown as `model_name` in
/// reports that point into it.
pub fn evaluate_in(
    model_name: &str,
    model_text: &str,
    expr: &str,
    bound: Option<(&Session, &Params)>,
) -> Result<Value, ProbeError> {
    let probe =
        probe::compile(model_name, model_text, expr).map_err(|e| ProbeError::new(e.render()))?;
    let Some(output) = probe.graph.score else {
        return Err(ProbeError::new(
            "internal error: the expression has no value",
        ));
    };
    let (example, params) = match bound {
        Some((session, params)) => (bound_example(&probe, session, params)?, None),
        None => {
            if probe.reads_params {
                let d = Diagnostic::error(
                    "recc::no-data",
                    "this reads the model's parameters, which need data to size them",
                    probe.span(),
                )
                .label("reads parameters")
                .with_help("load data first: `:data SPEC`, e.g. `:data builtin`");
                return Err(ProbeError::of(ProbeErrorKind::NeedsData, probe.report(d)));
            }
            // Nothing reads a table or an id: one row per domain is enough
            // for the evaluator to accept the example.
            let sizes = vec![1; probe.graph.domains.len()];
            let params = Params::zeros(&probe.graph, &sizes)
                .map_err(|e| ProbeError::new(format!("internal error: {e}")))?;
            (unbound_example(&probe), Some(params))
        }
    };
    let params = match (&params, bound) {
        (Some(p), _) => p,
        (None, Some((_, p))) => p,
        (None, None) => return Err(ProbeError::new("internal error: no parameters")),
    };
    let values = evaluate_node(&probe.graph, params, &example, output)
        .map_err(|e| ProbeError::new(format!("could not evaluate: {e}")))?;
    Ok(match probe.shape {
        Shape::Scalar => Value::Scalar(values.first().copied().unwrap_or(f64::NAN)),
        Shape::Vec(_) => Value::Vector(values),
        Shape::Mat(rows, cols) => Value::Matrix { rows, cols, values },
    })
}

/// A value for every slot with nothing to go on: slots the expression does
/// not read (the model's own inputs) get a harmless placeholder.
fn unbound_example(probe: &Probe) -> Example {
    Example {
        slots: probe
            .graph
            .slots
            .iter()
            .map(|s| match &s.kind {
                SlotKind::Index(_) | SlotKind::Negative { .. } => SlotValue::Index(0),
                SlotKind::Real => SlotValue::Real(0.0),
                SlotKind::InverseCount(_) => SlotValue::Real(1.0),
                SlotKind::Bag { .. } => SlotValue::Bag(Vec::new()),
                // At prediction a variational row is its mean.
                SlotKind::Noise(shape)
                | SlotKind::Pooled { shape, .. }
                | SlotKind::Dense(shape) => SlotValue::Noise(vec![0.0; shape.len()]),
            })
            .collect(),
    }
}

/// The example with every id slot holding the member its literal names.
fn bound_example(probe: &Probe, session: &Session, params: &Params) -> Result<Example, ProbeError> {
    let g = &probe.graph;
    let forward = &session.forward;
    let same_tables = g.tables.len() == forward.tables.len()
        && g.tables.iter().zip(&forward.tables).all(|(a, b)| {
            a.name == b.name && a.shape == b.shape && a.domain == b.domain && a.role == b.role
        });
    let same_domains = g.domains == forward.domains
        && params.domain_sizes.len() == g.domains.len()
        && params.tables.len() == g.tables.len();
    if !same_tables || !same_domains {
        return Err(ProbeError::of(
            ProbeErrorKind::OtherModel,
            "the parameters belong to another version of the model: bind it to the data again (or train it) before evaluating with them",
        ));
    }
    let mut example = unbound_example(probe);
    for id in &probe.slots {
        let Some(d) = session.binding.domain_of(&id.domain) else {
            return Err(ProbeError::new(format!(
                "internal error: the data has no domain `{}`",
                id.domain
            )));
        };
        let (_, map) = &session.binding.domains[d];
        let member = map
            .find(&id.key)
            .filter(|&m| (m as usize) < params.domain_sizes[d]);
        let Some(member) = member else {
            return Err(ProbeError::new(probe.report(unknown_id(id, map))));
        };
        example.slots[id.slot.index()] = SlotValue::Index(member as usize);
    }
    Ok(example)
}

/// An id (or label) the domain does not have, with the closest it does.
fn unknown_id(id: &probe::IdSlot, map: &crate::data::IdMap) -> Diagnostic {
    let what = if id.quoted { "id or label" } else { "id" };
    let mut d = Diagnostic::error(
        "recc::unknown-id",
        format!("no {} has the {what} `{}`", id.domain, id.key),
        id.span,
    )
    .label(format!("no such {} in the data", id.domain));
    let close = closest_keys(&id.key, map);
    if !close.is_empty() {
        let quoted: Vec<String> = close.iter().map(|k| format!("`{k}`")).collect();
        d = d.with_help(format!("the closest known: {}", quoted.join(", ")));
    } else if map.is_empty() {
        d = d.with_help(format!("the data has no {}s", id.domain));
    }
    d
}

/// Raw ids and labels of `map` most like `key`, best first.
fn closest_keys(key: &str, map: &crate::data::IdMap) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = map
        .names()
        .iter()
        .map(String::as_str)
        .chain(map.labels().iter().filter_map(|l| l.as_deref()))
        .map(|k| (strsim::normalized_damerau_levenshtein(key, k), k))
        .filter(|(s, _)| *s >= 0.4)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(SUGGESTIONS)
        .map(|(_, k)| k.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bind::BindOptions;
    use crate::predict::Predictor;
    use crate::synth::{self, SynthConfig};

    const BIASED_MF: &str = "\
use stdlib.losses
input u: user
input i: item
input r: real
param b: real init constant(3.5)
param w[user]: real init normal(0, 0.1)
param m[item]: real init normal(0, 0.1)
param p[user]: vec(12) init normal(0, 0.2)
param q[item]: vec(12) init normal(0, 0.2)
let R(u, i) = b + w[u] + m[i] + dot(p[u], q[i])
loss mse(R(u, i), r)
";

    fn session() -> (crate::data::Dataset, Session, Params) {
        let data = synth::generate(&SynthConfig {
            users: 40,
            items: 30,
            ratings_per_user: 10,
            seed: 7,
        });
        let compiled = recc_compiler::compile("biased_mf.rec", BIASED_MF);
        let Some(model) = compiled.model else {
            panic!("{}", compiled.render_diagnostics())
        };
        let rows: Vec<usize> = (0..data.len()).collect();
        let session = match Session::new(&model, &data, &rows, &BindOptions::default()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let sizes = session.binding.domain_sizes();
        let params = match crate::init::initialise(&session.forward, &sizes, 3) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        (data, session, params)
    }

    fn eval(expr: &str, bound: Option<(&Session, &Params)>) -> Result<Value, ProbeError> {
        evaluate_expression(BIASED_MF, expr, bound)
    }

    fn index(session: &Session, domain: &str, key: &str) -> usize {
        let d = session.binding.domain_of(domain).unwrap_or(usize::MAX);
        match session
            .binding
            .domains
            .get(d)
            .and_then(|(_, m)| m.find(key))
        {
            Some(i) => i as usize,
            None => panic!("no {domain} {key}"),
        }
    }

    #[test]
    fn the_score_at_two_ids_is_what_prediction_gives() {
        let (data, session, params) = session();
        let predictor = Predictor::new(&session, &params);
        for (u, i) in [("u1", "i1"), ("u7", "i12"), ("u40", "i3")] {
            let Ok(Value::Scalar(v)) =
                eval(&format!("R(\"{u}\", \"{i}\")"), Some((&session, &params)))
            else {
                panic!("R({u}, {i}) is no number")
            };
            let (ui, ii) = (index(&session, "user", u), index(&session, "item", i));
            let want = match predictor.score_pair(&data, Some(ui as u32), Some(ii as u32)) {
                Ok(s) => s,
                Err(e) => panic!("{e}"),
            };
            assert!(
                (v - want).abs() < 1e-12,
                "R({u}, {i}) = {v}, predicted {want}"
            );
        }
    }

    #[test]
    fn rows_and_dots_are_the_parameters() {
        let (_, session, params) = session();
        let bound = Some((&session, &params));
        let p = session
            .forward
            .tables
            .iter()
            .position(|t| t.name == "p")
            .unwrap_or(usize::MAX);
        let q = session
            .forward
            .tables
            .iter()
            .position(|t| t.name == "q")
            .unwrap_or(usize::MAX);
        let u = index(&session, "user", "u5");
        let i = index(&session, "item", "i9");
        let row: Vec<f64> = params.tables[p].row(u).to_vec();
        assert_eq!(eval("p[\"u5\"]", bound), Ok(Value::Vector(row.clone())));
        let dot: f64 = row
            .iter()
            .zip(params.tables[q].row(i).iter())
            .map(|(a, b)| a * b)
            .sum();
        let Ok(Value::Scalar(v)) = eval("dot(p[\"u5\"], q[\"i9\"])", bound) else {
            panic!("no dot")
        };
        assert!((v - dot).abs() < 1e-12);
        // A label names its item as its raw id does.
        let (_, items) = &session.binding.domains[index_of(&session, "item")];
        let label = items.label(i as u32).to_string();
        assert_ne!(label, "i9");
        assert_eq!(
            eval(&format!("q[\"{label}\"]"), bound),
            eval("q[\"i9\"]", bound)
        );
        // mse from the stdlib, over a score.
        let Ok(Value::Scalar(r)) = eval("R(\"u5\", \"i9\")", bound) else {
            panic!("no score")
        };
        let Ok(Value::Scalar(loss)) = eval("mse(R(\"u5\", \"i9\"), 4)", bound) else {
            panic!("no loss")
        };
        assert!((loss - (r - 4.0) * (r - 4.0)).abs() < 1e-12);
    }

    fn index_of(session: &Session, domain: &str) -> usize {
        session.binding.domain_of(domain).unwrap_or(usize::MAX)
    }

    #[test]
    fn unknown_ids_are_located_with_the_closest_known() {
        let (_, session, params) = session();
        let Err(e) = eval("R(\"u5\", \"i99\")", Some((&session, &params))) else {
            panic!("an unknown item evaluated")
        };
        assert!(
            e.message.contains("no item has the id or label `i99`"),
            "{}",
            e.message
        );
        assert!(e.message.contains("<expr>:1:9"), "{}", e.message);
        assert!(e.message.contains("closest known: "), "{}", e.message);
        assert!(e.message.contains("`i9`"), "{}", e.message);
        // A raw number is an id too; the synthetic ids are not numbers.
        let Err(e) = eval("p[5]", Some((&session, &params))) else {
            panic!("a bare number named a user")
        };
        assert!(
            e.message.contains("no user has the id `5`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn without_data_only_expressions_over_no_parameter_have_values() {
        let Ok(Value::Scalar(v)) = eval("sigmoid(3)", None) else {
            panic!("sigmoid(3) has no value")
        };
        assert!((v - 1.0 / (1.0 + (-3.0f64).exp())).abs() < 1e-12);
        assert_eq!(eval("mse(1, 4)", None), Ok(Value::Scalar(9.0)));
        let Err(e) = eval("R(1, 2)", None) else {
            panic!("R evaluated without data")
        };
        assert!(e.message.contains(":data"), "{}", e.message);
        assert_eq!(e.kind, ProbeErrorKind::NeedsData);
        assert!(e.message.contains("<expr>"), "{}", e.message);
        // With no model at all.
        assert_eq!(
            evaluate_expression("", "2 * 3 - 1", None),
            Ok(Value::Scalar(5.0))
        );
    }

    #[test]
    fn parameters_of_another_model_are_refused() {
        let (_, session, params) = session();
        let other = BIASED_MF.replace("vec(12)", "vec(6)");
        let Err(e) = evaluate_expression(&other, "p[\"u1\"]", Some((&session, &params))) else {
            panic!("evaluated with mismatched parameters")
        };
        assert!(e.message.contains("another version"), "{}", e.message);
        assert_eq!(e.kind, ProbeErrorKind::OtherModel);
    }
}
