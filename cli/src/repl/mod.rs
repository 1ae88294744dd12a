//! `recc repl`: the interactive prompt.

// The prompt loop is what uses these; until it does, they are tested alone.
#[allow(dead_code)]
pub mod editor;
#[allow(dead_code)]
pub mod expr;
