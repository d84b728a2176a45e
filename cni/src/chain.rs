//! Ambit's place in the node's CNI config chain, kept by the node agent.
//!
//! The runtime uses the first config file by name in its config directory (`*.conf`,
//! `*.conflist`, `*.json`). The agent appends Ambit's entry to that file's plugin list, so the
//! cluster's own plugin wires the pod first, and takes it out again when the agent stops, so a
//! node without an agent never waits on one. The cluster's plugin may rewrite its file at any
//! time; the agent checks it again at every reconcile.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The plugin's `type`, which is also its binary's name in the CNI bin directory.
pub const PLUGIN_TYPE: &str = "ambit-cni";

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("no CNI network config in {0} yet (the cluster's CNI plugin writes one)")]
    NoConfig(PathBuf),
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a CNI network config: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// What `install` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    /// Ambit's entry was already last in this file, as wanted.
    Unchanged(PathBuf),
    /// The file was (re)written with Ambit's entry.
    Written(PathBuf),
}

/// The config file the runtime uses: the first by name with a CNI extension.
pub fn primary_config(dir: &Path) -> Result<PathBuf, ChainError> {
    let entries = fs::read_dir(dir).map_err(|source| ChainError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conf" | "conflist" | "json")
            )
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .next()
        .ok_or_else(|| ChainError::NoConfig(dir.to_owned()))
}

/// `config` as a list with `entry` last in its plugins, replacing any earlier Ambit entry. A
/// single-plugin config (`.conf`) becomes a list of that plugin and Ambit.
pub fn with_entry(config: &Value, entry: &Value) -> Result<Value, String> {
    let fields = config.as_object().ok_or("not a JSON object")?;
    let mut list = if fields.contains_key("plugins") {
        fields.clone()
    } else {
        // A single plugin: its version and name move up to the list.
        let mut list = Map::new();
        for key in ["cniVersion", "name"] {
            if let Some(value) = fields.get(key) {
                list.insert(key.into(), value.clone());
            }
        }
        list.insert("plugins".into(), json!([config]));
        list
    };
    let plugins = list
        .get_mut("plugins")
        .and_then(Value::as_array_mut)
        .ok_or("`plugins` is not a list")?;
    plugins.retain(|p| !is_ambit(p));
    plugins.push(entry.clone());
    Ok(Value::Object(list))
}

/// `config` without Ambit's entry, or `None` when it has none.
pub fn without_entry(config: &Value) -> Option<Value> {
    let mut config = config.clone();
    let plugins = config.get_mut("plugins")?.as_array_mut()?;
    let before = plugins.len();
    plugins.retain(|p| !is_ambit(p));
    (plugins.len() != before).then_some(config)
}

fn is_ambit(plugin: &Value) -> bool {
    plugin.get("type").and_then(Value::as_str) == Some(PLUGIN_TYPE)
}

/// Puts `entry` last in the primary config of `conf_dir`, writing only when that changes it.
/// A `.conf` file is replaced by a `.conflist` of the same stem.
pub fn install(conf_dir: &Path, entry: &Value) -> Result<Installed, ChainError> {
    let path = primary_config(conf_dir)?;
    let config = read_json(&path)?;
    let wanted = with_entry(&config, entry).map_err(|reason| ChainError::Invalid {
        path: path.clone(),
        reason,
    })?;
    if wanted == config {
        return Ok(Installed::Unchanged(path));
    }
    let target = if path.extension().and_then(|e| e.to_str()) == Some("conf") {
        path.with_extension("conflist")
    } else {
        path.clone()
    };
    write_json(&target, &wanted)?;
    if target != path {
        fs::remove_file(&path).map_err(|source| ChainError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(Installed::Written(target))
}

/// Takes Ambit's entry out of every config in `conf_dir`; returns the files rewritten.
pub fn uninstall(conf_dir: &Path) -> Result<Vec<PathBuf>, ChainError> {
    let entries = fs::read_dir(conf_dir).map_err(|source| ChainError::Io {
        path: conf_dir.to_owned(),
        source,
    })?;
    let mut rewritten = Vec::new();
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().and_then(|e| e.to_str()) != Some("conflist") {
            continue;
        }
        let Ok(config) = read_json(&path) else {
            continue;
        };
        if let Some(clean) = without_entry(&config) {
            write_json(&path, &clean)?;
            rewritten.push(path);
        }
    }
    rewritten.sort();
    Ok(rewritten)
}

/// Copies the plugin binary into the CNI bin directory (atomically, mode 0755) unless the same
/// bytes are already there. Returns whether it wrote.
pub fn install_binary(source: &Path, bin_dir: &Path) -> Result<bool, ChainError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ChainError::Io { path, source }
    };
    let bytes = fs::read(source).map_err(io_err(source))?;
    let target = bin_dir.join(PLUGIN_TYPE);
    if fs::read(&target).is_ok_and(|current| current == bytes) {
        return Ok(false);
    }
    let temp = bin_dir.join(format!(".{PLUGIN_TYPE}.tmp"));
    fs::write(&temp, &bytes).map_err(io_err(&temp))?;
    fs::set_permissions(&temp, fs::Permissions::from_mode(0o755)).map_err(io_err(&temp))?;
    fs::rename(&temp, &target).map_err(io_err(&target))?;
    Ok(true)
}

fn read_json(path: &Path) -> Result<Value, ChainError> {
    let text = fs::read_to_string(path).map_err(|source| ChainError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ChainError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Temp file and rename: the runtime never reads half a config.
fn write_json(path: &Path, value: &Value) -> Result<(), ChainError> {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.ambit.tmp"));
    let io_err = |p: &Path| {
        let path = p.to_owned();
        move |source| ChainError::Io { path, source }
    };
    fs::write(&temp, text).map_err(io_err(&temp))?;
    fs::rename(&temp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Value {
        json!({ "type": PLUGIN_TYPE, "agentSocket": "/run/ambit/n1/cni.sock" })
    }

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("ambit-cni-chain-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("scratch dir");
            Self(dir)
        }

        fn write(&self, name: &str, value: &Value) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, value.to_string()).expect("write config");
            path
        }

        fn read(&self, name: &str) -> Value {
            serde_json::from_str(&fs::read_to_string(self.0.join(name)).expect("read config"))
                .expect("JSON config")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn flannel_list() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "cbr0",
            "plugins": [
                { "type": "flannel", "delegate": { "hairpinMode": true } },
                { "type": "portmap", "capabilities": { "portMappings": true } }
            ]
        })
    }

    #[test]
    fn appends_once_and_keeps_the_other_plugins_untouched() {
        let scratch = Scratch::new("append");
        scratch.write("10-flannel.conflist", &flannel_list());
        // Sorted after the primary: never touched.
        scratch.write("99-other.conflist", &flannel_list());
        let path = scratch.0.join("10-flannel.conflist");

        assert_eq!(
            install(&scratch.0, &entry()).expect("install"),
            Installed::Written(path.clone())
        );
        let mut expected = flannel_list();
        expected["plugins"]
            .as_array_mut()
            .expect("plugins")
            .push(entry());
        assert_eq!(scratch.read("10-flannel.conflist"), expected);
        assert_eq!(scratch.read("99-other.conflist"), flannel_list());

        // Again: nothing to write.
        assert_eq!(
            install(&scratch.0, &entry()).expect("install again"),
            Installed::Unchanged(path)
        );
    }

    #[test]
    fn a_changed_entry_replaces_the_old_one_and_goes_last() {
        let mut config = flannel_list();
        let plugins = config["plugins"].as_array_mut().expect("plugins");
        plugins.insert(0, json!({ "type": PLUGIN_TYPE, "agentSocket": "/old" }));
        let updated = with_entry(&config, &entry()).expect("list");
        let types: Vec<&str> = updated["plugins"]
            .as_array()
            .expect("plugins")
            .iter()
            .filter_map(|p| p["type"].as_str())
            .collect();
        assert_eq!(types, ["flannel", "portmap", PLUGIN_TYPE]);
        assert_eq!(updated["plugins"][2], entry());
    }

    #[test]
    fn a_single_plugin_conf_becomes_a_list() {
        let scratch = Scratch::new("conf");
        let single =
            json!({ "cniVersion": "0.4.0", "name": "k8s", "type": "bridge", "bridge": "cni0" });
        scratch.write("05-bridge.conf", &single);
        let written = install(&scratch.0, &entry()).expect("install");
        assert_eq!(
            written,
            Installed::Written(scratch.0.join("05-bridge.conflist"))
        );
        assert!(!scratch.0.join("05-bridge.conf").exists());
        assert_eq!(
            scratch.read("05-bridge.conflist"),
            json!({ "cniVersion": "0.4.0", "name": "k8s", "plugins": [single, entry()] })
        );
    }

    #[test]
    fn uninstall_restores_the_cluster_plugins_list() {
        let scratch = Scratch::new("uninstall");
        scratch.write("10-flannel.conflist", &flannel_list());
        install(&scratch.0, &entry()).expect("install");
        assert_eq!(
            uninstall(&scratch.0).expect("uninstall"),
            vec![scratch.0.join("10-flannel.conflist")]
        );
        assert_eq!(scratch.read("10-flannel.conflist"), flannel_list());
        assert!(uninstall(&scratch.0).expect("again").is_empty());
    }

    #[test]
    fn no_config_and_bad_json_are_named() {
        let scratch = Scratch::new("bad");
        let err = install(&scratch.0, &entry()).unwrap_err();
        assert!(matches!(err, ChainError::NoConfig(_)), "{err}");
        fs::write(scratch.0.join("10-broken.conflist"), "{ not json").expect("write");
        let err = install(&scratch.0, &entry()).unwrap_err();
        assert!(
            err.to_string().contains("10-broken.conflist"),
            "names the file: {err}"
        );
        // The broken file is left as it was.
        assert_eq!(
            fs::read_to_string(scratch.0.join("10-broken.conflist")).expect("read"),
            "{ not json"
        );
    }

    #[test]
    fn the_binary_is_copied_executable_and_only_when_it_changed() {
        let scratch = Scratch::new("bin");
        let source = scratch.0.join("built-ambit-cni");
        fs::write(&source, b"plugin v1").expect("write");
        let bin = scratch.0.join("bin");
        fs::create_dir_all(&bin).expect("bin dir");
        assert!(install_binary(&source, &bin).expect("copy"));
        let target = bin.join(PLUGIN_TYPE);
        assert_eq!(fs::read(&target).expect("read"), b"plugin v1");
        assert_eq!(
            fs::metadata(&target).expect("meta").permissions().mode() & 0o777,
            0o755
        );
        assert!(!install_binary(&source, &bin).expect("same bytes"));
        fs::write(&source, b"plugin v2").expect("write");
        assert!(install_binary(&source, &bin).expect("new bytes"));
        assert_eq!(fs::read(&target).expect("read"), b"plugin v2");
    }
}
