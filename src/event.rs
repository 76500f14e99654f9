//! event (in progress)
