//! Last.fm 2k (HetRec 2011): how often each user played each artist.
//!
//! `user_artists.dat` holds `userID\tartistID\tweight` lines after a header;
//! the weight is a play count. Rows with no plays are kept: the caller
//! decides what counts as a positive. If `artists.dat` lies beside it, its
//! `id\tname\t…` lines label the artists.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::delimited::{data_lines, no_rows, parse_id, parse_real, read_text, Policy};
use super::{shown, BadLines, Column, ColumnData, DataError, Dataset, IdMap};

/// `dir/user_artists.dat`, labelled from `dir/artists.dat` when it exists.
/// The dataset is named `lastfm-2k`.
pub fn load(dir: &Path, bad: BadLines) -> Result<Dataset, DataError> {
    let path = dir.join("user_artists.dat");
    let text = read_text(&path)?;
    let mut policy = Policy::new(&path, bad);
    let mut users = IdMap::new();
    let mut items = IdMap::new();
    let (mut user_col, mut item_col, mut plays_col) = (Vec::new(), Vec::new(), Vec::new());
    for (k, (n, line)) in data_lines(&text).enumerate() {
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        if k == 0 && is_header(&fields) {
            continue;
        }
        if let Some((user, item, plays)) = policy.check(n, parse_row(&fields))? {
            user_col.push(users.intern(user));
            item_col.push(items.intern(item));
            plays_col.push(plays);
        }
    }
    if plays_col.is_empty() {
        return Err(DataError::Invalid(no_rows(
            &path.display().to_string(),
            policy.skipped,
        )));
    }
    let mut skipped = policy.skipped;
    let artists = dir.join("artists.dat");
    if artists.is_file() {
        skipped += label_artists(&artists, &mut items, bad)?;
    }

    let dataset = Dataset {
        name: "lastfm-2k".to_string(),
        columns: vec![
            Column {
                name: "user".to_string(),
                data: ColumnData::Index {
                    domain: "user".to_string(),
                    values: user_col,
                },
            },
            Column {
                name: "item".to_string(),
                data: ColumnData::Index {
                    domain: "item".to_string(),
                    values: item_col,
                },
            },
            Column {
                name: "plays".to_string(),
                data: ColumnData::Real(plays_col),
            },
        ],
        domains: BTreeMap::from([("user".to_string(), users), ("item".to_string(), items)]),
        target: Some("plays".to_string()),
        user: Some("user".to_string()),
        item: Some("item".to_string()),
        time: None,
        skipped,
        notes: Vec::new(),
    };
    dataset.validate()?;
    Ok(dataset)
}

/// A first line none of whose fields is a number names the columns.
fn is_header(fields: &[&str]) -> bool {
    fields.iter().all(|f| f.parse::<f64>().is_err())
}

fn parse_row<'a>(fields: &[&'a str]) -> Result<(&'a str, &'a str, f64), String> {
    let [user, artist, plays] = fields[..] else {
        return Err(format!(
            "expected 3 fields separated by tabs (user, artist, plays), found {}",
            fields.len()
        ));
    };
    let plays_value = parse_real("plays", plays)?;
    if plays_value < 0.0 {
        return Err(format!(
            "column plays: expected a play count of 0 or more, found {}",
            shown(plays)
        ));
    }
    Ok((
        parse_id("user", user)?,
        parse_id("item", artist)?,
        plays_value,
    ))
}

/// Label the artists that have plays with the names in `artists.dat`
/// (`id\tname\turl\tpicture`, after a header). An id listed twice is a bad
/// line: which name is right cannot be told. Returns the bad lines skipped.
fn label_artists(path: &Path, items: &mut IdMap, bad: BadLines) -> Result<usize, DataError> {
    let text = read_text(path)?;
    let mut policy = Policy::new(path, bad);
    let mut listed: HashSet<&str> = HashSet::new();
    for (k, (n, line)) in data_lines(&text).enumerate() {
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        if k == 0 && fields.first().is_some_and(|f| f.eq_ignore_ascii_case("id")) {
            continue;
        }
        let parsed = match fields[..] {
            [id, _, ..] if listed.contains(id) => {
                Err(format!("artist {} is listed twice", shown(id)))
            }
            [id, name, ..] if !id.is_empty() && !name.is_empty() => Ok((id, name)),
            _ => Err(format!(
                "expected an artist id and name separated by a tab, found {}",
                shown(line)
            )),
        };
        if let Some((id, name)) = policy.check(n, parsed)? {
            listed.insert(id);
            if let Some(i) = items.get(id) {
                items.set_label(i, name);
            }
        }
    }
    Ok(policy.skipped)
}
