//! Cryptographic building blocks shared by the protocol layers.

pub mod hash;
pub mod noise;
pub mod secretstream;
