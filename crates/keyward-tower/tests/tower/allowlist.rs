//! IP allowlists in the layer: the peer from `ConnectInfo`, IPv4 and IPv6, `X-Forwarded-For`
//! only through trusted proxies, and an unknown address refused by keys with a list.

use std::net::SocketAddr;

use keyward_core::{IpNet, NewKey};
use keyward_tower::KeywardLayer;
use tokio::net::TcpListener;

use crate::support::{Auth, Client, Gate, Harness, app, serve_app};

fn nets(list: &[&str]) -> Vec<IpNet> {
    keyward_core::parse_ip_allowlist(list).expect("valid list")
}

/// Serves the test app on `bind` with the peer address in `ConnectInfo`.
async fn serve_with_peer(bind: &str, layer: KeywardLayer) -> Client {
    let listener = TcpListener::bind(bind).await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let router = app(layer, Gate::default());
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .expect("serve")
    });
    Client::new(format!("http://{addr}"))
}

#[tokio::test]
async fn the_peer_address_decides_ipv4_and_ipv6() {
    let h = Harness::new().await;
    let inside = h.key(|k| NewKey { ip_allowlist: nets(&["127.0.0.0/8", "::1"]), ..k }).await;
    let outside = h.key(|k| NewKey { ip_allowlist: nets(&["203.0.113.0/24", "2001:db8::/32"]), ..k }).await;
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let client = serve_with_peer(bind, KeywardLayer::new(h.verifier())).await;
        client.get("/whoami", inside.secret.expose_secret()).await.ok();
        let peer = if bind.starts_with('[') { "::1" } else { "127.0.0.1" };
        let reply = client.get("/whoami", outside.secret.expose_secret()).await;
        assert_eq!(reply.error(403, "IP_NOT_ALLOWED")["address"], peer);
        // Not trusted by default: the header changes nothing.
        let spoofed = client
            .send(
                "/whoami",
                Auth::Bearer(outside.secret.expose_secret()),
                &[("x-forwarded-for", "203.0.113.9")],
            )
            .await;
        assert_eq!(spoofed.error(403, "IP_NOT_ALLOWED")["address"], peer);
    }
}

#[tokio::test]
async fn forwarded_for_counts_through_trusted_proxies() {
    let h = Harness::new().await;
    let key = h.key(|k| NewKey { ip_allowlist: nets(&["203.0.113.0/24"]), ..k }).await;
    let layer = KeywardLayer::new(h.verifier()).trusted_proxies(nets(&["127.0.0.1"]));
    let client = serve_with_peer("127.0.0.1:0", layer).await;
    let plain = key.secret.expose_secret();
    client.send("/whoami", Auth::Bearer(plain), &[("x-forwarded-for", "203.0.113.9")]).await.ok();
    client.send("/whoami", Auth::Bearer(plain), &[("forwarded", "for=203.0.113.10;proto=https")]).await.ok();
    let reply = client
        .send("/whoami", Auth::Bearer(plain), &[("x-forwarded-for", "203.0.113.9, 198.51.100.4")])
        .await;
    assert_eq!(reply.error(403, "IP_NOT_ALLOWED")["address"], "198.51.100.4");
}

#[tokio::test]
async fn without_a_peer_address_keys_with_a_list_are_refused() {
    let h = Harness::new().await;
    let listed = h.key(|k| NewKey { ip_allowlist: nets(&["127.0.0.1"]), ..k }).await;
    let open = h.key(|k| k).await;
    // `axum::serve` without `into_make_service_with_connect_info`: no ConnectInfo.
    let (client, _) = serve_app(KeywardLayer::new(h.verifier())).await;
    let reply = client.get("/whoami", listed.secret.expose_secret()).await;
    assert!(reply.error(403, "IP_NOT_ALLOWED").get("address").is_none());
    client.get("/whoami", open.secret.expose_secret()).await.ok();
}
