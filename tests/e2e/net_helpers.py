"""Helpers of the end-to-end tests of company networks: a test certificate authority and the
server certificates it signs (openssl), and a real HTTP proxy on loopback (Debian's tinyproxy)."""

import shutil
import subprocess
from pathlib import Path

from helpers import free_port, stop_process, wait_for

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"


def _openssl(*args, cwd):
    """Runs openssl quietly, failing the test on an error."""
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _readable(*paths):
    """Makes files readable by the cluster's OS user (the directories are already)."""
    for p in paths:
        p.chmod(0o644)


class CertificateAuthority:
    """A certificate authority in `directory` (ca.pem), and server certificates on demand."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self.cert = self.dir / "ca.pem"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                 "-subj", "/CN=qobra_sync test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        _readable(self.cert)

    def server(self, name, alt_names="IP:127.0.0.1,DNS:localhost"):
        """A server certificate signed by this CA for `alt_names`: (cert file, key file)."""
        ext = self.dir / f"{name}.ext"
        ext.write_text(f"subjectAltName={alt_names}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
                 cwd=self.dir)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", ext.name, "-out", f"{name}.pem",
                 cwd=self.dir)
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"

    def self_signed(self, name):
        """A self-signed server certificate for 127.0.0.1: (cert file, key file)."""
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
                 "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
                 cwd=self.dir)
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"


class TinyProxy:
    """A tinyproxy process on 127.0.0.1 allowing CONNECT to `connect_ports` only (none given:
    any port), asking for `credentials` (user, password) when given; its log is kept."""

    def __init__(self, directory, name, connect_ports=(), credentials=None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = self.dir / f"{name}.log"
        self.log.unlink(missing_ok=True)
        lines = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 50",
                 "Allow 127.0.0.1", "LogLevel Info", f"LogFile \"{self.log}\""]
        lines += [f"ConnectPort {p}" for p in connect_ports]
        if credentials:
            lines.append(f"BasicAuth {credentials[0]} {credentials[1]}")
        conf = self.dir / f"{name}.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([TINYPROXY, "-d", "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(lambda: self.log.exists() and "Accepting connections" in self.log.read_text(),
                 what=f"tinyproxy {name} to listen")

    def url(self, credentials=None):
        """The proxy's URL, with `credentials` (user, password) in it when given."""
        auth = f"{credentials[0]}:{credentials[1]}@" if credentials else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def connects(self):
        """The CONNECT requests the proxy logged."""
        return [line for line in self.log.read_text().splitlines() if "Request" in line and "CONNECT" in line]

    def stop(self):
        """Stops the process."""
        stop_process(self.proc)
