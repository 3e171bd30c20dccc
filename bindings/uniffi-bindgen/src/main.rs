//! `uniffi-bindgen generate <libhyperswarm_uniffi.so> --language kotlin|swift ...`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
