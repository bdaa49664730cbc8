"""The Debian packages scripts/package.sh builds (run by scripts/test.sh, last): each major's
package has PGDG's name, fields and layout, and nothing else; the 15 one installs with apt-get
into Debian's PostgreSQL 15, where a clean cluster creates the extension and pushes to the fake
Qobra; removing it takes its files away."""

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import preloaded_cluster
from helpers import ROOT, WORK, FakeQobra, wait_for
from test_lifecycle import deals, install

pytestmark = pytest.mark.packages

PACKAGES = Path(os.environ.get("QS_PACKAGE_DIR", ROOT / "target/packages"))
VERSION = re.search(r'^version = "(.+)"', (ROOT / "Cargo.toml").read_text(), re.M)[1]
MAJORS = [15, 16, 17, 18]


def deb(major):
    """The package file of `major`."""
    return PACKAGES / f"postgresql-{major}-qobra-sync_{VERSION}_amd64.deb"


def fields(path):
    """The control fields of a package, as a dict."""
    out = subprocess.run(["dpkg-deb", "-f", str(path)], check=True, capture_output=True, text=True).stdout
    return dict(re.findall(r"^([\w-]+): (.*)$", out, re.M))


def files(path):
    """The regular files a package installs, as absolute paths."""
    out = subprocess.run(["dpkg-deb", "-c", str(path)], check=True, capture_output=True, text=True).stdout
    return sorted(line.split()[-1].lstrip(".") for line in out.splitlines() if line.startswith("-"))


@pytest.mark.parametrize("major", MAJORS)
def test_each_package_has_pgdg_fields_and_layout(major):
    """Name, version, architecture, the dependency on its PostgreSQL, the library and the SQL
    files where PGDG puts them, a copyright file, and a note on preloading after install."""
    f = fields(deb(major))
    assert f["Package"] == f"postgresql-{major}-qobra-sync"
    assert f["Version"] == VERSION
    assert f["Architecture"] == "amd64"
    assert f"postgresql-{major}" in [d.strip().split(" ")[0] for d in f["Depends"].split(",")]
    share = f"/usr/share/postgresql/{major}/extension"
    upgrades = sorted(p.name for p in (ROOT / "sql").glob("qobra_sync--*--*.sql"))
    assert files(deb(major)) == sorted([
        f"/usr/lib/postgresql/{major}/lib/qobra_sync.so",
        f"{share}/qobra_sync.control",
        f"{share}/qobra_sync--{VERSION}.sql",
        *[f"{share}/{u}" for u in upgrades],
        f"/usr/share/doc/postgresql-{major}-qobra-sync/copyright",
    ])
    postinst = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb(major))], check=True, capture_output=True)
    assert b"shared_preload_libraries" in postinst.stdout and b"qobra_sync.database_name" in postinst.stdout


def test_meta_json_describes_this_release():
    """PGXN's META.json names this version and the majors the packages are built for."""
    meta = json.loads((ROOT / "META.json").read_text())
    assert meta["version"] == VERSION == meta["provides"]["qobra_sync"]["version"]
    assert meta["prereqs"]["runtime"]["requires"]["PostgreSQL"] == f">= {MAJORS[0]}.0.0, < {MAJORS[-1] + 1}.0.0"
    assert meta["meta-spec"]["version"] == "1.0.0"


@pytest.fixture
def installed():
    """The 15 package installed with apt-get (as on a server), removed afterwards."""
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "--allow-downgrades", str(deb(15))],
                   check=True, capture_output=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    yield
    if is_installed():
        subprocess.run(["apt-get", "remove", "-y", "-q", "postgresql-15-qobra-sync"], check=True, capture_output=True)


def is_installed():
    """Whether dpkg has the 15 package installed."""
    status = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", "postgresql-15-qobra-sync"],
                            capture_output=True, text=True).stdout
    return status == "install ok installed"


def test_the_15_package_installs_with_apt_and_pushes(installed):
    """dpkg knows the package and its files; the library is the package's; a clean cluster
    preloading it creates the extension and pushes a table to the fake Qobra."""
    status = subprocess.run(["dpkg-query", "-W", "-f", "${Status} ${Version}", "postgresql-15-qobra-sync"],
                            check=True, capture_output=True, text=True).stdout
    assert status == f"install ok installed {VERSION}"
    library = "/usr/lib/postgresql/15/lib/qobra_sync.so"
    owner = subprocess.run(["dpkg", "-S", library], check=True, capture_output=True, text=True).stdout
    assert owner.startswith("postgresql-15-qobra-sync:")
    packaged = subprocess.run(["bash", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -xO ".$2"', "x", str(deb(15)), library],
                              check=True, capture_output=True).stdout
    assert hashlib.sha256(Path(library).read_bytes()).digest() == hashlib.sha256(packaged).digest()

    fake = FakeQobra(WORK, "fake-qobra-packages")
    c = preloaded_cluster("packages-15", major=15)
    try:
        db = install(c, fake)
        key = deals(db, fake, "deals")
        assert db.sync("deals")["status"] == "succeeded"
        # Qobra imports the records once the debounce is over.
        wait_for(lambda: len(fake.records(key)) == 20, 10, what="the 20 records in the fake")
        db.conn.close()
    finally:
        c.stop()
        fake.stop()

    # Removing the package takes its files away.
    subprocess.run(["apt-get", "remove", "-y", "-q", "postgresql-15-qobra-sync"], check=True, capture_output=True)
    assert not is_installed() and not Path(library).exists()
