//! The list format, and the install stopped at every step.

use super::*;
use std::collections::BTreeMap;

fn sha(data: &[u8]) -> String {
    sha256_copy(data, None).unwrap()
}

type Tree = BTreeMap<String, Vec<u8>>;

/// A boot file set as the slot directory holds it, list included.
fn set(files: &[(&str, &str)]) -> (FileList, Tree) {
    let text: String = files
        .iter()
        .map(|(p, c)| format!("{}  {p}\n", sha(c.as_bytes())))
        .collect();
    let list: FileList = text.parse().unwrap();
    let mut tree: Tree = files
        .iter()
        .map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec()))
        .collect();
    tree.insert(LIST_NAME.into(), list.to_text().into_bytes());
    (list, tree)
}

fn old_set() -> (FileList, Tree) {
    set(&[
        ("vmlinuz", "old kernel"),
        ("initrd.img", "old initramfs"),
        ("dtbs/bcm2711-rpi-4-b.dtb", "old dtb"),
        ("dtbs/only-in-old.dtb", "gone in the new set"),
    ])
}

fn new_set() -> (FileList, Tree) {
    set(&[
        ("vmlinuz", "new kernel, longer than the old one"),
        ("initrd.img", "new initramfs"),
        ("dtbs/bcm2711-rpi-4-b.dtb", "new dtb"),
        ("dtbs/overlays/pps18.dtb", "only in the new set"),
    ])
}

fn read_tree(dir: &Path) -> Option<Tree> {
    if !dir.exists() {
        return None;
    }
    let mut out = Tree::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    Some(out)
}

fn write_tree(dir: &Path, tree: &Tree) {
    for (rel, data) in tree {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
}

/// A boot partition with slot-a (the running slot) and slot-b holding
/// `old` (or nothing), and the bundle's archive of the new set.
fn partition(old: Option<&Tree>) -> (tempfile::TempDir, PathBuf, Vec<u8>, Tree) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("boot");
    let source = tmp.path().join("bundle/bootfiles");
    write_tree(
        &root.join("slot-a"),
        &set(&[("vmlinuz", "A"), ("initrd.img", "A")]).1,
    );
    if let Some(old) = old {
        write_tree(&root.join("slot-b"), old);
    }
    let (list, new) = new_set();
    let mut files = new.clone();
    files.remove(LIST_NAME);
    write_tree(&source, &files);
    let mut archive = Vec::new();
    assert_eq!(
        write_archive(&source, 1_740_839_400, &mut archive).unwrap(),
        list
    );
    (tmp, root, archive, new)
}

/// An archive made by hand: members in the order given.
fn craft(members: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, kind) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(*kind);
        if *kind == tar::EntryType::Symlink {
            h.set_size(0);
            b.append_link(&mut h, path, "/etc/passwd").unwrap();
        } else {
            b.append_data(&mut h, path, *data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// [`RealFs`] that dies at operation number `budget`, half-way through
/// it for copies and writes: the power cut.
struct CutFs {
    budget: usize,
}

impl CutFs {
    fn tick(&mut self) -> io::Result<()> {
        if self.budget == 0 {
            return Err(io::Error::other("simulated power cut"));
        }
        self.budget -= 1;
        Ok(())
    }
}

impl Fs for CutFs {
    fn create_dir(&mut self, p: &Path) -> io::Result<()> {
        self.tick()?;
        RealFs.create_dir(p)
    }
    fn copy(&mut self, src: &mut dyn Read, dst: &Path) -> io::Result<String> {
        let mut data = Vec::new();
        src.read_to_end(&mut data)?;
        if self.budget == 0 {
            fs::write(dst, &data[..data.len() / 2])?;
        }
        self.tick()?;
        RealFs.copy(&mut &data[..], dst)
    }
    fn write(&mut self, dst: &Path, data: &[u8]) -> io::Result<()> {
        if self.budget == 0 {
            fs::write(dst, &data[..data.len() / 2])?;
        }
        self.tick()?;
        RealFs.write(dst, data)
    }
    fn hash(&mut self, p: &Path) -> io::Result<String> {
        self.tick()?;
        RealFs.hash(p)
    }
    fn read(&mut self, p: &Path) -> io::Result<Vec<u8>> {
        self.tick()?;
        RealFs.read(p)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.tick()?;
        RealFs.rename(from, to)
    }
    fn remove_tree(&mut self, p: &Path) -> io::Result<()> {
        if self.budget == 0 {
            // Half of the tree is gone when the power goes.
            if let Some(first) = fs::read_dir(p)?.next() {
                let f = first?.path();
                if f.is_dir() {
                    fs::remove_dir_all(f)?;
                } else {
                    fs::remove_file(f)?;
                }
            }
        }
        self.tick()?;
        RealFs.remove_tree(p)
    }
    fn sync_dir(&mut self, p: &Path) -> io::Result<()> {
        self.tick()?;
        RealFs.sync_dir(p)
    }
    fn exists(&mut self, p: &Path) -> bool {
        RealFs.exists(p)
    }
}

#[test]
fn parses_sha256sum_output_and_refuses_bad_lists() {
    let h = sha(b"x");
    let ok: FileList = format!("{h}  vmlinuz\n{h} *initrd.img\n{h}  dtbs/a.dtb\n")
        .parse()
        .unwrap();
    assert_eq!(
        ok.entries()
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>(),
        ["dtbs/a.dtb", "initrd.img", "vmlinuz"]
    );
    let base = format!("{h}  vmlinuz\n{h}  initrd.img\n");
    for (extra, want) in [
        (format!("{h}  ../escape"), "must be relative"),
        (format!("{h}  /abs"), "must be relative"),
        (format!("{h}  a//b"), "must be relative"),
        (format!("{h}  ./a"), "must be relative"),
        (format!("{h}  dir/"), "must be relative"),
        (format!("{h}  sp ace"), "characters other than"),
        (format!("{h}  vmlinuz"), "listed twice"),
        (format!("{h}  {LIST_NAME}"), "the list's own name"),
        (format!("{}  x", "g".repeat(64)), "is not a SHA-256"),
        ("abc  x".to_owned(), "is not \"SHA256  PATH\""),
        (format!("{h} x"), "is not \"SHA256  PATH\""),
    ] {
        let e = format!("{base}{extra}\n")
            .parse::<FileList>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains(want), "{extra:?}: {e}");
    }
    let e = format!("{h}  vmlinuz\n").parse::<FileList>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "boot file list has no initrd.img (ota/boot.cmd loads it)"
    );
    let e = format!("{base}{h}  d\n{h}  d/x\n")
        .parse::<FileList>()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "boot file list: d is both a file and a directory"
    );
}

#[test]
fn slot_directories_are_named_like_boot_cmd() {
    assert_eq!(slot_dir_name("A").unwrap(), "slot-a");
    assert_eq!(slot_dir_name("B").unwrap(), "slot-b");
    for bad in ["", "AB", "1", "../"] {
        assert!(slot_dir_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn install_replaces_only_the_target_slot() {
    let (_, old) = old_set();
    let (_tmp, root, archive, new) = partition(Some(&old));
    let a_before = read_tree(&root.join("slot-a"));
    install(&mut RealFs, &root, "slot-b", &archive[..]).unwrap();
    assert_eq!(read_tree(&root.join("slot-b")).as_ref(), Some(&new));
    assert_eq!(read_tree(&root.join("slot-a")), a_before);
    let names: BTreeSet<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["slot-a".into(), "slot-b".into()]));
    assert!(verify_dir(&mut RealFs, &root.join("slot-b")).is_ok());
}

#[test]
fn archives_are_deterministic() {
    let (_tmp, _, a, _) = partition(None);
    let (_tmp2, _, b, _) = partition(None);
    assert_eq!(a, b);
}

#[test]
fn a_bad_archive_changes_nothing_and_says_why() {
    use tar::EntryType::{Regular, Symlink};
    let (list, _) = set(&[("vmlinuz", "k"), ("initrd.img", "i")]);
    let text = list.to_text();
    let l = text.as_bytes();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            craft(&[("vmlinuz", b"k", Regular), (LIST_NAME, l, Regular)]),
            "the first member is not bootfiles.sha256",
        ),
        (
            craft(&[
                (LIST_NAME, l, Regular),
                ("vmlinuz", b"k", Regular),
                ("initrd.img", b"tampered", Regular),
            ]),
            "initrd.img: SHA-256",
        ),
        (
            craft(&[(LIST_NAME, l, Regular), ("vmlinuz", b"k", Regular)]),
            "initrd.img is listed but not in the archive",
        ),
        (
            craft(&[
                (LIST_NAME, l, Regular),
                ("vmlinuz", b"k", Regular),
                ("extra", b"x", Regular),
            ]),
            "extra is not in bootfiles.sha256",
        ),
        (
            craft(&[
                (LIST_NAME, l, Regular),
                ("vmlinuz", b"k", Regular),
                ("vmlinuz", b"k", Regular),
            ]),
            "vmlinuz is in the archive twice",
        ),
        (
            craft(&[(LIST_NAME, l, Regular), ("initrd.img", b"", Symlink)]),
            "initrd.img is a Symlink, not a file",
        ),
        (craft(&[(LIST_NAME, b"not a list", Regular)]), "line 1"),
        (Vec::new(), "it is empty"),
    ];
    for (archive, want) in cases {
        let (_, old) = old_set();
        let (_tmp, root, _, _) = partition(Some(&old));
        let e = install(&mut RealFs, &root, "slot-b", &archive[..]).unwrap_err();
        assert!(e.to_string().contains(want), "want {want:?}, got {e}");
        assert_eq!(read_tree(&root.join("slot-b")), Some(old), "{want}");
        recover(&mut RealFs, &root, "slot-b").unwrap();
        assert!(!root.join("slot-b.new").exists());
    }
}

/// The torn-write property: a power cut at any step of the sequence, with
/// an old set in place or none, leaves slot-b as the complete old set, the
/// complete new set, or (only between the two renames) absent; recovery
/// then gives a complete set, and installing again gives the new one.
#[test]
fn a_power_cut_at_every_step_leaves_old_or_new_never_a_mix() {
    for old in [Some(old_set().1), None] {
        let mut completed = false;
        let mut seen = BTreeSet::new();
        for budget in 0..200 {
            let (_tmp, root, archive, new) = partition(old.as_ref());
            let a_before = read_tree(&root.join("slot-a"));
            let result = install(&mut CutFs { budget }, &root, "slot-b", &archive[..]);
            let after = read_tree(&root.join("slot-b"));
            let what = match &after {
                None => "absent",
                Some(t) if Some(t) == old.as_ref() => "old",
                Some(t) if *t == new => "new",
                Some(t) => panic!("budget {budget}: slot-b is a mix: {:?}", t.keys()),
            };
            seen.insert(what);
            if what == "absent" && old.is_some() {
                // Only possible between the renames: a complete new set
                // waits beside it.
                assert!(verify_dir(&mut RealFs, &root.join("slot-b.new")).is_ok());
            }
            assert_eq!(
                read_tree(&root.join("slot-a")),
                a_before,
                "slot-a untouched"
            );

            recover(&mut RealFs, &root, "slot-b").unwrap();
            let recovered = read_tree(&root.join("slot-b"));
            assert!(
                recovered.as_ref() == old.as_ref() || recovered.as_ref() == Some(&new),
                "budget {budget}: after recovery slot-b is {:?}",
                recovered.map(|t| t.into_keys().collect::<Vec<_>>())
            );
            assert!(!root.join("slot-b.new").exists() && !root.join("slot-b.old").exists());

            install(&mut RealFs, &root, "slot-b", &archive[..]).unwrap();
            assert_eq!(read_tree(&root.join("slot-b")), Some(new.clone()));

            if result.is_ok() {
                completed = true;
                break;
            }
        }
        assert!(completed, "the install finishes within the step budget");
        // The cut landed before, between and after the renames.
        assert!(seen.contains("new"));
        if old.is_some() {
            assert!(seen.contains("old") && seen.contains("absent"), "{seen:?}");
        }
    }
}

#[test]
fn recovery_restores_the_old_set_when_the_new_one_is_incomplete() {
    let (_, old) = old_set();
    let (_tmp, root, _, new) = partition(None);
    write_tree(&root.join("slot-b.old"), &old);
    let mut partial = new.clone();
    partial.remove(LIST_NAME);
    write_tree(&root.join("slot-b.new"), &partial);
    recover(&mut RealFs, &root, "slot-b").unwrap();
    assert_eq!(read_tree(&root.join("slot-b")), Some(old));
}
