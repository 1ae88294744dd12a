//! Binding: which data column fills each slot of a model's graph.
//!
//! Input: a [`Graph`], a [`Dataset`] and the training rows of a split.
//! Output: a [`Binding`] that turns a data row, or a (user, item) pair, into
//! an interpreter [`Example`]. It also derives what the language promises
//! the runtime builds: time buckets (`day`, `week`, `month`), per-user
//! histories, feature bags for factorization machines and negative samples
//! that are never a positive of the example's user.
//!
//! An input binds, in order of preference, to the column named by
//! `--bind NAME=COLUMN`, to a column of the same name, to the one column of
//! its domain (index and bag inputs), or to the dataset's target (a `real`
//! input). Anything else is an error that lists the columns there are.

use crate::data::{ColumnData, Dataset, IdMap};
use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use recc_compiler::interp::{Example, SlotValue};
use recc_compiler::ir::{DomainId, Graph, SlotKind};
use std::collections::BTreeMap;

/// Buckets a time domain may be derived from, with their width in seconds.
pub const TIME_DOMAINS: [(&str, i64); 3] =
    [("day", 86_400), ("week", 604_800), ("month", 2_629_746)];

/// Is `domain` one of the buckets derived from time?
pub fn is_time_domain(domain: &str) -> bool {
    TIME_DOMAINS.iter().any(|(n, _)| *n == domain)
}

/// At most this many buckets a `day`, `week` or `month` domain may have: a
/// million weeks are 19,000 years, so more means the times are not unix
/// seconds (milliseconds, or a stray sentinel), and each bucket is a row of
/// every table over the domain.
pub const MAX_TIME_BUCKETS: u64 = 1_000_000;

/// An average Gregorian year, in seconds.
const YEAR_SECONDS: i64 = 31_556_952;

/// Times spanning more than this (100 years, in seconds) are reported: real
/// interaction logs do not, while seconds mixed with milliseconds, or a
/// zero beside modern times in milliseconds, do.
pub const MIXED_UNITS_SPAN: i64 = 100 * YEAR_SECONDS;

/// At most this many of a user's most recent items make up a `history`:
/// it bounds the cost of one example and matches what sequence models see.
pub const MAX_HISTORY: usize = 256;

/// Tries before a negative sampler gives up avoiding the user's positives
/// (a user who has touched nearly the whole catalogue).
const NEGATIVE_TRIES: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BindError(pub String);

/// How the user asked for inputs to be bound.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BindOptions {
    /// `--bind NAME=COLUMN` pairs.
    pub explicit: BTreeMap<String, String>,
    /// Columns that make up a factorization machine's feature bag; empty
    /// means every index and bag column.
    pub features: Vec<String>,
}

/// Which of an example's columns [`Binding::encode_with`] fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    All,
    /// Everything that is the same at every visit of the example.
    Examples,
    /// What is drawn afresh at each visit.
    Draws,
}

/// Where one slot's value comes from.
#[derive(Clone, Debug)]
enum SlotSource {
    Index(usize),
    Real(usize),
    Bag(usize),
    /// `⌊(t − origin) / width⌋` of time column `column`, where `origin` is
    /// the column's earliest time; at most `last`.
    TimeBucket {
        column: usize,
        width: i64,
        origin: i64,
        last: u32,
    },
    Features,
    History,
    Negative {
        domain: DomainId,
        popularity: bool,
    },
    Noise(usize),
    /// A `once` prior's weight: per member of the index that slot `of`
    /// reads, 1 / its number of training rows; with no `of`, the one weight
    /// 1 / the number of training rows.
    InverseCount {
        of: Option<usize>,
        weights: Vec<f64>,
    },
}

impl SlotSource {
    /// Drawn afresh at each visit of an example: the per-visit slots of a
    /// kernel (`recc_jit::layout::per_visit`) that the binding fills.
    fn is_drawn(&self) -> bool {
        matches!(self, SlotSource::Negative { .. } | SlotSource::Noise(_))
    }
}

/// The index a plain or time-bucket slot reads from data row `r`.
fn index_at(source: &SlotSource, data: &Dataset, r: usize) -> Option<u32> {
    match source {
        SlotSource::Index(c) => match &data.columns[*c].data {
            ColumnData::Index { values, .. } => Some(values[r]),
            _ => None,
        },
        SlotSource::TimeBucket {
            column,
            width,
            origin,
            last,
        } => match &data.columns[*column].data {
            ColumnData::Time(ts) => Some(time_bucket(ts[r], *origin, *width, *last)),
            _ => None,
        },
        _ => None,
    }
}

/// The bucket of time `t`: `⌊(t − origin) / width⌋`, in 128 bits so that no
/// pair of `i64` times overflows, and kept within `0..=last`.
fn time_bucket(t: i64, origin: i64, width: i64, last: u32) -> u32 {
    let b = (i128::from(t) - i128::from(origin)).max(0) / i128::from(width.max(1));
    u32::try_from(b).map_or(last, |b| b.min(last))
}

/// What a time-bucket slot over column `column` needs: its source, the id
/// map of its buckets, and a note when the times look like mixed units.
/// More than [`MAX_TIME_BUCKETS`] buckets is an error that names the column,
/// its range and the bucket width.
fn time_buckets(
    input: &str,
    domain: &str,
    data: &Dataset,
    column: usize,
    width: i64,
) -> Result<(SlotSource, IdMap, Option<String>), BindError> {
    let name = &data.columns[column].name;
    let ts: &[i64] = match &data.columns[column].data {
        ColumnData::Time(ts) => ts,
        _ => &[],
    };
    let (min, max) = match (ts.iter().min(), ts.iter().max()) {
        (Some(&a), Some(&b)) => (a, b),
        _ => (0, 0),
    };
    let span = i128::from(max) - i128::from(min);
    let buckets = span / i128::from(width) + 1;
    if buckets > i128::from(MAX_TIME_BUCKETS) {
        return Err(BindError(format!(
            "input `{input}: {domain}`: time column `{name}` runs from {min} to {max}, which \
             makes {buckets} buckets of {width} s; at most {MAX_TIME_BUCKETS} are allowed. \
             Times must be integer unix seconds: convert milliseconds, or drop the rows with \
             stray times"
        )));
    }
    // At most MAX_TIME_BUCKETS, so it fits.
    let last = u32::try_from(buckets - 1).unwrap_or(u32::MAX);
    let note = (span > i128::from(MIXED_UNITS_SPAN)).then(|| {
        let years = span / i128::from(YEAR_SECONDS);
        format!(
            "time column `{name}` runs from {min} to {max}, {years} years in unix seconds: \
             are some times in milliseconds? `{domain}` has {buckets} buckets"
        )
    });
    let mut map = IdMap::new();
    for b in 0..=last {
        map.intern(&b.to_string());
    }
    let source = SlotSource::TimeBucket {
        column,
        width,
        origin: min,
        last,
    };
    Ok((source, map, note))
}

/// What to try when index input `input` finds no column of domain `want`:
/// a bag column of that domain is read by a bag input; a column of a
/// domain spelt nearly the same is probably the one meant; else `--bind`.
fn index_hint(data: &Dataset, input: &str, want: &str) -> String {
    let bag = data
        .columns
        .iter()
        .find(|c| matches!(&c.data, ColumnData::Bag { domain, .. } if domain == want));
    if let Some(c) = bag {
        return format!(
            "column `{}` holds a bag of `{want}` per row: declare `input {input}: bag({want})` \
             to read it",
            c.name
        );
    }
    let domains: Vec<&str> = data
        .columns
        .iter()
        .filter_map(|c| c.data.domain())
        .collect();
    match recc_compiler::diagnostic::closest(want, domains) {
        Some(d) => format!("did you mean `input {input}: {d}`?"),
        None => format!("bind one with --bind {input}=COLUMN"),
    }
}

/// A row to read each column from: a data row, or for a (user, item) pair,
/// the user's row for user columns and the item's row for item columns.
#[derive(Clone, Debug)]
pub struct RowRef {
    /// The row each column is read from; `None` for an id the data does
    /// not know (cold start).
    columns: Vec<Option<usize>>,
    /// The order of this example in time, for histories.
    time: (i64, usize),
    user: Option<u32>,
}

impl RowRef {
    /// A row with no columns yet, to be filled by [`Binding::row_into`].
    pub fn empty() -> RowRef {
        RowRef {
            columns: Vec::new(),
            time: (0, 0),
            user: None,
        }
    }
}

/// Examples as columns, one per slot, for the native kernels: indices as
/// `u32`, numbers and noise as `f32`, bags as offsets into member and
/// weight columns.
#[derive(Clone, Debug)]
pub struct Columns {
    pub slots: Vec<SlotColumn>,
    /// Examples held.
    pub len: usize,
}

#[derive(Clone, Debug)]
pub enum SlotColumn {
    Index(Vec<u32>),
    /// Real slots, and noise slots with their lanes one after another.
    Real(Vec<f32>),
    Bag {
        /// `len + 1` offsets into `members` and `weights`.
        offsets: Vec<u32>,
        members: Vec<u32>,
        weights: Vec<f32>,
    },
}

impl Columns {
    pub fn clear(&mut self) {
        for c in &mut self.slots {
            match c {
                SlotColumn::Index(v) => v.clear(),
                SlotColumn::Real(v) => v.clear(),
                SlotColumn::Bag {
                    offsets,
                    members,
                    weights,
                } => {
                    offsets.clear();
                    offsets.push(0);
                    members.clear();
                    weights.clear();
                }
            }
        }
        self.len = 0;
    }

    /// The most members any one example's bag has.
    pub fn max_bag(&self) -> usize {
        self.slots
            .iter()
            .filter_map(|c| match c {
                SlotColumn::Bag { offsets, .. } => {
                    offsets.windows(2).map(|w| (w[1] - w[0]) as usize).max()
                }
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
}

/// FM feature bags, one per data row, over a `feature` domain of
/// `column=value` members.
#[derive(Clone, Debug, Default)]
struct Features {
    /// The graph domain the features make up, if the model has one.
    domain: Option<usize>,
    columns: Vec<usize>,
    /// Per column: the offset of its first value in the feature domain.
    offsets: Vec<u32>,
}

/// The data side of a compiled model: domain sizes and example builders.
#[derive(Clone, Debug)]
pub struct Binding {
    /// Id maps by graph domain, in graph order (derived domains included).
    pub domains: Vec<(String, IdMap)>,
    sources: Vec<SlotSource>,
    user_column: Option<usize>,
    item_column: Option<usize>,
    time_column: Option<usize>,
    features: Features,
    /// Per column: is it constant per user (`Some(true)`), per item
    /// (`Some(false)`), or neither?
    attribute_of: Vec<Option<bool>>,
    /// Per user: the last training row, for pairs.
    user_rows: Vec<Option<usize>>,
    /// Per item: a training row (else any row), for pairs.
    item_rows: Vec<Option<usize>>,
    /// Per user: training items sorted, for negatives and ranking.
    pub positives: Vec<Vec<u32>>,
    /// Per user: training (time, row, item), sorted, for histories.
    history: Vec<Vec<(i64, usize, u32)>>,
    /// The column each history slot reads its items from.
    history_column: Option<usize>,
    /// Per domain with a popularity sampler: the sampler.
    popularity: BTreeMap<u32, WeightedIndex<f64>>,
    /// What the data looks like that binding does not refuse but the user
    /// should hear of (times in mixed units), one sentence each.
    pub notes: Vec<String>,
}

impl Binding {
    /// For a factorization machine's feature domain, the data column each
    /// member comes from, as a group number per member (in the order of
    /// `--features`); `None` for any other domain. Gibbs sampling gives each
    /// group its own hierarchical prior, as libFM and myFM do: a user's row
    /// and a genre's need not share a mean and a spread.
    pub fn member_groups(&self, domain: usize) -> Option<Vec<u32>> {
        if self.features.domain != Some(domain) || self.features.offsets.len() < 2 {
            return None;
        }
        let size = self.domains.get(domain)?.1.len();
        let offsets = &self.features.offsets;
        Some(
            (0..size as u32)
                .map(|f| (offsets.partition_point(|&o| o <= f).max(1) - 1) as u32)
                .collect(),
        )
    }

    pub fn new(
        g: &Graph,
        data: &Dataset,
        train: &[usize],
        options: &BindOptions,
    ) -> Result<Binding, BindError> {
        let column_index = |name: &str| data.columns.iter().position(|c| c.name == name);
        let columns_list = || {
            data.columns
                .iter()
                .map(|c| format!("{}: {}", c.name, c.data.kind()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for name in options.explicit.keys() {
            if !g.slots.iter().any(|s| &s.name == name) {
                return Err(BindError(format!(
                    "--bind {name}=...: the model has no input `{name}`"
                )));
            }
        }
        let time_column = data.time.as_deref().and_then(column_index);
        let mut notes: Vec<String> = Vec::new();

        let mut sources = Vec::with_capacity(g.slots.len());
        let mut derived: BTreeMap<usize, IdMap> = BTreeMap::new();
        let mut feature_domain: Option<DomainId> = None;
        let mut history_column = None;
        for slot in &g.slots {
            let domain_name = |d: DomainId| g.domains[d.index()].name.as_str();
            let explicit = match options.explicit.get(&slot.name) {
                Some(col) => Some(column_index(col).ok_or_else(|| {
                    BindError(format!(
                        "--bind {}={col}: the data has no column `{col}`; it has {}",
                        slot.name,
                        columns_list()
                    ))
                })?),
                None => None,
            };
            let named = explicit.or_else(|| column_index(&slot.name));
            // A time-bucket slot's derived domain and its note, if any.
            let mut buckets: Option<(DomainId, IdMap, Option<String>)> = None;
            let source = match &slot.kind {
                SlotKind::Index(d) => {
                    let want = domain_name(*d);
                    let found = match named {
                        Some(c) => Some(c),
                        None => unique_column(data, want, false, &slot.name)?,
                    };
                    match (found, TIME_DOMAINS.iter().find(|(n, _)| *n == want)) {
                        (Some(c), _) => match &data.columns[c].data {
                            ColumnData::Index { domain, .. } if domain == want => {
                                SlotSource::Index(c)
                            }
                            ColumnData::Time(_) => {
                                let width = TIME_DOMAINS
                                    .iter()
                                    .find(|(n, _)| *n == want)
                                    .map(|(_, w)| *w)
                                    .ok_or_else(|| {
                                        BindError(format!(
                                            "input `{}: {want}` cannot read time column `{}`: \
                                             only day, week and month are derived from time",
                                            slot.name, data.columns[c].name
                                        ))
                                    })?;
                                let (source, map, note) =
                                    time_buckets(&slot.name, want, data, c, width)?;
                                buckets = Some((*d, map, note));
                                source
                            }
                            other => {
                                return Err(BindError(format!(
                                    "input `{}: {want}` cannot read column `{}`, which holds {}",
                                    slot.name,
                                    data.columns[c].name,
                                    other.kind()
                                )))
                            }
                        },
                        (None, Some((_, width))) if time_column.is_some() => {
                            let c = time_column.unwrap_or(0);
                            let (source, map, note) =
                                time_buckets(&slot.name, want, data, c, *width)?;
                            buckets = Some((*d, map, note));
                            source
                        }
                        (None, _) => {
                            return Err(BindError(format!(
                                "input `{}: {want}`: the data has no column of domain `{want}`; \
                                 it has {} ({})",
                                slot.name,
                                columns_list(),
                                index_hint(data, &slot.name, want)
                            )))
                        }
                    }
                }
                SlotKind::Real => {
                    let c = named.or_else(|| data.target.as_deref().and_then(column_index));
                    match c.map(|c| (c, &data.columns[c].data)) {
                        Some((c, ColumnData::Real(_))) => SlotSource::Real(c),
                        Some((c, other)) => {
                            return Err(BindError(format!(
                                "input `{}: real` cannot read column `{}`, which holds {}",
                                slot.name,
                                data.columns[c].name,
                                other.kind()
                            )))
                        }
                        None => {
                            return Err(BindError(format!(
                                "input `{}: real`: the data has no target column; it has {} \
                                 (bind one with --bind {}=COLUMN)",
                                slot.name,
                                columns_list(),
                                slot.name
                            )))
                        }
                    }
                }
                SlotKind::Bag {
                    domain,
                    history: true,
                } => {
                    let want = domain_name(*domain);
                    let c = match named {
                        Some(c) => Some(c),
                        None => unique_column(data, want, false, &slot.name)?,
                    };
                    let Some(c) = c else {
                        return Err(BindError(format!(
                            "input `{}: history({want})`: the data has no column of domain \
                             `{want}` to build histories from; it has {}",
                            slot.name,
                            columns_list()
                        )));
                    };
                    if data.user.is_none() {
                        return Err(BindError(format!(
                            "input `{}: history({want})` needs to know whose rows are whose, \
                             and the data has no user column",
                            slot.name
                        )));
                    }
                    history_column = Some(c);
                    SlotSource::History
                }
                SlotKind::Bag {
                    domain,
                    history: false,
                } => {
                    let want = domain_name(*domain);
                    let c = match named {
                        Some(c) => Some(c),
                        None => unique_column(data, want, true, &slot.name)?,
                    };
                    match c {
                        Some(c) => match &data.columns[c].data {
                            ColumnData::Bag { domain, .. } if domain == want => SlotSource::Bag(c),
                            other => {
                                return Err(BindError(format!(
                                    "input `{}: bag({want})` cannot read column `{}`, which \
                                     holds {}",
                                    slot.name,
                                    data.columns[c].name,
                                    other.kind()
                                )))
                            }
                        },
                        // No column of the domain: a factorization machine's
                        // feature bag, built from the data's categorical columns.
                        None => {
                            // The feature domain's ids are `column=value`;
                            // a domain the data or time already numbers
                            // would get two meanings for one index.
                            let owner = data
                                .columns
                                .iter()
                                .find(|c| c.data.domain() == Some(want))
                                .map(|c| format!("the domain of the data's column `{}`", c.name))
                                .or_else(|| {
                                    data.domains
                                        .contains_key(want)
                                        .then(|| "a domain of the data".to_string())
                                })
                                .or_else(|| {
                                    TIME_DOMAINS
                                        .iter()
                                        .any(|(n, _)| *n == want)
                                        .then(|| "derived from time".to_string())
                                });
                            if let Some(owner) = owner {
                                return Err(BindError(format!(
                                    "input `{}: bag({want})`: the data has no bag column of \
                                     domain `{want}`, and `{want}` cannot hold a factorization \
                                     machine's `column=value` features because it is {owner}; \
                                     give the feature bag a domain of its own (`bag(feature)`), \
                                     or bind a bag column with --bind {}=COLUMN",
                                    slot.name, slot.name
                                )));
                            }
                            if feature_domain.is_some_and(|f| f != *domain) {
                                return Err(BindError(format!(
                                    "input `{}`: only one feature domain can be derived",
                                    slot.name
                                )));
                            }
                            feature_domain = Some(*domain);
                            SlotSource::Features
                        }
                    }
                }
                SlotKind::Negative {
                    domain, popularity, ..
                } => SlotSource::Negative {
                    domain: *domain,
                    popularity: *popularity,
                },
                SlotKind::Noise(shape) => SlotSource::Noise(shape.len()),
                SlotKind::Pooled { .. } | SlotKind::Dense(_) => {
                    return Err(BindError(format!(
                        "input `{}` is computed by the trainer, not read from data",
                        slot.name
                    )))
                }
                SlotKind::InverseCount(of) => {
                    let of = of.map(|s| s.index());
                    let mut weights = vec![1.0 / train.len().max(1) as f64];
                    if let Some(s) = of {
                        let index = sources.get(s).filter(|i| {
                            matches!(i, SlotSource::Index(_) | SlotSource::TimeBucket { .. })
                        });
                        let Some(index) = index else {
                            return Err(BindError(format!(
                                "slot `{}` counts the rows of slot {s}, which is not an index \
                                 read from the data",
                                slot.name
                            )));
                        };
                        let mut counts: Vec<usize> = Vec::new();
                        for &r in train {
                            if let Some(m) = index_at(index, data, r) {
                                let m = m as usize;
                                if m >= counts.len() {
                                    counts.resize(m + 1, 0);
                                }
                                counts[m] += 1;
                            }
                        }
                        weights = counts
                            .iter()
                            .map(|&n| if n == 0 { 1.0 } else { 1.0 / n as f64 })
                            .collect();
                    }
                    SlotSource::InverseCount { of, weights }
                }
            };
            if let Some((d, map, note)) = buckets {
                derived.insert(d.index(), map);
                if let Some(note) = note.filter(|n| !notes.contains(n)) {
                    notes.push(note);
                }
            }
            sources.push(source);
        }

        // FM features: `column=value` for every member of every chosen column.
        let mut features = Features::default();
        if let Some(d) = feature_domain {
            let chosen: Vec<usize> = if options.features.is_empty() {
                (0..data.columns.len())
                    .filter(|&c| {
                        matches!(
                            data.columns[c].data,
                            ColumnData::Index { .. } | ColumnData::Bag { .. }
                        )
                    })
                    .collect()
            } else {
                options
                    .features
                    .iter()
                    .map(|n| {
                        column_index(n).ok_or_else(|| {
                            BindError(format!(
                                "--features {n}: the data has no column `{n}`; it has {}",
                                columns_list()
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?
            };
            for (k, &c) in chosen.iter().enumerate() {
                if chosen[..k].contains(&c) {
                    return Err(BindError(format!(
                        "--features names column `{}` twice",
                        data.columns[c].name
                    )));
                }
            }
            // Column `k`'s value `v` is feature `offsets[k] + v`: every
            // `column=value` must be new to the map for that to hold.
            let mut map = IdMap::new();
            let mut origin: Vec<usize> = Vec::new();
            for &c in &chosen {
                let col = &data.columns[c];
                let Some(dom) = col.data.domain() else {
                    return Err(BindError(format!(
                        "--features: column `{}` holds {}; features are index or bag columns",
                        col.name,
                        col.data.kind()
                    )));
                };
                let offset = u32::try_from(map.len())
                    .map_err(|_| BindError("more features than 32-bit indices hold".into()))?;
                features.offsets.push(offset);
                if let Some(ids) = data.domains.get(dom) {
                    for (k, name) in ids.names().iter().enumerate() {
                        let feature = format!("{}={name}", col.name);
                        let f = map.intern(&feature);
                        if f as usize != origin.len() {
                            return Err(BindError(format!(
                                "feature `{feature}` comes from both column `{}` and column \
                                 `{}`; rename one of them, or choose the columns with --features",
                                data.columns[origin[f as usize]].name, col.name
                            )));
                        }
                        origin.push(c);
                        map.set_label(f, &format!("{}={}", col.name, ids.label(k as u32)));
                    }
                }
            }
            features.columns = chosen;
            features.domain = Some(d.index());
            derived.insert(d.index(), map);
        }

        let mut domains = Vec::with_capacity(g.domains.len());
        for (k, d) in g.domains.iter().enumerate() {
            let map = match derived.remove(&k) {
                Some(m) => m,
                None => data.domains.get(&d.name).cloned().ok_or_else(|| {
                    BindError(format!(
                        "the model has domain `{}`, which no column of the data provides; \
                         the data has {}",
                        d.name,
                        columns_list()
                    ))
                })?,
            };
            domains.push((d.name.clone(), map));
        }
        // Samplers and tables need a domain's size; a domain with no member
        // (an empty map) would make every lookup out of range.
        if let Some((name, _)) = domains.iter().find(|(_, m)| m.is_empty()) {
            return Err(BindError(format!(
                "domain `{name}` has no members in the data"
            )));
        }

        let user_column = data.user.as_deref().and_then(column_index);
        let item_column = data.item.as_deref().and_then(column_index);
        let n_users = data.users().map_or(0, |(d, _)| data.domain_size(d));
        let n_items = data.items().map_or(0, |(d, _)| data.domain_size(d));

        // Rows to read a user's and an item's attributes from, preferring training rows.
        let mut user_rows = vec![None; n_users];
        let mut item_rows = vec![None; n_items];
        let times = data.times();
        let later = |a: usize, b: usize| times.map_or(a > b, |t| (t[a], a) > (t[b], b));
        let mut pick = |rows: &[usize]| {
            for &r in rows {
                if let Some((_, us)) = data.users() {
                    let slot = &mut user_rows[us[r] as usize];
                    if slot.is_none_or(|s| later(r, s)) {
                        *slot = Some(r);
                    }
                }
                if let Some((_, is)) = data.items() {
                    item_rows[is[r] as usize].get_or_insert(r);
                }
            }
        };
        pick(train);
        let all: Vec<usize> = (0..data.len()).collect();
        // Ids seen only outside training still get rows, for side attributes.
        let mut rest_users = user_rows.clone();
        let mut rest_items = item_rows.clone();
        for &r in &all {
            if let Some((_, us)) = data.users() {
                rest_users[us[r] as usize].get_or_insert(r);
            }
            if let Some((_, is)) = data.items() {
                rest_items[is[r] as usize].get_or_insert(r);
            }
        }
        let (user_rows, item_rows) = (rest_users, rest_items);

        let attribute_of = data
            .columns
            .iter()
            .enumerate()
            .map(|(c, _)| {
                if Some(c) == user_column || constant_per(data, c, data.users()) {
                    Some(true)
                } else if Some(c) == item_column || constant_per(data, c, data.items()) {
                    Some(false)
                } else {
                    None
                }
            })
            .collect();

        let mut positives = vec![Vec::new(); n_users];
        let mut history = vec![Vec::new(); n_users];
        if let (Some((_, us)), Some((_, is))) = (data.users(), data.items()) {
            for &r in train {
                positives[us[r] as usize].push(is[r]);
            }
            for p in &mut positives {
                p.sort_unstable();
                p.dedup();
            }
        }
        if let (Some(hc), Some((_, us))) = (history_column, data.users()) {
            if let ColumnData::Index { values, .. } = &data.columns[hc].data {
                for &r in train {
                    let t = times.map_or(0, |t| t[r]);
                    history[us[r] as usize].push((t, r, values[r]));
                }
                for h in &mut history {
                    h.sort_unstable();
                }
            }
        }

        let mut popularity = BTreeMap::new();
        for s in &sources {
            if let SlotSource::Negative {
                domain,
                popularity: true,
            } = s
            {
                let size = domains[domain.index()].1.len();
                let mut counts = vec![0.0; size];
                let dname = &g.domains[domain.index()].name;
                if let Some(c) = data.columns.iter().find(|c| {
                    c.data.domain() == Some(dname) && matches!(c.data, ColumnData::Index { .. })
                }) {
                    if let ColumnData::Index { values, .. } = &c.data {
                        for &r in train {
                            counts[values[r] as usize] += 1.0;
                        }
                    }
                }
                // Every member stays drawable, however rare.
                for c in &mut counts {
                    *c += 1.0;
                }
                let w = WeightedIndex::new(counts)
                    .map_err(|e| BindError(format!("popularity sampler: {e}")))?;
                popularity.insert(domain.0, w);
            }
        }

        Ok(Binding {
            domains,
            sources,
            user_column,
            item_column,
            time_column,
            features,
            attribute_of,
            user_rows,
            item_rows,
            positives,
            history,
            history_column,
            popularity,
            notes,
        })
    }

    /// The rows of `data` that scoring pairs through this binding reads,
    /// sorted. Bound again to only these rows (in their order, under the
    /// same id maps, with its training rows cut down to them), the model scores every (user, item) pair
    /// as it does bound to all of `data`, because each choice made here
    /// comes out the same:
    /// - the row of each user's and each item's attributes
    ///   ([`Binding::pair`]): the rows kept are the chosen ones, and any
    ///   other kept row of the same id comes later in training order;
    /// - each user's last [`MAX_HISTORY`] training rows, for histories;
    /// - the earliest and latest time of each time column, which fix the
    ///   buckets of `day`, `week` and `month`;
    /// - for each column that is not constant per user (or per item), two
    ///   rows that show it, so that it is not taken for an attribute.
    ///
    /// Negative samplers, `once` weights and positives, which only training
    /// and measuring read, are not kept.
    pub fn scoring_rows(&self, data: &Dataset) -> Vec<usize> {
        let mut keep = vec![false; data.len()];
        for r in self.user_rows.iter().chain(&self.item_rows).flatten() {
            keep[*r] = true;
        }
        if self.history_column.is_some() {
            for h in &self.history {
                for &(_, r, _) in &h[h.len().saturating_sub(MAX_HISTORY)..] {
                    keep[r] = true;
                }
            }
        }
        for (c, column) in data.columns.iter().enumerate() {
            if let ColumnData::Time(ts) = &column.data {
                let first_min = (0..ts.len()).min_by_key(|&r| ts[r]);
                let first_max = (0..ts.len()).max_by_key(|&r| (ts[r], std::cmp::Reverse(r)));
                for r in first_min.into_iter().chain(first_max) {
                    keep[r] = true;
                }
            }
            let user_attribute = self.attribute_of.get(c) == Some(&Some(true));
            let item_attribute = self.attribute_of.get(c) == Some(&Some(false));
            let mut witnesses = Vec::new();
            if !user_attribute {
                witnesses.extend(varies_within(data, c, data.users()));
                if !item_attribute {
                    witnesses.extend(varies_within(data, c, data.items()));
                }
            }
            for (a, b) in witnesses {
                keep[a] = true;
                keep[b] = true;
            }
        }
        (0..data.len()).filter(|&r| keep[r]).collect()
    }

    /// The size of each graph domain, in graph order.
    pub fn domain_sizes(&self) -> Vec<usize> {
        self.domains.iter().map(|(_, m)| m.len()).collect()
    }

    /// The graph domain of the data's user and item columns, if the model has them.
    pub fn domain_of(&self, name: &str) -> Option<usize> {
        self.domains.iter().position(|(n, _)| n == name)
    }

    /// Every column read from data row `r`.
    pub fn row(&self, data: &Dataset, r: usize) -> RowRef {
        RowRef {
            columns: vec![Some(r); data.columns.len()],
            time: (data.times().map_or(0, |t| t[r]), r),
            user: data.users().map(|(_, us)| us[r]),
        }
    }

    /// A (user, item) pair: user attributes from the user's latest training
    /// row, item attributes from one of the item's rows, everything else from
    /// the user's row. `None` stands for an id the data does not know.
    pub fn pair(&self, user: Option<u32>, item: Option<u32>) -> RowRef {
        let urow = user.and_then(|u| self.user_rows.get(u as usize).copied().flatten());
        let irow = item.and_then(|i| self.item_rows.get(i as usize).copied().flatten());
        let columns = self
            .attribute_of
            .iter()
            .map(|a| match a {
                Some(false) => irow,
                _ => urow,
            })
            .collect();
        RowRef {
            columns,
            // After everything: the whole training history counts.
            time: (i64::MAX, usize::MAX),
            user: user.filter(|_| urow.is_some()),
        }
    }

    /// Does the model rank the data's items for its users?
    pub fn user_item_columns(&self) -> Option<(usize, usize)> {
        Some((self.user_column?, self.item_column?))
    }

    /// Build the example for `row`. `train` draws negatives and noise; at
    /// prediction noise is zero. `cold` gives each graph domain the index
    /// that stands for an unknown member (its size in prediction params).
    pub fn example(
        &self,
        data: &Dataset,
        row: &RowRef,
        rng: &mut StdRng,
        train: bool,
        out: &mut Example,
    ) {
        out.slots.clear();
        let cold = |c: usize| {
            let dom = data.columns[c].data.domain().unwrap_or("");
            data.domain_size(dom)
        };
        for source in &self.sources {
            let value = match source {
                SlotSource::Index(c) => match (row.columns[*c], &data.columns[*c].data) {
                    (Some(r), ColumnData::Index { values, .. }) => {
                        SlotValue::Index(values[r] as usize)
                    }
                    _ => SlotValue::Index(cold(*c)),
                },
                SlotSource::Real(c) => match (row.columns[*c], &data.columns[*c].data) {
                    (Some(r), ColumnData::Real(values)) => SlotValue::Real(values[r]),
                    _ => SlotValue::Real(0.0),
                },
                SlotSource::Bag(c) => match (row.columns[*c], &data.columns[*c].data) {
                    (
                        Some(r),
                        ColumnData::Bag {
                            offsets,
                            members,
                            weights,
                            ..
                        },
                    ) => SlotValue::Bag(
                        (offsets[r]..offsets[r + 1])
                            .map(|k| (members[k] as usize, weights[k]))
                            .collect(),
                    ),
                    _ => SlotValue::Bag(Vec::new()),
                },
                SlotSource::TimeBucket {
                    column,
                    width,
                    origin,
                    last,
                } => {
                    let t = match (row.columns[*column], &data.columns[*column].data) {
                        (Some(r), ColumnData::Time(ts)) => ts[r],
                        _ => *origin,
                    };
                    SlotValue::Index(time_bucket(t, *origin, *width, *last) as usize)
                }
                SlotSource::Features => SlotValue::Bag(self.feature_bag(data, row)),
                SlotSource::History => SlotValue::Bag(self.history_bag(row)),
                SlotSource::Negative { domain, popularity } => {
                    // The negatives of this domain drawn so far in this example.
                    let taken = |j: usize| {
                        self.sources.iter().zip(&out.slots).any(|(s, v)| {
                            matches!(s, SlotSource::Negative { domain: d, .. } if d == domain)
                                && matches!(v, SlotValue::Index(x) if *x == j)
                        })
                    };
                    SlotValue::Index(self.negative(*domain, *popularity, row, data, rng, taken))
                }
                SlotSource::Noise(n) => SlotValue::Noise(if train {
                    (0..*n).map(|_| rng.sample(StandardNormal)).collect()
                } else {
                    vec![0.0; *n]
                }),
                SlotSource::InverseCount { of, weights } => {
                    SlotValue::Real(self.inverse_count(*of, weights, data, row))
                }
            };
            out.slots.push(value);
        }
    }

    /// The value of an [`SlotSource::InverseCount`] slot for `row`: 1 for a
    /// member training never saw (or an id the data does not know).
    fn inverse_count(
        &self,
        of: Option<usize>,
        weights: &[f64],
        data: &Dataset,
        row: &RowRef,
    ) -> f64 {
        let member = match of.map(|s| &self.sources[s]) {
            None => Some(0),
            Some(index) => {
                let column = match index {
                    SlotSource::Index(c) | SlotSource::TimeBucket { column: c, .. } => *c,
                    _ => return 1.0,
                };
                row.columns[column].and_then(|r| index_at(index, data, r))
            }
        };
        member
            .and_then(|m| weights.get(m as usize))
            .copied()
            .unwrap_or(1.0)
    }

    /// Point `out` at data row `r`, reusing its storage.
    pub fn row_into(&self, data: &Dataset, r: usize, out: &mut RowRef) {
        if out.columns.len() != data.columns.len() {
            out.columns.clear();
            out.columns.resize(data.columns.len(), Some(r));
        } else {
            out.columns.fill(Some(r));
        }
        // Columns by position, not by name: this runs once per example.
        let time = match self.time_column.map(|c| &data.columns[c].data) {
            Some(ColumnData::Time(t)) => t[r],
            _ => 0,
        };
        out.time = (time, r);
        out.user = match self.user_column.map(|c| &data.columns[c].data) {
            Some(ColumnData::Index { values, .. }) => Some(values[r]),
            _ => None,
        };
    }

    /// The user whose history data row `r` reads, and the window
    /// `start..end` of [`Binding::history_items`] of that user that makes
    /// up its history; `None` without a history or a user.
    pub fn history_window(&self, data: &Dataset, r: usize) -> Option<(u32, usize, usize)> {
        self.history_column?;
        let mut row = RowRef::empty();
        self.row_into(data, r, &mut row);
        let user = row.user?;
        let h = self.history.get(user as usize)?;
        let end = h.partition_point(|&(t, r, _)| (t, r) < row.time);
        Some((user, end.saturating_sub(MAX_HISTORY), end))
    }

    /// A user's training items in time order: what histories are windows of.
    pub fn history_items(&self, user: u32) -> impl Iterator<Item = u32> + '_ {
        self.history
            .get(user as usize)
            .into_iter()
            .flatten()
            .map(|&(_, _, i)| i)
    }

    /// Append the example for `row` to `out`, one value per slot column.
    /// It draws negatives and noise from `rng` in exactly the order
    /// [`Binding::example`] does, so the native trainer sees the same
    /// examples as the evaluator's for the same seed.
    pub fn encode(
        &self,
        data: &Dataset,
        row: &RowRef,
        rng: &mut StdRng,
        train: bool,
        out: &mut Columns,
    ) {
        self.encode_with(data, row, rng, train, true, Part::All, out)
    }

    /// [`Binding::encode`], with every history left empty unless
    /// `histories` (for a step that reads them pooled, from other inputs),
    /// and only the columns `part` names filled.
    #[allow(clippy::too_many_arguments)]
    fn encode_with(
        &self,
        data: &Dataset,
        row: &RowRef,
        rng: &mut StdRng,
        train: bool,
        histories: bool,
        part: Part,
        out: &mut Columns,
    ) {
        let cold = |c: usize| {
            let dom = data.columns[c].data.domain().unwrap_or("");
            data.domain_size(dom) as u32
        };
        for (k, source) in self.sources.iter().enumerate() {
            let drawn = source.is_drawn();
            if (part == Part::Examples && drawn) || (part == Part::Draws && !drawn) {
                continue;
            }
            // Columns before `k` already end with this example's value.
            let (earlier, rest) = out.slots.split_at_mut(k);
            let Some(column) = rest.first_mut() else {
                break;
            };
            match (source, column) {
                (SlotSource::Index(c), SlotColumn::Index(v)) => {
                    v.push(match (row.columns[*c], &data.columns[*c].data) {
                        (Some(r), ColumnData::Index { values, .. }) => values[r],
                        _ => cold(*c),
                    })
                }
                (SlotSource::Real(c), SlotColumn::Real(v)) => {
                    v.push(match (row.columns[*c], &data.columns[*c].data) {
                        (Some(r), ColumnData::Real(values)) => values[r] as f32,
                        _ => 0.0,
                    })
                }
                (
                    SlotSource::TimeBucket {
                        column,
                        width,
                        origin,
                        last,
                    },
                    SlotColumn::Index(v),
                ) => {
                    let t = match (row.columns[*column], &data.columns[*column].data) {
                        (Some(r), ColumnData::Time(ts)) => ts[r],
                        _ => *origin,
                    };
                    v.push(time_bucket(t, *origin, *width, *last))
                }
                (SlotSource::Negative { domain, popularity }, SlotColumn::Index(v)) => {
                    let taken = |j: usize| {
                        self.sources.iter().zip(&*earlier).any(|(s, c)| {
                            matches!(s, SlotSource::Negative { domain: d, .. } if d == domain)
                                && matches!(c, SlotColumn::Index(x) if x.last() == Some(&(j as u32)))
                        })
                    };
                    v.push(self.negative(*domain, *popularity, row, data, rng, taken) as u32)
                }
                (SlotSource::InverseCount { of, weights }, SlotColumn::Real(v)) => {
                    v.push(self.inverse_count(*of, weights, data, row) as f32)
                }
                (SlotSource::Noise(n), SlotColumn::Real(v)) => {
                    for _ in 0..*n {
                        let z: f64 = if train {
                            rng.sample(StandardNormal)
                        } else {
                            0.0
                        };
                        v.push(z as f32);
                    }
                }
                (
                    SlotSource::Bag(c),
                    SlotColumn::Bag {
                        offsets,
                        members,
                        weights,
                    },
                ) => {
                    if let (
                        Some(r),
                        ColumnData::Bag {
                            offsets: o,
                            members: m,
                            weights: w,
                            ..
                        },
                    ) = (row.columns[*c], &data.columns[*c].data)
                    {
                        members.extend_from_slice(&m[o[r]..o[r + 1]]);
                        weights.extend(w[o[r]..o[r + 1]].iter().map(|&x| x as f32));
                    }
                    offsets.push(members.len() as u32);
                }
                (
                    SlotSource::Features | SlotSource::History,
                    SlotColumn::Bag {
                        offsets,
                        members,
                        weights,
                    },
                ) => {
                    let bag = if matches!(source, SlotSource::Features) {
                        self.feature_bag(data, row)
                    } else if histories {
                        self.history_bag(row)
                    } else {
                        Vec::new()
                    };
                    for (m, w) in bag {
                        members.push(m as u32);
                        weights.push(w as f32);
                    }
                    offsets.push(members.len() as u32);
                }
                // `Columns::new` shapes every column from the same sources.
                _ => {}
            }
        }
        out.len += 1;
    }

    /// Append the examples of data rows `rows` to `out`. Models whose
    /// inputs are all plain columns are gathered column by column; anything
    /// that samples (negatives, noise) or derives bags goes example by
    /// example, drawing from `rng` as [`Binding::example`] does.
    pub fn encode_rows(
        &self,
        data: &Dataset,
        rows: &[usize],
        rng: &mut StdRng,
        train: bool,
        out: &mut Columns,
    ) {
        if !self.is_plain() {
            return self.encode_each(data, rows, rng, train, true, Part::All, out);
        }
        for (source, column) in self.sources.iter().zip(out.slots.iter_mut()) {
            match (source, column) {
                (SlotSource::Index(c), SlotColumn::Index(v)) => {
                    if let ColumnData::Index { values, .. } = &data.columns[*c].data {
                        gather(values, rows, v, |x| x);
                    }
                }
                (SlotSource::Real(c), SlotColumn::Real(v)) => {
                    if let ColumnData::Real(values) = &data.columns[*c].data {
                        gather(values, rows, v, |x| x as f32);
                    }
                }
                _ => {}
            }
        }
        out.len += rows.len();
    }

    /// The examples of data rows `rows`, appended to `out` as
    /// [`Binding::encode_rows`] does, but with every history empty: for a
    /// step that reads its history pooled (`crate::grouped`).
    pub fn encode_rows_without_histories(
        &self,
        data: &Dataset,
        rows: &[usize],
        rng: &mut StdRng,
        train: bool,
        out: &mut Columns,
    ) {
        self.encode_each(data, rows, rng, train, false, Part::All, out)
    }

    /// [`Binding::encode_with`] for each of data rows `rows`, in turn.
    #[allow(clippy::too_many_arguments)]
    fn encode_each(
        &self,
        data: &Dataset,
        rows: &[usize],
        rng: &mut StdRng,
        train: bool,
        histories: bool,
        part: Part,
        out: &mut Columns,
    ) {
        let mut row = RowRef::empty();
        for &r in rows {
            self.row_into(data, r, &mut row);
            self.encode_with(data, &row, rng, train, histories, part, out);
        }
    }

    /// The columns of examples (everything but what is drawn afresh for
    /// each visit) of data rows `rows`, appended to `out`: what a trainer
    /// lays out once for every epoch (`native::LaidOut`).
    pub fn encode_examples(&self, data: &Dataset, rows: &[usize], out: &mut Columns) {
        // Nothing is drawn for these columns: the generator is never read.
        let mut unused = StdRng::seed_from_u64(0);
        if self.is_plain() {
            return self.encode_rows(data, rows, &mut unused, true, out);
        }
        self.encode_each(data, rows, &mut unused, true, true, Part::Examples, out)
    }

    /// The drawn columns (negatives, noise) of visits to data rows `rows`,
    /// appended to `out`: drawn from `rng` in the order [`Binding::encode`]
    /// draws them, so a laid-out epoch sees the same draws as an encoded one.
    pub fn encode_draws(
        &self,
        data: &Dataset,
        rows: &[usize],
        rng: &mut StdRng,
        train: bool,
        out: &mut Columns,
    ) {
        if !self.has_draws() {
            out.len += rows.len();
            return;
        }
        let negatives = self
            .sources
            .iter()
            .any(|s| matches!(s, SlotSource::Negative { .. }));
        if !negatives {
            // Noise alone does not depend on the row.
            for _ in rows {
                for (source, column) in self.sources.iter().zip(&mut out.slots) {
                    if let (SlotSource::Noise(n), SlotColumn::Real(v)) = (source, column) {
                        if train {
                            v.extend((0..*n).map(|_| rng.sample::<f64, _>(StandardNormal) as f32));
                        } else {
                            v.extend(std::iter::repeat_n(0.0, *n));
                        }
                    }
                }
                out.len += 1;
            }
            return;
        }
        self.encode_each(data, rows, rng, train, true, Part::Draws, out)
    }

    /// Whether every input is a plain column of the data (no bag, draw or
    /// derived value).
    pub fn is_plain(&self) -> bool {
        self.sources
            .iter()
            .all(|s| matches!(s, SlotSource::Index(_) | SlotSource::Real(_)))
    }

    /// Whether any input is drawn afresh for each visit (negatives, noise).
    pub fn has_draws(&self) -> bool {
        self.sources.iter().any(SlotSource::is_drawn)
    }

    /// Empty columns shaped for this binding's slots.
    pub fn columns(&self) -> Columns {
        let slots = self
            .sources
            .iter()
            .map(|s| match s {
                SlotSource::Index(_)
                | SlotSource::TimeBucket { .. }
                | SlotSource::Negative { .. } => SlotColumn::Index(Vec::new()),
                SlotSource::Real(_) | SlotSource::Noise(_) | SlotSource::InverseCount { .. } => {
                    SlotColumn::Real(Vec::new())
                }
                SlotSource::Bag(_) | SlotSource::Features | SlotSource::History => {
                    SlotColumn::Bag {
                        offsets: vec![0],
                        members: Vec::new(),
                        weights: Vec::new(),
                    }
                }
            })
            .collect();
        Columns { slots, len: 0 }
    }

    fn feature_bag(&self, data: &Dataset, row: &RowRef) -> Vec<(usize, f64)> {
        let mut bag = Vec::new();
        for (k, &c) in self.features.columns.iter().enumerate() {
            let base = self.features.offsets[k] as usize;
            let Some(r) = row.columns[c] else { continue };
            match &data.columns[c].data {
                ColumnData::Index { values, .. } => bag.push((base + values[r] as usize, 1.0)),
                ColumnData::Bag {
                    offsets,
                    members,
                    weights,
                    ..
                } => {
                    // A multi-valued column counts as one feature in total,
                    // as libFM's grouped features do.
                    let n = offsets[r + 1] - offsets[r];
                    for j in offsets[r]..offsets[r + 1] {
                        bag.push((base + members[j] as usize, weights[j] / n as f64));
                    }
                }
                ColumnData::Real(_) | ColumnData::Time(_) => {}
            }
        }
        bag
    }

    fn history_bag(&self, row: &RowRef) -> Vec<(usize, f64)> {
        let Some(h) = row.user.and_then(|u| self.history.get(u as usize)) else {
            return Vec::new();
        };
        let end = h.partition_point(|&(t, r, _)| (t, r) < row.time);
        let start = end.saturating_sub(MAX_HISTORY);
        h[start..end]
            .iter()
            .map(|&(_, _, i)| (i as usize, 1.0))
            .collect()
    }

    /// A negative of `domain` for `row`: not one of the user's positives and
    /// not one `taken` by an earlier negative of this example. Distinct negatives matter
    /// beyond sampling: a row named twice in one example would be stepped
    /// once per use by the native trainer but once in all by the evaluator,
    /// which differ for adaptive optimisers.
    fn negative(
        &self,
        domain: DomainId,
        popularity: bool,
        row: &RowRef,
        data: &Dataset,
        rng: &mut StdRng,
        taken: impl Fn(usize) -> bool,
    ) -> usize {
        let (name, ids) = &self.domains[domain.index()];
        let size = ids.len().max(1);
        let of_domain =
            |c: Option<usize>| c.is_some_and(|c| data.columns[c].data.domain() == Some(name));
        let excluded: &[u32] = match row.user {
            Some(u) if of_domain(self.item_column) => {
                self.positives.get(u as usize).map_or(&[], Vec::as_slice)
            }
            _ => &[],
        };
        // When the users are members of the sampled domain (a tree's nodes),
        // a user is never its own negative either: a node is no non-ancestor
        // of itself, and its distance to itself, 0, only adds a constant to a
        // softmax over distances.
        let user = row.user.filter(|_| of_domain(self.user_column));
        let allowed = |j: usize| {
            excluded.binary_search(&(j as u32)).is_err() && user != Some(j as u32) && !taken(j)
        };
        let mut draw = || match self.popularity.get(&domain.0) {
            Some(w) if popularity => w.sample(rng),
            _ => rng.random_range(0..size),
        };
        let mut j = draw();
        for _ in 0..NEGATIVE_TRIES {
            if allowed(j) {
                break;
            }
            j = draw();
        }
        j
    }

    /// Which member of a (user, item) pair from [`Binding::pair`] each slot
    /// follows: the split [`recc_compiler::factor::factor_score`] reads.
    pub fn slot_sides(&self) -> Vec<recc_compiler::factor::SlotSide> {
        (0..self.sources.len()).map(|k| self.slot_side(k)).collect()
    }

    fn slot_side(&self, slot: usize) -> recc_compiler::factor::SlotSide {
        use recc_compiler::factor::SlotSide;
        match &self.sources[slot] {
            SlotSource::Features | SlotSource::Negative { .. } => SlotSide::Pair,
            // Zero at prediction.
            SlotSource::Noise(_) | SlotSource::InverseCount { of: None, .. } => SlotSide::Fixed,
            // The slot it counts comes earlier, so this recursion ends.
            SlotSource::InverseCount { of: Some(s), .. } => self.slot_side(*s),
            _ if self.changes_with_item(slot) => SlotSide::Item,
            _ => SlotSide::User,
        }
    }

    /// The slots whose value changes with the item of a (user, item) pair:
    /// the item's own column, its attributes and feature bags.
    pub fn item_slots(&self) -> Vec<recc_compiler::ir::SlotId> {
        (0..self.sources.len())
            .filter(|&k| self.changes_with_item(k))
            .map(|k| recc_compiler::ir::SlotId(k as u32))
            .collect()
    }

    fn changes_with_item(&self, slot: usize) -> bool {
        match &self.sources[slot] {
            SlotSource::Index(c) | SlotSource::Real(c) | SlotSource::Bag(c) => {
                self.attribute_of[*c] == Some(false)
            }
            SlotSource::Features | SlotSource::Negative { .. } => true,
            SlotSource::TimeBucket { column, .. } => self.attribute_of[*column] == Some(false),
            SlotSource::History | SlotSource::Noise(_) => false,
            // The slot it counts comes earlier, so this recursion ends.
            SlotSource::InverseCount { of, .. } => of.is_some_and(|s| self.changes_with_item(s)),
        }
    }

    /// The slot bound to the data's target column, if any: the number the
    /// model's score is compared with.
    pub fn target_slot(&self, data: &Dataset) -> Option<usize> {
        let target = data.target.as_deref()?;
        self.sources
            .iter()
            .position(|s| matches!(s, SlotSource::Real(c) if data.columns[*c].name == target))
    }

    /// The values of the target column the model reads.
    pub fn target_values<'d>(&self, data: &'d Dataset) -> Option<&'d [f64]> {
        let slot = self.target_slot(data)?;
        match &self.sources[slot] {
            SlotSource::Real(c) => match &data.columns[*c].data {
                ColumnData::Real(v) => Some(v),
                _ => None,
            },
            _ => None,
        }
    }

    /// The column histories read items from, if the model has a history.
    pub fn history_column(&self) -> Option<usize> {
        self.history_column
    }

    pub fn time_column(&self) -> Option<usize> {
        self.time_column
    }
}

/// The one column of `domain` (index, or bag when `bag`), if there is exactly
/// one; several is an error asking for `--bind`.
fn unique_column(
    data: &Dataset,
    domain: &str,
    bag: bool,
    input: &str,
) -> Result<Option<usize>, BindError> {
    let found: Vec<usize> = data
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| match &c.data {
            ColumnData::Index { domain: d, .. } => !bag && d == domain,
            ColumnData::Bag { domain: d, .. } => bag && d == domain,
            _ => false,
        })
        .map(|(k, _)| k)
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [c] => Ok(Some(*c)),
        several => Err(BindError(format!(
            "input `{input}`: columns {} all hold domain `{domain}`; choose one with --bind {input}=COLUMN",
            several
                .iter()
                .map(|&c| format!("`{}`", data.columns[c].name))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Is column `c` constant within each group of `groups` (a user or item column)?
fn constant_per(data: &Dataset, c: usize, groups: Option<(&str, &[u32])>) -> bool {
    groups.is_some() && varies_within(data, c, groups).is_none()
}

/// Two rows of one group of `groups` where column `c` differs, if any: the
/// group's first row and the first that differs from it.
fn varies_within(
    data: &Dataset,
    c: usize,
    groups: Option<(&str, &[u32])>,
) -> Option<(usize, usize)> {
    let (dom, keys) = groups?;
    let n = data.domain_size(dom);
    let mut first: Vec<Option<usize>> = vec![None; n];
    let col = &data.columns[c].data;
    let same = |a: usize, b: usize| match col {
        ColumnData::Index { values, .. } => values[a] == values[b],
        ColumnData::Real(v) => v[a].to_bits() == v[b].to_bits(),
        ColumnData::Time(v) => v[a] == v[b],
        ColumnData::Bag {
            offsets,
            members,
            weights,
            ..
        } => {
            members[offsets[a]..offsets[a + 1]] == members[offsets[b]..offsets[b + 1]]
                && weights[offsets[a]..offsets[a + 1]] == weights[offsets[b]..offsets[b + 1]]
        }
    };
    for (r, &k) in keys.iter().enumerate() {
        match first[k as usize] {
            None => first[k as usize] = Some(r),
            Some(f) if same(f, r) => {}
            Some(f) => return Some((f, r)),
        }
    }
    None
}

/// Rows ahead whose column values [`gather`] prefetches: in a shuffled
/// order over a large dataset every read is a cache miss otherwise.
const GATHER_AHEAD: usize = 16;

/// `out.extend(rows.map(|r| convert(values[r])))`, prefetching ahead.
fn gather<T: Copy, U>(values: &[T], rows: &[usize], out: &mut Vec<U>, convert: impl Fn(T) -> U) {
    out.reserve(rows.len());
    for (k, &r) in rows.iter().enumerate() {
        #[cfg(target_arch = "x86_64")]
        if let Some(&ahead) = rows.get(k + GATHER_AHEAD) {
            if let Some(p) = values.get(ahead) {
                // SAFETY: prefetching a valid element's address never faults.
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        (p as *const T).cast::<i8>(),
                    )
                };
            }
        }
        out.push(convert(values[r]));
    }
}
