//! Tern's events: every state change of a message — received, rejected,
//! accepted, delivered, deferred, bounced, expired, suppressed, and the
//! engagement events to come — as one value type with a sortable id.
//!
//! The store writes an [`Event`] in the same transaction as the change it
//! records, so an acknowledged change always has its event; this crate holds
//! what every reader shares (the HTTP API, webhooks, the dashboard, the
//! reputation engine): the type, its JSON shape, its ids, and the Standard
//! Webhooks signature that proves a webhook POST came from this server.

pub mod event;
pub mod id;
pub mod signature;

pub use event::{BounceType, Event, EventType, RecipientState};
