//! tern-pop3
