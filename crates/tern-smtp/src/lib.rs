//! tern-smtp
