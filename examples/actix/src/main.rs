//! ```text
//! cargo run -p example-actix
//! ```
//!
//! An actix-web app whose `/v1/reports` route needs an API key with the `reports:read` scope.
//! On start it opens (or creates) the SQLite file `keyward-example-actix.db`, creates a
//! workspace (once) and a key, and prints the key once together with a `curl` line to try it.

use std::sync::Arc;

use actix_web::{App, HttpServer, Responder, web};
use keyward_actix::{KeywardMiddleware, VerifiedApiKey};
use keyward_core::{Actor, KeyService, NewKey, NewWorkspace, ScopeSet, Verifier};
use keyward_store::SqliteStore;

const ADDR: (&str, u16) = ("127.0.0.1", 8080);

async fn reports(key: VerifiedApiKey) -> impl Responder {
    format!("weekly report for workspace {}, read with key {}\n", key.workspace_id(), key.key_id())
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let store = SqliteStore::open("keyward-example-actix.db").await?;
    let service = KeyService::new(Arc::new(store));

    // Reuse the workspace of an earlier run; each run issues a new key.
    let workspace = match service.list_workspaces().await?.into_iter().find(|w| w.name == "Example") {
        Some(ws) => ws,
        None => service.create_workspace(NewWorkspace::live("Example"), &Actor::system()).await?,
    };
    let scopes: ScopeSet = "reports:read".parse()?;
    let created = service
        .create_key(NewKey::new(workspace.id, "example-actix").with_scopes(scopes), &Actor::system())
        .await?;
    println!("Your API key (it will not be shown again; keyward stores only its hash):");
    println!();
    println!("    {}", created.secret.expose_secret());
    println!();
    println!("Try it:");
    println!();
    println!(
        "    curl -i -H 'Authorization: Bearer {}' http://{}:{}/v1/reports",
        created.secret.expose_secret(),
        ADDR.0,
        ADDR.1
    );
    println!();

    let keyward =
        KeywardMiddleware::new(Verifier::builder(&service).build()).require_scope("reports:read".parse()?);
    HttpServer::new(move || {
        App::new().service(web::scope("/v1").wrap(keyward.clone()).route("/reports", web::get().to(reports)))
    })
    .bind(ADDR)?
    .run()
    .await?;
    Ok(())
}
