//! Watch failures, relists, and an API server unreachable at start-up.
