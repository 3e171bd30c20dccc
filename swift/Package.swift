// swift-tools-version:5.9
// Hyperswarm for Swift: the uniffi-generated bindings of hyperswarm-rs (HyperswarmUniffi,
// generated into bindings/generated/swift and linked here) and an idiomatic async layer
// on top (Hyperswarm). The Rust library libhyperswarm_uniffi must be on the linker's path:
//   cargo build -p hyperswarm-uniffi
//   swift build -Xlinker -L../target/debug
import PackageDescription

let package = Package(
    name: "Hyperswarm",
    platforms: [.macOS(.v12), .iOS(.v15)],
    products: [
        .library(name: "Hyperswarm", targets: ["Hyperswarm"]),
    ],
    targets: [
        .systemLibrary(name: "HyperswarmUniffiFFI", path: "Sources/HyperswarmUniffiFFI"),
        .target(name: "HyperswarmUniffi", dependencies: ["HyperswarmUniffiFFI"]),
        .target(name: "Hyperswarm", dependencies: ["HyperswarmUniffi"]),
        // The tests as a plain executable (`N passed, N failed`), so they need neither
        // XCTest nor swift-testing: `cargo xtask mobile` runs it in a network namespace.
        .executableTarget(
            name: "hyperswarm-swift-tests",
            dependencies: ["Hyperswarm"],
            path: "Tests/HyperswarmSwiftTests"
        ),
    ]
)
