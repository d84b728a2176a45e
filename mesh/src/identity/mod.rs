//! Workload identities: SPIFFE IDs, X.509 SVIDs, and the CA protocol that issues them.

mod spiffe;

pub use spiffe::{SpiffeId, SpiffeIdError};
