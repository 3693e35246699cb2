//! The key travels as a bearer header and never shows in `Debug`; workspaces are selected by
//! header; bad settings are refused when building.

use keyward_client::{ApiKeySecret, BuildError, KeywardClient, RetryPolicy};

use crate::support::{RetryAfter, StandIn};

const KEY: &str = "kw_test_stand-in-key";

#[tokio::test]
async fn the_key_is_a_bearer_header_and_never_in_debug() {
    let s = StandIn::start(0, RetryAfter::None).await;
    let (client, _) = s.client(RetryPolicy::default());
    client.status().send().await.unwrap();
    assert_eq!(s.state.last_auth.lock().unwrap().as_deref(), Some(&*format!("Bearer {KEY}")));
    assert_eq!(s.state.last_workspace.lock().unwrap().as_deref(), None);

    for shown in [format!("{client:?}"), format!("{:?}", client.client()), format!("{client:#?}")] {
        assert!(!shown.contains(KEY) && !shown.contains("stand-in-key"), "{shown}");
    }
    let builder = KeywardClient::builder(&s.base, KEY);
    assert!(!format!("{builder:?}").contains(KEY));
    assert!(!format!("{:?}", ApiKeySecret::new(KEY.to_owned())).contains(KEY));
}

#[tokio::test]
async fn a_custom_reqwest_client_still_sends_the_key_and_workspace() {
    let s = StandIn::start(0, RetryAfter::None).await;
    let client = KeywardClient::builder(&format!("{}/", s.base), KEY)
        .reqwest_client(reqwest::Client::new())
        .build()
        .unwrap();
    let ws = uuid::Uuid::now_v7();
    let scoped = client.in_workspace(ws);
    scoped.status().send().await.unwrap();
    assert_eq!(s.state.last_auth.lock().unwrap().as_deref(), Some(&*format!("Bearer {KEY}")));
    assert_eq!(s.state.last_workspace.lock().unwrap().as_deref(), Some(&*ws.to_string()));
    assert!(!format!("{scoped:?}").contains(KEY));
    client.status().send().await.unwrap();
    assert_eq!(s.state.last_workspace.lock().unwrap().as_deref(), None, "the original is unchanged");
}

#[test]
fn bad_settings_are_refused() {
    assert!(matches!(KeywardClient::new("not a url", KEY), Err(BuildError::InvalidBaseUrl)));
    assert!(matches!(KeywardClient::new("ftp://example.invalid", KEY), Err(BuildError::InvalidBaseUrl)));
    assert!(matches!(KeywardClient::new("http://127.0.0.1:1", "bad\nkey"), Err(BuildError::InvalidApiKey)));
    let client = KeywardClient::new("http://127.0.0.1:1/", KEY).unwrap();
    assert_eq!(client.base_url(), "http://127.0.0.1:1", "no trailing slash, so paths join cleanly");
}
