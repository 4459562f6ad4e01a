//! Who may change the appliance: root and members of the admin group.
//!
//! The D-Bus policy file already refuses write methods to everybody else
//! at the bus; this second check in the daemon keeps that true when the
//! policy is missing or too broad (defence in depth). The caller's uid and
//! groups come from the bus (GetConnectionCredentials), never from the
//! message.

use skytime_api::ApiError;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::names::BusName;
use zbus::Connection;

/// Checks that the sender of `header` is root or in group `admin_group`
/// (or in the group with that gid when the name is numeric). `action`
/// names the refused operation in the error.
pub async fn require_admin(
    conn: &Connection,
    header: &Header<'_>,
    admin_group: &str,
    action: &str,
) -> Result<(), ApiError> {
    let denied = |why: String| {
        ApiError::AccessDenied(format!(
            "{action} needs root or membership of group '{admin_group}': {why}"
        ))
    };
    let sender = header
        .sender()
        .ok_or_else(|| denied("the message has no sender".into()))?;
    let proxy = DBusProxy::new(conn)
        .await
        .map_err(|e| denied(format!("cannot ask the bus who the caller is ({e})")))?;
    let creds = proxy
        .get_connection_credentials(BusName::Unique(sender.to_owned()))
        .await
        .map_err(|e| denied(format!("cannot ask the bus who the caller is ({e})")))?;
    let uid = creds
        .unix_user_id()
        .ok_or_else(|| denied("the bus does not know the caller's uid".into()))?;
    if uid == 0 {
        return Ok(());
    }
    let Some(gid) = admin_gid(admin_group) else {
        return Err(denied(format!(
            "uid {uid} is not root and group '{admin_group}' does not exist"
        )));
    };
    let groups: Vec<u32> = match creds.unix_group_ids() {
        Some(g) => g.to_vec(),
        None => user_groups(uid),
    };
    if groups.contains(&gid) {
        Ok(())
    } else {
        Err(denied(format!("uid {uid} is not a member")))
    }
}

fn admin_gid(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Some(gid);
    }
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// Groups of `uid` from the user database (for buses that do not report
/// them).
fn user_groups(uid: u32) -> Vec<u32> {
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return Vec::new();
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default()
}
