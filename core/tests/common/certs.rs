//! Throwaway certificates for the HTTPS tests: a certificate authority, server certificates it
//! signs (valid, for other names, expired), self-signed ones, and CA files on disk.

use fake_qobra::Tls;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::PathBuf;

/// A certificate authority of its own.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// How a server certificate is made.
pub struct Leaf<'a> {
    /// Its subject alternative names (DNS names or IP addresses).
    pub names: &'a [&'a str],
    /// Whether it expired long ago.
    pub expired: bool,
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA's certificate in a PEM file of its own (for `ca_file`).
    pub fn file(&self) -> PathBuf {
        pem_file(&self.pem())
    }

    /// A server certificate signed by this CA, with its key, as the fake serves it.
    pub fn server(&self, leaf: Leaf) -> Tls {
        let (params, key) = leaf_params(&leaf);
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Tls::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).expect("tls")
    }
}

/// The parameters and key of a server certificate.
fn leaf_params(leaf: &Leaf) -> (CertificateParams, KeyPair) {
    let names: Vec<String> = leaf.names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, leaf.names[0]);
    if leaf.expired {
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
    }
    (params, KeyPair::generate().expect("key"))
}

/// A self-signed server certificate for `names`, with its key.
pub fn self_signed(names: &[&str]) -> Tls {
    let (params, key) = leaf_params(&Leaf {
        names,
        expired: false,
    });
    let cert = params.self_signed(&key).expect("self-sign");
    Tls::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).expect("tls")
}

/// `content` in a fresh file; returns its path.
pub fn pem_file(content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "qs-certs-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("ca.pem");
    std::fs::write(&path, content).expect("write");
    path
}
