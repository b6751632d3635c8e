#!/usr/bin/env bash
# RUSTC_WRAPPER for the fuzz build (run.sh sets it): compiles the cryptography crates
# without AFL's coverage instrumentation. Their field arithmetic is not what is fuzzed, its
# edges are noise to AFL, and instrumented it made the engine target spend two thirds of
# its time in the coverage hooks. Every other crate is compiled as cargo-afl asks.
rustc="$1"
shift
crate=""
prev=""
for a in "$@"; do
    [ "$prev" = "--crate-name" ] && crate="$a"
    prev="$a"
done
case "$crate" in
aead | blake2 | chacha20 | chacha20poly1305 | cipher | curve25519_dalek | digest | hmac | \
    poly1305 | ring | sha2 | subtle | universal_hash | x25519_dalek | zeroize) ;;
*) exec "$rustc" "$@" ;;
esac
args=()
after_c=0
for a in "$@"; do
    if [ $after_c = 1 ]; then
        after_c=0
        case "$a" in
        passes=sancov* | llvm-args=-sanitizer-coverage*) continue ;;
        *) args+=(-C "$a") ;;
        esac
    elif [ "$a" = "-C" ]; then
        after_c=1
    else
        args+=("$a")
    fi
done
exec "$rustc" "${args[@]}"
