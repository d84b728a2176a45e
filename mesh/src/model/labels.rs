//! Label keys and values Ambit reads on Kubernetes objects, defined once.

/// On a namespace, `ambient` enrolls its pods; on a pod, `none` opts it out.
pub const DATAPLANE_MODE: &str = "ambit.dev/dataplane-mode";

/// A value of [`DATAPLANE_MODE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataplaneMode {
    /// `ambient`: the namespace's pods join the mesh.
    Ambient,
    /// `none`: this object stays out of the mesh.
    None,
}

impl DataplaneMode {
    /// Every value the label may take, as written.
    pub const VALUES: [&'static str; 2] = ["ambient", "none"];

    /// The mode a label value names, or `None` (the `Option`) for any other text.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "ambient" => Some(Self::Ambient),
            "none" => Some(Self::None),
            _ => Option::None,
        }
    }
}

/// On a Service, a pod or a namespace: the name of the Gateway (in the same namespace) whose
/// waypoint carries its traffic; [`NO_WAYPOINT`] opts out of a waypoint the namespace names.
pub const USE_WAYPOINT: &str = "ambit.dev/use-waypoint";

/// The value of [`USE_WAYPOINT`] that means "no waypoint", overriding the namespace's.
pub const NO_WAYPOINT: &str = "none";

/// On a pod: the Gateway it implements. A waypoint is reached at the addresses of the pods
/// labelled with its name (the label Gateway API implementations put on their deployments).
pub const GATEWAY_NAME: &str = "gateway.networking.k8s.io/gateway-name";

/// The `gatewayClassName` of Gateways that are Ambit waypoints.
pub const WAYPOINT_CLASS: &str = "ambit-waypoint";
