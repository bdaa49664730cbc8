//! The client never takes a proxy from the environment: with `HTTPS_PROXY`, `HTTP_PROXY` and
//! `ALL_PROXY` pointing at a proxy, requests still go straight to the destination. A test binary
//! of its own, since it changes the process's environment.

mod common;

use common::certs::{Ca, Leaf};
use common::proxy::{Mode, Proxy};
use common::{client, config, never, records, Fake, TABLE};
use qobra_sync_core::client::QobraClient;

#[test]
fn proxy_variables_of_the_environment_are_ignored() {
    let fake = Fake::start();
    let proxy = Proxy::start(Mode::Refuse("403 Forbidden"), None);
    for name in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        std::env::set_var(name, proxy.url(None));
    }
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");
    let body = bytes::Bytes::from(serde_json::to_vec(&records(2)).unwrap());
    client(&fake.url())
        .post_records(TABLE, true, 0, body.clone(), &never)
        .expect("straight to the fake");
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());
    assert_eq!(fake.requests().len(), 1);
    // The configured proxy, and only it, is used (for an https destination: a plain http one
    // is refused with a proxy).
    let ca = Ca::new("qobra_sync test CA");
    let tls_fake = Fake::start_tls(ca.server(Leaf {
        names: &["localhost", "127.0.0.1"],
        expired: false,
    }));
    let other = Proxy::start(Mode::Pass, None);
    let mut cfg = config(&tls_fake.localhost_url());
    cfg.ca_file = Some(ca.file());
    cfg.https_proxy = Some(other.url(None));
    QobraClient::new(&cfg)
        .unwrap()
        .post_records(TABLE, true, 0, body, &never)
        .unwrap();
    assert_eq!(other.seen().len(), 1);
    assert!(proxy.seen().is_empty());
}
