//! `quicmesh ca bundle`: a CA directory's trust bundle as a SPIFFE bundle
//! document, the initial bundle a federated mesh is given out of band.
//!
//! `quicmesh ca rotate`: one stage of a CA rotation on a CA directory
//! (the files of the controller's `--ca-dir`; for the CA Secret, run it on
//! a copy and apply the files back: docs/ca.md). The stages themselves
//! are `quicmesh_core::identity::ca::rotate`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use quicmesh_core::identity::bundle_doc;
use quicmesh_core::identity::ca::{rotate, Ca};

#[derive(Subcommand)]
pub enum CaCmd {
    /// Run one stage of a rotation: add-root, then switch, then drop-old.
    Rotate {
        /// The CA directory (ca.pem, ca-key.pem, ca-chain.pem, roots.pem).
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long, value_enum)]
        stage: Stage,
        /// add-root: the next CA's directory (the same files; an
        /// intermediate with its chain and roots, its root kept offline).
        /// Without it, a new self-signed root is generated.
        #[arg(long)]
        from: Option<PathBuf>,
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
    },
    /// Print the trust bundle of a CA directory (its roots.pem, or its
    /// root) as a SPIFFE bundle document: what the controller's bundle
    /// endpoint serves, for a peer's `trustDomainBundle`. With
    /// `--generate`, a new CA is written to an empty directory first.
    Bundle {
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        /// The document's `spiffe_refresh_hint`.
        #[arg(long, default_value = "300s", value_parser = quicmesh_core::duration::parse)]
        refresh_hint: std::time::Duration,
        /// The document's `spiffe_sequence`.
        #[arg(long, default_value_t = 1)]
        sequence: u64,
        /// Generate the CA when the directory has none (ten-year root).
        #[arg(long)]
        generate: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Stage {
    /// Stage the next CA and add its root to the trust bundle.
    AddRoot,
    /// Sign with the next CA.
    Switch,
    /// Keep only the roots the signer chains to.
    DropOld,
}

pub fn run(cmd: CaCmd) -> Result<()> {
    match cmd {
        CaCmd::Rotate {
            ca_dir,
            stage,
            from,
            trust_domain,
        } => rotate_stage(&ca_dir, stage, from, &trust_domain),
        CaCmd::Bundle {
            ca_dir,
            trust_domain,
            refresh_hint,
            sequence,
            generate,
        } => {
            let td = trust_domain.as_str();
            let ca = if generate {
                Ca::load_or_generate(td, &ca_dir)?
            } else {
                Ca::load(td, &ca_dir)?
            };
            println!(
                "{}",
                bundle_doc::encode(ca.roots(), sequence, refresh_hint)?
            );
            Ok(())
        }
    }
}

fn rotate_stage(
    ca_dir: &Path,
    stage: Stage,
    from: Option<PathBuf>,
    trust_domain: &str,
) -> Result<()> {
    let td = trust_domain;
    let done = match stage {
        Stage::AddRoot => {
            let next = match &from {
                Some(dir) => Ca::load(td, dir)
                    .with_context(|| format!("the next CA in {}", dir.display()))?,
                None => Ca::generate(td)?,
            };
            rotate::add_root(td, ca_dir, &next)?
        }
        Stage::Switch => rotate::switch(td, ca_dir)?,
        Stage::DropOld => rotate::drop_old(td, ca_dir)?,
    };
    println!("signer: {}", done.signer);
    println!("roots:  {}", done.roots.join(" "));
    if !done.removed.is_empty() {
        println!(
            "removed: {} (the controller keeps publishing a removed root until the last SVID it issued from it expires)",
            done.removed.join(" ")
        );
    }
    let next = match stage {
        Stage::AddRoot => "wait until every proxy has the new root (docs/ca.md), then run --stage switch",
        Stage::Switch => "wait until SVIDs of the old signer have expired (--svid-ttl), then run --stage drop-old",
        Stage::DropOld => "rotation complete",
    };
    println!("next:   {next}");
    Ok(())
}
