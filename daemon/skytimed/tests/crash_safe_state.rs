//! Crash-safe state: every file skytimed keeps is written through
//! skytime-persist's one atomic path, and here that path is failed or
//! "crashed" (stopped, leaving the disk as it is) at each of its steps
//! (create the temporary file, write it — half —, fsync, rename, fsync the
//! directory) for each kind of state file. Afterwards the daemon's own
//! loader for that file must read the old contents or the new ones, never
//! a mix, an empty file, or a leftover temporary file.
//!
//! The kinds: NTS master keys, the drift file, the managed configuration,
//! an upstream server's NTS session (keys and cookies), and the TLS
//! certificate with its key (two files that change together: crashed at
//! every step of the pair's sequence).

use skytime_discipline::Drift;
use skytime_nts::aead::{Aead, Key, SessionKeys};
use skytime_nts::keyset::KeySet;
use skytime_nts::ntp_client::{NtsSession, SavedSession};
use skytime_persist::pair::{write_pair, write_pair_steps, PairFile};
use skytime_persist::{atomic_write, atomic_write_steps, Fault, FaultAt, FaultAtCall, Step};
use skytimed::config::Config;
use skytimed::nts::keystore::{read_key_file, write_key_file};
use skytimed::nts::tls::TlsStore;
use skytimed::{clock, upstream};
use std::path::Path;

/// Every (step, fault) pair, for a file that existed before (`old`) and
/// for a first write (`None`).
fn faults() -> impl Iterator<Item = (Step, Fault)> {
    Step::ALL
        .into_iter()
        .flat_map(|s| [(s, Fault::Fail), (s, Fault::Crash)])
}

/// Which contents a loader must see after a fault at `step`: the new ones
/// once the rename happened, else the old ones.
fn expect<T: Clone>(step: Step, old: &T, new: &T) -> T {
    if step == Step::SyncDir {
        new.clone()
    } else {
        old.clone()
    }
}

/// Writes `new` over `path` with one fault; returns the bytes on disk.
fn faulted(path: &Path, new: &[u8], mode: u32, step: Step, fault: Fault) -> Option<Vec<u8>> {
    let r = atomic_write_steps(path, new, Some(mode), &mut FaultAt(step, fault));
    assert!(r.is_err(), "{step:?} {fault:?}: the fault is reported");
    std::fs::read(path).ok()
}

#[test]
fn nts_master_keys() {
    let mut rng = rand::thread_rng();
    for (step, fault) in faults() {
        for first in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("nts-keys");
            let old = KeySet::generate(1_000, &mut rng);
            let new = KeySet::generate(2_000, &mut rng);
            if !first {
                write_key_file(&path, &old).unwrap();
            }
            faulted(&path, new.serialize().as_bytes(), 0o600, step, fault);
            let loaded = read_key_file(&path).ok();
            let old = (!first).then_some(old);
            assert_eq!(
                loaded,
                expect(step, &old, &Some(new)),
                "{step:?} {fault:?} first={first}"
            );
        }
    }
}

#[test]
fn drift_file() {
    for (step, fault) in faults() {
        for first in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("drift");
            // A torn "-12.345678 0.250000" would still parse ("-12.34"):
            // only atomic replacement keeps it honest.
            let old = Drift {
                freq_ppm: 3.5,
                skew_ppm: 0.5,
            };
            let new = Drift {
                freq_ppm: -12.345678,
                skew_ppm: 0.25,
            };
            if !first {
                clock::save_drift(&path, &old).unwrap();
            }
            faulted(&path, new.render().as_bytes(), 0o644, step, fault);
            let old = (!first).then_some(old);
            assert_eq!(
                clock::load_drift(&path),
                expect(step, &old, &Some(new)),
                "{step:?} {fault:?} first={first}"
            );
        }
    }
}

#[test]
fn managed_configuration() {
    let old = "[log]\nlevel = \"info\"\n";
    let new = "[log]\nlevel = \"debug\"\n\n[ntp]\nlocal_stratum = 5\n";
    for (step, fault) in faults() {
        for first in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let base = Config {
                data_dir: dir.path().to_owned(),
                ..Config::default()
            };
            let path = base.managed_path();
            if !first {
                atomic_write(&path, old.as_bytes(), 0o644).unwrap();
            }
            let on_disk = faulted(&path, new.as_bytes(), 0o644, step, fault);
            // The daemon's start-up reader takes what is there.
            let (_, used) = base
                .with_managed()
                .unwrap_or_else(|e| panic!("{step:?} {fault:?}: {e}"));
            let old_bytes = (!first).then(|| old.as_bytes().to_vec());
            let want = expect(step, &old_bytes, &Some(new.as_bytes().to_vec()));
            assert_eq!(on_disk, want, "{step:?} {fault:?} first={first}");
            assert_eq!(used.is_some(), want.is_some());
        }
    }
}

fn session(ke: &str, fill: u8, cookies: usize) -> SavedSession {
    SavedSession {
        ke_server: ke.into(),
        ntp_server: None,
        ntp_port: None,
        session: NtsSession::new(
            SessionKeys {
                aead: Aead::AesSivCmac256,
                c2s: Key::from([fill; 32]),
                s2c: Key::from([fill + 1; 32]),
            },
            (0..cookies).map(|i| vec![fill ^ i as u8; 100]).collect(),
        ),
    }
}

#[test]
fn upstream_nts_session() {
    let ke = "time.example:4460";
    for (step, fault) in faults() {
        for first in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let old = session(ke, 1, 8);
            let new = session(ke, 9, 3);
            if !first {
                upstream::cookies::save(dir.path(), &old).unwrap();
            }
            let path = upstream::cookies::path(dir.path(), ke);
            std::fs::create_dir_all(dir.path()).unwrap();
            faulted(&path, new.render().as_bytes(), 0o600, step, fault);
            let old = (!first).then_some(old);
            assert_eq!(
                upstream::cookies::load(dir.path(), ke),
                expect(step, &old, &Some(new)),
                "{step:?} {fault:?} first={first}"
            );
        }
    }
}

#[test]
fn certificate_and_key_change_together() {
    let (old_cert, old_key) =
        skytime_persist::identity::self_signed("old.example", &[], "test").unwrap();
    let (new_cert, new_key) =
        skytime_persist::identity::self_signed("new.example", &[], "test").unwrap();
    let mut cases = 0;
    for fault in [Fault::Fail, Fault::Crash] {
        for n in 0.. {
            let dir = tempfile::tempdir().unwrap();
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            write_pair(
                PairFile {
                    path: &key,
                    contents: old_key.as_bytes(),
                    mode: 0o600,
                },
                PairFile {
                    path: &cert,
                    contents: old_cert.as_bytes(),
                    mode: 0o644,
                },
            )
            .unwrap();
            let r = write_pair_steps(
                PairFile {
                    path: &key,
                    contents: new_key.as_bytes(),
                    mode: 0o600,
                },
                PairFile {
                    path: &cert,
                    contents: new_cert.as_bytes(),
                    mode: 0o644,
                },
                &mut FaultAtCall::new(n, fault),
            );
            if r.is_ok() {
                break;
            }
            cases += 1;
            // The daemon's loader finishes or drops the interrupted write
            // and serves a matching pair.
            TlsStore::load(&cert, &key).unwrap_or_else(|e| panic!("{fault:?} at step {n}: {e}"));
            let got = (
                std::fs::read_to_string(&cert).unwrap(),
                std::fs::read_to_string(&key).unwrap(),
            );
            assert!(
                got == (old_cert.clone(), old_key.clone())
                    || got == (new_cert.clone(), new_key.clone()),
                "{fault:?} at step {n}: a mixed pair"
            );
            let names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".new"))
                .collect();
            assert!(names.is_empty(), "staged files left: {names:?}");
        }
    }
    assert!(cases >= 20, "{cases} fault points");
}
