//! The Tern program: wiring of the services (`serve`), shared by the CLI in
//! `main.rs` and by the integration tests, which start real servers on
//! ephemeral ports.

pub mod dns_check;
pub mod health_cmd;
pub mod https;
pub mod reports;
pub mod server;
pub mod verify_cmd;
