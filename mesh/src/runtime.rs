//! The async runtime of Ambit's proxies, sized by their `--workers` flag.
//!
//! One worker runs every task on the calling thread: no cross-thread wake-ups or work
//! stealing, the cheapest per request or per byte when the proxy shares its cores with the
//! pods it serves. More workers spread connections over threads.

use tokio::runtime::{Builder, Runtime};

/// A runtime with `workers` threads; 0 means one per CPU this process may run on.
pub fn build(workers: usize) -> std::io::Result<Runtime> {
    let mut builder = match workers {
        1 => Builder::new_current_thread(),
        n => {
            let mut builder = Builder::new_multi_thread();
            if n > 1 {
                builder.worker_threads(n);
            }
            builder
        }
    };
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    #[test]
    fn one_worker_is_a_single_thread_runtime() {
        let flavor = |n| super::build(n).expect("runtime").handle().runtime_flavor();
        assert_eq!(flavor(1), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(0), RuntimeFlavor::MultiThread);
        assert_eq!(flavor(3), RuntimeFlavor::MultiThread);
    }
}
