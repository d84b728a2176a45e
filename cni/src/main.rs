//! `ambit-cni`: run by the container runtime with `CNI_*` variables and the network config on
//! stdin (see `ambit_cni::plugin`).

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut stdin = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut stdin) {
        eprintln!("ambit-cni: reading the network config from stdin: {e}");
    }
    let outcome = ambit_cni::plugin::run(&|name| std::env::var(name).ok(), &stdin);
    if !outcome.stderr.is_empty() {
        eprintln!("{}", outcome.stderr);
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(outcome.stdout.as_bytes());
    let _ = stdout.flush();
    ExitCode::from(outcome.exit)
}
