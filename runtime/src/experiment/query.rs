//! Asking a trained model: scores of pairs, recommendations for a user,
//! neighbours of an item, and its tables exported.

use super::ids::{resolve_id, resolve_or_unknown};
use super::{failed, usage, Fitted, Result, Source};
use crate::data::{Dataset, IdMap};
use crate::export::{self, ExportFormat};
use crate::modelfile::{self, SavedModel};
use crate::predict;
use recc_compiler::interp::Params;
use recc_compiler::ir::{Graph, SlotKind};
use std::path::{Path, PathBuf};

/// Read a model file as it is, without compiling or binding it.
pub fn read_model(path: &Path) -> Result<SavedModel> {
    modelfile::load(path).map_err(|e| usage(e.to_string()))
}

/// The dense index of a raw id (or label) of `domain` ([`resolve_or_unknown`]).
fn lookup(
    data: &Dataset,
    domain: &str,
    raw: &str,
    what: &str,
    allow_unknown: bool,
    notes: &mut Vec<String>,
) -> Result<Option<u32>> {
    match data.domains.get(domain) {
        Some(map) => resolve_or_unknown(map, what, raw, allow_unknown, notes),
        None => Err(usage(format!("the data has no {what} domain `{domain}`"))),
    }
}

fn user_item_domains(data: &Dataset) -> Result<(String, String)> {
    match (data.users(), data.items()) {
        (Some((u, _)), Some((i, _))) => Ok((u.to_string(), i.to_string())),
        _ => Err(usage("the data has no user and item columns")),
    }
}

/// The score of one (user, item) pair.
#[derive(Clone, Debug, PartialEq)]
pub struct PairScore {
    /// As asked: raw ids or labels.
    pub user: String,
    pub item: String,
    pub score: f64,
    /// The user or the item is not in the model: scored as an unknown one.
    pub unknown: bool,
    /// Said of this pair: an id the model lacks, scored as unknown.
    pub notes: Vec<String>,
}

/// Scores of (user, item) pairs: one user per item, or one of either for
/// all of the other. An id the model lacks is an error, unless
/// `allow_unknown`: then it scores as an unknown one (the mean of those
/// learned), with a note.
pub fn predict_pairs(
    fitted: &Fitted,
    data: &Dataset,
    users: &[String],
    items: &[String],
    allow_unknown: bool,
) -> Result<Vec<PairScore>> {
    let (ud, id) = user_item_domains(data)?;
    let predictor = fitted.predictor()?;
    if users.is_empty()
        || items.is_empty()
        || (users.len() != items.len() && users.len() != 1 && items.len() != 1)
    {
        return Err(usage("give one --user per --item, or one of either"));
    }
    let n = users.len().max(items.len());
    let mut rows = Vec::new();
    for k in 0..n {
        let user = &users[k.min(users.len() - 1)];
        let item = &items[k.min(items.len() - 1)];
        let mut notes = Vec::new();
        let u = lookup(data, &ud, user, "user", allow_unknown, &mut notes)?;
        let i = lookup(data, &id, item, "item", allow_unknown, &mut notes)?;
        let score = predictor
            .score_pair(data, u, i)
            .map_err(|e| failed(e.to_string()))?;
        rows.push(PairScore {
            user: user.trim().to_string(),
            item: item.trim().to_string(),
            score,
            unknown: u.is_none() || i.is_none(),
            notes,
        });
    }
    Ok(rows)
}

/// One recommended item.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    /// The raw id, and the label (the raw id when the data has none).
    pub item: String,
    pub label: String,
    pub score: f64,
}

/// The best items for a user.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendations {
    /// As asked.
    pub user: String,
    /// The users' domain, e.g. `user`.
    pub domain: String,
    /// Best first.
    pub items: Vec<Recommendation>,
    /// The user is not in the model: scored as an unknown one.
    pub unknown: bool,
    /// Said of the request: a user the model lacks, scored as unknown.
    pub notes: Vec<String>,
}

/// Whether [`recommend`] lists items the user already has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SeenItems {
    /// Leave out every item the user has in any row of the data (the
    /// default: a recommendation is something new).
    #[default]
    Exclude,
    /// Rank them with the rest.
    Include,
}

/// The `k` best items for `user` (a raw id or a label), leaving out (unless
/// `seen` says otherwise) every item the user has in any row of the data,
/// training or not. When users and items are one domain (a tree's nodes,
/// co-occurring tokens) the user is never its own recommendation. A user
/// the model lacks is an error, unless `allow_unknown`: then the ranking is
/// an unknown user's.
pub fn recommend(
    fitted: &Fitted,
    data: &Dataset,
    user: &str,
    k: usize,
    allow_unknown: bool,
    seen: SeenItems,
) -> Result<Recommendations> {
    let (ud, id) = user_item_domains(data)?;
    let mut notes = Vec::new();
    let u = lookup(data, &ud, user, "user", allow_unknown, &mut notes)?;
    let predictor = fitted.predictor()?;
    let mut exclude: Vec<u32> = match (seen, u) {
        (SeenItems::Exclude, Some(u)) => fitted.seen.get(u as usize).cloned().unwrap_or_default(),
        _ => Vec::new(),
    };
    if let Some(u) = u.filter(|_| ud == id) {
        if let Err(at) = exclude.binary_search(&u) {
            exclude.insert(at, u);
        }
    }
    let recs = predictor
        .recommend(data, u, k, &exclude)
        .map_err(|e| failed(e.to_string()))?;
    let map = data.domains.get(&id);
    let items = recs
        .into_iter()
        .map(|(i, score)| Recommendation {
            item: map.map_or(i.to_string(), |m| m.name(i).to_string()),
            label: map.map_or(i.to_string(), |m| m.label(i).to_string()),
            score,
        })
        .collect();
    Ok(Recommendations {
        user: user.trim().to_string(),
        domain: ud,
        items,
        unknown: u.is_none(),
        notes,
    })
}

/// One neighbour.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbour {
    pub id: String,
    pub label: String,
    pub similarity: f64,
}

/// The nearest neighbours of an item in one of the model's tables.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbours {
    /// As asked.
    pub item: String,
    /// The raw id and the label of the item found (its raw id when it has
    /// none).
    pub id: String,
    pub label: String,
    /// The table compared in.
    pub table: String,
    /// Nearest first.
    pub neighbours: Vec<Neighbour>,
}

/// The `k` nearest neighbours of `item` (a raw id or a label) of `domain`
/// (default: `item`, or the model's last index input) by cosine in `table`
/// (default: the widest vector table over the domain).
pub fn similar(
    fitted: &Fitted,
    item: &str,
    table: Option<&str>,
    domain: Option<&str>,
    k: usize,
) -> Result<Neighbours> {
    let g = &fitted.session.forward;
    let domains = &fitted.session.binding.domains;
    let map_of = |name: &str| {
        domains
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.clone())
    };
    let (t, map, row) = resolve(g, map_of, item, table, domain)?;
    Ok(neighbours(g, &fitted.params, t, &map, row, item, k))
}

/// [`similar`] straight from a model file, without its data: the ids and
/// labels are the file's.
pub fn similar_saved(
    saved: &SavedModel,
    source: &Source,
    item: &str,
    table: Option<&str>,
    domain: Option<&str>,
    k: usize,
) -> Result<Neighbours> {
    let g = recc_compiler::forward_graph(&source.model).map_err(|e| failed(e.to_string()))?;
    let map_of = |name: &str| {
        saved
            .domains
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.to_id_map())
    };
    let (t, map, row) = resolve(&g, map_of, item, table, domain)?;
    // `load` checked that the file's domains are the graph's, in order.
    let sizes: Vec<usize> = saved.domains.iter().map(|d| d.ids.len()).collect();
    let params = saved.params(sizes).map_err(|e| usage(e.to_string()))?;
    Ok(neighbours(&g, &params, t, &map, row, item, k))
}

/// The table to compare in, the id map of its domain and the row of `item`.
fn resolve(
    g: &Graph,
    map_of: impl Fn(&str) -> Option<IdMap>,
    item: &str,
    table: Option<&str>,
    domain: Option<&str>,
) -> Result<(usize, IdMap, u32)> {
    let domain_name = match domain {
        Some(d) => d.to_string(),
        None => {
            // The domain of the recommended things: the item input's, or
            // the last index input's.
            let idx: Vec<&str> = g
                .slots
                .iter()
                .filter_map(|s| match s.kind {
                    SlotKind::Index(d) => Some(g.domains[d.index()].name.as_str()),
                    _ => None,
                })
                .collect();
            idx.iter()
                .find(|d| **d == "item")
                .or(idx.last())
                .map(|d| d.to_string())
                .ok_or_else(|| usage("the model has no index input; name a --domain"))?
        }
    };
    let t = match table {
        Some(name) => g
            .tables
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| usage(format!("the model has no table `{name}`")))?,
        None => predict::embedding_table(g, &domain_name).ok_or_else(|| {
            usage(format!(
                "the model has no vector table over `{domain_name}`"
            ))
        })?,
    };
    let table_domain = g.tables[t]
        .domain
        .map(|d| g.domains[d.index()].name.clone())
        .ok_or_else(|| usage(format!("table `{}` is a global", g.tables[t].name)))?;
    // Neighbours by cosine need directions: one number per row has two.
    if g.tables[t].shape.len() < 2 {
        return Err(usage(format!(
            "table `{}` holds one number per {table_domain}; similar compares vectors \
             (leave out --table for the widest vector table)",
            g.tables[t].name
        )));
    }
    let map = map_of(&table_domain)
        .ok_or_else(|| usage(format!("the model file lacks domain `{table_domain}`")))?;
    let row = resolve_id(&map, &table_domain, item)?;
    Ok((t, map, row))
}

fn neighbours(
    g: &Graph,
    params: &Params,
    t: usize,
    map: &IdMap,
    row: u32,
    item: &str,
    k: usize,
) -> Neighbours {
    let near = predict::similar(g, params, t, row as usize, k);
    Neighbours {
        item: item.to_string(),
        id: map.name(row).to_string(),
        label: map.label(row).to_string(),
        table: g.tables[t].name.clone(),
        neighbours: near
            .into_iter()
            .map(|(r, similarity)| Neighbour {
                id: map.name(r).to_string(),
                label: map.label(r).to_string(),
                similarity,
            })
            .collect(),
    }
}

/// Write every table of a model file into `dir` as CSV or .npy files;
/// the paths written, in table order.
pub fn export(saved: &SavedModel, dir: &Path, format: ExportFormat) -> Result<Vec<PathBuf>> {
    export::export(saved, dir, format).map_err(|e| usage(e.to_string()))
}
