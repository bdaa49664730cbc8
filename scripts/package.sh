#!/usr/bin/env bash
# Builds qobra_sync's Debian package for each PostgreSQL major named (default: 15 16 17 18), laid
# out as PGDG lays out its extension packages:
#   postgresql-NN-qobra-sync_<version>_amd64.deb   Depends: postgresql-NN
#     /usr/lib/postgresql/NN/lib/qobra_sync.so
#     /usr/share/postgresql/NN/extension/qobra_sync.control, qobra_sync--<version>.sql and the
#       upgrade scripts qobra_sync--<from>--<to>.sql
#     /usr/share/doc/postgresql-NN-qobra-sync/copyright
#   and, after install, a note on shared_preload_libraries and qobra_sync.database_name.
# The library is built against that major's server (scripts/postgres.sh says where each comes
# from), with the release profile unless QS_PACKAGE_PROFILE names another.
# Usage: scripts/package.sh [MAJOR...]   → target/packages/ (or QS_PACKAGE_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${QS_PACKAGE_DIR:-$PWD/target/packages}
PROFILE=${QS_PACKAGE_PROFILE:-release}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MAINTAINER=${QS_PACKAGE_MAINTAINER:-qobra_sync maintainers <qobra_sync@localhost>}
mkdir -p "$OUT"

# The control file of the package for $PG_MAJOR.
control() {
    cat <<EOF
Package: postgresql-$PG_MAJOR-qobra-sync
Version: $VERSION
Architecture: amd64
Maintainer: $MAINTAINER
Depends: postgresql-$PG_MAJOR, libc6 (>= 2.34)
Section: database
Priority: optional
Homepage: https://qobra.co
Description: push PostgreSQL tables to Qobra, for PostgreSQL $PG_MAJOR
 qobra_sync is a PostgreSQL extension that pushes registered tables to Qobra,
 the sales-commission platform, as total snapshots on a schedule, from a
 background worker inside the database.
EOF
}

# What dpkg runs after install: the two settings to add before CREATE EXTENSION.
postinst() {
    cat <<EOF
#!/bin/sh
set -e
if [ "\$1" = configure ]; then
    cat <<'NOTE'
qobra_sync is installed for PostgreSQL $PG_MAJOR. Before CREATE EXTENSION qobra_sync, add to
postgresql.conf (append to shared_preload_libraries, never replace it), then restart:
    shared_preload_libraries = '…, qobra_sync'
    qobra_sync.database_name = 'your_database'
NOTE
fi
EOF
}

# The Debian copyright file: the licence of the whole package.
copyright() {
    cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: qobra_sync
License: PostgreSQL

Files: *
Copyright: the qobra_sync authors
License: PostgreSQL
 Permission to use, copy, modify, and distribute this software and its
 documentation for any purpose, without fee, and without a written agreement is
 hereby granted, provided that the above copyright notice and this paragraph and
 the following two paragraphs appear in all copies.
 .
 IN NO EVENT SHALL THE AUTHORS BE LIABLE TO ANY PARTY FOR DIRECT, INDIRECT,
 SPECIAL, INCIDENTAL, OR CONSEQUENTIAL DAMAGES, INCLUDING LOST PROFITS, ARISING
 OUT OF THE USE OF THIS SOFTWARE AND ITS DOCUMENTATION, EVEN IF THE AUTHORS HAVE
 BEEN ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
 .
 THE AUTHORS SPECIFICALLY DISCLAIM ANY WARRANTIES, INCLUDING, BUT NOT LIMITED
 TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR
 PURPOSE. THE SOFTWARE PROVIDED HEREUNDER IS ON AN "AS IS" BASIS, AND THE
 AUTHORS HAVE NO OBLIGATIONS TO PROVIDE MAINTENANCE, SUPPORT, UPDATES,
 ENHANCEMENTS, OR MODIFICATIONS.
EOF
}

# Builds the package of $PG_MAJOR (scripts/setup.sh sourced for it) into $OUT.
build_package() {
    local stage root built libdir sharedir doc deb
    stage=$(mktemp -d)
    root=$stage/root
    built=$stage/built
    echo "==> building the library for PostgreSQL $PG_MAJOR ($PROFILE profile)"
    cargo pgrx package --profile "$PROFILE" --pg-config "$PG_CONFIG" --out-dir "$built" >"$stage/build.log" 2>&1 ||
        { tail -40 "$stage/build.log"; exit 1; }
    libdir=$("$PG_CONFIG" --pkglibdir)
    sharedir=$("$PG_CONFIG" --sharedir)
    install -D -m 644 "$built$libdir/qobra_sync.so" "$root/usr/lib/postgresql/$PG_MAJOR/lib/qobra_sync.so"
    # Stripped of its debugging symbols, as Debian's packages are (dh_strip).
    strip --strip-unneeded "$root/usr/lib/postgresql/$PG_MAJOR/lib/qobra_sync.so"
    for file in "$built$sharedir"/extension/qobra_sync*; do
        install -D -m 644 "$file" "$root/usr/share/postgresql/$PG_MAJOR/extension/$(basename "$file")"
    done
    doc=$root/usr/share/doc/postgresql-$PG_MAJOR-qobra-sync
    mkdir -p "$doc" "$root/DEBIAN"
    copyright >"$doc/copyright"
    control >"$root/DEBIAN/control"
    postinst >"$root/DEBIAN/postinst"
    chmod 755 "$root/DEBIAN/postinst"
    deb=$OUT/postgresql-$PG_MAJOR-qobra-sync_${VERSION}_amd64.deb
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
    rm -rf "$stage"
    echo "==> $deb"
}

for major in ${*:-15 16 17 18}; do
    (
        export QS_PG_MAJOR=$major
        source scripts/setup.sh
        build_package
    )
done
