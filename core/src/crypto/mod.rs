//! Cryptographic building blocks shared by the protocol layers.

pub mod hash;
