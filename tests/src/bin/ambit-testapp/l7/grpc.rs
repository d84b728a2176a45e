//! `grpc`: one call to `ambit.testapp.v1.Echo`, unary or server-streaming, as a `GrpcReport`.
//!
//! The status code is the outcome a waypoint test asserts on (a denied call is
//! `PermissionDenied`, an unreachable backend `Unavailable`), so a failed call is reported,
//! never an error of the command. Replies received before a failure are kept.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use ambit_e2e::testapp::{GrpcReport, SERVED_BY};
use anyhow::{Context, Result};
use clap::Args;
use http::{header, Uri};
use tokio::time::timeout;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::{HeaderArg, StepTimeout};
use crate::proto::echo_client::EchoClient;
use crate::proto::EchoRequest;

#[derive(Args)]
pub struct GrpcArgs {
    #[arg(long)]
    addr: SocketAddr,
    /// `name: value` request metadata, repeatable; `host` sets the `:authority` instead.
    #[arg(long = "header", value_parser = HeaderArg::parse)]
    headers: Vec<HeaderArg>,
    /// Call `Unary`.
    #[arg(long, required_unless_present = "stream", conflicts_with = "stream")]
    unary: bool,
    /// Call `ServerStream`, asking for N replies.
    #[arg(long, value_name = "N")]
    stream: Option<u32>,
    #[arg(long)]
    message: String,
    #[command(flatten)]
    timeout: StepTimeout,
}

pub fn run(args: GrpcArgs) -> Result<ExitCode> {
    let mut endpoint =
        Endpoint::from_shared(format!("http://{}", args.addr))?.connect_timeout(args.timeout.get());
    let mut metadata = MetadataMap::new();
    for HeaderArg { name, value } in &args.headers {
        if name == header::HOST {
            let origin = Uri::try_from(format!("http://{}", value.to_str()?))
                .with_context(|| format!("--header 'host: {value:?}' is no authority"))?;
            endpoint = endpoint.origin(origin);
        } else {
            let key = MetadataKey::from_bytes(name.as_str().as_bytes())
                .with_context(|| format!("--header {name}: not an ASCII metadata key"))?;
            let value = MetadataValue::try_from(value.as_bytes())
                .with_context(|| format!("--header {name}: {value:?} is not ASCII"))?;
            metadata.append(key, value);
        }
    }
    let request = EchoRequest {
        message: args.message,
        count: args.stream.unwrap_or(0),
    };
    let runtime = super::runtime()?;
    // A lazy channel spawns its connection task when built: inside the runtime.
    let _entered = runtime.enter();
    let call = Call {
        client: EchoClient::new(endpoint.connect_lazy()),
        metadata,
        timeout: args.timeout.get(),
        report: GrpcReport {
            ok: false,
            code: None,
            server: None,
            replies: Vec::new(),
            indices: Vec::new(),
            error: None,
        },
    };
    let report = runtime.block_on(call.run(request, args.stream.is_some()));
    super::print_report(&report)
}

struct Call {
    client: EchoClient<Channel>,
    metadata: MetadataMap,
    timeout: Duration,
    report: GrpcReport,
}

impl Call {
    async fn run(mut self, message: EchoRequest, stream: bool) -> GrpcReport {
        let outcome = if stream {
            self.server_stream(message).await
        } else {
            self.unary(message).await
        };
        match outcome {
            Ok(()) => self.report.ok = true,
            Err(status) => {
                self.served_by(status.metadata());
                self.report.code = Some(format!("{:?}", status.code()));
                self.report.error = Some(status.message().to_string());
            }
        }
        self.report
    }

    fn request(&self, message: EchoRequest) -> tonic::Request<EchoRequest> {
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        request
    }

    async fn unary(&mut self, message: EchoRequest) -> Result<(), Status> {
        let request = self.request(message);
        let response = within(self.timeout, self.client.unary(request)).await??;
        self.served_by(response.metadata());
        let reply = response.into_inner();
        self.report.replies.push(reply.message);
        self.report.indices.push(reply.index);
        Ok(())
    }

    async fn server_stream(&mut self, message: EchoRequest) -> Result<(), Status> {
        let request = self.request(message);
        let response = within(self.timeout, self.client.server_stream(request)).await??;
        self.served_by(response.metadata());
        let mut replies = response.into_inner();
        while let Some(reply) = within(self.timeout, replies.message()).await?? {
            self.report.replies.push(reply.message);
            self.report.indices.push(reply.index);
        }
        Ok(())
    }

    /// Takes `x-served-by` from response headers, or from a trailers-only error.
    fn served_by(&mut self, metadata: &MetadataMap) {
        if let Some(value) = metadata.get(SERVED_BY) {
            let name = String::from_utf8_lossy(value.as_encoded_bytes()).into_owned();
            self.report.server.get_or_insert(name);
        }
    }
}

/// `step` within `limit`, else `DeadlineExceeded`.
async fn within<T>(
    limit: Duration,
    step: impl std::future::Future<Output = T>,
) -> Result<T, Status> {
    timeout(limit, step).await.map_err(|_| {
        Status::new(
            Code::DeadlineExceeded,
            format!("no answer within {limit:?}"),
        )
    })
}
