//! Progress of long work besides training's epochs: measuring a model over
//! the whole catalogue, one test user at a time on many threads. The library
//! says how far it has got; each front end decides how to show it (a bar on
//! a terminal, nothing in a script).

/// Told how far a long step has got. The threads doing the work share it,
/// so it takes `&self` and is `Sync`.
pub trait StepObserver: Sync {
    /// A step of `total` units (`unit`, e.g. `users`) starts; `what` names
    /// it (`ranking`).
    fn begin(&self, _what: &str, _unit: &str, _total: usize) {}
    /// `units` more units are done.
    fn advance(&self, _units: usize) {}
    /// The step is over, done or failed.
    fn end(&self) {}
}

/// A step observer that shows nothing.
pub struct Unobserved;

impl StepObserver for Unobserved {}
