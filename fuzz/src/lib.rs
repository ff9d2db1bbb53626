//! Shared pieces of quicmesh's fuzz targets: how an input is cut into
//! several messages, the fixtures a target needs (a CA and an SVID from it),
//! and the seeds of each target's corpus.
//!
//! Seeds are made by the code that knows the formats: every target, started
//! with `QUICMESH_FUZZ_WRITE_SEEDS=<dir>`, writes its seeds to
//! `<dir>/<target>/` and exits (`scripts/fuzz.sh --write-seeds`). What is
//! committed under `fuzz/corpus/` was made that way, plus the repository's
//! example manifests.

pub mod fixture;
pub mod seeds;

/// Cuts `data` into pieces, each a 2-byte big-endian length then that many
/// bytes; a last piece shorter than its length is taken as it is. At most
/// `max` pieces.
pub fn pieces(mut data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 && out.len() < max {
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        data = &data[2..];
        let take = len.min(data.len());
        out.push(&data[..take]);
        data = &data[take..];
    }
    out
}

/// The inverse of [`pieces`], for seeds.
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        let len = u16::try_from(p.len()).expect("seed piece under 64 KiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Called from a target's `init`: when `QUICMESH_FUZZ_WRITE_SEEDS` names a
/// directory, writes the target's seeds there and exits.
pub fn write_seeds_if_asked(target: &str, make: fn() -> seeds::Seeds) {
    let Some(dir) = std::env::var_os("QUICMESH_FUZZ_WRITE_SEEDS") else {
        return;
    };
    let dir = std::path::Path::new(&dir).join(target);
    std::fs::create_dir_all(&dir).expect("seed directory");
    for (name, bytes) in make() {
        std::fs::write(dir.join(name), bytes).expect("seed file");
    }
    eprintln!("wrote the seeds of {target} to {}", dir.display());
    std::process::exit(0);
}
