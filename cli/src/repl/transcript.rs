//! Transcripts: what the REPL writes when its input is not a terminal, and
//! how a recorded one is replayed (`--check`) and rewritten (`--bless`).
//!
//! A transcript is exactly the text a session printed: every input line
//! after its prompt (`recc> `, or `  ...> ` while a bracket is open), then
//! what it printed. Replaying reads the input lines back from the prompts
//! and runs them again; the output must match, apart from run-to-run noise
//! (times and rates), which [`normalise`] hides.

/// The prompt before a command.
pub const PROMPT: &str = "recc> ";
/// The prompt before each further line of an unfinished statement.
pub const CONTINUATION: &str = "  ...> ";

/// The line a transcript shows for `line` typed after `prompt`: trailing
/// spaces are dropped so that editors keep transcripts as written.
pub fn echo(prompt: &str, line: &str) -> String {
    format!("{prompt}{line}").trim_end().to_string()
}

/// The input lines of a transcript, in order: the text after each prompt.
pub fn inputs(transcript: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for line in transcript.lines() {
        for prompt in [PROMPT, CONTINUATION] {
            let bare = prompt.trim_end();
            if line == bare {
                lines.push(String::new());
                break;
            }
            if let Some(rest) = line.strip_prefix(prompt) {
                lines.push(rest.to_string());
                break;
            }
        }
    }
    lines
}

/// Units after which a number is a measurement of time or speed.
const NOISY_UNITS: &[&str] = &["s", "ms", "µs", "min", "examples/s", "k examples/s"];

/// `text` with every time and rate (`0.4 s`, `12k examples/s`) written as
/// `? s`, `?k examples/s`: what differs from run to run and means nothing
/// for the output being right.
pub fn normalise(text: &str) -> String {
    text.lines()
        .map(normalise_line)
        .collect::<Vec<_>>()
        .join("\n")
}

fn normalise_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        // A number starts at a word boundary: not `u1` or `vec2`.
        let before = rest[..start].chars().last();
        let end = start
            + rest[start..]
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len() - start);
        let after = &rest[end..];
        let unit = NOISY_UNITS.iter().find(|unit| {
            let spaced = after.strip_prefix(' ').unwrap_or(after);
            let bare = if unit.starts_with('k') { after } else { spaced };
            bare.strip_prefix(*unit)
                .is_some_and(|tail| !tail.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
        });
        let boundary = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
        out.push_str(&rest[..start]);
        if boundary && unit.is_some() {
            out.push('?');
        } else {
            out.push_str(&rest[start..end]);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A readable difference between the recorded and the replayed transcript,
/// both normalised, or `None` when they agree.
pub fn difference(expected: &str, actual: &str) -> Option<String> {
    let (expected, actual) = (normalise(expected), normalise(actual));
    if expected.trim_end() == actual.trim_end() {
        return None;
    }
    let diff = similar::TextDiff::from_lines(expected.trim_end(), actual.trim_end());
    let mut out = String::new();
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        out.push_str(&hunk.header().to_string());
        out.push('\n');
        for change in hunk.iter_changes() {
            let sign = match change.tag() {
                similar::ChangeTag::Delete => '-',
                similar::ChangeTag::Insert => '+',
                similar::ChangeTag::Equal => ' ',
            };
            out.push(sign);
            out.push_str(change.value().trim_end_matches('\n'));
            out.push('\n');
        }
    }
    Some(out)
}

/// The transcript to write back on `--bless`: the replayed output, except
/// that lines which agree with the recorded ones once normalised keep their
/// recorded text, so re-blessing does not rewrite every time.
pub fn blessed(expected: &str, actual: &str) -> String {
    let old: Vec<&str> = expected.lines().collect();
    let new: Vec<&str> = actual.lines().collect();
    let old_norm: Vec<String> = old.iter().map(|l| normalise_line(l)).collect();
    let new_norm: Vec<String> = new.iter().map(|l| normalise_line(l)).collect();
    let ops = similar::capture_diff_slices(similar::Algorithm::Myers, &old_norm, &new_norm);
    let mut out = String::new();
    for op in ops {
        match op {
            similar::DiffOp::Equal { old_index, len, .. } => {
                for line in &old[old_index..old_index + len] {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            similar::DiffOp::Insert {
                new_index, new_len, ..
            }
            | similar::DiffOp::Replace {
                new_index, new_len, ..
            } => {
                for line in &new[new_index..new_index + new_len] {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            similar::DiffOp::Delete { .. } => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inputs_are_read_back_from_the_prompts() {
        let t = "recc> input u: user\nrecc> fit {\n  ...>   epochs: 3\n  ...> }\nok\nrecc>\nrecc> :model\n";
        assert_eq!(
            inputs(t),
            ["input u: user", "fit {", "  epochs: 3", "}", "", ":model"]
        );
    }

    #[test]
    fn times_and_rates_are_hidden_and_nothing_else() {
        assert_eq!(
            normalise_line("epoch 1/3  loss 0.8123  test rmse 0.9512  0.4 s"),
            "epoch 1/3  loss 0.8123  test rmse 0.9512  ? s"
        );
        assert_eq!(
            normalise_line("trained in 12.25 s (30k examples/s)"),
            "trained in ? s (?k examples/s)"
        );
        assert_eq!(normalise_line("3 runs; 2 users"), "3 runs; 2 users");
        assert_eq!(normalise_line("u1 2 s3 4 sets"), "u1 2 s3 4 sets");
        assert_eq!(normalise_line("| 1.2 s |"), "| ? s |");
    }

    #[test]
    fn a_difference_reads_as_a_unified_diff() {
        assert!(difference("a\nb 1.0 s\n", "a\nb 2.5 s").is_none());
        let d = difference("a\nrmse 0.91\nc\n", "a\nrmse 0.95\nc\n");
        let d = d.unwrap_or_default();
        assert!(d.contains("-rmse 0.91\n+rmse 0.95\n"), "{d}");
    }

    #[test]
    fn blessing_keeps_recorded_lines_that_only_differ_in_noise() {
        let old = "recc> :train\nepoch 1/1  loss 0.5  0.4 s\nrmse 0.9\n";
        let new = "recc> :train\nepoch 1/1  loss 0.5  0.7 s\nrmse 0.8\n";
        assert_eq!(
            blessed(old, new),
            "recc> :train\nepoch 1/1  loss 0.5  0.4 s\nrmse 0.8\n"
        );
    }
}
