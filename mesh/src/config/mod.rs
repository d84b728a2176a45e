//! Where the model comes from: each source fills a `ClusterState` and builds a `Model`.
