//! Integration tests: real Tern servers on ephemeral loopback ports, real
//! sockets, real TLS, real SQLite files.

mod api;
mod cli;
mod common;
mod deep_nesting;
mod delivery;
mod dns_check;
mod durability;
mod feedback;
mod hostile_clients;
mod imap;
mod inbound_auth;
mod nodes;
mod pop3;
mod smtp;
mod smtp_hostile;
mod spam;
mod submission;
mod verify;
mod web;
