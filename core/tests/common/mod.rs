//! Reading the JS-generated vectors (`tests/vectors/vectors.json`), shared by the vector tests.

#![allow(dead_code)] // each test binary uses its own subset

use serde_json::Value;

/// Every vector in the file.
pub fn vectors() -> Vec<Value> {
    let doc: Value = serde_json::from_str(include_str!("../vectors/vectors.json")).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

/// The vector called `name`; panics if the file lacks it.
pub fn vector(name: &str) -> Value {
    vectors()
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("vector {name} missing"))
}

/// A hex string field as bytes.
pub fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

/// A hex string field as a fixed-size array.
pub fn arr<const N: usize>(v: &Value) -> [u8; N] {
    bytes(v).try_into().expect("length")
}
