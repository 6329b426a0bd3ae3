#!/usr/bin/env bash
# Builds the envid jar: the io.envid classes plus the native library for
# this platform, with a sources jar and a javadoc jar beside it. Needs only a
# JDK (javac, jar, javadoc), and the library built first:
#
#   cargo build --release -p envid-ffi
#   bash java/build.sh            # prints target/java/envid-<version>.jar
#
# Options:
#   --lib FILE       the native library to bundle
#                    (default: $CARGO_TARGET_DIR/release/libenvid_ffi.so, target/ when unset)
#   --out DIR        where the jars go (default: $CARGO_TARGET_DIR/java)
#   --platform P     the META-INF/native/<P>/ directory (default: this machine's
#                    <os>-<arch>, named as io.envid.NativeLoader names it)
#   --no-native      a jar without any native library (then the library must
#                    come from -Denvid.library or java.library.path)
#
# The version is crates/envid-ffi/Cargo.toml's; java/pom.xml must say the same.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
# Cargo reads a relative CARGO_TARGET_DIR against the working directory; so do we.
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac

die() {
  echo "java/build.sh: $*" >&2
  exit 1
}

# This machine's <os>-<arch>, as NativeLoader.platform() computes it from os.name/os.arch.
platform_of_host() {
  local os arch
  case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=macos ;;
    MINGW* | MSYS* | CYGWIN*) os=windows ;;
    *) os="$(uname -s | tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9')" ;;
  esac
  case "$(uname -m)" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) arch="$(uname -m | tr '[:upper:]' '[:lower:]')" ;;
  esac
  echo "$os-$arch"
}

libname() {
  case "$(uname -s)" in
    Darwin) echo libenvid_ffi.dylib ;;
    MINGW* | MSYS* | CYGWIN*) echo envid_ffi.dll ;;
    *) echo libenvid_ffi.so ;;
  esac
}

lib="$target/release/$(libname)"
out="$target/java"
platform="$(platform_of_host)"
native=1
while (($#)); do
  case "$1" in
    --lib) lib="${2:?--lib needs a file}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --platform) platform="${2:?--platform needs <os>-<arch>}"; shift 2 ;;
    --no-native) native=0; shift ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

for tool in javac jar javadoc; do
  command -v "$tool" >/dev/null || die "$tool not found: install a JDK (17 or newer)"
done
if ((native)) && [[ ! -f "$lib" ]]; then
  die "native library $lib not found; build it first: cargo build --release -p envid-ffi (or pass --lib FILE)"
fi

version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/crates/envid-ffi/Cargo.toml" | head -1)"
if [[ -z "$version" ]]; then
  # version.workspace = true: the root manifest's [workspace.package] version.
  version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
fi
[[ -n "$version" ]] || die "no version found in crates/envid-ffi/Cargo.toml or Cargo.toml"
pom_version="$(sed -n '/<artifactId>envid<\/artifactId>/,/<\/version>/s/.*<version>\(.*\)<\/version>.*/\1/p' "$here/pom.xml" | head -1)"
[[ "$pom_version" == "$version" ]] ||
  die "java/pom.xml says version ${pom_version:-(none)}, crates/envid-ffi/Cargo.toml says $version: make them agree"

mkdir -p "$out"
work="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/classes/META-INF/maven/io.envid/envid" "$work/javadoc"

sources=("$here"/src/io/envid/*.java)
javac --release 17 -encoding UTF-8 -d "$work/classes" "${sources[@]}"

if ((native)); then
  mkdir -p "$work/classes/META-INF/native/$platform"
  cp "$lib" "$work/classes/META-INF/native/$platform/$(libname)"
fi
cp "$here/pom.xml" "$work/classes/META-INF/maven/io.envid/envid/pom.xml"
printf 'groupId=io.envid\nartifactId=envid\nversion=%s\n' "$version" \
  >"$work/classes/META-INF/maven/io.envid/envid/pom.properties"

cat >"$work/MANIFEST.MF" <<EOF
Automatic-Module-Name: io.envid
Implementation-Title: envid
Implementation-Version: $version
Implementation-Vendor-Id: io.envid
EOF

jarfile="$out/envid-$version.jar"
jar --create --file "$work/envid.jar" --manifest "$work/MANIFEST.MF" -C "$work/classes" .
jar --create --file "$work/sources.jar" -C "$here/src" io
javadoc -quiet -encoding UTF-8 --release 17 -Xdoclint:all,-missing -d "$work/javadoc" \
  -sourcepath "$here/src" io.envid >"$work/javadoc.log" 2>&1 || {
  cat "$work/javadoc.log" >&2
  die "javadoc failed"
}
jar --create --file "$work/javadoc.jar" -C "$work/javadoc" .

# Moved into place last, so a failed build never leaves a half-made jar under the final name.
mv -f "$work/sources.jar" "$out/envid-$version-sources.jar"
mv -f "$work/javadoc.jar" "$out/envid-$version-javadoc.jar"
mv -f "$work/envid.jar" "$jarfile"
cp "$here/pom.xml" "$out/envid-$version.pom"
echo "$jarfile"
