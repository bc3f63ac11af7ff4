//! The pages, one file each.

pub mod admin;
pub mod domains;
pub mod messages;
pub mod overview;
pub mod queue;
pub mod suppressions;
