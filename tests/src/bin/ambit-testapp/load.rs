//! Load clients: `concurrent` (many connections at once), `rr` (latency) and `bulk` (throughput).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ambit_e2e::testapp::{BulkReport, ConcurrentReport, RrReport};
use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::clients::connect;
use crate::{pattern, Target};

pub fn concurrent(target: Target, connections: u32, bytes: u64) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = runtime.block_on(open_all_then_echo(target, connections, bytes));
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

async fn open_all_then_echo(target: Target, connections: u32, bytes: u64) -> ConcurrentReport {
    let mut report = ConcurrentReport {
        ok: 0,
        failed: 0,
        first_error: None,
    };
    let record = |result: Result<()>, report: &mut ConcurrentReport| match result {
        Ok(()) => report.ok += 1,
        Err(e) => {
            report.failed += 1;
            report.first_error.get_or_insert_with(|| format!("{e:#}"));
        }
    };
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..connections {
        connecting.spawn(async move {
            match timeout(target.timeout(), TcpStream::connect(target.addr)).await {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(e)) => {
                    Err(anyhow::Error::new(e).context(format!("connecting to {}", target.addr)))
                }
                Err(_) => bail!("connecting to {} timed out", target.addr),
            }
        });
    }
    // Every connection is established (or failed) before any byte is sent.
    let mut streams = Vec::new();
    while let Some(joined) = connecting.join_next().await {
        match joined.context("connect task panicked").and_then(|r| r) {
            Ok(stream) => streams.push(stream),
            Err(e) => record(Err(e), &mut report),
        }
    }
    let mut echoing = tokio::task::JoinSet::new();
    for stream in streams {
        echoing.spawn(async move {
            timeout(target.timeout(), echo_once(stream, bytes))
                .await
                .unwrap_or_else(|_| bail!("echo of {bytes} bytes timed out"))
        });
    }
    while let Some(joined) = echoing.join_next().await {
        record(
            joined.context("echo task panicked").and_then(|r| r),
            &mut report,
        );
    }
    report
}

async fn echo_once(mut stream: TcpStream, bytes: u64) -> Result<()> {
    let mut payload = vec![0u8; bytes as usize];
    pattern::fill(0, &mut payload);
    let (mut read, mut write) = stream.split();
    let send = async {
        write.write_all(&payload).await?;
        write.shutdown().await
    };
    let mut echoed = Vec::with_capacity(payload.len());
    let receive = read.read_to_end(&mut echoed);
    let (sent, received) = tokio::join!(send, receive);
    sent.context("sending")?;
    received.context("receiving")?;
    if echoed.len() as u64 != bytes {
        bail!("echo returned {} of {bytes} bytes", echoed.len());
    }
    if let Some(offset) = pattern::first_mismatch(0, &echoed) {
        bail!("echo differs at byte {offset}");
    }
    Ok(())
}

pub fn rr(target: Target, size: usize, duration: Duration, warmup: Duration) -> Result<ExitCode> {
    let mut stream = connect(target)?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    let mut request = vec![0u8; size];
    pattern::fill(0, &mut request);
    let mut response = vec![0u8; size];
    let mut round_trip = |stream: &mut std::net::TcpStream| -> Result<()> {
        stream.write_all(&request).context("sending a request")?;
        stream
            .read_exact(&mut response)
            .context("reading a response")?;
        Ok(())
    };
    let warmup_end = Instant::now() + warmup;
    while Instant::now() < warmup_end {
        round_trip(&mut stream)?;
    }
    let mut samples_ns: Vec<u64> = Vec::new();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let start = Instant::now();
        round_trip(&mut stream)?;
        samples_ns.push(start.elapsed().as_nanos() as u64);
    }
    if samples_ns.is_empty() {
        bail!("no round trip completed within {duration:?}");
    }
    samples_ns.sort_unstable();
    let percentile = |p: usize| samples_ns[(samples_ns.len() * p / 100).min(samples_ns.len() - 1)];
    let mean_ns = samples_ns.iter().sum::<u64>() as f64 / samples_ns.len() as f64;
    let report = RrReport {
        size,
        count: samples_ns.len() as u64,
        p50_us: percentile(50) as f64 / 1000.0,
        p99_us: percentile(99) as f64 / 1000.0,
        mean_us: mean_ns / 1000.0,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

pub fn bulk(target: Target, duration: Duration) -> Result<ExitCode> {
    let mut stream = connect(target)?;
    let mut chunk = vec![0u8; 128 * 1024];
    pattern::fill(0, &mut chunk);
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        stream.write_all(&chunk).context("streaming to the sink")?;
        sent += chunk.len() as u64;
    }
    stream.shutdown(Shutdown::Write).context("half-closing")?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .context("reading the sink's byte count")?;
    let seconds = start.elapsed().as_secs_f64();
    let bytes: u64 = line
        .trim()
        .parse()
        .with_context(|| format!("sink answered {line:?}, not a byte count"))?;
    if bytes != sent {
        bail!("sent {sent} bytes but the sink counted {bytes}");
    }
    let report = BulkReport {
        bytes,
        seconds,
        gbit_per_s: bytes as f64 * 8.0 / seconds / 1e9,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}
