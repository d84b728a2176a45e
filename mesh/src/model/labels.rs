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
