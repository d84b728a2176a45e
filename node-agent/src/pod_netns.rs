//! From a pod's UID to its network namespace, without asking a container runtime.
//!
//! Kubernetes tells the agent a pod's UID, not its network namespace. The kubelet puts every
//! pod in a cgroup named after its UID; any process in that cgroup (the pause container, or
//! any container) lives in the pod's network namespace, so `/proc/<pid>/ns/net` of one of
//! them is the namespace to enroll. The cgroup's name depends on the kubelet's cgroup driver:
//!
//! | driver | pod cgroup under the kubepods cgroup |
//! | --- | --- |
//! | cgroupfs | `pod<uid>`, `burstable/pod<uid>`, `besteffort/pod<uid>` |
//! | systemd | `kubepods-pod<uid_>.slice`, `kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice`, … (`-` in the UID becomes `_`) |
//!
//! A pod whose cgroup exists but holds no process yet (sandbox being created) is reported as
//! such, and the next reconcile tries again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// QoS classes: guaranteed pods sit directly under the kubepods cgroup.
const QOS_CLASSES: [Option<&str>; 3] = [None, Some("burstable"), Some("besteffort")];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PodNetnsError {
    #[error("no cgroup for pod {uid} under {root} (cgroupfs or systemd layout); not started yet, or on another node")]
    NoCgroup { uid: String, root: PathBuf },
    #[error("pod {uid}'s cgroup {cgroup} has no process yet; retrying at the next reconcile")]
    NoProcess { uid: String, cgroup: PathBuf },
}

/// The pod's cgroup directory under `kubepods` (the agent's `--cgroup`), in either layout.
pub fn pod_cgroup(kubepods: &Path, uid: &str) -> Result<PathBuf, PodNetnsError> {
    let systemd_uid = uid.replace('-', "_");
    for qos in QOS_CLASSES {
        let cgroupfs = match qos {
            None => kubepods.join(format!("pod{uid}")),
            Some(class) => kubepods.join(class).join(format!("pod{uid}")),
        };
        let systemd = match qos {
            None => kubepods.join(format!("kubepods-pod{systemd_uid}.slice")),
            Some(class) => kubepods
                .join(format!("kubepods-{class}.slice"))
                .join(format!("kubepods-{class}-pod{systemd_uid}.slice")),
        };
        for dir in [cgroupfs, systemd] {
            if dir.is_dir() {
                return Ok(dir);
            }
        }
    }
    Err(PodNetnsError::NoCgroup {
        uid: uid.to_owned(),
        root: kubepods.to_owned(),
    })
}

/// `/proc/<pid>/ns/net` of a process in the pod's cgroup or one of its container cgroups.
pub fn pod_netns(kubepods: &Path, proc_root: &Path, uid: &str) -> Result<PathBuf, PodNetnsError> {
    let cgroup = pod_cgroup(kubepods, uid)?;
    match first_pid(&cgroup) {
        Some(pid) => Ok(proc_root.join(pid.to_string()).join("ns/net")),
        None => Err(PodNetnsError::NoProcess {
            uid: uid.to_owned(),
            cgroup,
        }),
    }
}

/// The first pid listed in `dir/cgroup.procs` or, depth first, in its sub-cgroups.
fn first_pid(dir: &Path) -> Option<u32> {
    if let Some(pid) = read_procs(&dir.join("cgroup.procs")).ok().flatten() {
        return Some(pid);
    }
    let mut children: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.path())
        .collect();
    children.sort();
    children.iter().find_map(|child| first_pid(child))
}

fn read_procs(path: &Path) -> io::Result<Option<u32>> {
    let text = fs::read_to_string(path)?;
    Ok(text.lines().find_map(|line| line.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "4f1c2a9e-1b2c-4d3e-8f90-0123456789ab";

    /// A scratch directory laid out as the test says; removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("ambit-pod-netns-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("creating the scratch directory");
            Self(dir)
        }

        fn procs(&self, relative: &str, pids: &str) -> PathBuf {
            let dir = self.0.join(relative);
            fs::create_dir_all(&dir).expect("creating a cgroup directory");
            fs::write(dir.join("cgroup.procs"), pids).expect("writing cgroup.procs");
            dir
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn finds_pods_in_every_layout_and_qos_class() {
        let systemd_uid = UID.replace('-', "_");
        let cases = [
            ("cgroupfs-guaranteed", format!("pod{UID}/c1")),
            ("cgroupfs-burstable", format!("burstable/pod{UID}/c1")),
            ("cgroupfs-besteffort", format!("besteffort/pod{UID}/c1")),
            (
                "systemd-guaranteed",
                format!("kubepods-pod{systemd_uid}.slice/cri-containerd-c1.scope"),
            ),
            (
                "systemd-burstable",
                format!(
                    "kubepods-burstable.slice/kubepods-burstable-pod{systemd_uid}.slice/cri-containerd-c1.scope"
                ),
            ),
            (
                "systemd-besteffort",
                format!(
                    "kubepods-besteffort.slice/kubepods-besteffort-pod{systemd_uid}.slice/crio-c1.scope"
                ),
            ),
        ];
        for (name, container) in cases {
            let scratch = Scratch::new(name);
            // The pod cgroup itself holds no process; its container does.
            scratch.procs(&container, "4242\n4243\n");
            let netns = pod_netns(&scratch.0, Path::new("/proc"), UID);
            assert_eq!(netns, Ok(PathBuf::from("/proc/4242/ns/net")), "{name}");
        }
    }

    #[test]
    fn a_pod_without_a_process_yet_is_retried_not_lost() {
        let scratch = Scratch::new("empty");
        let pod = scratch.procs(&format!("burstable/pod{UID}"), "");
        scratch.procs(&format!("burstable/pod{UID}/c1"), "");
        assert_eq!(
            pod_netns(&scratch.0, Path::new("/proc"), UID),
            Err(PodNetnsError::NoProcess {
                uid: UID.to_owned(),
                cgroup: pod
            })
        );
    }

    #[test]
    fn another_pods_cgroup_is_not_taken_for_this_one() {
        let scratch = Scratch::new("other");
        scratch.procs(
            "burstable/pod11111111-2222-3333-4444-555555555555/c1",
            "7\n",
        );
        let err = pod_netns(&scratch.0, Path::new("/proc"), UID).unwrap_err();
        assert_eq!(
            err,
            PodNetnsError::NoCgroup {
                uid: UID.to_owned(),
                root: scratch.0.clone()
            }
        );
        assert!(err.to_string().contains(UID), "{err}");
    }
}
