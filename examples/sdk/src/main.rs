//! ```text
//! KEYWARD_URL=http://127.0.0.1:8080 KEYWARD_API_KEY=kw_live_... cargo run -p example-sdk
//! ```
//!
//! Drives a running `keyward serve` through the Rust SDK: creates a key (its value is printed
//! this once), lists the workspace's keys (masked), rotates the new key, revokes the successor,
//! and shows that a revoked key is refused with the typed `KEY_REVOKED` error. The API key in
//! `KEYWARD_API_KEY` needs `keys:read` and `keys:write` (the root key `keyward serve` prints on
//! first start will do).

use anyhow::{Context, bail};
use keyward_client::{CatalogErrorExt, ErrorCode, KeywardClient, types};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("KEYWARD_URL").context("set KEYWARD_URL, e.g. http://127.0.0.1:8080")?;
    let api_key = std::env::var("KEYWARD_API_KEY")
        .context("set KEYWARD_API_KEY to a key with keys:read and keys:write")?;
    let client = KeywardClient::new(&url, &api_key)?;

    let me = client.status().send().await.context("checking the API key")?;
    println!(
        "Authenticated as key {:?} in workspace {:?} ({}).",
        me.key_name, me.workspace_name, me.workspace_id
    );

    let request =
        types::CreateKeyRequest::builder().name("example-sdk").scopes(vec!["keys:read".to_owned()]).metadata(
            [("created-by".to_owned(), "example-sdk".to_owned())]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    let created = client.create_key().body(request).send().await?.into_inner();
    println!("Created key {} ({}).", created.key.id, created.key.name);
    println!("  Its value, shown this once: {}", created.secret.expose_secret());

    let page = client.list_keys().limit(10u32).send().await?.into_inner();
    println!("The workspace's newest keys:");
    for key in &page.data {
        println!("  {}  {:<24} {:?}", key.masked_key, key.name, key.status);
    }
    if page.next_cursor.is_some() {
        println!("  (more on the next page)");
    }

    let rotated = client
        .rotate_key()
        .id(created.key.id)
        .body(types::RotateKeyRequest { grace_seconds: None })
        .send()
        .await?
        .into_inner();
    println!(
        "Rotated it: successor {} ({}); the old value stopped working at once.",
        rotated.key.id, rotated.key.masked_key
    );

    let revoked = client.revoke_key().id(rotated.key.id).send().await?;
    println!("Revoked the successor {}: status {:?}.", revoked.id, revoked.status);

    let with_revoked = KeywardClient::new(&url, rotated.secret.expose_secret())?;
    match with_revoked.status().send().await {
        Err(e) if e.code() == Some(ErrorCode::KeyRevoked) => {
            println!(
                "Calling with the revoked key: {} {} (request {}).",
                e.code().map(|c| c.to_string()).unwrap_or_default(),
                e.message().unwrap_or_default(),
                e.request_id().unwrap_or("-")
            );
        }
        Err(e) => bail!("expected KEY_REVOKED, got {e}"),
        Ok(_) => bail!("the revoked key still works"),
    }
    Ok(())
}
