//! MovieLens 100k: ratings with the users' demographics and the films' genres.
//!
//! Every user of `u.user` and every film of `u.item` is interned, in file
//! order, before any rating is read, so the whole data set and each of its
//! folds (`u1`…`u5`, `ua`, `ub`) share identical id maps. The files are
//! Latin-1 (a few titles have accented letters).
//!
//! Each rating row carries: `user`, `item`, `rating`, `timestamp`, the
//! user's `age`, `age_group`, `gender` and `occupation`, and the film's
//! `genres` (a bag) and release `year`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::delimited::{
    data_lines, no_rows, parse_id, parse_real, parse_time, read_latin1, Policy,
};
use super::{shown, BadLines, Column, ColumnData, DataError, Dataset, IdMap};
use crate::split::Split;

/// The folds shipped with the data: `{fold}.base` trains, `{fold}.test` tests.
pub const FOLDS: [&str; 7] = ["u1", "u2", "u3", "u4", "u5", "ua", "ub"];

/// The buckets of the `age_group` column, in index order.
pub const AGE_GROUPS: [&str; 7] = [
    "under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+",
];

/// The oldest age `u.user` may give, in years; a larger one is a typo or a
/// sentinel, and as a model's input it would swamp every other feature.
pub const MAX_AGE: f64 = 150.0;

/// The `year` of a film without a release date.
pub const UNKNOWN_YEAR: &str = "unknown";

/// All of `u.data`. The dataset is named `ml-100k`.
pub fn load(dir: &Path, bad: BadLines) -> Result<Dataset, DataError> {
    let mut reader = Reader::new(dir, bad)?;
    reader.read_ratings("u.data")?;
    reader.finish("ml-100k".to_string())
}

/// One of the shipped folds: the rows of `{fold}.base`, then those of
/// `{fold}.test`; the split trains on the first and tests on the second.
/// The dataset is named `ml-100k {fold}`.
pub fn load_fold(dir: &Path, fold: &str, bad: BadLines) -> Result<(Dataset, Split), DataError> {
    if !FOLDS.contains(&fold) {
        return Err(DataError::Invalid(format!(
            "unknown MovieLens fold `{fold}`; expected one of {}",
            FOLDS.join(", ")
        )));
    }
    let mut reader = Reader::new(dir, bad)?;
    reader.read_ratings(&format!("{fold}.base"))?;
    let n_base = reader.ratings.len();
    reader.read_ratings(&format!("{fold}.test"))?;
    let n = reader.ratings.len();
    let dataset = reader.finish(format!("ml-100k {fold}"))?;
    let split = Split {
        train: (0..n_base).collect(),
        test: (n_base..n).collect(),
    };
    Ok((dataset, split))
}

/// A user's columns, looked up by the user's index.
struct User {
    age: f64,
    age_group: u32,
    gender: u32,
    occupation: u32,
}

/// A film's columns, looked up by the film's index.
struct Item {
    genres: Vec<u32>,
    year: u32,
}

/// A parsed line of `u.item`.
struct ItemLine<'l> {
    id: &'l str,
    title: &'l str,
    genres: Vec<u32>,
    /// `None` for a film without a release date.
    year: Option<&'l str>,
}

/// One rating: indices of user and item, the rating and its time.
struct Rating {
    user: u32,
    item: u32,
    rating: f64,
    timestamp: i64,
}

struct Reader<'a> {
    dir: &'a Path,
    bad: BadLines,
    skipped: usize,
    domains: BTreeMap<String, IdMap>,
    users: Vec<User>,
    items: Vec<Item>,
    ratings: Vec<Rating>,
}

impl<'a> Reader<'a> {
    /// Read the occupations, genres, users and films.
    fn new(dir: &'a Path, bad: BadLines) -> Result<Reader<'a>, DataError> {
        let mut reader = Reader {
            dir,
            bad,
            skipped: 0,
            domains: BTreeMap::new(),
            users: Vec::new(),
            items: Vec::new(),
            ratings: Vec::new(),
        };
        let age_groups = reader.domain("age_group");
        for g in AGE_GROUPS {
            age_groups.intern(g);
        }
        reader.occupations()?;
        let genres = reader.genres()?;
        reader.users()?;
        reader.items(genres)?;
        Ok(reader)
    }

    fn domain(&mut self, name: &str) -> &mut IdMap {
        self.domains.entry(name.to_string()).or_default()
    }

    /// `u.occupation`: one occupation a line, each listed once.
    fn occupations(&mut self) -> Result<(), DataError> {
        let path = self.dir.join("u.occupation");
        let text = read_latin1(&path)?;
        let mut policy = Policy::new(&path, self.bad);
        let occupations = self.domains.entry("occupation".to_string()).or_default();
        for (n, line) in data_lines(&text) {
            let name = line.trim();
            let parsed = match occupations.get(name) {
                Some(_) => Err(format!("occupation {} is listed twice", shown(name))),
                None => Ok(name),
            };
            if let Some(name) = policy.check(n, parsed)? {
                occupations.intern(name);
            }
        }
        self.skipped += policy.skipped;
        Ok(())
    }

    /// `u.genre`: `name|index`, indices counting from 0 in file order.
    /// Returns the genres' indices in the order of `u.item`'s flags.
    fn genres(&mut self) -> Result<Vec<u32>, DataError> {
        let path = self.dir.join("u.genre");
        let text = read_latin1(&path)?;
        let mut policy = Policy::new(&path, self.bad);
        let mut order = Vec::new();
        for (n, line) in data_lines(&text) {
            let parsed = match line.split('|').collect::<Vec<_>>()[..] {
                [name, _]
                    if self
                        .domains
                        .get("genre")
                        .is_some_and(|g| g.get(name.trim()).is_some()) =>
                {
                    Err(format!("genre {} is listed twice", shown(name.trim())))
                }
                [name, position] if position.trim() == order.len().to_string() => {
                    parse_id("genre", name.trim())
                }
                [_, position] => Err(format!(
                    "genre number {position:?} out of order: expected {}",
                    order.len()
                )),
                ref fields => Err(format!(
                    "expected 2 fields separated by \"|\" (genre, number), found {}",
                    fields.len()
                )),
            };
            if let Some(name) = policy.check(n, parsed)? {
                order.push(self.domain("genre").intern(name));
            }
        }
        self.skipped += policy.skipped;
        Ok(order)
    }

    /// `u.user`: `id|age|gender|occupation|zip code`.
    fn users(&mut self) -> Result<(), DataError> {
        let path = self.dir.join("u.user");
        let text = read_latin1(&path)?;
        let mut policy = Policy::new(&path, self.bad);
        for (n, line) in data_lines(&text) {
            let parsed = self.parse_user(line);
            if let Some((id, age, gender, occupation)) = policy.check(n, parsed)? {
                let user = User {
                    age,
                    age_group: age_group(age),
                    gender: self.domain("gender").intern(gender),
                    occupation,
                };
                self.domain("user").intern(id);
                self.users.push(user);
            }
        }
        self.skipped += policy.skipped;
        Ok(())
    }

    fn parse_user<'l>(&mut self, line: &'l str) -> Result<(&'l str, f64, &'l str, u32), String> {
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [id, age, gender, occupation, _zip] = fields[..] else {
            return Err(format!(
                "expected 5 fields separated by \"|\" (user, age, gender, occupation, zip code), found {}",
                fields.len()
            ));
        };
        let id = parse_id("user", id)?;
        if self.domain("user").get(id).is_some() {
            return Err(format!("user {} is listed twice", shown(id)));
        }
        let age = parse_real("age", age)?;
        if !(0.0..=MAX_AGE).contains(&age) {
            return Err(format!(
                "column age: expected an age from 0 to {MAX_AGE} years, found {age}"
            ));
        }
        let gender = parse_id("gender", gender)?;
        let occupation = self.domain("occupation").get(occupation).ok_or_else(|| {
            format!(
                "column occupation: {} is not listed in u.occupation",
                shown(occupation)
            )
        })?;
        Ok((id, age, gender, occupation))
    }

    /// `u.item`: `id|title|release date|video release date|IMDb URL|` then
    /// one 0/1 flag per genre.
    fn items(&mut self, genres: Vec<u32>) -> Result<(), DataError> {
        let path = self.dir.join("u.item");
        let text = read_latin1(&path)?;
        let mut policy = Policy::new(&path, self.bad);
        let mut years = Vec::new();
        for (n, line) in data_lines(&text) {
            let parsed = self.parse_item(line, &genres);
            if let Some(item) = policy.check(n, parsed)? {
                let items = self.domain("item");
                let i = items.intern(item.id);
                items.set_label(i, item.title);
                self.items.push(Item {
                    genres: item.genres,
                    year: 0,
                });
                years.push(item.year);
            }
        }
        self.skipped += policy.skipped;
        // Years in increasing order, films without a date last.
        let known: BTreeSet<&str> = years.iter().flatten().copied().collect();
        let year_map = self.domains.entry("year".to_string()).or_default();
        for y in known {
            year_map.intern(y);
        }
        for (item, year) in self.items.iter_mut().zip(years) {
            item.year = year_map.intern(year.unwrap_or(UNKNOWN_YEAR));
        }
        Ok(())
    }

    fn parse_item<'l>(&mut self, line: &'l str, genres: &[u32]) -> Result<ItemLine<'l>, String> {
        let fields: Vec<&str> = line.split('|').collect();
        if fields.len() != 5 + genres.len() {
            return Err(format!(
                "expected {} fields separated by \"|\" (item, title, release date, video release date, \
                 IMDb URL and {} genre flags), found {}",
                5 + genres.len(),
                genres.len(),
                fields.len()
            ));
        }
        let id = parse_id("item", fields[0].trim())?;
        if self.domain("item").get(id).is_some() {
            return Err(format!("item {} is listed twice", shown(id)));
        }
        let title = fields[1].trim();
        let year = release_year(fields[2].trim())?;
        let mut item_genres = Vec::new();
        for (&genre, flag) in genres.iter().zip(&fields[5..]) {
            match flag.trim() {
                "1" => item_genres.push(genre),
                "0" => {}
                other => {
                    let name = self.domain("genre").name(genre).to_string();
                    return Err(format!(
                        "genre flag {name}: expected 0 or 1, found {}",
                        shown(other)
                    ));
                }
            }
        }
        Ok(ItemLine {
            id,
            title,
            genres: item_genres,
            year,
        })
    }

    /// A ratings file: `user item rating timestamp`, tab-separated.
    fn read_ratings(&mut self, file: &str) -> Result<(), DataError> {
        let path = self.dir.join(file);
        let text = read_latin1(&path)?;
        let mut policy = Policy::new(&path, self.bad);
        let before = self.ratings.len();
        for (n, line) in data_lines(&text) {
            let parsed = self.parse_rating(line);
            if let Some(rating) = policy.check(n, parsed)? {
                self.ratings.push(rating);
            }
        }
        self.skipped += policy.skipped;
        if self.ratings.len() == before {
            return Err(DataError::Invalid(no_rows(
                &path.display().to_string(),
                policy.skipped,
            )));
        }
        Ok(())
    }

    fn parse_rating(&self, line: &str) -> Result<Rating, String> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [user, item, rating, timestamp] = fields[..] else {
            return Err(format!(
                "expected 4 fields separated by tabs (user, item, rating, timestamp), found {}",
                fields.len()
            ));
        };
        let known = |domain: &str, file: &str, id: &str| {
            self.domains
                .get(domain)
                .and_then(|m| m.get(id))
                .ok_or_else(|| format!("column {domain}: {domain} {id:?} is not listed in {file}"))
        };
        Ok(Rating {
            user: known("user", "u.user", user)?,
            item: known("item", "u.item", item)?,
            rating: parse_real("rating", rating)?,
            timestamp: parse_time("timestamp", timestamp)?,
        })
    }

    fn finish(self, name: String) -> Result<Dataset, DataError> {
        let n = self.ratings.len();
        let mut age = Vec::with_capacity(n);
        let mut age_groups = Vec::with_capacity(n);
        let mut genders = Vec::with_capacity(n);
        let mut occupations = Vec::with_capacity(n);
        let mut offsets = Vec::with_capacity(n + 1);
        let mut members = Vec::new();
        let mut years = Vec::with_capacity(n);
        offsets.push(0);
        for r in &self.ratings {
            // Ratings are only made for interned users and items, and one
            // User and Item is pushed for each interned id.
            let (Some(u), Some(i)) = (
                self.users.get(r.user as usize),
                self.items.get(r.item as usize),
            ) else {
                return Err(DataError::Invalid(format!(
                    "{name}: rating of an unlisted user or item"
                )));
            };
            age.push(u.age);
            age_groups.push(u.age_group);
            genders.push(u.gender);
            occupations.push(u.occupation);
            members.extend_from_slice(&i.genres);
            offsets.push(members.len());
            years.push(i.year);
        }
        let index = |domain: &str, values: Vec<u32>| ColumnData::Index {
            domain: domain.to_string(),
            values,
        };
        let columns = vec![
            (
                "user",
                index("user", self.ratings.iter().map(|r| r.user).collect()),
            ),
            (
                "item",
                index("item", self.ratings.iter().map(|r| r.item).collect()),
            ),
            (
                "rating",
                ColumnData::Real(self.ratings.iter().map(|r| r.rating).collect()),
            ),
            (
                "timestamp",
                ColumnData::Time(self.ratings.iter().map(|r| r.timestamp).collect()),
            ),
            ("age", ColumnData::Real(age)),
            ("age_group", index("age_group", age_groups)),
            ("gender", index("gender", genders)),
            ("occupation", index("occupation", occupations)),
            (
                "genres",
                ColumnData::Bag {
                    domain: "genre".to_string(),
                    offsets,
                    weights: vec![1.0; members.len()],
                    members,
                },
            ),
            ("year", index("year", years)),
        ];
        let mut domains = self.domains;
        for d in [
            "user",
            "item",
            "age_group",
            "gender",
            "occupation",
            "genre",
            "year",
        ] {
            domains.entry(d.to_string()).or_default();
        }
        let dataset = Dataset {
            name,
            columns: columns
                .into_iter()
                .map(|(name, data)| Column {
                    name: name.to_string(),
                    data,
                })
                .collect(),
            domains,
            target: Some("rating".to_string()),
            user: Some("user".to_string()),
            item: Some("item".to_string()),
            time: Some("timestamp".to_string()),
            skipped: self.skipped,
            notes: Vec::new(),
        };
        dataset.validate()?;
        Ok(dataset)
    }
}

/// The bucket of an age, an index into [`AGE_GROUPS`].
fn age_group(age: f64) -> u32 {
    let bounds = [18.0, 25.0, 35.0, 45.0, 50.0, 56.0];
    bounds.iter().take_while(|&&b| age >= b).count() as u32
}

/// `01-Jan-1995` → `1995`; an empty date has no year.
fn release_year(date: &str) -> Result<Option<&str>, String> {
    if date.is_empty() {
        return Ok(None);
    }
    match date.rsplit('-').next() {
        Some(y) if y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(y)),
        _ => Err(format!(
            "column release date: expected a date like 01-Jan-1995, found {}",
            shown(date)
        )),
    }
}
