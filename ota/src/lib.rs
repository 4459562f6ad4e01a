//! # skytime-ota: signed A/B updates with RAUC
//!
//! The appliance has two root slots (A = partition 2, B = partition 3) and
//! installs a signed RAUC bundle into the one it does not run, boots it,
//! and keeps it only once it serves time. This crate holds everything of
//! that which is skytime's own; RAUC 1.13 (Debian 13) does the rest.
//!
//! Sans-I/O cores, tested without RAUC:
//! - [`version`]: the version format of bundles and systems, its order,
//!   and the policy (refuse an older or equal bundle unless forced);
//! - [`manifest`]: RAUC's `manifest.raucm`, parsed and written;
//! - [`hook_env`]: the command and environment RAUC gives a hook;
//! - [`install_check`]: the `install-check` decision;
//! - [`state`]: the update state machine (idle, staged, installing,
//!   installed, booted unconfirmed, confirmed, rolled back, failed): events
//!   in, actions out;
//! - [`guard`]: when the update guard fails a new slot that skytimed did
//!   not confirm in time;
//! - [`verity`]: the dm-verity hash tree with a deterministic salt, so
//!   that the same inputs make the same bundle.
//!
//! Thin I/O layers:
//! - [`store`]: the state machine's document on the data partition,
//!   replaced atomically, a corrupt file reported and kept;
//! - [`bootfiles`]: a slot's kernel, initramfs and DTBs written to
//!   `slot-a/` or `slot-b/` on the FAT boot partition so that a power cut
//!   leaves the old set or the new one;
//! - [`rauc`]: the D-Bus client of `de.pengutronix.rauc.Installer`.
//!
//! Binaries: `skytime-rauc-hook` (in every bundle: `install-check` and the
//! boot files' `slot-install`), `skytime-update-guard` (in the image: the
//! backstop of skytimed's health check) and `skytime-ota-build` (the bundle
//! script's helper: version, manifest, boot file list, deterministic
//! re-seal). The recipe (`system.conf`, the manifest template,
//! `bundle.sh`, the signing setup) and what is tested where are in
//! `ota/README.md`.
//!
//! A driver (skytimed) uses it like this: read the [`store::Store`], feed
//! [`state::Event`]s (boot, install request, RAUC's progress and
//! `Completed`, health results) to [`state::State::handle`], save the
//! new state, then carry out the [`state::Action`]s with [`rauc::Rauc`].

pub mod bootfiles;
pub mod guard;
pub mod hook_env;
pub mod install_check;
pub mod manifest;
pub mod rauc;
pub mod state;
pub mod store;
pub mod verity;
pub mod version;
