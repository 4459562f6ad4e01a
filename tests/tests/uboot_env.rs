//! U-Boot alone: the A/B boot state's table (issue 14, test 2). The boot
//! state lives in two redundant raw env copies before the first partition
//! (ota/boot.cmd, image/rootfs/etc/fw_env.config) so that a power cut in
//! the middle of a write leaves the previous state readable. Each case
//! writes the two copies of a small disk made here (MBR, the copies, a FAT
//! partition with boot.scr compiled from ota/boot.cmd and dummy slot-a/ and
//! slot-b/ kernels), boots it with Debian's U-Boot for QEMU (`qemu_arm64`,
//! the firmware the image tests use) until the script gives up on the dummy
//! kernel and resets (QEMU -no-reboot exits), then checks which slot booted
//! (the console line) and what was written back: the other copy, newer by
//! one, with the decremented counter; the copy that was read untouched.
//! Every case also reads the result with libubootenv's fw_printenv (what
//! Linux, RAUC and mark-good use), and one test goes the other way: U-Boot
//! reads what fw_setenv wrote. No image build is needed; the tools are
//! the image's (make image-deps).

mod image_support;

use image_support::{boot_env, repo, run, set_boot_env, Qemu, BOOT_ENV_COPIES, BOOT_OFFSET};
use skytime_tests::require_program;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One copy: [CRC32 (4)][flags (1)][data].
const COPY: usize = 0x4000;
const UBOOT_QEMU: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
const BOOT_MIB: u64 = 8;

/// IEEE CRC32 (zlib's, which U-Boot and libubootenv use).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

type State = BTreeMap<String, String>;

fn state(order: &str, a: &str, b: &str) -> State {
    [
        ("BOOT_ORDER", order),
        ("BOOT_A_LEFT", a),
        ("BOOT_B_LEFT", b),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A valid copy holding `vars` with the flags counter `flags`.
fn copy(vars: &State, flags: u8) -> Vec<u8> {
    let mut data: Vec<u8> = Vec::new();
    for (name, value) in vars {
        data.extend_from_slice(format!("{name}={value}\0").as_bytes());
    }
    data.resize(COPY - 5, 0);
    let mut out = crc32(&data).to_le_bytes().to_vec();
    out.push(flags);
    out.extend_from_slice(&data);
    out
}

/// A write of `new` over `old` cut after its first bytes: the new CRC and
/// flags (newer), the old data, so the CRC does not match.
fn torn(new: &[u8], old: &[u8]) -> Vec<u8> {
    let mut out = new[..5].to_vec();
    out.extend_from_slice(&old[5..]);
    out
}

/// (flags, variables) of a copy, None when its CRC does not match.
fn parse(bytes: &[u8]) -> Option<(u8, State)> {
    let crc = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    let data = &bytes[5..];
    if crc32(data) != crc {
        return None;
    }
    let end = data.windows(2).position(|w| w == [0, 0]).unwrap_or(0);
    let vars = data[..end]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let s = String::from_utf8_lossy(s);
            let (k, v) = s.split_once('=').unwrap_or((&s, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    Some((bytes[4], vars))
}

fn read_copies(disk: &Path) -> [Vec<u8>; 2] {
    let mut f = fs::File::open(disk).unwrap();
    BOOT_ENV_COPIES.map(|offset| {
        let mut buf = vec![0u8; COPY];
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.read_exact(&mut buf).unwrap();
        buf
    })
}

fn write_copies(disk: &Path, copies: [&[u8]; 2]) {
    let mut f = fs::OpenOptions::new().write(true).open(disk).unwrap();
    for (offset, bytes) in BOOT_ENV_COPIES.iter().zip(copies) {
        assert_eq!(bytes.len(), COPY);
        f.seek(SeekFrom::Start(*offset)).unwrap();
        f.write_all(bytes).unwrap();
    }
}

/// The disk without its boot state: an MBR with the image's disk signature
/// and one bootable FAT partition at 4 MiB (as image/genimage.cfg), zeros
/// where the two copies go.
fn template(dir: &Path) -> PathBuf {
    for tool in [
        "mkimage",
        "mkfs.vfat",
        "mmd",
        "mcopy",
        "fw_printenv",
        "fw_setenv",
    ] {
        require_program(tool);
    }
    assert!(
        Path::new(UBOOT_QEMU).exists(),
        "{UBOOT_QEMU} is missing: run `make image-deps` (u-boot-qemu)"
    );
    let scr = dir.join("boot.scr");
    run(Command::new("mkimage")
        .args(["-A", "arm64", "-O", "linux", "-T", "script", "-C", "none"])
        .args(["-n", "skytime A/B boot", "-d"])
        .arg(repo().join("ota/boot.cmd"))
        .arg(&scr));
    let vfat = dir.join("boot.vfat");
    run(Command::new(require_program("mkfs.vfat"))
        .arg("-C")
        .arg(&vfat)
        .arg((BOOT_MIB * 1024).to_string()));
    let dummy = dir.join("not-a-kernel");
    fs::write(&dummy, "not a kernel\n").unwrap();
    let target = |name: &str| format!("::{name}");
    for d in ["slot-a", "slot-b"] {
        run(Command::new("mmd").arg("-i").arg(&vfat).arg(target(d)));
        for f in ["vmlinuz", "initrd.img"] {
            run(Command::new("mcopy")
                .arg("-i")
                .arg(&vfat)
                .arg(&dummy)
                .arg(target(&format!("{d}/{f}"))));
        }
    }
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&vfat)
        .arg(&scr)
        .arg(target("boot.scr")));

    let mut mbr = [0u8; 512];
    mbr[440..444].copy_from_slice(&0x5c7e_0001u32.to_le_bytes());
    let entry = &mut mbr[446..462];
    entry[0] = 0x80; // bootable
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[4] = 0x0c; // FAT32 LBA, as the image
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&((BOOT_OFFSET / 512) as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&(((BOOT_MIB << 20) / 512) as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let mut disk = mbr.to_vec();
    disk.resize(BOOT_OFFSET as usize, 0);
    disk.extend_from_slice(&fs::read(&vfat).unwrap());
    let path = dir.join("template.img");
    fs::write(&path, disk).unwrap();
    path
}

/// Boots `disk` with U-Boot until the script resets; the console.
fn boot(disk: &Path, dir: &Path, name: &str) -> String {
    let console = dir.join(format!("{name}-console.log"));
    let args: Vec<String> = [
        "-M",
        "virt",
        "-cpu",
        "cortex-a72",
        "-m",
        "256",
        "-bios",
        UBOOT_QEMU,
        "-drive",
        &format!("file={},format=raw,if=virtio", disk.display()),
        "-nic",
        "none",
        "-serial",
        &format!("file:{}", console.display()),
    ]
    .map(String::from)
    .to_vec();
    Qemu::start(&args, console, &dir.join(format!("{name}-qemu.log")))
        .wait_exit(Duration::from_secs(180))
}

fn booted_line(slot: &str, left: &State) -> String {
    format!(
        "skytime: booting slot {slot} (attempts left: A={} B={}, order {})",
        left["BOOT_A_LEFT"], left["BOOT_B_LEFT"], left["BOOT_ORDER"]
    )
}

/// fw_printenv's `NAME=value` lines as a map.
fn printenv(disk: &Path, dir: &Path) -> State {
    boot_env(disk, dir)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct Case {
    name: &'static str,
    copies: [Vec<u8>; 2],
    /// The slot U-Boot picks; None: none has attempts left (reset).
    slot: Option<&'static str>,
    /// The copy written, its flags and its state.
    written: usize,
    flags: u8,
    after: State,
}

fn check(case: &Case, template: &Path, dir: &Path) {
    let name = case.name;
    let disk = dir.join(format!("{name}.img"));
    fs::copy(template, &disk).unwrap();
    write_copies(&disk, [&case.copies[0], &case.copies[1]]);
    let console = boot(&disk, dir, name);
    match case.slot {
        Some(slot) => {
            let line = booted_line(slot, &case.after);
            assert!(
                console.contains(&line),
                "{name}: no {line:?} on the console:\n{console}"
            );
        }
        None => {
            assert!(
                console.contains("skytime: no slot has boot attempts left; resetting the counters")
                    && !console.contains("skytime: booting slot"),
                "{name}: the counters were not reset before any boot:\n{console}"
            );
        }
    }
    let after = read_copies(&disk);
    let other = 1 - case.written;
    assert!(
        after[other] == case.copies[other],
        "{name}: copy {other} (the one read, or the torn one left for the next write) changed"
    );
    let (flags, vars) = parse(&after[case.written]).unwrap_or_else(|| {
        panic!(
            "{name}: copy {} has a bad CRC after the boot:\n{console}",
            case.written
        )
    });
    assert_eq!(
        (flags, &vars),
        (case.flags, &case.after),
        "{name}: copy {} written back (flags, state)",
        case.written
    );
    // Linux reads what U-Boot wrote: libubootenv picks the same copy.
    assert_eq!(
        printenv(&disk, dir),
        case.after,
        "{name}: fw_printenv disagrees with what U-Boot wrote"
    );
    fs::remove_file(&disk).unwrap();
}

#[test]
fn boot_state_cases() {
    let dir = tempfile::tempdir().unwrap();
    let template = template(dir.path());
    let ab33 = state("A B", "3", "3");
    let ba33 = state("B A", "3", "3");
    let cases = vec![
        Case {
            name: "copy0-newer",
            copies: [copy(&state("A B", "2", "3"), 5), copy(&ab33, 4)],
            slot: Some("A"),
            written: 1,
            flags: 6,
            after: state("A B", "1", "3"),
        },
        Case {
            name: "copy1-newer",
            copies: [copy(&ab33, 4), copy(&state("A B", "3", "2"), 5)],
            slot: Some("A"),
            written: 0,
            flags: 6,
            after: state("A B", "2", "2"),
        },
        Case {
            // Copy 1's write was cut: its header says newer (B first), its
            // CRC does not match; copy 0 still holds the state.
            name: "copy1-torn",
            copies: [copy(&ab33, 7), torn(&copy(&ba33, 8), &copy(&ab33, 6))],
            slot: Some("A"),
            written: 1,
            flags: 8,
            after: state("A B", "2", "3"),
        },
        Case {
            name: "copy0-torn",
            copies: [
                torn(&copy(&ba33, 4), &copy(&state("A B", "1", "3"), 2)),
                copy(&state("A B", "2", "3"), 3),
            ],
            slot: Some("A"),
            written: 0,
            flags: 4,
            after: state("A B", "1", "3"),
        },
        Case {
            // Never written and garbage: the defaults, written to copy 0.
            name: "both-corrupt",
            copies: [vec![0u8; COPY], {
                let mut c = copy(&ba33, 9);
                c[100] ^= 0xff;
                c
            }],
            slot: Some("A"),
            written: 0,
            flags: 1,
            after: state("A B", "2", "3"),
        },
        Case {
            name: "a-no-attempts",
            copies: [copy(&state("A B", "0", "3"), 1), vec![0xff; COPY]],
            slot: Some("B"),
            written: 1,
            flags: 2,
            after: state("A B", "0", "2"),
        },
        Case {
            name: "order-b-a",
            copies: [copy(&ba33, 1), copy(&ab33, 0)],
            slot: Some("B"),
            written: 1,
            flags: 2,
            after: state("B A", "3", "2"),
        },
        Case {
            name: "all-zero-reset",
            copies: [
                copy(&state("A B", "0", "0"), 9),
                copy(&state("A B", "1", "0"), 8),
            ],
            slot: None,
            written: 1,
            flags: 10,
            after: ab33.clone(),
        },
        Case {
            // 255 -> 0: copy 1's 0 is newer than copy 0's 255.
            name: "wrap-copy1",
            copies: [copy(&ab33, 255), copy(&ba33, 0)],
            slot: Some("B"),
            written: 0,
            flags: 1,
            after: state("B A", "3", "2"),
        },
        Case {
            name: "wrap-copy0",
            copies: [copy(&ba33, 0), copy(&ab33, 255)],
            slot: Some("B"),
            written: 1,
            flags: 1,
            after: state("B A", "3", "2"),
        },
        Case {
            // The write after 255 carries 0.
            name: "flags-255-increment",
            copies: [copy(&ab33, 255), vec![0u8; COPY]],
            slot: Some("A"),
            written: 1,
            flags: 0,
            after: state("A B", "2", "3"),
        },
        Case {
            // Equal counters (never written so by U-Boot or libubootenv):
            // copy 0, as both of them choose.
            name: "equal-flags",
            copies: [copy(&ab33, 5), copy(&ba33, 5)],
            slot: Some("A"),
            written: 1,
            flags: 6,
            after: state("A B", "2", "3"),
        },
    ];
    for case in &cases {
        check(case, &template, dir.path());
    }
}

/// Linux and U-Boot agree both ways: the initial copies as the image build
/// makes them (mkenvimage -r, copy 1 older), fw_setenv's writes booted by
/// U-Boot, U-Boot's writes read by fw_printenv.
#[test]
fn libubootenv_and_uboot_agree() {
    require_program("mkenvimage");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let disk = template(dir);
    let txt = dir.join("bootenv.txt");
    fs::write(&txt, "BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n").unwrap();
    let bin = dir.join("bootenv0.bin");
    run(Command::new("mkenvimage")
        .args(["-r", "-s", "0x4000", "-o"])
        .arg(&bin)
        .arg(&txt));
    let copy0 = fs::read(&bin).unwrap();
    let mut copy1 = copy0.clone();
    copy1[4] = 0;
    write_copies(&disk, [&copy0, &copy1]);
    assert_eq!(printenv(&disk, dir), state("A B", "3", "3"));

    // Linux (RAUC's mark active) puts B first: written to copy 1.
    set_boot_env(&disk, dir, &[("BOOT_ORDER", "B A")]);
    let copies = read_copies(&disk);
    assert_eq!(copies[0], copy0, "fw_setenv changed the copy it read");
    assert_eq!(parse(&copies[1]).map(|c| c.0), Some(2));

    let console = boot(&disk, dir, "after-setenv");
    let after = state("B A", "3", "2");
    let line = booted_line("B", &after);
    assert!(console.contains(&line), "no {line:?}:\n{console}");
    assert_eq!(parse(&read_copies(&disk)[0]), Some((3, after.clone())));
    assert_eq!(printenv(&disk, dir), after);

    // mark-good gives B its attempts back; U-Boot boots B from that.
    set_boot_env(&disk, dir, &[("BOOT_B_LEFT", "3")]);
    assert_eq!(parse(&read_copies(&disk)[1]).map(|c| c.0), Some(4));
    let console = boot(&disk, dir, "after-mark-good");
    assert!(console.contains(&line), "no {line:?}:\n{console}");
    assert_eq!(parse(&read_copies(&disk)[0]), Some((5, after)));
}
