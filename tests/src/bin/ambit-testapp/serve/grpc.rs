//! The gRPC server: `ambit.testapp.v1.Echo`, answering with the server's name.
//!
//! gRPC is HTTP/2 with trailers and long-lived streams: a waypoint that passes plain h2c
//! can still break it (trailers dropped, a stream cut after its first message), so
//! `ServerStream` sends `count` numbered replies for a test to check every one arrived,
//! in order. The name is in the `x-served-by` response metadata and in every reply.

use std::pin::Pin;
use std::sync::Arc;

use ambit_e2e::testapp::SERVED_BY;
use anyhow::{Context, Result};
use futures::Stream;
use tokio::net::TcpListener;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use crate::proto::echo_server::{Echo, EchoServer};
use crate::proto::{EchoReply, EchoRequest};

struct EchoService {
    name: Arc<str>,
    served_by: MetadataValue<Ascii>,
}

impl EchoService {
    fn respond<T>(&self, message: T) -> Response<T> {
        let mut response = Response::new(message);
        response
            .metadata_mut()
            .insert(SERVED_BY, self.served_by.clone());
        response
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Ok(self.respond(EchoReply {
            server: self.name.to_string(),
            message: request.into_inner().message,
            index: 0,
        }))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        let EchoRequest { message, count } = request.into_inner();
        let server = self.name.to_string();
        let replies = (0..count).map(move |index| {
            Ok(EchoReply {
                server: server.clone(),
                message: message.clone(),
                index,
            })
        });
        Ok(self.respond(Box::pin(futures::stream::iter(replies)) as ReplyStream))
    }
}

pub async fn serve(listener: TcpListener, name: Arc<str>) -> Result<()> {
    let served_by = MetadataValue::try_from(&*name)
        .with_context(|| format!("--name {name:?} cannot be sent in {SERVED_BY}"))?;
    Server::builder()
        .add_service(EchoServer::new(EchoService { name, served_by }))
        .serve_with_incoming(TcpIncoming::from(listener))
        .await
        .context("gRPC server")
}
