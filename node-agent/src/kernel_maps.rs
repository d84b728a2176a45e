//! Typed handles to the redirect's pinned maps, for the agent and for the inspector.
//!
//! The agent takes them from the freshly loaded object; the inspector (another process, maybe
//! while no agent runs) opens the pins under `/sys/fs/bpf/ambit/<node>/`. Both go through
//! [`KernelMaps::from_source`], so they agree on every map's type.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use ambit_common::{maps, EnrolledNetns, OrigDst, RedirectConfig, SockKey};
use aya::maps::{lpm_trie::LpmTrie, Array, HashMap, Map, MapData, MapError, PerCpuArray, SockHash};

#[derive(Debug, thiserror::Error)]
pub enum KernelMapsError {
    #[error("map {name} is missing from the eBPF object")]
    Missing { name: &'static str },
    #[error("map {name} pinned at {path} cannot be opened; is the agent for this node installed? (ambit-node run)")]
    Pin {
        name: &'static str,
        path: PathBuf,
        #[source]
        source: MapError,
    },
    #[error("map {name} has an unexpected type or layout (pinned by another Ambit version? remove the pins with `ambit-node unload`)")]
    Type {
        name: &'static str,
        #[source]
        source: MapError,
    },
}

/// The maps user space reads and writes. The per-connection lookup takes a read lock on
/// `orig_dst` (uncontended: only the start-up sweep writes it).
pub struct KernelMaps {
    pub enrolled: Mutex<HashMap<MapData, u64, EnrolledNetns>>,
    pub pending: Mutex<HashMap<MapData, u64, OrigDst>>,
    /// Records are removed by the kernel; user space only sweeps stale ones at start.
    pub orig_dst: RwLock<HashMap<MapData, SockKey, OrigDst>>,
    pub fastpath: Mutex<SockHash<MapData, SockKey>>,
    pub config: Mutex<Array<MapData, RedirectConfig>>,
    pub excluded_ports: Mutex<HashMap<MapData, u16, u8>>,
    pub excluded_cidrs: Mutex<LpmTrie<MapData, [u8; 16], u8>>,
    pub counters: PerCpuArray<MapData, u64>,
}

impl KernelMaps {
    /// Takes the maps out of a loaded object.
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<Self, KernelMapsError> {
        Self::from_source(|name| ebpf.take_map(name).ok_or(KernelMapsError::Missing { name }))
    }

    /// Opens the maps pinned in `pin_dir` (another process's, possibly stopped, agent).
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, KernelMapsError> {
        Self::from_source(|name| {
            let path = pin_dir.join(name);
            MapData::from_pin(&path)
                .and_then(Map::from_map_data)
                .map_err(|source| KernelMapsError::Pin { name, path, source })
        })
    }

    fn from_source(
        mut take: impl FnMut(&'static str) -> Result<Map, KernelMapsError>,
    ) -> Result<Self, KernelMapsError> {
        fn typed<T: TryFrom<Map, Error = MapError>>(
            name: &'static str,
            map: Map,
        ) -> Result<T, KernelMapsError> {
            T::try_from(map).map_err(|source| KernelMapsError::Type { name, source })
        }
        macro_rules! open {
            ($name:expr) => {
                typed($name, take($name)?)?
            };
        }
        Ok(KernelMaps {
            enrolled: Mutex::new(open!(maps::ENROLLED_NETNS)),
            pending: Mutex::new(open!(maps::PENDING_ORIG_DST)),
            orig_dst: RwLock::new(open!(maps::ORIG_DST)),
            fastpath: Mutex::new(open!(maps::SOCK_FASTPATH)),
            config: Mutex::new(open!(maps::REDIRECT_CONFIG)),
            excluded_ports: Mutex::new(open!(maps::EXCLUDED_PORTS)),
            excluded_cidrs: Mutex::new(open!(maps::EXCLUDED_CIDRS)),
            counters: open!(maps::COUNTERS),
        })
    }

    /// Size bound of each bounded map, as the kernel reports it (set at load, possibly lowered
    /// with `--max-connections`).
    pub fn limits(&self) -> Vec<(&'static str, u32)> {
        use aya::maps::IterableMap;
        fn limit<K: aya::Pod, V, M: IterableMap<K, V>>(map: &M) -> u32 {
            map.map().info().map(|i| i.max_entries()).unwrap_or(0)
        }
        let mut out = Vec::new();
        if let Ok(m) = self.enrolled.lock() {
            out.push((maps::ENROLLED_NETNS, limit(&*m)));
        }
        if let Ok(m) = self.pending.lock() {
            out.push((maps::PENDING_ORIG_DST, limit(&*m)));
        }
        if let Ok(m) = self.orig_dst.read() {
            out.push((maps::ORIG_DST, limit(&*m)));
        }
        if let Ok(m) = self.fastpath.lock() {
            out.push((maps::SOCK_FASTPATH, limit(&*m)));
        }
        out
    }

    /// Sum over CPUs of every kernel counter, in `Counter::ALL` order.
    pub fn counter_totals(&self) -> Vec<(ambit_common::Counter, u64)> {
        ambit_common::Counter::ALL
            .iter()
            .map(|c| {
                let total = self
                    .counters
                    .get(&(*c as u32), 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (*c, total)
            })
            .collect()
    }
}

/// `/sys/fs/bpf/ambit/<node>`.
pub fn pin_dir(bpffs: &Path, node: &str) -> PathBuf {
    bpffs.join("ambit").join(node)
}
