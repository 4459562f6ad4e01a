//! The dm-verity hash tree of a verity bundle, with a salt derived from
//! the payload, so that the same payload gives the same bundle bytes.
//!
//! `rauc bundle` draws the verity salt from the random generator (and its
//! CMS signature carries a signing time), so two runs on the same inputs
//! give different bundles. The bundle script keeps everything RAUC made
//! (the squashfs payload with its manifest) and replaces the two
//! non-deterministic parts: the tree, recomputed here with
//! `salt = SHA-256("skytime verity salt v1" || payload)`, and the
//! signature, made without signed attributes (no time) by `openssl cms`.
//! RAUC 1.13 checks the result (`rauc extract` verifies the tree).
//!
//! The layout is RAUC's (`src/verity_hash.c`, from cryptsetup): format 1,
//! SHA-256, 4096-byte data and hash blocks, 128 digests per hash block,
//! every digest `SHA-256(salt || block)`, zero padding; the tree follows
//! the payload with its top level first and the level over the data
//! blocks last; the root hash is the digest of the top level's single
//! block.

use ring::digest::{Context, SHA256};
use std::io::{self, Read};

/// Data and hash block size.
pub const BLOCK: usize = 4096;
const DIGEST: usize = 32;
const PER_BLOCK: usize = BLOCK / DIGEST;

/// The salt for a payload.
pub fn salt_for(payload: impl Read) -> io::Result<[u8; 32]> {
    let mut ctx = Context::new(&SHA256);
    ctx.update(b"skytime verity salt v1");
    read_blocks(payload, |b| ctx.update(b))?;
    let mut salt = [0u8; 32];
    salt.copy_from_slice(ctx.finish().as_ref());
    Ok(salt)
}

fn digest(salt: &[u8; 32], block: &[u8]) -> [u8; DIGEST] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(salt);
    ctx.update(block);
    let mut out = [0u8; DIGEST];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Calls `f` with every full 4096-byte block; a partial last block is an
/// error (RAUC's payload is a multiple of 4096 bytes).
fn read_blocks(mut r: impl Read, mut f: impl FnMut(&[u8])) -> io::Result<u64> {
    let mut buf = vec![0u8; BLOCK];
    let mut blocks = 0;
    loop {
        let mut filled = 0;
        while filled < BLOCK {
            match r.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(blocks);
        }
        if filled < BLOCK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("payload is not a multiple of {BLOCK} bytes"),
            ));
        }
        f(&buf);
        blocks += 1;
    }
}

/// Packs digests into zero-padded hash blocks.
fn pack(digests: &[[u8; DIGEST]]) -> Vec<u8> {
    let blocks = digests.len().div_ceil(PER_BLOCK);
    let mut out = vec![0u8; blocks * BLOCK];
    for (i, d) in digests.iter().enumerate() {
        let at = (i / PER_BLOCK) * BLOCK + (i % PER_BLOCK) * DIGEST;
        out[at..at + DIGEST].copy_from_slice(d);
    }
    out
}

/// The hash tree (as it follows the payload in the bundle) and the root
/// hash of a payload.
pub fn hash_tree(payload: impl Read, salt: &[u8; 32]) -> io::Result<(Vec<u8>, [u8; 32])> {
    let mut level = Vec::new();
    let blocks = read_blocks(payload, |b| level.push(digest(salt, b)))?;
    if blocks < 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a verity payload must be larger than one block",
        ));
    }
    // Level 0 hashes the data; each level above hashes the one below,
    // until one block holds a level.
    let mut levels = vec![pack(&level)];
    while levels.last().map_or(0, Vec::len) > BLOCK {
        let below = levels.last().map(Vec::as_slice).unwrap_or_default();
        let digests: Vec<_> = below.chunks(BLOCK).map(|b| digest(salt, b)).collect();
        levels.push(pack(&digests));
    }
    let top = levels.last().map(Vec::as_slice).unwrap_or_default();
    let root = digest(salt, top);
    let tree = levels.iter().rev().flatten().copied().collect();
    Ok((tree, root))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(blocks: usize) -> Vec<u8> {
        (0..blocks * BLOCK)
            .map(|i| (i / BLOCK) as u8 ^ (i as u8))
            .collect()
    }

    /// RAUC's tree size: per level, ceil(blocks below / 128) blocks, until a
    /// level is one block.
    fn rauc_tree_blocks(mut blocks: usize) -> usize {
        let mut total = 0;
        loop {
            blocks = blocks.div_ceil(PER_BLOCK);
            total += blocks;
            if blocks == 1 {
                return total;
            }
        }
    }

    #[test]
    fn tree_sizes_match_rauc_for_level_boundaries() {
        let salt = [7u8; 32];
        for blocks in [2, 128, 129, 128 * 128, 128 * 128 + 1] {
            let (tree, _) = hash_tree(&payload(blocks)[..], &salt).unwrap();
            assert_eq!(
                tree.len(),
                rauc_tree_blocks(blocks) * BLOCK,
                "{blocks} blocks"
            );
        }
    }

    #[test]
    fn layout_top_level_first_root_over_the_top_block() {
        let salt = [1u8; 32];
        let data = payload(129);
        let (tree, root) = hash_tree(&data[..], &salt).unwrap();
        // 129 data blocks: level 0 has two hash blocks, level 1 one.
        assert_eq!(tree.len(), 3 * BLOCK);
        let (top, level0) = tree.split_at(BLOCK);
        assert_eq!(&level0[..DIGEST], &digest(&salt, &data[..BLOCK]));
        assert_eq!(
            &level0[BLOCK..BLOCK + DIGEST],
            &digest(&salt, &data[128 * BLOCK..])
        );
        assert!(
            level0[BLOCK + DIGEST..].iter().all(|&b| b == 0),
            "zero padding"
        );
        assert_eq!(&top[..DIGEST], &digest(&salt, &level0[..BLOCK]));
        assert_eq!(&top[DIGEST..2 * DIGEST], &digest(&salt, &level0[BLOCK..]));
        assert_eq!(root, digest(&salt, top));
    }

    #[test]
    fn any_changed_byte_changes_the_root_and_salt_is_deterministic() {
        let data = payload(300);
        let salt = salt_for(&data[..]).unwrap();
        assert_eq!(salt, salt_for(&data[..]).unwrap());
        let (_, root) = hash_tree(&data[..], &salt).unwrap();
        let mut changed = data.clone();
        changed[200 * BLOCK + 17] ^= 1;
        assert_ne!(hash_tree(&changed[..], &salt).unwrap().1, root);
        assert_ne!(salt_for(&changed[..]).unwrap(), salt);
    }

    #[test]
    fn refuses_partial_blocks_and_tiny_payloads() {
        assert!(hash_tree(&[0u8; BLOCK + 1][..], &[0; 32]).is_err());
        assert!(hash_tree(&[0u8; BLOCK][..], &[0; 32]).is_err());
        assert!(salt_for(&[0u8; 10][..]).is_err());
    }
}
