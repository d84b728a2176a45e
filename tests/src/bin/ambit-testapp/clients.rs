//! One-connection clients: `whoami`, `echo` (verified byte for byte) and `hold`.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;
use std::thread;

use ambit_e2e::testapp::EchoReport;
use anyhow::{bail, Context, Result};

use crate::{pattern, Target};

const CHUNK: usize = 64 * 1024;

/// Connects with the target's timeout, which then also bounds every read and write.
pub fn connect(target: Target) -> Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&target.addr, target.timeout())
        .with_context(|| format!("connecting to {}", target.addr))?;
    stream.set_read_timeout(Some(target.timeout()))?;
    stream.set_write_timeout(Some(target.timeout()))?;
    Ok(stream)
}

pub fn whoami(target: Target) -> Result<ExitCode> {
    let mut stream = connect(target)?;
    let mut line = String::new();
    stream
        .read_to_string(&mut line)
        .with_context(|| format!("reading from {}", target.addr))?;
    if line.trim().is_empty() {
        bail!("{} closed without a whoami line", target.addr);
    }
    println!("{}", line.trim_end());
    Ok(ExitCode::SUCCESS)
}

pub fn echo(target: Target, bytes: u64) -> Result<ExitCode> {
    let stream = connect(target)?;
    let local = stream.local_addr()?.to_string();
    let mut writer = stream.try_clone()?;
    // Write on one thread while reading on this one: a large echo would otherwise fill
    // both socket buffers and deadlock.
    let sender = thread::spawn(move || -> io::Result<()> {
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        while sent < bytes {
            let n = (bytes - sent).min(CHUNK as u64) as usize;
            pattern::fill(sent, &mut buf[..n]);
            writer.write_all(&buf[..n])?;
            sent += n as u64;
        }
        writer.shutdown(Shutdown::Write)
    });
    let (received, mismatch, read_error) = read_back(&stream, bytes);
    let send_error = match sender.join() {
        Ok(result) => result.err().map(|e| format!("sending: {e}")),
        Err(_) => Some("sender thread panicked".to_string()),
    };
    let error = read_error.or(send_error).or_else(|| {
        (received != bytes).then(|| format!("echo returned {received} of {bytes} bytes"))
    });
    let report = EchoReport {
        ok: mismatch.is_none() && error.is_none(),
        bytes: received,
        local,
        first_mismatch: mismatch,
        error,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reads until EOF, comparing with the pattern: (bytes read, first mismatch, read error).
fn read_back(mut stream: &TcpStream, expected: u64) -> (u64, Option<u64>, Option<String>) {
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0u64;
    let mut mismatch = None;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (received, mismatch, None),
            Ok(n) => {
                if mismatch.is_none() {
                    mismatch = pattern::first_mismatch(received, &buf[..n]);
                }
                received += n as u64;
                if received > expected && mismatch.is_none() {
                    mismatch = Some(expected);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (received, mismatch, Some(format!("receiving: {e}"))),
        }
    }
}

pub fn hold(target: Target) -> Result<ExitCode> {
    let mut stream = connect(target)?;
    let stdout = io::stdout();
    let mut round = 0u64;
    for line in io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        let answer = match line.trim() {
            "ping" => {
                round += 1;
                match round_trip(&mut stream, round) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("error: {e:#}"),
                }
            }
            "" => continue,
            other => format!("error: unknown command {other:?} (expected `ping`)"),
        };
        let mut out = stdout.lock();
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends a short numbered message and expects it back unchanged.
fn round_trip(stream: &mut TcpStream, round: u64) -> Result<()> {
    let message = format!("ping {round:016}\n");
    stream.write_all(message.as_bytes()).context("sending")?;
    let mut echoed = vec![0u8; message.len()];
    stream
        .read_exact(&mut echoed)
        .context("receiving the echo")?;
    if echoed != message.as_bytes() {
        bail!(
            "echo returned {:?}, sent {:?}",
            String::from_utf8_lossy(&echoed),
            message
        );
    }
    Ok(())
}

/// Sends `text` `count` times, reads the echo back, checks it and prints `text` once.
pub fn say(target: Target, text: &str, count: u32) -> Result<ExitCode> {
    let mut stream = connect(target)?;
    let payload = text.repeat(count as usize);
    stream
        .write_all(payload.as_bytes())
        .with_context(|| format!("writing to {}", target.addr))?;
    stream.shutdown(Shutdown::Write)?;
    let mut echoed = String::new();
    stream
        .read_to_string(&mut echoed)
        .with_context(|| format!("reading from {}", target.addr))?;
    if echoed != payload {
        bail!(
            "the echo differs from what was sent ({} of {} bytes back)",
            echoed.len(),
            payload.len()
        );
    }
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}
