//! Ambit's chained CNI plugin, and what it shares with the node agent.
//!
//! Without it, a new pod's first connections can leave before the agent has seen the pod and
//! enrolled its network namespace (the agent learns of pods from the API server and finds
//! their namespaces through the kubelet's cgroups). The container runtime calls CNI plugins
//! after creating a pod's network namespace and before starting any of its containers, so a
//! plugin that asks the agent to enroll the namespace there closes that window.
//!
//! - [`plugin`]: the binary's logic (`ADD`, `DEL`, …) as the runtime runs it;
//! - [`protocol`]: the request and reply on the agent's socket;
//! - [`chain`]: how the agent installs the plugin into the node's CNI config;
//! - [`netns`]: network-namespace cookies, the key the kernel programs enroll by.

pub mod chain;
pub mod netns;
pub mod plugin;
pub mod protocol;
