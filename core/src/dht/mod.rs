//! HyperDHT.
pub mod connect_messages;
