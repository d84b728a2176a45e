//! `serve`: echo (half-close aware), whoami and sink servers, and the HTTP and gRPC servers
//! of [`http`] and [`grpc`], on one tokio runtime.

mod grpc;
mod http;
mod websocket;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ambit_e2e::testapp::{GRPC_PORT, HTTP_PORT, READY_LINE};
use anyhow::{Context, Result};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

#[derive(Args)]
pub struct ServeArgs {
    /// Name the whoami server answers with.
    #[arg(long)]
    name: String,
    #[arg(long, default_value_t = 8080)]
    echo_port: u16,
    #[arg(long, default_value_t = 8081)]
    whoami_port: u16,
    /// Serve the sink only when given.
    #[arg(long)]
    sink_port: Option<u16>,
    /// HTTP/1.1, h2c and WebSocket.
    #[arg(long, default_value_t = HTTP_PORT)]
    http_port: u16,
    #[arg(long, default_value_t = GRPC_PORT)]
    grpc_port: u16,
    #[arg(long, default_value_t = Ipv4Addr::UNSPECIFIED)]
    bind: Ipv4Addr,
}

#[derive(Clone, Copy, Debug)]
enum Service {
    Echo,
    Whoami,
    Sink,
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<ExitCode> {
    let mut services = vec![
        (Service::Echo, args.echo_port),
        (Service::Whoami, args.whoami_port),
    ];
    services.extend(args.sink_port.map(|port| (Service::Sink, port)));
    let name: Arc<str> = args.name.into();
    let mut loops = tokio::task::JoinSet::new();
    let mut bound = Vec::new();
    for (service, port) in services {
        let listener = listen(SocketAddr::from((args.bind, port)))
            .with_context(|| format!("{service:?} server on {}:{port}", args.bind))?;
        bound.push(format!("{service:?}={}", listener.local_addr()?).to_lowercase());
        loops.spawn(accept_loop(listener, service, Arc::clone(&name)));
    }
    let listener = listen(SocketAddr::from((args.bind, args.http_port)))
        .with_context(|| format!("HTTP server on {}:{}", args.bind, args.http_port))?;
    bound.push(format!("http={}", listener.local_addr()?));
    let server = http::HttpServer::new(Arc::clone(&name))?;
    loops.spawn(http::accept_loop(listener, Arc::new(server)));
    let listener = listen(SocketAddr::from((args.bind, args.grpc_port)))
        .with_context(|| format!("gRPC server on {}:{}", args.bind, args.grpc_port))?;
    bound.push(format!("grpc={}", listener.local_addr()?));
    loops.spawn(grpc::serve(listener, Arc::clone(&name)));
    println!("{READY_LINE} name={name} {}", bound.join(" "));
    std::io::stdout()
        .flush()
        .context("writing the ready line")?;
    while let Some(result) = loops.join_next().await {
        result.context("a server task panicked")??;
    }
    Ok(ExitCode::SUCCESS)
}

/// A listener with a backlog deep enough for connection storms.
fn listen(addr: SocketAddr) -> Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding {addr}"))?;
    Ok(socket.listen(4096)?)
}

async fn accept_loop(listener: TcpListener, service: Service, name: Arc<str>) -> Result<()> {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let name = Arc::clone(&name);
                tokio::spawn(async move {
                    if let Err(e) = handle(service, stream, peer, &name).await {
                        eprintln!("ambit-testapp: {service:?} connection from {peer}: {e}");
                    }
                });
            }
            Err(e) => {
                // Out of descriptors or a transient error: back off instead of spinning.
                eprintln!("ambit-testapp: accept on {service:?}: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn handle(
    service: Service,
    mut stream: TcpStream,
    peer: SocketAddr,
    name: &str,
) -> std::io::Result<()> {
    match service {
        Service::Echo => {
            // Echo until the client half-closes, then finish and close our side.
            let (read, mut write) = stream.split();
            let mut read = BufReader::with_capacity(64 * 1024, read);
            tokio::io::copy_buf(&mut read, &mut write).await?;
            write.shutdown().await
        }
        Service::Whoami => {
            stream
                .write_all(format!("{name} {peer}\n").as_bytes())
                .await?;
            stream.shutdown().await
        }
        Service::Sink => {
            let mut buf = vec![0u8; 128 * 1024];
            let mut total: u64 = 0;
            loop {
                match stream.read(&mut buf).await? {
                    0 => break,
                    n => total += n as u64,
                }
            }
            stream.write_all(format!("{total}\n").as_bytes()).await?;
            stream.shutdown().await
        }
    }
}
