//! Splits: which rows of a [`Dataset`](crate::data::Dataset) train and which test.

/// Row numbers of one dataset: disjoint, each list in increasing order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}
