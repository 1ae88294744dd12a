//! What the prompt needs to know about typed text before it is run.

/// Does `text` leave a bracket or brace open, so that the statement goes on
/// on the next line? Brackets inside comments (`#` to the end of a line)
/// and quoted strings (`"Toy Story (1995)"`, a label at the prompt) do not
/// count. Text that closes more than it opens needs no more: it is an
/// error, and running it says so.
pub fn needs_more(text: &str) -> bool {
    let mut depth: i64 = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                // A comment runs to the end of its line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                // A string runs to its closing quote; `\"` does not close it.
                // An unterminated string is an error of its own, not a
                // reason to wait for more lines.
                let mut escaped = false;
                for c in chars.by_ref() {
                    match c {
                        _ if escaped => escaped = false,
                        '\\' => escaped = true,
                        '"' | '\n' => break,
                        _ => {}
                    }
                }
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth > 0
}

#[cfg(test)]
mod tests {
    use super::needs_more;

    #[test]
    fn complete_statements_need_nothing_more() {
        assert!(!needs_more(""));
        assert!(!needs_more("input u: user"));
        assert!(!needs_more("let R(u, i) = dot(p[u], q[i])"));
        assert!(!needs_more("fit { optimizer: sgd(lr: 0.005), epochs: 3 }"));
        assert!(!needs_more(":train --epochs 3"));
    }

    #[test]
    fn an_open_bracket_or_brace_asks_for_more() {
        assert!(needs_more("fit {"));
        assert!(needs_more("fit { optimizer: sgd(lr: 0.005),"));
        assert!(needs_more("let R(u, i) = dot(p[u],"));
        assert!(needs_more("penalty 0.1 * (sq(p[u])\n + sq(q[i]"));
        assert!(!needs_more("fit {\n  epochs: 3\n}"));
    }

    #[test]
    fn comments_and_strings_do_not_count() {
        assert!(!needs_more("input u: user  # the rater (see below"));
        assert!(needs_more("fit {  # settings }\n"));
        assert!(!needs_more("R(1, \"Toy Story (1995\")"));
        assert!(!needs_more("R(1, \"a \\\" ( b\")"));
        assert!(!needs_more("\"never closed ("));
    }

    #[test]
    fn closing_more_than_was_opened_is_left_to_the_parser() {
        assert!(!needs_more(")"));
        assert!(!needs_more("dot(p[u]))) + ("));
        assert!(!needs_more("}{"));
    }
}
