//! Finding what a person names: a raw id or a label (a film's title) of a
//! domain, as typed on a command line or at the prompt. Every front end
//! looks ids up here, so that they all trim, match labels and suggest alike.

use super::{failed, printable, usage, ExperimentError, Result};
use crate::data::IdMap;

/// Suggestions listed when a name matches nothing.
const SUGGESTIONS: usize = 5;

/// What a name found in a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdLookup {
    /// One row: the raw id, else the one label equal to the name, else the
    /// one label equal to it but for case.
    Found(u32),
    /// Several rows carry the label: their rows, in id order.
    Ambiguous(Vec<u32>),
    /// Nothing: the closest ids and labels, closest first.
    Missing(Vec<u32>),
}

/// Look `name` up in `map`: trimmed, as a raw id first, then as a label
/// exactly, then as a label ignoring case.
pub fn lookup_id(map: &IdMap, name: &str) -> IdLookup {
    let name = name.trim();
    if let Some(i) = map.get(name) {
        return IdLookup::Found(i);
    }
    let labelled = |matches: &dyn Fn(&str) -> bool| -> Vec<u32> {
        map.labels()
            .iter()
            .enumerate()
            .filter(|(_, l)| l.as_deref().is_some_and(matches))
            .map(|(i, _)| i as u32)
            .collect()
    };
    let lower = name.to_lowercase();
    for rows in [
        labelled(&|l| l == name),
        labelled(&|l| l.to_lowercase() == lower),
    ] {
        match rows.as_slice() {
            [] => {}
            [one] => return IdLookup::Found(*one),
            _ => return IdLookup::Ambiguous(rows),
        }
    }
    IdLookup::Missing(closest(map, &lower))
}

/// The rows whose id or label is nearest `lower` (a lower-cased name):
/// those that begin with it as a whole word (`star wars` in `star wars
/// (1977)`), then those that begin with it, then those that contain it,
/// then those a few edits away; shorter first within each.
fn closest(map: &IdMap, lower: &str) -> Vec<u32> {
    if lower.is_empty() {
        return Vec::new();
    }
    let limit = (lower.chars().count() / 3).max(1);
    let rank_of = |text: &str| -> Option<(u8, usize)> {
        let extra = text.len().saturating_sub(lower.len());
        if let Some(rest) = text.strip_prefix(lower) {
            let whole_word = !rest.starts_with(|c: char| c.is_alphanumeric());
            return Some((if whole_word { 0 } else { 1 }, extra));
        }
        if text.contains(lower) {
            return Some((2, extra));
        }
        edit_distance_within(lower, text, limit).map(|d| (3, d))
    };
    let mut ranked: Vec<(u8, usize, u32)> = (0..map.len() as u32)
        .filter_map(|i| {
            let id = rank_of(&map.name(i).to_lowercase());
            let label = rank_of(&map.label(i).to_lowercase());
            let (class, extra) = id.into_iter().chain(label).min()?;
            Some((class, extra, i))
        })
        .collect();
    ranked.sort_unstable();
    ranked
        .into_iter()
        .take(SUGGESTIONS)
        .map(|(_, _, i)| i)
        .collect()
}

/// The Levenshtein distance of `a` and `b` when it is at most `limit`.
/// Names whose lengths differ by more are not compared at all: catalogues
/// are large and most labels are far from what was typed.
fn edit_distance_within(a: &str, b: &str, limit: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            current[j + 1] = (previous[j] + cost)
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    Some(previous[b.len()]).filter(|d| *d <= limit)
}

/// `"label" [id]`, or `id` when the row has no label of its own.
pub fn describe_id(map: &IdMap, i: u32) -> String {
    let (id, label) = (printable(map.name(i)), printable(map.label(i)));
    if id == label {
        id.into_owned()
    } else {
        format!("\"{label}\" [{id}]")
    }
}

/// The row of `name` (a raw id or a label) in `map`, a domain called
/// `what` (`user`, `item`). A name the model does not know is an error of
/// its own kind (exit 1 at the command line, like any lookup that found
/// nothing) that lists the closest names; a label several rows carry is a
/// request to say which, listing them with their ids.
pub fn resolve_id(map: &IdMap, what: &str, name: &str) -> Result<u32> {
    match lookup_id(map, name) {
        IdLookup::Found(i) => Ok(i),
        IdLookup::Ambiguous(rows) => Err(ambiguous(map, what, name, &rows)),
        IdLookup::Missing(near) => Err(missing(map, what, name, &near)),
    }
}

/// Like [`resolve_id`], but a name the model does not know is `None` when
/// `allow_unknown` (scored as an unknown one, the mean of those learned),
/// with a note saying so.
pub fn resolve_or_unknown(
    map: &IdMap,
    what: &str,
    name: &str,
    allow_unknown: bool,
    notes: &mut Vec<String>,
) -> Result<Option<u32>> {
    match lookup_id(map, name) {
        IdLookup::Found(i) => Ok(Some(i)),
        IdLookup::Ambiguous(rows) => Err(ambiguous(map, what, name, &rows)),
        IdLookup::Missing(_) if allow_unknown => {
            notes.push(format!(
                "{what} `{}` is not in the model; scoring it as an unknown {what} \
                 (the mean of the {what}s the model learned)",
                printable(name.trim())
            ));
            Ok(None)
        }
        IdLookup::Missing(near) => Err(missing(map, what, name, &near)),
    }
}

fn ambiguous(map: &IdMap, what: &str, name: &str, rows: &[u32]) -> ExperimentError {
    let list: Vec<String> = rows.iter().map(|&i| describe_id(map, i)).collect();
    usage(format!(
        "{} {what}s are labelled `{}`: {}; name one by its id",
        rows.len(),
        printable(name.trim()),
        list.join(", ")
    ))
}

fn missing(map: &IdMap, what: &str, name: &str, near: &[u32]) -> ExperimentError {
    let mut message = format!("{what} `{}` is not in the model", printable(name.trim()));
    if !near.is_empty() {
        let list: Vec<String> = near.iter().map(|&i| describe_id(map, i)).collect();
        message.push_str(&format!("; did you mean {}?", list.join(", ")));
    }
    failed(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn films() -> IdMap {
        let mut map = IdMap::new();
        for (id, title) in [
            ("50", "Star Wars (1977)"),
            ("181", "Return of the Jedi (1983)"),
            ("246", "Chasing Amy (1997)"),
            ("268", "Chasing Amy (1997)"),
            ("7", "Twelve Monkeys (1995)"),
        ] {
            let i = map.intern(id);
            map.set_label(i, title);
        }
        map.intern("u1");
        map
    }

    #[test]
    fn ids_then_labels_then_labels_ignoring_case() {
        let map = films();
        assert_eq!(lookup_id(&map, "50"), IdLookup::Found(0));
        assert_eq!(lookup_id(&map, "  50 "), IdLookup::Found(0));
        assert_eq!(lookup_id(&map, "Star Wars (1977)"), IdLookup::Found(0));
        assert_eq!(lookup_id(&map, "star wars (1977) "), IdLookup::Found(0));
        assert_eq!(resolve_id(&map, "item", "u1"), Ok(5));
    }

    #[test]
    fn a_miss_suggests_the_closest_labels_with_their_ids() {
        let map = films();
        let e = resolve_id(&map, "item", "Star Wars").unwrap_err();
        assert_eq!(e.kind, super::super::ErrorKind::Model);
        assert_eq!(
            e.message,
            "item `Star Wars` is not in the model; did you mean \"Star Wars (1977)\" [50]?"
        );
        let e = resolve_id(&map, "item", "Twelve Monkies (1995)").unwrap_err();
        assert!(e.message.contains("\"Twelve Monkeys (1995)\" [7]"), "{e}");
        let e = resolve_id(&map, "item", "Casablanca").unwrap_err();
        assert_eq!(e.message, "item `Casablanca` is not in the model");
    }

    #[test]
    fn a_label_of_several_rows_lists_them() {
        let e = resolve_id(&films(), "item", "chasing amy (1997)").unwrap_err();
        assert_eq!(e.kind, super::super::ErrorKind::Usage);
        assert_eq!(
            e.message,
            "2 items are labelled `chasing amy (1997)`: \"Chasing Amy (1997)\" [246], \
             \"Chasing Amy (1997)\" [268]; name one by its id"
        );
    }

    #[test]
    fn unknown_ones_are_scored_only_when_asked_for() {
        let map = films();
        let mut notes = Vec::new();
        assert_eq!(
            resolve_or_unknown(&map, "user", "nobody", true, &mut notes),
            Ok(None)
        );
        assert_eq!(notes.len(), 1);
        assert!(resolve_or_unknown(&map, "user", "nobody", false, &mut notes).is_err());
        assert!(resolve_or_unknown(&map, "item", "Chasing Amy (1997)", true, &mut notes).is_err());
    }
}
