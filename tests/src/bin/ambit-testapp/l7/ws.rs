//! `ws`: text messages over one WebSocket, each answered before the next is sent, as a
//! `WsReport`.

use std::process::ExitCode;
use std::time::Duration;

use ambit_e2e::testapp::WsReport;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use futures::{SinkExt, StreamExt};
use http::Uri;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use super::StepTimeout;

#[derive(Args)]
pub struct WsArgs {
    /// `ws://<host>:<port>/<path>`.
    #[arg(long)]
    url: Uri,
    #[arg(long)]
    message: String,
    #[arg(long, default_value_t = 3)]
    count: u32,
    #[command(flatten)]
    timeout: StepTimeout,
}

pub fn run(args: WsArgs) -> Result<ExitCode> {
    if args.url.scheme_str() != Some("ws") {
        bail!("--url {}: only ws:// is supported", args.url);
    }
    let authority = args
        .url
        .authority()
        .with_context(|| format!("--url {} has no host", args.url))?;
    let target = (
        authority.host().trim_matches(['[', ']']).to_string(),
        authority.port_u16().unwrap_or(80),
    );
    let mut replies = Vec::new();
    let outcome = super::runtime()?.block_on(exchange(&args, target, &mut replies));
    super::print_report(&WsReport {
        ok: outcome.is_ok(),
        replies,
        error: outcome.err().map(|e| format!("{e:#}")),
    })
}

async fn exchange(args: &WsArgs, target: (String, u16), replies: &mut Vec<String>) -> Result<()> {
    let limit = args.timeout.get();
    let stream = within(limit, "connecting", TcpStream::connect(&target))
        .await?
        .with_context(|| format!("connecting to {}:{}", target.0, target.1))?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = within(
        limit,
        "the WebSocket handshake",
        tokio_tungstenite::client_async(args.url.clone(), stream),
    )
    .await?
    .context("WebSocket handshake")?;
    for sent in 1..=args.count {
        within(
            limit,
            "sending",
            ws.send(Message::text(args.message.clone())),
        )
        .await?
        .with_context(|| format!("sending message {sent}"))?;
        let reply = loop {
            let received = within(limit, "a reply", ws.next()).await?;
            match received {
                None => bail!("the server closed after {} replies", replies.len()),
                Some(message) => match message.with_context(|| format!("reading reply {sent}"))? {
                    Message::Text(text) => break text.to_string(),
                    Message::Binary(data) => break String::from_utf8_lossy(&data).into_owned(),
                    Message::Close(frame) => {
                        bail!(
                            "the server closed after {} replies: {frame:?}",
                            replies.len()
                        )
                    }
                    _ => continue,
                },
            }
        };
        replies.push(reply);
    }
    // The report is complete; a slow close handshake does not change it.
    let _ = within(limit, "closing", ws.close(None)).await;
    Ok(())
}

async fn within<T>(
    limit: Duration,
    step: &str,
    future: impl std::future::Future<Output = T>,
) -> Result<T> {
    timeout(limit, future)
        .await
        .map_err(|_| anyhow!("{step} timed out after {limit:?}"))
}
