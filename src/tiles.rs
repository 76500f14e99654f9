//! tiles (in progress)
