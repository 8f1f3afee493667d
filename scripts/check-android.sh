#!/usr/bin/env bash
# `cargo check --target aarch64-linux-android -p emrshare-ffi`: compiles the Android-only Rust
# (android_logger, jni, the rustls platform verifier) for the phone's target.
#
# No Android NDK exists on this project's machines. aws-lc-sys's build script compiles aws-lc's
# C sources for the target even under `cargo check`, so it needs some aarch64 C compiler: we
# give it Debian's aarch64 GNU cross compiler (gcc-aarch64-linux-gnu, installed when missing).
# Those objects are built against glibc headers, not bionic, and are never linked: `check`
# produces no .so. So this proves the Rust compiles for Android and aws-lc's C compiles for
# aarch64; it does NOT produce or test an Android library (cargo-ndk with a real NDK does,
# see android-demo/README.md). If the target or the compiler cannot be installed, this says so
# in a loud line and exits 2 (the test command reports that suite as failed, never as passed).
set -uo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-linux-android
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
loud() { echo "!!!!!!!! ANDROID CHECK NOT RUN: $* !!!!!!!!"; exit 2; }

if ! rustup target list --installed | grep -qx "$TARGET"; then
  rustup target add "$TARGET" || loud "rustup cannot install the $TARGET target"
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu; } >/dev/null 2>&1 \
    || loud "cannot install gcc-aarch64-linux-gnu (a C compiler for aws-lc-sys's build script)"
fi
echo "note: aws-lc's C is compiled with aarch64-linux-gnu-gcc as a stand-in for the NDK's clang (checked, never linked)"
# glibc, unlike bionic, hides pthread_rwlock_t under strict -std=c11 unless asked.
CC_aarch64_linux_android=aarch64-linux-gnu-gcc \
AR_aarch64_linux_android=aarch64-linux-gnu-ar \
CFLAGS_aarch64_linux_android=-D_GNU_SOURCE \
  cargo check --locked --target "$TARGET" -p emrshare-ffi
