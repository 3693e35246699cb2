//! ```text
//! cargo run -p example-tonic
//! ```
//!
//! A tonic gRPC server (the standard `grpc.health.v1.Health` service) behind keyward's tower
//! layer. On start it opens (or creates) the SQLite file `keyward-example-tonic.db` in the
//! current directory, creates a workspace and a key and prints the key once. Then an in-process
//! tonic health client makes one call with the key and one without, prints both results (the
//! second is `UNAUTHENTICATED` with keyward's catalog message), and the server keeps serving.

use std::sync::Arc;

use keyward_core::{Actor, KeyService, NewKey, NewWorkspace, Verifier};
use keyward_store::SqliteStore;
use keyward_tower::KeywardLayer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const ADDR: &str = "127.0.0.1:50051";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let store = SqliteStore::open("keyward-example-tonic.db").await?;
    let service = KeyService::new(Arc::new(store));
    let workspace = service.create_workspace(NewWorkspace::live("Example"), &Actor::system()).await?;
    let created = service.create_key(NewKey::new(workspace.id, "example-tonic"), &Actor::system()).await?;
    let key = created.secret.expose_secret();
    println!("Your API key (it is shown once, now: keyward stores only its hash):");
    println!();
    println!("    {key}");
    println!();

    let listener = TcpListener::bind(ADDR).await?;
    let addr = listener.local_addr()?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    let layer = KeywardLayer::new(Verifier::builder(&service).build());
    let server = tokio::spawn(
        Server::builder().layer(layer).add_service(health).serve_with_incoming(TcpIncoming::from(listener)),
    );
    println!("gRPC health service listening on http://{addr}; an in-process tonic client calls it now:");
    println!();

    let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
    let mut client = HealthClient::new(channel);

    let mut with_key = tonic::Request::new(HealthCheckRequest { service: String::new() });
    with_key.metadata_mut().insert("authorization", format!("Bearer {key}").parse()?);
    match client.check(with_key).await {
        Ok(reply) => {
            let status = ServingStatus::try_from(reply.into_inner().status).unwrap_or(ServingStatus::Unknown);
            println!("    with the key:    {}", status.as_str_name());
        }
        Err(status) => println!("    with the key:    {:?}: {}", status.code(), status.message()),
    }

    let without_key = tonic::Request::new(HealthCheckRequest { service: String::new() });
    match client.check(without_key).await {
        Ok(reply) => println!("    without a key:   unexpectedly served ({})", reply.into_inner().status),
        Err(status) => println!("    without a key:   {:?}: {}", status.code(), status.message()),
    }
    println!();
    println!("still serving on http://{addr} (Ctrl-C to stop)");

    server.await??;
    Ok(())
}
