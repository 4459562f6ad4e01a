//! Build-host helper of `ota/bundle.sh`: the parts of making a bundle that
//! need checking or determinism. Each subcommand prints its result on
//! stdout, or an error naming the input on stderr (exit code 1).
//!
//! - `version SEMVER EPOCH`: the bundle version of a build
//!   (`0.1.0` at Unix time 1740839400 -> `0.1.0+20250301.143000`).
//! - `epoch VERSION`: the Unix time of a version's build part (the
//!   timestamps inside the bundle).
//! - `manifest TEMPLATE --compatible C --version V --format F --build B`:
//!   the manifest template rendered and checked.
//! - `bootfiles DIR --mtime EPOCH --out FILE`: the boot files archive
//!   of a slot (`skytime_ota::bootfiles::write_archive`: their list first,
//!   then the files; names and the files `ota/boot.cmd` needs checked).
//! - `reseal --bundle IN --out-bundle OUT --out-content CONTENT
//!   [--manifest SIGNED]`: for a verity bundle (the manifest RAUC signed
//!   given), replaces the random-salt hash tree with the deterministic one
//!   and writes the manifest to sign; for a plain bundle (no manifest),
//!   writes the payload to sign. `rauc replace-signature` then puts the
//!   new signature on OUT.

use clap::{Parser, Subcommand};
use skytime_ota::bootfiles;
use skytime_ota::manifest::{BundleFormat, Manifest, Verity};
use skytime_ota::verity;
use skytime_ota::version::Version;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(about = "Build-host helper of ota/bundle.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The version of a build of SEMVER at Unix time EPOCH.
    Version { semver: String, epoch: i64 },
    /// The Unix time of VERSION's build part.
    Epoch { version: String },
    /// Renders and checks the manifest template.
    Manifest {
        template: PathBuf,
        #[arg(long)]
        compatible: String,
        #[arg(long)]
        version: String,
        #[arg(long)]
        format: String,
        #[arg(long)]
        build: String,
    },
    /// The boot files archive of DIR.
    Bootfiles {
        dir: PathBuf,
        #[arg(long)]
        mtime: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Deterministic hash tree and the content to sign.
    Reseal {
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long)]
        manifest: Option<PathBuf>,
        #[arg(long)]
        out_bundle: PathBuf,
        #[arg(long)]
        out_content: PathBuf,
    },
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

fn manifest(
    template: &Path,
    compatible: &str,
    version: &str,
    format: &str,
    build: &str,
) -> Result<String, String> {
    let v: Version = version.parse().map_err(|e| format!("{e}"))?;
    let text = std::fs::read_to_string(template)
        .map_err(at(template))?
        .replace("@COMPATIBLE@", compatible)
        .replace("@VERSION@", &v.to_string())
        .replace("@FORMAT@", format)
        .replace("@BUILD@", build);
    let mut m: Manifest = text
        .parse()
        .map_err(|e| format!("{} rendered: {e}", template.display()))?;
    if m.update.build.as_deref() == Some("") {
        m.update.build = None;
    }
    if m.format == BundleFormat::Crypt {
        return Err("crypt bundles are not used".into());
    }
    if m.image("rootfs").is_none() || m.image("bootfiles").is_none() {
        return Err(format!(
            "{} needs [image.rootfs] and [image.bootfiles]",
            template.display()
        ));
    }
    Ok(m.to_string())
}

fn bootfile_archive(dir: &Path, mtime: u64, out: &Path) -> Result<String, String> {
    let mut f = File::create(out).map_err(at(out))?;
    let list = bootfiles::write_archive(dir, mtime, &mut f)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    f.sync_all().map_err(at(out))?;
    Ok(list.to_text())
}

/// The bundle's parts: payload (+ hash tree) length, and the signature.
fn split(bundle: &Path) -> Result<(File, u64, Vec<u8>), String> {
    let mut f = File::open(bundle).map_err(at(bundle))?;
    let total = f.metadata().map_err(at(bundle))?.len();
    let bad = |why: &str| format!("{}: not a RAUC bundle ({why})", bundle.display());
    if total < 8 {
        return Err(bad("too short"));
    }
    f.seek(SeekFrom::Start(total - 8)).map_err(at(bundle))?;
    let mut size = [0u8; 8];
    f.read_exact(&mut size).map_err(at(bundle))?;
    let sig_len = u64::from_be_bytes(size);
    let body = total
        .checked_sub(8)
        .and_then(|t| t.checked_sub(sig_len))
        .ok_or_else(|| bad("signature size exceeds the file"))?;
    f.seek(SeekFrom::Start(body)).map_err(at(bundle))?;
    let mut sig = vec![0u8; sig_len as usize];
    f.read_exact(&mut sig).map_err(at(bundle))?;
    f.seek(SeekFrom::Start(0)).map_err(at(bundle))?;
    Ok((f, body, sig))
}

fn reseal(bundle: &Path, signed: Option<&Path>, out: &Path, content: &Path) -> Result<(), String> {
    let (f, body, sig) = split(bundle)?;
    let Some(signed) = signed else {
        // Plain: the detached signature covers the whole body.
        let mut c = File::create(content).map_err(at(content))?;
        io::copy(&mut (&f).take(body), &mut c).map_err(at(content))?;
        std::fs::copy(bundle, out).map_err(at(out))?;
        return Ok(());
    };
    let mut m: Manifest = std::fs::read_to_string(signed)
        .map_err(at(signed))?
        .parse()
        .map_err(|e| format!("{}: {e}", signed.display()))?;
    let tree_len = match (&m.format, &m.verity) {
        (BundleFormat::Verity, Some(v)) => v.size,
        _ => {
            return Err(format!(
                "{}: not a signed verity manifest",
                signed.display()
            ))
        }
    };
    let payload_len = body
        .checked_sub(tree_len)
        .filter(|p| p % verity::BLOCK as u64 == 0)
        .ok_or_else(|| {
            format!(
                "{}: payload size does not fit the manifest's verity-size",
                bundle.display()
            )
        })?;
    let salt = verity::salt_for((&f).take(payload_len)).map_err(at(bundle))?;
    (&f).seek(SeekFrom::Start(0)).map_err(at(bundle))?;
    let (tree, root) = verity::hash_tree((&f).take(payload_len), &salt).map_err(at(bundle))?;
    if tree.len() as u64 != tree_len {
        return Err(format!(
            "{}: computed hash tree is {} bytes, RAUC's is {tree_len}",
            bundle.display(),
            tree.len()
        ));
    }
    (&f).seek(SeekFrom::Start(0)).map_err(at(bundle))?;
    let mut out_file = File::create(out).map_err(at(out))?;
    io::copy(&mut (&f).take(payload_len), &mut out_file).map_err(at(out))?;
    out_file.write_all(&tree).map_err(at(out))?;
    out_file.write_all(&sig).map_err(at(out))?;
    out_file
        .write_all(&(sig.len() as u64).to_be_bytes())
        .map_err(at(out))?;
    out_file.sync_all().map_err(at(out))?;
    m.verity = Some(Verity {
        hash: verity::hex(&root),
        salt: verity::hex(&salt),
        size: tree_len,
    });
    std::fs::write(content, m.to_string()).map_err(at(content))
}

fn run(cli: Cli) -> Result<String, String> {
    match cli.command {
        Command::Version { semver, epoch } => Version::from_semver_and_epoch(&semver, epoch)
            .map(|v| format!("{v}\n"))
            .map_err(|e| e.to_string()),
        Command::Epoch { version } => version
            .parse::<Version>()
            .map(|v| format!("{}\n", v.build.unix()))
            .map_err(|e| e.to_string()),
        Command::Manifest {
            template,
            compatible,
            version,
            format,
            build,
        } => manifest(&template, &compatible, &version, &format, &build),
        Command::Bootfiles { dir, mtime, out } => bootfile_archive(&dir, mtime, &out),
        Command::Reseal {
            bundle,
            manifest,
            out_bundle,
            out_content,
        } => {
            reseal(&bundle, manifest.as_deref(), &out_bundle, &out_content).map(|()| String::new())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("skytime-ota-build: {e}");
            ExitCode::FAILURE
        }
    }
}
