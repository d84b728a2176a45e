//! The waypoint's HBONE counters in Prometheus text, under the node agent's metric names so
//! that one dashboard covers both.

use ambit_mesh::hbone::{PoolStats, ServerStats};

/// `ambit_hbone_inbound_*` (the front end) and `ambit_hbone_outbound_*` (the connector's pool).
pub fn render(server: &ServerStats, pool: &PoolStats) -> String {
    let mut out = String::new();
    server.render(&mut out);
    pool.render(&mut out);
    out
}
