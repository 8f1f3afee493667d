// swift-tools-version:5.9
// The emrshare SDK for iOS: the XCFramework of the Rust library (built on macOS by
// scripts/build-xcframework.sh), the generated Swift bindings (EmrshareSDK), and the demo
// app's logic in plain Swift types (EmrshareDemoLogic), with XCTest tests of both.
import PackageDescription

let package = Package(
    name: "EmrshareSDK",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "EmrshareSDK", targets: ["EmrshareSDK"]),
        .library(name: "EmrshareDemoLogic", targets: ["EmrshareDemoLogic"]),
    ],
    targets: [
        // libemrshare_ffi.a for iOS devices, the iOS simulator and macOS, with the C header
        // and module map of the FFI (EmrshareFFIFFI) uniffi generates.
        .binaryTarget(name: "EmrshareFFIFFI", path: "build/EmrshareFFI.xcframework"),
        // EmrshareFFI.swift, generated into this folder by scripts/build-xcframework.sh.
        .target(
            name: "EmrshareSDK",
            dependencies: ["EmrshareFFIFFI"],
            path: "Sources/EmrshareSDK",
            linkerSettings: [.linkedFramework("Security"), .linkedFramework("SystemConfiguration")]
        ),
        .target(name: "EmrshareDemoLogic", dependencies: ["EmrshareSDK"], path: "Sources/EmrshareDemoLogic"),
        .testTarget(
            name: "EmrshareSDKTests",
            dependencies: ["EmrshareSDK", "EmrshareDemoLogic"],
            path: "Tests/EmrshareSDKTests"
        ),
    ]
)
