//! Installing the plugin on the host: its binary in the CNI bin dir, and its
//! entry chained into the node's primary network configuration, where the
//! container runtime finds it; and taking the entry out again (uninstall).
//!
//! **Which configuration is the primary.** Runtimes read the CNI conf dir
//! (`/etc/cni/net.d`) through libcni: the files ending in `.conflist`,
//! `.conf` or `.json`, sorted by name (bytes), and the first is the default
//! network. containerd (go-cni `loadFromConfDir`) takes the lexically first
//! file and fails pod creation if it is invalid; CRI-O takes the first one
//! that loads, skipping invalid files. A `.conflist` holds
//! `{"cniVersion", "name", "plugins": [...]}`, run in order; a `.conf` (or
//! `.json`) holds one plugin, which libcni turns into a list of one
//! (`ConfListFromConf`: the list takes the plugin's `name` and
//! `cniVersion`, the plugin keeps its own keys). [`chain`] follows the
//! first file, as containerd does; a primary CNI that writes an invalid
//! first file breaks containerd's pods with or without us, and we refuse
//! to touch it.
//!
//! **Chaining** appends our entry to the primary's `plugins` (or replaces
//! our earlier entry where it stands), so the runtime runs us after the
//! primary has set the pod's network up. A `.conf` is converted into the
//! list libcni would make of it, written as `<stem>.conflist`, and the
//! `.conf` removed (as Istio's CNI installer does): a `.conf` has no room
//! for a second plugin. A `.conflist` of that stem already there is
//! replaced: the runtime was reading the `.conf` (`x.conf` sorts before
//! `x.conflist`), so it is our earlier conversion or unused. Every other
//! key and plugin is kept with its value; the keys of JSON objects come out
//! sorted (the workspace's `serde_json` has no `preserve_order`, which would
//! change every JSON object the workspace writes when built together; CNI
//! configuration is JSON, whose objects are unordered, and libcni reads it
//! into maps). A file whose content would not change is not rewritten (a
//! runtime watching the dir reloads on every write).
//!
//! **Writes are atomic**: a temporary file in the same dir, fsynced, then
//! renamed over the target, and the dir fsynced. The temporary name ends in
//! neither `.conf`, `.conflist` nor `.json`, so a runtime never reads a
//! half-written config; the plugin binary is replaced by rename, never
//! written in place, so a runtime running the old one meanwhile is not
//! disturbed (`ETXTBSY`) and never runs a truncated one.
//!
//! The primary CNI may rewrite its config at any time (on its own restart,
//! an upgrade), dropping our entry: the agent calls [`chain`] again
//! (idempotent) when the dir changes and periodically. [`chain`] refuses
//! (a [`ChainError`] inside the `anyhow::Error`) when there is no config
//! yet, which is normal at node start: the caller retries.
//!
//! This module must not decide *when* to chain (the agent's loop does) nor
//! run the plugin.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Map, Value};

/// Our plugin's `type` in a CNI config, and its binary's name in the bin dir.
pub const PLUGIN_TYPE: &str = "quicmesh-cni";

/// The extensions of CNI network configuration files, as libcni reads them.
const EXTENSIONS: [&str; 3] = ["conf", "conflist", "json"];

/// Why [`chain`] refused to write (returned inside its `anyhow::Error`;
/// `downcast_ref::<ChainError>()` to tell "not yet" from "broken").
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// No `.conflist`, `.conf` or `.json` in the dir (or no dir): the
    /// primary CNI has not written its config yet. Retry.
    #[error("no CNI network configuration in {0} yet (the primary CNI writes one when it starts)")]
    NoConfig(PathBuf),
    /// The primary config is not JSON. Left untouched.
    #[error("{path} is not JSON, left untouched: {error}")]
    NotJson {
        path: PathBuf,
        error: serde_json::Error,
    },
    /// A `.conflist` that is not an object with a non-empty `plugins` array.
    #[error(
        "{0} has no plugins (a .conflist needs a non-empty \"plugins\" array), left untouched"
    )]
    NoPlugins(PathBuf),
    /// A `.conf` (or `.json`) that is not one plugin with a `type`.
    #[error("{0} is not a single plugin's config (an object with a \"type\"), left untouched")]
    NoType(PathBuf),
    /// The entry to chain is not a plugin config.
    #[error("the entry to chain is not a plugin config (an object with a \"type\"): {0}")]
    BadEntry(String),
}

/// Copies `self_exe` (the agent's own binary, which is also the plugin) to
/// `<bin_dir>/quicmesh-cni`, mode 0755, atomically. Does nothing when the
/// installed one has the same content and mode.
pub fn install_plugin(bin_dir: &Path, self_exe: &Path) -> anyhow::Result<()> {
    let dest = bin_dir.join(PLUGIN_TYPE);
    let new = fs::read(self_exe).with_context(|| format!("reading {}", self_exe.display()))?;
    if let (Ok(old), Ok(meta)) = (fs::read(&dest), fs::metadata(&dest)) {
        if old == new && meta.permissions().mode() & 0o7777 == 0o755 {
            return Ok(());
        }
    }
    write_atomically(&dest, &new, 0o755).with_context(|| format!("installing {}", dest.display()))
}

/// Chains `entry` (our plugin's config, `"type": "quicmesh-cni"`) into the
/// primary network configuration of `conf_dir`: appended to its `plugins`,
/// or in place of an entry of the same `type` already there (others of that
/// type removed). Returns the file that holds it (written only if changed).
pub fn chain(conf_dir: &Path, entry: &Value) -> anyhow::Result<PathBuf> {
    let kind = entry
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ChainError::BadEntry(entry.to_string()))?
        .to_string();
    let files = match config_files(conf_dir) {
        Ok(f) => f,
        // The dir comes with the primary CNI, or with the runtime.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", conf_dir.display())),
    };
    let Some(primary) = files.into_iter().next() else {
        return Err(ChainError::NoConfig(conf_dir.to_path_buf()).into());
    };
    let text = fs::read(&primary).with_context(|| format!("reading {}", primary.display()))?;
    let parsed: Value = serde_json::from_slice(&text).map_err(|error| ChainError::NotJson {
        path: primary.clone(),
        error,
    })?;
    let mode = fs::metadata(&primary)?.permissions().mode() & 0o7777;
    let (target, original, mut list) = if is_conflist(&primary) {
        if !has_plugins(&parsed) {
            return Err(ChainError::NoPlugins(primary).into());
        }
        (primary.clone(), Some(parsed.clone()), parsed)
    } else {
        let single =
            parsed.get("type").and_then(Value::as_str).is_some() && parsed.get("plugins").is_none();
        if !single {
            return Err(ChainError::NoType(primary).into());
        }
        (
            primary.with_extension("conflist"),
            None,
            conf_to_conflist(parsed),
        )
    };
    let plugins = list["plugins"]
        .as_array_mut()
        .expect("a conflist with plugins");
    let ours = |p: &Value| p.get("type").and_then(Value::as_str) == Some(kind.as_str());
    match plugins.iter().position(ours) {
        Some(i) => {
            plugins[i] = entry.clone();
            let mut at = 0;
            plugins.retain(|p| {
                let keep = at == i || !ours(p);
                at += 1;
                keep
            });
        }
        None => plugins.push(entry.clone()),
    }
    if original.as_ref() != Some(&list) {
        write_json(&target, &list, mode)?;
    }
    if target != primary {
        fs::remove_file(&primary).with_context(|| {
            format!(
                "removing {} (converted into {})",
                primary.display(),
                target.display()
            )
        })?;
        sync_dir(conf_dir)?;
    }
    Ok(target)
}

/// Removes every plugin of `plugin_type` from the `plugins` of each
/// configuration in `conf_dir` (not only the primary: one that was primary
/// before may hold an old entry, and become primary again). Files that are
/// not JSON conflists are left alone. Returns the first file changed (in
/// the runtime's order), if any.
pub fn unchain(conf_dir: &Path, plugin_type: &str) -> anyhow::Result<Option<PathBuf>> {
    let files = match config_files(conf_dir) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", conf_dir.display())),
    };
    let mut changed = None;
    for path in files {
        let Ok(text) = fs::read(&path) else { continue };
        let Ok(mut list) = serde_json::from_slice::<Value>(&text) else {
            continue;
        };
        let Some(plugins) = list.get_mut("plugins").and_then(Value::as_array_mut) else {
            continue;
        };
        let before = plugins.len();
        plugins.retain(|p| p.get("type").and_then(Value::as_str) != Some(plugin_type));
        if plugins.len() == before {
            continue;
        }
        let mode = fs::metadata(&path)?.permissions().mode() & 0o7777;
        write_json(&path, &list, mode)?;
        changed.get_or_insert(path);
    }
    Ok(changed)
}

/// The network configuration files of `dir` in the runtime's order (names
/// sorted as bytes). Symlinks count (libcni skips only directories).
fn config_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ext_ok = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e));
        if ext_ok && !entry.file_type()?.is_dir() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| {
        let name = |p: &PathBuf| p.file_name().map(|n| n.as_bytes().to_vec());
        name(a).cmp(&name(b))
    });
    Ok(files)
}

fn is_conflist(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "conflist")
}

fn has_plugins(v: &Value) -> bool {
    v.get("plugins")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty())
}

/// The list libcni makes of a single plugin's config (`ConfListFromConf`):
/// the plugin as it is, under the list's `name` and `cniVersion` (copied
/// from it).
fn conf_to_conflist(plugin: Value) -> Value {
    let mut list = Map::new();
    for key in ["cniVersion", "name"] {
        if let Some(v) = plugin.get(key) {
            list.insert(key.to_string(), v.clone());
        }
    }
    list.insert("plugins".to_string(), Value::Array(vec![plugin]));
    Value::Object(list)
}

fn write_json(path: &Path, v: &Value, mode: u32) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec_pretty(v)?;
    text.push(b'\n');
    write_atomically(path, &text, mode).with_context(|| format!("writing {}", path.display()))
}

/// Writes `path` as a whole or not at all: a temporary file beside it
/// (named so that no runtime reads it as a config), fsynced, chmodded,
/// renamed over `path`; then the dir fsynced, so the rename survives a
/// crash.
fn write_atomically(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.quicmesh-tmp"));
    // Left by a crash between create and rename: ours to remove.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(content)?;
        // The umask may have narrowed the mode at creation.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
