//! The `:commands`: their names, usage and help, and how a mistyped one is
//! answered.

/// One command as `:help` shows it.
pub struct CommandDoc {
    pub name: &'static str,
    pub usage: &'static str,
    pub about: &'static str,
}

macro_rules! commands {
    ($($name:literal, $usage:literal, $about:literal;)*) => {
        pub const COMMANDS: &[CommandDoc] = &[$(CommandDoc {
            name: $name,
            usage: $usage,
            about: $about,
        }),*];
    };
}

commands! {
    ":help", ":help [NAME]", "the commands; a command's flags; a stdlib function";
    ":model", ":model", "print the current source";
    ":load", ":load FILE.rec", "replace the model with a file's";
    ":reload", ":reload", "read the loaded file again (after an edit elsewhere)";
    ":edit", ":edit", "edit the source in $EDITOR; checked and kept on exit";
    ":reset", ":reset", "start again from an empty model (data and runs stay)";
    ":write", ":write FILE.rec", "save the source";
    ":ir", ":ir [--grad]", "the graph the model compiles to (with --grad, its gradients)";
    ":data", ":data SPEC [data flags]", "load data once and keep it: builtin, ml-100k:DIR, csv:FILE, ...";
    ":split", ":split SPEC", "how to split it: random[:F], user[:F], given[:uN], kfold[:K], last[:N], none";
    ":train", ":train [fit flags]", "train and measure on the test rows (Ctrl-C keeps the last finished epoch)";
    ":eval", ":eval [-k N]", "measure the trained model on the test rows again";
    ":cv", ":cv [fit flags]", "cross-validate: train and test on every fold, then mean ± std";
    ":predict", ":predict USER ITEM [ITEM...]", "score pairs with the trained model (raw ids or labels)";
    ":recommend", ":recommend USER [-k N] [--include-seen]", "the best items for a user, leaving out those they have";
    ":similar", ":similar ITEM [-k N] [--table T] [--domain D]", "the nearest neighbours of an item in the trained embedding";
    ":save", ":save FILE.recm", "write the trained model";
    ":open", ":open FILE.recm", "open a trained model: its source, data and parameters";
    ":export", ":export DIR [--format csv|npy]", "write the trained tables as files";
    ":runs", ":runs", "every run of the session: model, source hash, settings, metrics, time";
    ":compare", ":compare A B", "two runs side by side";
    ":diff", ":diff A B", "what changed in the source from run A to run B";
    ":quit", ":quit", "leave (Ctrl-D too)";
}

/// The command named `name` (with or without its colon).
pub fn find(name: &str) -> Option<&'static CommandDoc> {
    let bare = name.trim_start_matches(':');
    COMMANDS.iter().find(|c| &c.name[1..] == bare)
}

/// The answer to an unknown command: the closest one, when one is close.
pub fn unknown(name: &str) -> String {
    let bare = name.trim_start_matches(':');
    // The start of a command's name is what people type when they forget the rest.
    let started: Vec<&CommandDoc> = COMMANDS
        .iter()
        .filter(|c| !bare.is_empty() && c.name[1..].starts_with(bare))
        .collect();
    if let [only] = started.as_slice() {
        return format!("unknown command `{name}`; did you mean `{}`?", only.name);
    }
    let best = COMMANDS
        .iter()
        .map(|c| (strsim::damerau_levenshtein(bare, &c.name[1..]), c.name))
        .min();
    match best {
        Some((distance, candidate)) if distance <= 2.max(bare.len() / 3) => {
            format!("unknown command `{name}`; did you mean `{candidate}`?")
        }
        _ => format!("unknown command `{name}`; :help lists the commands"),
    }
}

/// `:help`: every command, one line each.
pub fn overview() -> String {
    let width = COMMANDS.iter().map(|c| c.usage.len()).max().unwrap_or(0);
    let mut out = String::from(
        "Type statements to build the model (`input`, `param`, `let`, `loss`, `fit`, ...),\n\
         expressions to evaluate them (`R(1, 50)`, `sigmoid(3)`), or a command:\n",
    );
    for c in COMMANDS {
        out.push_str(&format!("  {:width$}  {}\n", c.usage, c.about));
    }
    out.push_str(":help NAME shows a command's flags or a stdlib function.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_near_miss_gets_a_suggestion_and_nonsense_does_not() {
        assert_eq!(
            unknown(":trian"),
            "unknown command `:trian`; did you mean `:train`?"
        );
        assert_eq!(
            unknown(":recomend"),
            "unknown command `:recomend`; did you mean `:recommend`?"
        );
        assert_eq!(
            unknown(":xyzzyplugh"),
            "unknown command `:xyzzyplugh`; :help lists the commands"
        );
    }

    #[test]
    fn commands_are_found_with_or_without_the_colon() {
        assert_eq!(find("train").map(|c| c.name), Some(":train"));
        assert_eq!(find(":runs").map(|c| c.name), Some(":runs"));
        assert!(find(":nope").is_none());
        assert_eq!(
            unknown(":sim"),
            "unknown command `:sim`; did you mean `:similar`?"
        );
    }
}
