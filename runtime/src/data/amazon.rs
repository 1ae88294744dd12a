//! Amazon product reviews, one JSON object per line (the McAuley 5-core
//! files): `reviewerID`, `asin`, `overall`, `reviewText`, `summary`,
//! `unixReviewTime`, `reviewerName`, ...
//!
//! The examples are (user, item, stars, timestamp); the review texts are kept
//! beside the dataset, one per row, for the text readers in [`super::text`].

use std::path::Path;

use serde_json::{Map, Value};

use super::delimited::{is_real, open, read_line_bounded};
use super::{BadLines, Column, ColumnData, DataError, Dataset, IdMap, Location};

/// Reviews as examples, with the text of each.
#[derive(Clone, Debug, PartialEq)]
pub struct Reviews {
    /// Columns `user` index(user), `item` index(item), `stars` real,
    /// `timestamp` time.
    pub dataset: Dataset,
    /// `texts[r]` is the review of row `r`: the summary, a space, the text.
    pub texts: Vec<String>,
}

/// One review as read from a line.
struct Review {
    user: String,
    user_name: Option<String>,
    item: String,
    stars: f64,
    time: i64,
    text: String,
}

/// Read a file of reviews. Blank lines are ignored; a line that is not a JSON
/// object, or lacks `reviewerID`, `asin` or a numeric `overall`, is a bad line.
pub fn load(path: &Path, bad: BadLines) -> Result<Reviews, DataError> {
    let mut users = IdMap::new();
    let mut items = IdMap::new();
    let mut user_col = Vec::new();
    let mut item_col = Vec::new();
    let mut stars = Vec::new();
    let mut times = Vec::new();
    let mut texts = Vec::new();
    let mut skipped = 0;

    let mut reader = open(path)?;
    let mut bytes = Vec::new();
    for k in 0.. {
        bytes.clear();
        if read_line_bounded(&mut reader, &mut bytes, path, k + 1)? == 0 {
            break;
        }
        // A byte order mark before the first object is no part of it.
        let text = match k {
            0 => bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes),
            _ => &bytes,
        };
        let line = std::str::from_utf8(text).map_err(|e| format!("not UTF-8 text: {e}"));
        if line.as_ref().is_ok_and(|l| l.trim().is_empty()) {
            continue;
        }
        let object = line.and_then(|line| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) => Ok(object),
            Ok(_) => Err("expected a JSON object".to_string()),
            Err(e) => Err(format!("malformed JSON: {e}")),
        });
        let review = object.and_then(|o| parse_review(&o));
        let review = match review {
            Ok(r) => r,
            Err(message) => match bad {
                BadLines::Fail => {
                    return Err(DataError::BadLine {
                        at: Location {
                            path: path.to_path_buf(),
                            line: k + 1,
                        },
                        message,
                    })
                }
                BadLines::Skip => {
                    skipped += 1;
                    continue;
                }
            },
        };
        let u = users.intern(&review.user);
        if let Some(name) = &review.user_name {
            if users.labels().get(u as usize) == Some(&None) {
                users.set_label(u, name);
            }
        }
        user_col.push(u);
        item_col.push(items.intern(&review.item));
        stars.push(review.stars);
        times.push(review.time);
        texts.push(review.text);
    }

    let dataset = Dataset {
        name: path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
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
                name: "stars".to_string(),
                data: ColumnData::Real(stars),
            },
            Column {
                name: "timestamp".to_string(),
                data: ColumnData::Time(times),
            },
        ],
        domains: [("user".to_string(), users), ("item".to_string(), items)]
            .into_iter()
            .collect(),
        target: Some("stars".to_string()),
        user: Some("user".to_string()),
        item: Some("item".to_string()),
        time: Some("timestamp".to_string()),
        skipped,
        notes: Vec::new(),
    };
    dataset.validate()?;
    Ok(Reviews { dataset, texts })
}

fn parse_review(o: &Map<String, Value>) -> Result<Review, String> {
    let string = |key: &str| -> Result<&str, String> {
        match o.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(Value::String(_)) => Err(format!("`{key}` is empty")),
            Some(_) => Err(format!("`{key}` is not a string")),
            None => Err(format!("no `{key}`")),
        }
    };
    let user = string("reviewerID")?;
    let item = string("asin")?;
    let stars = match o.get("overall") {
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|&x| is_real(x))
            .ok_or_else(|| "`overall` is not a finite number within ±3.4e38".to_string())?,
        Some(_) => return Err("`overall` is not a number".to_string()),
        None => return Err("no `overall`".to_string()),
    };
    let time = match o.get("unixReviewTime") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| "`unixReviewTime` is not an integer".to_string())?,
        Some(_) => return Err("`unixReviewTime` is not a number".to_string()),
    };
    let optional = |key: &str| match o.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    };
    let text = match (optional("summary"), optional("reviewText")) {
        (Some(s), Some(t)) => format!("{s} {t}"),
        (Some(x), None) | (None, Some(x)) => x.to_string(),
        (None, None) => String::new(),
    };
    Ok(Review {
        user: user.to_string(),
        user_name: optional("reviewerName").map(str::to_string),
        item: item.to_string(),
        stars,
        time,
        text,
    })
}
