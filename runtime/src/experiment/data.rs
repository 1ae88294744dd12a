//! Data: what to load and how to split and bind it, loaded and split.

use super::{usage, Result};
use crate::bind::BindOptions;
use crate::data::delimited::{self, ColumnKind};
use crate::data::spec::{DataSpec, LoadOptions};
use crate::data::{BadLines, Dataset};
use crate::modelfile;
use crate::predict;
use crate::split::{Split, SplitSpec, SplitSpecError};
use recc_compiler::model::{DomainId, InputKind, Model};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the examples come from and how they are split and bound: the
/// command line's data flags as plain fields.
#[derive(Clone, Debug, PartialEq)]
pub struct DataRequest {
    /// builtin, ml-100k:DIR, lastfm:DIR, amazon:FILE, csv:FILE, tree:BxD or
    /// a path, with an optional +item2vec or +text.
    pub data: String,
    /// `None`: the data's own split, else `user:0.2` for a ranking model,
    /// else `random:0.2`.
    pub split: Option<String>,
    /// Columns of a delimited file, e.g. `user,item,rating:real`.
    pub columns: Option<String>,
    /// Field separator of a delimited file (`None`: detected).
    pub sep: Option<String>,
    /// The delimited file's first line names its columns.
    pub header: bool,
    /// Skip lines that do not parse instead of failing.
    pub skip_bad_lines: bool,
    /// `INPUT=COLUMN` pairs.
    pub bind: Vec<String>,
    /// The columns of a factorization machine's features (empty: all).
    pub features: Vec<String>,
    /// Only rows whose target is at least this are a ranking model's positives.
    pub min_target: Option<f64>,
    /// Co-occurrence window of +item2vec and +text.
    pub window: usize,
    /// Words rarer than this are dropped by +text.
    pub min_count: usize,
    /// Also write the split's rows as DIR/train.tsv and DIR/test.tsv.
    pub write_split: Option<PathBuf>,
}

impl Default for DataRequest {
    fn default() -> DataRequest {
        DataRequest {
            data: "builtin".into(),
            split: None,
            columns: None,
            sep: None,
            header: false,
            skip_bad_lines: false,
            bind: Vec::new(),
            features: Vec::new(),
            min_target: None,
            window: 5,
            min_count: 5,
            write_split: None,
        }
    }
}

impl DataRequest {
    /// The request a cross-validation runs: `kfold:5` unless a split is
    /// named.
    pub fn for_cross_validation(&self) -> DataRequest {
        let mut req = self.clone();
        if req.split.is_none() {
            req.split = Some("kfold:5".into());
        }
        req
    }
}

/// Loaded data and the splits to run.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub data: Dataset,
    pub spec: DataSpec,
    /// The split as asked, or the default chosen.
    pub split_text: String,
    /// Named splits: one, or every fold.
    pub splits: Vec<(String, Split)>,
    /// What the caller should be told (bad lines skipped).
    pub notes: Vec<String>,
    /// What was asked: [`resplit`] splits the same data again.
    pub request: DataRequest,
}

pub(super) fn has_negatives(model: &Model) -> bool {
    !model.samplers.is_empty()
}

/// The split as asked, or the data's own default, or the model's.
fn split_text(req: &DataRequest, model: Option<&Model>, spec: &DataSpec) -> String {
    req.split.clone().unwrap_or_else(|| {
        if let Some(split) = spec.default_split() {
            split.into()
        } else if model.is_some_and(has_negatives) {
            "user:0.2".into()
        } else {
            "random:0.2".into()
        }
    })
}

pub(super) fn load_options(req: &DataRequest) -> Result<LoadOptions> {
    let columns = match &req.columns {
        Some(c) => delimited::parse_columns(c).map_err(|e| usage(e.to_string()))?,
        None => Vec::new(),
    };
    Ok(LoadOptions {
        bad_lines: if req.skip_bad_lines {
            BadLines::Skip
        } else {
            BadLines::Fail
        },
        delimited: delimited::Spec {
            separator: req.sep.clone(),
            header: req.header,
            columns,
            declared: BTreeMap::new(),
        },
        window: req.window,
        min_count: req.min_count,
    })
}

/// What the columns named by `--bind` must hold for the inputs bound to
/// them: ids of the input's domain for an index input (a column of numeric
/// ids would otherwise be read as numbers), numbers for a `real` one, a bag
/// for a bag. A time bucket (`t: week`) reads a time column as it is.
fn declared_kinds(model: &Model, bind: &BindOptions) -> BTreeMap<String, ColumnKind> {
    let mut declared = BTreeMap::new();
    for (input, column) in &bind.explicit {
        let Some(input) = model.inputs.iter().find(|i| &i.name == input) else {
            continue;
        };
        let domain = |d: DomainId| model.domain(d).name.clone();
        let kind = match input.kind {
            InputKind::Real => ColumnKind::Real,
            InputKind::Index(d) if crate::bind::is_time_domain(&domain(d)) => continue,
            InputKind::Index(d) | InputKind::History(d) => ColumnKind::Index(domain(d)),
            InputKind::Bag(d) => ColumnKind::Bag {
                domain: domain(d),
                separator: '|',
            },
        };
        declared.insert(column.clone(), kind);
    }
    declared
}

/// The binding options the request's `bind` and `features` say.
pub fn bind_options(req: &DataRequest) -> Result<BindOptions> {
    let mut explicit = BTreeMap::new();
    for b in &req.bind {
        let Some((input, column)) = b.split_once('=') else {
            return Err(usage(format!(
                "--bind {b}: expected INPUT=COLUMN, e.g. --bind r=stars"
            )));
        };
        explicit.insert(input.trim().to_string(), column.trim().to_string());
    }
    Ok(BindOptions {
        explicit,
        features: req.features.clone(),
    })
}

/// Load the data and make the splits. `model` chooses the default split (a
/// ranking model's is per user); `all_folds` makes every given fold
/// (cross-validation) instead of the one named.
pub fn prepare(
    req: &DataRequest,
    model: Option<&Model>,
    seed: u64,
    all_folds: bool,
) -> Result<Prepared> {
    let spec: DataSpec = req.data.parse().map_err(usage)?;
    let mut options = load_options(req)?;
    if let Some(model) = model {
        options.delimited.declared = declared_kinds(model, &bind_options(req)?);
    }
    let split_text = split_text(req, model, &spec);
    let (fold_names, rest) = parse_split(&split_text, all_folds)?;
    let mut splits = Vec::new();
    let mut data = None;
    for fold in &fold_names {
        let (d, s) = spec
            .load(&options, Some(fold))
            .map_err(|e| usage(e.to_string()))?;
        let s = s.ok_or_else(|| usage(format!("{spec} has no fold {fold}")))?;
        // Every fold of one data set has the same id maps; cross-validation
        // loads each fold's rows again when it runs it.
        splits.push((fold.clone(), s));
        data = Some(d);
    }
    let data = match (data, rest) {
        (Some(d), _) => d,
        (None, Some(split)) => {
            let (d, _) = spec
                .load(&options, None)
                .map_err(|e| usage(e.to_string()))?;
            splits = apply_split(&split, &split_text, &d, seed)?;
            d
        }
        (None, None) => return Err(usage("no split to run")),
    };
    let mut notes = data.notes.clone();
    if data.skipped > 0 {
        notes.push(format!(
            "skipped {} bad line{} of {}",
            data.skipped,
            if data.skipped == 1 { "" } else { "s" },
            data.name
        ));
    }
    Ok(Prepared {
        data,
        spec,
        split_text,
        splits,
        notes,
        request: req.clone(),
    })
}

/// The same data split another way (`split`; `None`: the default), made
/// from the rows in memory; only given folds, which are files of their
/// own, are read again.
pub fn resplit(
    prepared: &Prepared,
    split: Option<&str>,
    model: Option<&Model>,
    seed: u64,
    all_folds: bool,
) -> Result<Prepared> {
    let req = DataRequest {
        split: split.map(String::from),
        ..prepared.request.clone()
    };
    let split_text = split_text(&req, model, &prepared.spec);
    let (fold_names, rest) = parse_split(&split_text, all_folds)?;
    let Some(split) = rest.filter(|_| fold_names.is_empty()) else {
        return prepare(&req, model, seed, all_folds);
    };
    let splits = apply_split(&split, &split_text, &prepared.data, seed)?;
    Ok(Prepared {
        data: prepared.data.clone(),
        spec: prepared.spec.clone(),
        split_text,
        splits,
        notes: Vec::new(),
        request: req,
    })
}

/// The given folds a split names, or the split to make.
fn parse_split(split_text: &str, all_folds: bool) -> Result<(Vec<String>, Option<SplitSpec>)> {
    Ok(match split_text.strip_prefix("given") {
        Some(tail) => {
            let named = tail.strip_prefix(':').filter(|t| !t.is_empty());
            let folds = match (named, all_folds) {
                (Some(f), _) => vec![f.to_string()],
                (None, true) => ["u1", "u2", "u3", "u4", "u5"].map(String::from).to_vec(),
                (None, false) => vec!["u1".to_string()],
            };
            (folds, None)
        }
        None => (
            Vec::new(),
            Some(
                split_text
                    .parse()
                    .map_err(|e: SplitSpecError| usage(e.to_string()))?,
            ),
        ),
    })
}

/// Apply `split` to `data`: one split named `split_text`, or folds named
/// `fold 1`, `fold 2`, ...
fn apply_split(
    split: &SplitSpec,
    split_text: &str,
    data: &Dataset,
    seed: u64,
) -> Result<Vec<(String, Split)>> {
    let made = split.apply(data, seed).map_err(|e| usage(e.to_string()))?;
    let n = made.len();
    Ok(made
        .into_iter()
        .enumerate()
        .map(|(k, s)| {
            let name = if n > 1 {
                format!("fold {}", k + 1)
            } else {
                split_text.to_string()
            };
            (name, s)
        })
        .collect())
}

/// A line about the data: `builtin (80000 rows, 943 users, 1682 items)`.
pub fn describe_data(data: &Dataset) -> String {
    let mut parts = vec![format!("{} rows", data.len())];
    let mut named: Vec<&str> = Vec::new();
    for role in [data.user.as_deref(), data.item.as_deref()]
        .into_iter()
        .flatten()
    {
        // Users and items of one domain (a tree's nodes) are counted once.
        if let Some((d, _)) = data.indices(role).filter(|(d, _)| !named.contains(d)) {
            parts.push(format!("{} {}s", data.domain_size(d), d));
            named.push(d);
        }
    }
    format!("{} ({})", data.name, parts.join(", "))
}

/// Write the rows a model trains and is tested on as `dir/train.tsv` and
/// `dir/test.tsv` (raw ids; a ranking model's positives only), so that
/// other tools can be measured on exactly the same rows.
/// Check, before any work, that `dir` can take the split files: it is a
/// directory that can take new files, or it can be made.
pub fn check_split_dir(dir: &Path) -> Result<()> {
    modelfile::check_output_dir(dir).map_err(|e| usage(format!("--write-split {e}")))
}

pub fn write_split(
    dir: &Path,
    data: &Dataset,
    split: &Split,
    model: &Model,
    req: &DataRequest,
) -> Result<()> {
    check_split_dir(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| {
        usage(format!(
            "--write-split: cannot create {}: {e}",
            dir.display()
        ))
    })?;
    let min = has_negatives(model).then_some(req.min_target).flatten();
    // Both files are checked before either is written, and each is written
    // where a symlink leads, never over a directory, device or FIFO.
    let mut targets = Vec::new();
    for name in ["train.tsv", "test.tsv"] {
        let target = modelfile::check_output(&dir.join(name))
            .map_err(|e| usage(format!("--write-split {e}")))?;
        targets.push(target);
    }
    for (target, rows) in targets.iter().zip([&split.train, &split.test]) {
        let rows = predict::positive_rows(data, rows, min);
        data.write_tsv(target, &rows)
            .map_err(|e| usage(e.to_string()))?;
    }
    Ok(())
}
