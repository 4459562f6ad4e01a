//! Server master keys: the newest seals new cookies, older ones still open
//! the cookies clients hold, and a rotation schedule driven by time passed
//! in as an argument.
//!
//! With rotation interval `I` and `P` previous keys kept, a cookie stays
//! valid for at least `P * I` and at most `(P + 1) * I` after it was issued.
//! Clients get a fresh cookie with every reply, so only a client silent for
//! longer than that is NAKed and has to run NTS-KE again.
//!
//! The key that the next rotation will bring into use is made one rotation
//! ahead and published in the file as `next`: it opens cookies but seals
//! none yet. A server that shares the file in the `follow` role therefore
//! already knows the new key when the rotating server starts sealing
//! cookies with it, however late the follower re-reads the file (within one
//! interval).
//!
//! File format (text, newest key first, one key per line):
//!
//! ```text
//! skytime-nts-keys 1
//! next <id: 8 hex digits> <made: unix seconds> <key: 64 hex digits>
//! key <id: 8 hex digits> <in use since: unix seconds> <key: 64 hex digits>
//! ```
//!
//! The `next` line is optional (files written before it existed have
//! none). Lines starting with `#` and blank lines are ignored.

use crate::aead::{Key, KEY_LEN};
use rand::{CryptoRng, RngCore};

const MAGIC: &str = "skytime-nts-keys 1";

/// One master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterKey {
    /// Travels in the clear at the start of every cookie.
    pub id: u32,
    /// When it was made (unix seconds, by the clock of that moment).
    pub created: u64,
    key: Key,
}

impl MasterKey {
    /// The AES-SIV-CMAC-256 key that seals and opens cookies (their
    /// ciphers are built where they are used: see
    /// [`crate::cookie::CookieCiphers`]).
    pub fn key(&self) -> &Key {
        &self.key
    }
}

/// The current key, the previous ones still accepted, and the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySet {
    /// Newest first; never empty.
    keys: Vec<MasterKey>,
    /// Published ahead of use so followers know it before it seals.
    next: Option<MasterKey>,
}

/// A key file that cannot be used. Never silently replaced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct KeyFileError {
    pub line: usize,
    pub reason: String,
}

impl KeySet {
    /// A set with one new key.
    pub fn generate<R: RngCore + CryptoRng>(now: u64, rng: &mut R) -> Self {
        let current = new_key(now, rng, &[]);
        let next = new_key(now, rng, std::slice::from_ref(&current));
        Self {
            keys: vec![current],
            next: Some(next),
        }
    }

    /// The key that seals new cookies.
    pub fn current(&self) -> &MasterKey {
        &self.keys[0]
    }

    /// Every key, newest first.
    pub fn keys(&self) -> &[MasterKey] {
        &self.keys
    }

    /// The key published for the next rotation, if the file has one.
    pub fn next(&self) -> Option<&MasterKey> {
        self.next.as_ref()
    }

    /// The key with this id, including the published next one: a follower
    /// that has not yet seen a rotation still opens the new cookies.
    pub fn get(&self, id: u32) -> Option<&MasterKey> {
        self.keys
            .iter()
            .chain(self.next.as_ref())
            .find(|k| k.id == id)
    }

    /// Whether the current key is due for replacement at `now`: it is at
    /// least `interval` old, or it claims to be made more than `interval`
    /// in the future (the clock was stepped back, as on a board without
    /// RTC that booted before GPS time arrived), so the schedule restarts.
    pub fn rotation_due(&self, now: u64, interval: u64) -> bool {
        let created = self.current().created;
        now >= created.saturating_add(interval) || now.saturating_add(interval) < created
    }

    /// Seconds from `now` until [`Self::rotation_due`] turns true (0 if it is).
    pub fn seconds_until_rotation(&self, now: u64, interval: u64) -> u64 {
        if self.rotation_due(now, interval) {
            0
        } else {
            self.current()
                .created
                .saturating_add(interval)
                .saturating_sub(now)
                .max(1)
        }
    }

    /// Brings the published next key into use (or a new one if none was
    /// published), keeps at most `keep_previous` older ones, and publishes
    /// a new next key.
    pub fn rotate<R: RngCore + CryptoRng>(&mut self, now: u64, keep_previous: usize, rng: &mut R) {
        let mut key = match self.next.take() {
            Some(k) => k,
            None => new_key(now, rng, &self.keys),
        };
        key.created = now;
        self.keys.insert(0, key);
        self.keys.truncate(keep_previous + 1);
        self.next = Some(new_key(now, rng, &self.keys));
    }

    /// The file form (see the module documentation).
    pub fn serialize(&self) -> String {
        let mut s =
            String::from("# skytime NTS master keys (newest first). Secret: keep mode 0600.\n");
        s.push_str(MAGIC);
        s.push('\n');
        let tagged = self.next.iter().map(|k| ("next", k));
        for (tag, k) in tagged.chain(self.keys.iter().map(|k| ("key", k))) {
            s.push_str(&format!(
                "{tag} {:08x} {} {}\n",
                k.id,
                k.created,
                hex(k.key().as_bytes())
            ));
        }
        s
    }

    /// Parses the file form; errors name the line.
    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        let err = |line: usize, reason: &str| KeyFileError {
            line,
            reason: reason.to_owned(),
        };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        match lines.next() {
            Some((_, l)) if l == MAGIC => {}
            Some((n, _)) => return Err(err(n, &format!("expected the header \"{MAGIC}\""))),
            None => return Err(err(0, "file is empty")),
        }
        let mut keys: Vec<MasterKey> = Vec::new();
        let mut next: Option<MasterKey> = None;
        const SHAPE: &str =
            "expected \"key <id> <created> <key>\" or \"next <id> <created> <key>\"";
        for (n, line) in lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [tag, id, created, key] = fields[..] else {
                return Err(err(n, SHAPE));
            };
            let is_next = match tag {
                "key" => false,
                "next" if next.is_some() => return Err(err(n, "more than one next key")),
                "next" => true,
                _ => return Err(err(n, SHAPE)),
            };
            let id = (id.len() == 8)
                .then(|| u32::from_str_radix(id, 16).ok())
                .flatten()
                .ok_or_else(|| err(n, "key id is not 8 hex digits"))?;
            let created: u64 = created
                .parse()
                .map_err(|_| err(n, "creation time is not a number of seconds"))?;
            let bytes = unhex(key)
                .filter(|b| b.len() == KEY_LEN)
                .ok_or_else(|| err(n, "key is not 64 hex digits"))?;
            if keys.iter().chain(next.as_ref()).any(|k| k.id == id) {
                return Err(err(n, "duplicate key id"));
            }
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(&bytes);
            let key = MasterKey {
                id,
                created,
                key: Key::from(k),
            };
            if is_next {
                next = Some(key);
            } else {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(err(0, "file holds no key"));
        }
        Ok(Self { keys, next })
    }

    #[cfg(test)]
    pub(crate) fn force_id_for_test(&mut self, id: u32) {
        self.keys[0].id = id;
    }
}

fn new_key<R: RngCore + CryptoRng>(now: u64, rng: &mut R, existing: &[MasterKey]) -> MasterKey {
    let mut key = [0u8; KEY_LEN];
    rng.fill_bytes(&mut key);
    // Ids are random so that several servers sharing a file, or a file
    // restored from an old backup, do not reuse ids with different keys.
    let id = loop {
        let id = rng.next_u32();
        if !existing.iter().any(|k| k.id == id) {
            break id;
        }
    };
    MasterKey {
        id,
        created: now,
        key: Key::from(key),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aead::{Aead, SessionKeys};
    use crate::cookie;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const DAY: u64 = 86_400;

    #[test]
    fn rotation_schedule_and_clock_steps() {
        let mut rng = StdRng::seed_from_u64(3);
        let t0 = 1_700_000_000;
        let mut set = KeySet::generate(t0, &mut rng);
        assert!(!set.rotation_due(t0, DAY));
        assert!(!set.rotation_due(t0 + DAY - 1, DAY));
        assert_eq!(set.seconds_until_rotation(t0 + 100, DAY), DAY - 100);
        assert!(set.rotation_due(t0 + DAY, DAY));
        assert_eq!(set.seconds_until_rotation(t0 + DAY, DAY), 0);
        // Small backward steps wait; a step back beyond one interval restarts.
        assert!(!set.rotation_due(t0 - 10, DAY));
        assert!(set.rotation_due(0, DAY));
        set.rotate(0, 3, &mut rng);
        assert!(!set.rotation_due(10, DAY));
    }

    #[test]
    fn cookies_survive_keep_previous_rotations_and_no_more() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut set = KeySet::generate(0, &mut rng);
        let s = SessionKeys {
            aead: Aead::AesSivCmac256,
            c2s: Key::from([1; 32]),
            s2c: Key::from([2; 32]),
        };
        let c = cookie::seal(&s, set.current(), &mut rng).unwrap();
        for i in 1..=3 {
            set.rotate(i * DAY, 3, &mut rng);
            assert_eq!(cookie::open(&c, &set), Ok(s.clone()), "after rotation {i}");
        }
        assert_eq!(set.keys().len(), 4);
        set.rotate(4 * DAY, 3, &mut rng);
        assert_eq!(cookie::open(&c, &set), Err(cookie::CookieError::UnknownKey));
        let ids: std::collections::HashSet<u32> = set.keys().iter().map(|k| k.id).collect();
        assert_eq!(ids.len(), 4, "ids are unique");
    }

    #[test]
    fn next_key_is_published_before_it_seals() {
        let mut rng = StdRng::seed_from_u64(8);
        let mut rotator = KeySet::generate(0, &mut rng);
        // A follower reads the file now and not again until after the
        // rotation.
        let follower = KeySet::parse(&rotator.serialize()).unwrap();
        let published = rotator.next().unwrap().clone();
        rotator.rotate(DAY, 3, &mut rng);
        assert_eq!(rotator.current().id, published.id);
        assert_eq!(rotator.current().created, DAY);
        assert!(rotator.next().is_some_and(|n| n.id != published.id));
        let s = SessionKeys {
            aead: Aead::AesSivCmac256,
            c2s: Key::from([3; 32]),
            s2c: Key::from([4; 32]),
        };
        let c = cookie::seal(&s, rotator.current(), &mut rng).unwrap();
        assert_eq!(cookie::open(&c, &follower), Ok(s), "follower opens it");
        // The next key opens cookies but never seals them.
        assert_ne!(follower.current().id, published.id);
        // A file without a next line still loads and rotates.
        let old_format: String = follower
            .serialize()
            .lines()
            .filter(|l| !l.starts_with("next "))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut old = KeySet::parse(&old_format).unwrap();
        assert!(old.next().is_none());
        old.rotate(DAY, 3, &mut rng);
        assert!(old.next().is_some() && old.keys().len() == 2);
    }

    #[test]
    fn file_round_trip() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut set = KeySet::generate(10, &mut rng);
        set.rotate(20, 5, &mut rng);
        let text = set.serialize();
        assert_eq!(KeySet::parse(&text), Ok(set));
    }

    #[test]
    fn corrupt_files_name_the_line() {
        let mut rng = StdRng::seed_from_u64(6);
        let good = KeySet::generate(10, &mut rng).serialize();
        let key_line = good.lines().last().unwrap().to_owned();
        let cases = [
            ("", 0, "empty"),
            ("hello\n", 1, "header"),
            ("skytime-nts-keys 1\n", 0, "no key"),
            (
                &*format!("skytime-nts-keys 1\n{}\n", &key_line[..key_line.len() - 1]),
                2,
                "64 hex",
            ),
            (
                &*format!("skytime-nts-keys 1\n{}x\n", &key_line[..key_line.len() - 1]),
                2,
                "64 hex",
            ),
            (
                &*format!("skytime-nts-keys 1\n\n{key_line}\n{key_line}\n"),
                4,
                "duplicate",
            ),
            ("skytime-nts-keys 1\nkey 1234567 10 00\n", 2, "8 hex"),
            ("skytime-nts-keys 1\nkey 12345678 -1 00\n", 2, "seconds"),
            ("skytime-nts-keys 1\nkey 12345678 10\n", 2, "expected"),
            (
                &*format!(
                    "skytime-nts-keys 1\nnext{}\nnext{}\n",
                    &key_line[3..],
                    &key_line[3..]
                ),
                3,
                "more than one next",
            ),
            (
                &*format!("skytime-nts-keys 1\nnext{}\n", &key_line[3..]),
                0,
                "no key",
            ),
            ("skytime-nts-keys 1\nkex 12345678 10 00\n", 2, "expected"),
        ];
        for (text, line, reason) in cases {
            let e = KeySet::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.reason.contains(reason), "{text:?}: {e}");
        }
    }

    proptest! {
        #[test]
        fn rotation_keeps_window(steps in proptest::collection::vec(1u64..5 * DAY, 1..20), keep in 0usize..8) {
            let mut rng = StdRng::seed_from_u64(7);
            let mut now = 1_000_000;
            let mut set = KeySet::generate(now, &mut rng);
            for s in steps {
                now += s;
                if set.rotation_due(now, DAY) {
                    set.rotate(now, keep, &mut rng);
                }
                prop_assert!(set.keys().len() <= keep + 1);
                prop_assert!(!set.rotation_due(now, DAY));
                prop_assert_eq!(KeySet::parse(&set.serialize()), Ok(set.clone()));
            }
        }

        #[test]
        fn parse_never_panics(text in ".{0,300}") {
            let _ = KeySet::parse(&text);
        }
    }
}
