#!/bin/sh
# Minimize fuzz corpora to a seed corpus: fuzz/cmin.sh [TARGET...]
# (no target: all of fuzz/corpus/*). Run from anywhere in the checkout;
# needs nightly and cargo-fuzz (see fuzz/README.md).
#
# For each target: `cargo fuzz cmin` with libFuzzer's set-cover merge on
# edges (-set_cover_merge=1 -use_counters=0) keeps a small set of files that
# covers every edge the whole corpus covers. Hand-written seeds, the files
# NOT named by a 40-hex SHA-1 (example.toml, bad-syntax.toml, s1.json, ...),
# are kept whatever cmin decides, under their own names; a hash-named copy
# cmin made of one is removed.
set -eu
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- $(ls fuzz/corpus)
for t in "$@"; do
    dir=fuzz/corpus/$t
    [ -d "$dir" ] || { echo "no corpus $dir" >&2; exit 1; }
    seeds=$(mktemp -d)
    ls "$dir" | grep -Ev '^[0-9a-f]{40}$' | while read -r f; do cp -p "$dir/$f" "$seeds/"; done
    before=$(ls "$dir" | wc -l)
    cargo +nightly fuzz cmin "$t" -- -set_cover_merge=1 -use_counters=0
    for s in "$seeds"/*; do
        [ -e "$s" ] || continue
        rm -f "$dir/$(sha1sum < "$s" | cut -c1-40)"
        cp -p "$s" "$dir/"
    done
    rm -r "$seeds"
    echo "$t: $before -> $(ls "$dir" | wc -l) files"
done
